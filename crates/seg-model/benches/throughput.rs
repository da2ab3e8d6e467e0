//! Throughput benchmark: train-step and inference images/s of the benchmark U-Net (depth 4,
//! base 16, BCE+Dice, Adam, batch 8) at 128x128 and 256x256 on every backend compiled in and on
//! the CPU anchors (scripts/bench/unet_reference.py --serve, one process kept per size and
//! mode): PyTorch eager, torch.compile (inductor), and onnxruntime on seg-model's own ONNX export
//! of the same U-Net; with GFLOP/s and the share of the measured gemm peak; optionally under
//! load (busy processes beside it); then the data pipeline's images/s on kvasir-seg and the peak
//! RSS of training on kvasir-seg.
//!
//! The implementations are interleaved round by round (ours, then each anchor, then the next
//! round), so machine drift hits all; each round gives a ratio (the anchor's median time / ours),
//! and the summary prints the median and the worst ratio over the rounds of one invocation,
//! against each anchor and against the fastest anchor of each round:
//!
//! ```text
//! SEG_BENCH_PYTHON=~/.cache/seg-mlops/torch-2.9.0/bin/python \
//!   SEG_BENCH_ORT_PYTHON=$(scripts/model-python.sh) cargo bench -p seg-model --bench throughput
//! scripts/with-libtorch.sh cargo bench -p seg-model --features tch --bench throughput
//! ```
//! Environment: SEG_BENCH_SIZES (default 128,256), SEG_BENCH_ROUNDS (default 5),
//! SEG_BENCH_STEPS (timed steps per round, default 4), SEG_DATASETS_DIR, SEG_BENCH_PYTHON
//! (python with torch; default $TORCH_VENV/bin/python), SEG_BENCH_ORT_PYTHON (python with
//! onnxruntime), SEG_BENCH_ANCHORS (default eager,compile,onnxruntime), SEG_BENCH_LOAD (busy
//! processes beside the rounds, a list such as 0,1,2: each size is measured at each load and
//! the slowdowns are compared with the fair share), SEG_BENCH_BATCH_NORM=0 (no batch norm),
//! SEG_BENCH_BACKENDS=flex,tch-cpu (which backends), SEG_BENCH_PROFILE=1 (forward/backward/
//! optimiser split after the rounds), SEG_BENCH_GENERIC=1 (each backend a second time with
//! seg-model's own kernels off: burn's generic autodiff and modules, `set_own_kernels(false)`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use seg_model::data::{
    AugmentConfig, BatchLoader, LoaderConfig, MaskEncoding, Preprocess, SegmentationDataset,
};
use seg_model::loss::{LossConfig, LossTargets, segmentation_loss};
use seg_model::{BackendKind, UNetConfig};

#[path = "throughput/anchors.rs"]
mod anchors;
#[path = "throughput/load.rs"]
mod load;
#[path = "throughput/summary.rs"]
mod summary;
use anchors::Anchor;
use summary::Work;

