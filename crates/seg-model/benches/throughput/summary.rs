//! The table of one size: images/s and GFLOP/s (with the share of the measured gemm peak) of
//! every implementation, then each of ours against every anchor and against the fastest anchor
//! of each round, as the median and the worst per-round ratio (anchor time / ours).

use super::anchors::Anchor;
use super::{Ours, Rounds, median, rate};

/// FLOPs of one image (forward, train step) and the machine's measured gemm peak.
#[derive(Debug, Clone, Copy)]
pub(super) struct Work {
    pub(super) forward_flops: f64,
    pub(super) train_flops: f64,
    pub(super) peak_gflops: f64,
}

/// `median / worst` of the per-round ratios `theirs[r] / ours[r]`.
fn ratios(theirs: &[f64], ours: &[f64]) -> Option<String> {
    if theirs.is_empty() || theirs.len() != ours.len() {
        return None;
    }
    let r: Vec<f64> = theirs.iter().zip(ours).map(|(t, o)| t / o).collect();
    let worst = r.iter().copied().fold(f64::INFINITY, f64::min);
    Some(format!("{:.2}x / {worst:.2}x", median(r)))
}

/// Per round, the time of the fastest anchor that has this phase.
fn fastest(anchors: &[&Rounds], phase: fn(&Rounds) -> &Vec<f64>) -> Vec<f64> {
    let with: Vec<&Vec<f64>> = anchors
        .iter()
        .map(|r| phase(r))
        .filter(|v| !v.is_empty())
        .collect();
    let Some(n) = with.iter().map(|v| v.len()).min() else {
        return Vec::new();
    };
    (0..n)
        .map(|i| with.iter().map(|v| v[i]).fold(f64::INFINITY, f64::min))
        .collect()
}

/// GFLOP/s of `flops` per image at the median of `seconds` per batch, with its share of the peak.
fn gflops(seconds: &[f64], flops: f64, work: Option<Work>) -> String {
    match work {
        Some(w) if !seconds.is_empty() => {
            let g = flops * rate(seconds) / 1e9;
            format!("{g:.1} ({:.0} %)", 100.0 * g / w.peak_gflops)
        }
        _ => "n/a".into(),
    }
}

pub(super) fn print_summary(ours: &[Ours], anchors: &[Anchor], work: Option<Work>) {
    if let Some(w) = work {
        println!(
            "  work per image: forward {:.3} GFLOP, train step {:.3} GFLOP (counted by torch); measured float32 gemm peak {:.1} GFLOP/s",
            w.forward_flops / 1e9,
            w.train_flops / 1e9,
            w.peak_gflops
        );
    }
    println!(
        "  {:<56} {:>11} {:>11} {:>18} {:>18}",
        "implementation", "train img/s", "infer img/s", "train GFLOP/s (%)", "infer GFLOP/s (%)"
    );
    let rows = ours
        .iter()
        .map(|o| (o.name.as_str(), &o.rounds))
        .chain(anchors.iter().map(|a| (a.name.as_str(), &a.rounds)));
    for (name, r) in rows {
        let img = |s: &[f64]| {
            if s.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2}", rate(s))
            }
        };
        println!(
            "  {:<56} {:>11} {:>11} {:>18} {:>18}",
            name,
            img(&r.train),
            img(&r.infer),
            gflops(&r.train, work.map_or(0.0, |w| w.train_flops), work),
            gflops(&r.infer, work.map_or(0.0, |w| w.forward_flops), work),
        );
    }
    if anchors.is_empty() {
        println!("  (no anchor ran: set SEG_BENCH_PYTHON and SEG_BENCH_ORT_PYTHON)");
        return;
    }
    println!(
        "  ratios = anchor time / ours per round, median / worst over {} rounds:",
        ours.first().map_or(0, |o| o.rounds.infer.len())
    );
    let all: Vec<&Rounds> = anchors.iter().map(|a| &a.rounds).collect();
    let best_train = fastest(&all, |r| &r.train);
    let best_infer = fastest(&all, |r| &r.infer);
    for o in ours {
        for a in anchors {
            println!(
                "    {} vs {}: train {}, infer {}",
                o.name,
                a.name,
                ratios(&a.rounds.train, &o.rounds.train).unwrap_or_else(|| "-".into()),
                ratios(&a.rounds.infer, &o.rounds.infer).unwrap_or_else(|| "-".into()),
            );
        }
        println!(
            "    {} vs the fastest anchor of each round: train {}, infer {}",
            o.name,
            ratios(&best_train, &o.rounds.train).unwrap_or_else(|| "-".into()),
            ratios(&best_infer, &o.rounds.infer).unwrap_or_else(|| "-".into()),
        );
    }
}
