//! A machine that is not ours alone: busy processes beside the rounds (SEG_BENCH_LOAD), and how
//! much each implementation slowed down against its fair share of the cores.

use std::process::{Child, Command};

use super::anchors::Anchor;
use super::{Ours, Rounds, median};

/// The argument that makes the bench binary a busy process.
pub(super) const BUSY_ARG: &str = "--busy-child";

/// The loads to measure at, as counts of busy processes: SEG_BENCH_LOAD (default `0`).
pub(super) fn levels() -> Vec<usize> {
    let levels: Vec<usize> = std::env::var("SEG_BENCH_LOAD")
        .unwrap_or_else(|_| "0".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if levels.is_empty() { vec![0] } else { levels }
}

/// A busy process: spins until killed.
pub(super) fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
}

/// Busy processes, killed when dropped.
pub(super) struct Busy(Vec<Child>);

impl Busy {
    /// `n` busy processes (this bench binary with [`BUSY_ARG`]).
    pub(super) fn start(n: usize) -> Self {
        let exe = std::env::current_exe().expect("bench executable");
        Self(
            (0..n)
                .map(|_| {
                    Command::new(&exe)
                        .arg(BUSY_ARG)
                        .spawn()
                        .expect("busy process")
                })
                .collect(),
        )
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Each implementation's slowdown at each load against no load, beside the fair share: with
/// `n` busy processes on `c` cores, a process with `c` threads gets `c / (c + n)` of them.
pub(super) fn print_slowdowns(size: usize, runs: &[(usize, Vec<Ours>, Vec<Anchor>)]) {
    let Some((_, base_ours, base_anchors)) = runs.iter().find(|(busy, ..)| *busy == 0) else {
        return;
    };
    if runs.len() < 2 {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let names = |ours: &[Ours], anchors: &[Anchor]| -> Vec<(String, Rounds)> {
        ours.iter()
            .map(|o| (o.name.clone(), o.rounds.clone()))
            .chain(anchors.iter().map(|a| (a.name.clone(), a.rounds.clone())))
            .collect()
    };
    let base = names(base_ours, base_anchors);
    println!(
        "\n== {size}x{size} under load: median time at the load / with no load ({cores} cores)"
    );
    for (busy, ours, anchors) in runs.iter().filter(|(busy, ..)| *busy > 0) {
        let fair = (cores + busy) as f64 / cores as f64;
        println!(
            "  {busy} busy processes: fair share {fair:.2}x (1.5x of it: {:.2}x)",
            1.5 * fair
        );
        for ((name, loaded), (_, unloaded)) in names(ours, anchors).iter().zip(&base) {
            let slow = |a: &[f64], b: &[f64]| {
                if a.is_empty() || b.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.2}x", median(a.to_vec()) / median(b.to_vec()))
                }
            };
            println!(
                "    {name}: train {}, infer {}",
                slow(&loaded.train, &unloaded.train),
                slow(&loaded.infer, &unloaded.infer)
            );
        }
    }
}