const BATCH: usize = 8;
/// The data pipeline's and the RSS child's image size.
const SIZE: usize = 128;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Images per second of a batch from its per-round median seconds.
fn rate(seconds: &[f64]) -> f64 {
    BATCH as f64 / median(seconds.to_vec())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Timed steps (and inference batches) per round.
fn steps() -> usize {
    env_usize("SEG_BENCH_STEPS", 4)
}

/// Rounds: each round times every implementation in turn, so drift hits all of them alike.
fn rounds() -> usize {
    env_usize("SEG_BENCH_ROUNDS", 5)
}

/// Image sizes (square), SEG_BENCH_SIZES=128,256 by default.
fn sizes() -> Vec<usize> {
    std::env::var("SEG_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![128, 256])
}

/// SEG_BENCH_BATCH_NORM=0 benchmarks the U-Net without batch norm (in both implementations).
fn batch_norm() -> bool {
    std::env::var("SEG_BENCH_BATCH_NORM").map_or(true, |v| v != "0")
}

fn datasets_dir() -> PathBuf {
    std::env::var_os("SEG_DATASETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets"))
}

/// Per-round medians (seconds per step and per inference batch) of one implementation.
#[derive(Default, Clone)]
struct Rounds {
    train: Vec<f64>,
    infer: Vec<f64>,
}

/// One of our backends, with its model and optimiser kept across rounds.
struct Ours {
    name: String,
    own: bool,
    model: Option<seg_model::UNet>,
    optim: burn::optim::ModuleOptimizer,
    x: Tensor<4>,
    /// `x` on the inference device.
    x_eval: Tensor<4>,
    targets: LossTargets,
    rounds: Rounds,
}

impl Ours {
    fn new((kind, own): (BackendKind, bool), size: usize) -> Self {
        seg_model::set_own_kernels(own);
        let name = if own {
            kind.to_string()
        } else {
            format!("{kind} (burn generic)")
        };
        let device: Device = kind.training_device();
        device.seed(0);
        let config = UNetConfig::new().with_batch_norm(batch_norm());
        let model = config.init(&device).expect("model");
        let x = Tensor::<4>::random(
            [BATCH, 3, size, size],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let masks: Vec<u8> = (0..BATCH * size * size)
            .map(|i| u8::from(i % 7 < 2))
            .collect();
        let targets =
            LossTargets::from_masks(&masks, BATCH, size, size, 1, &device).expect("targets");
        seg_model::set_own_kernels(true);
        Self {
            name,
            own,
            model: Some(model),
            optim: AdamConfig::new().init(),
            x_eval: Tensor::<4>::from_data(x.to_data(), &kind.device()),
            x,
            targets,
            rounds: Rounds::default(),
        }
    }

    /// One train step; seconds of forward+loss, backward and the optimiser step.
    fn train_step(&mut self, loss_cfg: &LossConfig) -> [f64; 3] {
        let model = self.model.take().expect("model");
        let t = Instant::now();
        let loss = segmentation_loss(loss_cfg, model.forward(self.x.clone()), &self.targets);
        let _ = loss.clone().into_data();
        let forward = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let backward = t.elapsed().as_secs_f64();
        let t = Instant::now();
        self.model = Some(self.optim.step(1e-3, model, grads));
        [forward, backward, t.elapsed().as_secs_f64()]
    }

    /// `steps` train steps, then `steps` inference batches; records both medians.
    fn round(&mut self, steps: usize, record: bool) {
        seg_model::set_own_kernels(self.own);
        let loss_cfg = LossConfig::default();
        let times: Vec<f64> = (0..steps)
            .map(|_| self.train_step(&loss_cfg).iter().sum())
            .collect();
        let eval = self.model.as_ref().expect("model").valid();
        let mut infer = Vec::new();
        for _ in 0..steps {
            let t = Instant::now();
            let _ = eval.forward(self.x_eval.clone()).sum().into_data();
            infer.push(t.elapsed().as_secs_f64());
        }
        if record {
            self.rounds.train.push(median(times));
            self.rounds.infer.push(median(infer));
        }
        seg_model::set_own_kernels(true);
    }

    /// SEG_BENCH_PROFILE=1: median milliseconds of forward+loss, backward and the optimiser.
    fn profile(&mut self, steps: usize) {
        seg_model::set_own_kernels(self.own);
        let loss_cfg = LossConfig::default();
        let phases: Vec<[f64; 3]> = (0..steps).map(|_| self.train_step(&loss_cfg)).collect();
        let ms = |i: usize| median(phases.iter().map(|p| p[i] * 1e3).collect());
        println!(
            "  profile {}: forward+loss {:.1} ms, backward {:.1} ms, optimiser {:.1} ms",
            self.name,
            ms(0),
            ms(1),
            ms(2)
        );
        seg_model::set_own_kernels(true);
    }
}

/// One image size at one load: a warm-up round, then `rounds()` interleaved rounds; prints
/// per-round ratios against the anchors and the summary; returns ours and the anchors.
fn bench_size(
    size: usize,
    backends: &[(BackendKind, bool)],
    busy: usize,
) -> (Vec<Ours>, Vec<Anchor>) {
    let (steps, rounds) = (steps(), rounds());
    println!(
        "\n== {size}x{size}: batch {BATCH}, {rounds} rounds of {steps} train steps + {steps} inference batches each, interleaved; {busy} busy processes beside"
    );
    let mut ours: Vec<Ours> = backends.iter().map(|&b| Ours::new(b, size)).collect();
    let onnx = export_onnx(size);
    let mut anchors = anchors::start_all(size, onnx.as_ref().map(|f| f.path()));
    let work = measure_work(&mut anchors);
    let _load = load::Busy::start(busy);
    for round in 0..=rounds {
        let record = round > 0;
        for o in &mut ours {
            o.round(steps, record);
        }
        for a in &mut anchors {
            a.round(steps, record);
        }
        if record {
            let line: Vec<String> = ours
                .iter()
                .map(|o| {
                    let (t, i) = (o.rounds.train[round - 1], o.rounds.infer[round - 1]);
                    format!(
                        "{} train {:.2} infer {:.2} img/s",
                        o.name,
                        BATCH as f64 / t,
                        BATCH as f64 / i
                    )
                })
                .chain(anchors.iter().map(|a| {
                    let i = a.rounds.infer[round - 1];
                    match a.rounds.train.get(round - 1) {
                        Some(t) => format!(
                            "{} train {:.2} infer {:.2}",
                            a.name,
                            BATCH as f64 / t,
                            BATCH as f64 / i
                        ),
                        None => format!("{} infer {:.2}", a.name, BATCH as f64 / i),
                    }
                }))
                .collect();
            println!("  round {round}: {}", line.join("; "));
        }
    }
    drop(_load);
    if std::env::var_os("SEG_BENCH_PROFILE").is_some() {
        for o in &mut ours {
            o.profile(steps.max(3));
        }
    }
    summary::print_summary(&ours, &anchors, work);
    (ours, anchors)
}

/// FLOPs per image and the gemm peak, from the first PyTorch anchor (unloaded).
fn measure_work(anchors: &mut [Anchor]) -> Option<Work> {
    let a = anchors.iter_mut().find(|a| a.trains)?;
    let (forward_flops, train_flops) = a.flops()?;
    let peak_gflops = a.peak()?;
    Some(Work {
        forward_flops,
        train_flops,
        peak_gflops,
    })
}

/// seg-model's ONNX export of the benchmark U-Net at `size` (onnxruntime's model), in a
/// temporary file; `None` (said why) when onnxruntime is not wanted or the export fails.
fn export_onnx(size: usize) -> Option<tempfile::NamedTempFile> {
    if !anchors::wanted().iter().any(|a| a == "onnxruntime") {
        return None;
    }
    let device: Device = BackendKind::default_kind().device();
    device.seed(0);
    let config = UNetConfig::new().with_batch_norm(batch_norm());
    let model = config.init(&device).expect("model");
    let meta = seg_model::CheckpointMeta::new(
        config,
        MaskEncoding::default(),
        Preprocess::unnormalized(size, size, 3),
        std::collections::BTreeMap::new(),
        1,
    );
    let file = tempfile::Builder::new().suffix(".onnx").tempfile().ok()?;
    let checkpoint = seg_model::Checkpoint { model, meta };
    match seg_model::onnx::export_file(&checkpoint, file.path()) {
        Ok(()) => Some(file),
        Err(e) => {
            println!("  (onnxruntime anchor not run: the export failed: {e})");
            None
        }
    }
}

fn kvasir() -> Option<SegmentationDataset> {
    SegmentationDataset::open(datasets_dir().join("kvasir-seg"), MaskEncoding::default()).ok()
}

/// Images/s of the augmenting loader over kvasir-seg at 128x128 (decode + augment + normalise).
fn bench_pipeline(ds: &SegmentationDataset) -> f64 {
    let indices: Vec<usize> = (0..ds.len()).collect();
    let pre = Arc::new(Preprocess::unnormalized(SIZE, SIZE, 3));
    let cfg = LoaderConfig {
        batch_size: BATCH,
        shuffle: true,
        augment: Some(AugmentConfig::default()),
        seed: 1,
        prefetch: 4,
    };
    let shared = Arc::new(ds.clone());
    let mut rates = Vec::new();
    for epoch in 0..3 {
        let t = Instant::now();
        let n: usize = BatchLoader::start(shared.clone(), &indices, pre.clone(), &cfg, epoch)
            .map(|b| b.expect("batch").len)
            .sum();
        rates.push(n as f64 / t.elapsed().as_secs_f64());
    }
    median(rates)
}

/// Child mode: train on kvasir-seg at 128x128, batch 8, for a few batches; print peak RSS (KiB).
fn rss_child() {
    let ds = kvasir().expect("kvasir-seg");
    let cfg = seg_model::TrainConfig {
        epochs: 1,
        batch_size: BATCH,
        ..seg_model::TrainConfig::default()
    };
    let split = seg_model::data::Split::new(ds.len(), 0.9, 1).expect("split");
    seg_model::train(
        &UNetConfig::new(),
        &cfg,
        &ds,
        &split,
        &mut seg_model::NoObserver,
    )
    .expect("train");
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: 0 kB");
    println!("{}", hwm.split_whitespace().nth(1).unwrap_or("0"));
}

/// The widest x86 vector extension this CPU has (what flex's kernels can use).
fn instruction_set() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "AVX2+FMA";
        }
    }
    "neither AVX-512 nor AVX2"
}

fn main() {
    // As `seg_model::train` and `Predictor` do (the bench drives the model directly).
    seg_model::tune_allocator();
    if std::env::args().any(|a| a == "--rss-child") {
        rss_child();
        return;
    }
    if std::env::args().any(|a| a == load::BUSY_ARG) {
        load::spin();
    }
    println!(
        "seg-model throughput: U-Net depth 4, base 16, batch {BATCH}, BCE+Dice, Adam; medians per round, ratios = anchor time / ours"
    );
    println!(
        "threads: {} (rayon); instruction set: {}",
        rayon::current_num_threads(),
        instruction_set()
    );
    let kinds = [
        #[cfg(feature = "flex")]
        BackendKind::Flex,
        #[cfg(feature = "tch")]
        BackendKind::TchCpu,
    ];
    let only = std::env::var("SEG_BENCH_BACKENDS").ok();
    let generic = std::env::var("SEG_BENCH_GENERIC").is_ok_and(|v| v == "1");
    let backends: Vec<(BackendKind, bool)> = kinds
        .into_iter()
        .filter(|k| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|n| n == k.to_string()))
        })
        .flat_map(|k| {
            [(k, true), (k, false)]
                .into_iter()
                .take(1 + usize::from(generic))
        })
        .collect();
    let loads = load::levels();
    let mut rates = Vec::new();
    for size in sizes() {
        let runs: Vec<(usize, Vec<Ours>, Vec<Anchor>)> = loads
            .iter()
            .map(|&busy| {
                let (ours, anchors) = bench_size(size, &backends, busy);
                (busy, ours, anchors)
            })
            .collect();
        load::print_slowdowns(size, &runs);
        let best = runs
            .iter()
            .filter(|(busy, ..)| *busy == 0)
            .flat_map(|(_, ours, _)| ours.iter().map(|o| rate(&o.rounds.train)))
            .fold(0.0, f64::max);
        rates.push((size, best));
    }
    let fastest = rates
        .iter()
        .find(|(size, _)| *size == SIZE)
        .map(|&(_, rate)| rate);
    bench_data(fastest);
}

/// The data pipeline's images/s on kvasir-seg (against `fastest`, the fastest train step at
/// the pipeline's size) and the peak RSS of one epoch of training.
fn bench_data(fastest: Option<f64>) {
    if let Some(ds) = kvasir() {
        let pipeline = bench_pipeline(&ds);
        match fastest {
            Some(consumer) => println!(
                "\ndata pipeline (kvasir-seg, decode+augment @{SIZE}): {pipeline:.1} img/s = {:.1}x the fastest train step",
                pipeline / consumer
            ),
            None => println!(
                "\ndata pipeline (kvasir-seg, decode+augment @{SIZE}): {pipeline:.1} img/s"
            ),
        }
        let exe = std::env::current_exe().expect("exe");
        match std::process::Command::new(exe).arg("--rss-child").output() {
            Ok(out) if out.status.success() => {
                let kib: f64 = String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(0.0);
                println!(
                    "peak RSS, 1 epoch on kvasir-seg @128 batch 8 ({}): {:.0} MiB (target <= 2048)",
                    BackendKind::default_kind(),
                    kib / 1024.0
                );
            }
            other => println!("peak RSS child failed: {other:?}"),
        }
    } else {
        println!(
            "kvasir-seg not found under {}: pipeline and RSS not measured",
            datasets_dir().display()
        );
    }
}
