//! Throughput benchmark: train-step and inference images/s of the benchmark U-Net (depth 4,
//! base 16, BCE+Dice, Adam, batch 8, 3x128x128) on every backend compiled in and on PyTorch
//! eager (scripts/bench/unet_reference.py), the data pipeline's images/s on kvasir-seg, and the
//! peak RSS of training on kvasir-seg. Prints medians and ratios from one invocation:
//!
//! ```text
//! scripts/with-libtorch.sh cargo bench -p seg-model --features tch --bench throughput
//! ```
//! Environment: SEG_BENCH_STEPS (timed steps, default 10), SEG_DATASETS_DIR, SEG_BENCH_PYTHON
//! (python with torch; default $TORCH_VENV/bin/python), SEG_BENCH_BATCH_NORM=0 (no batch norm),
//! SEG_BENCH_BACKENDS=flex,tch-cpu (which backends), SEG_BENCH_PROFILE=1 (forward/backward/optimiser split),
//! SEG_BENCH_GENERIC=1 (each backend a second time with seg-model's own kernels off: burn's
//! generic autodiff and modules, `set_own_kernels(false)`).

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

const BATCH: usize = 8;
const SIZE: usize = 128;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn steps() -> usize {
    std::env::var("SEG_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
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

struct Measure {
    name: String,
    train: f64,
    infer: f64,
}

fn bench_backend((kind, own): (BackendKind, bool)) -> Measure {
    seg_model::set_own_kernels(own);
    let name = if own {
        kind.to_string()
    } else {
        format!("{kind} (burn generic)")
    };
    let n = steps();
    let device: Device = kind.training_device();
    device.seed(0);
    let config = UNetConfig::new().with_batch_norm(batch_norm());
    let mut model = config.init(&device).expect("model");
    let mut optim = AdamConfig::new().init();
    let loss_cfg = LossConfig::new();
    let x = Tensor::<4>::random(
        [BATCH, 3, SIZE, SIZE],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let masks: Vec<u8> = (0..BATCH * SIZE * SIZE)
        .map(|i| u8::from(i % 7 < 2))
        .collect();
    let targets = LossTargets::from_masks(&masks, BATCH, SIZE, SIZE, 1, &device).expect("targets");
    let mut step = |model: seg_model::UNet| {
        let loss = segmentation_loss(&loss_cfg, model.forward(x.clone()), &targets);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optim.step(1e-3, model, grads);
        let _ = loss.into_data();
        model
    };
    let mut times = Vec::new();
    for i in 0..n + 2 {
        let t = Instant::now();
        model = step(model);
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let train = BATCH as f64 / median(times);
    if std::env::var_os("SEG_BENCH_PROFILE").is_some() {
        model = profile_step(model, &mut optim, &loss_cfg, &x, &targets, n, &name);
    }
    let eval = model.valid();
    let eval_device = kind.device();
    let xe = Tensor::<4>::from_data(x.into_data(), &eval_device);
    let mut times = Vec::new();
    for i in 0..n + 2 {
        let t = Instant::now();
        let _ = eval.forward(xe.clone()).sum().into_data();
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    seg_model::set_own_kernels(true);
    Measure {
        name,
        train,
        infer: BATCH as f64 / median(times),
    }
}

/// SEG_BENCH_PROFILE=1: median milliseconds of forward+loss, backward and the optimiser step.
fn profile_step(
    mut model: seg_model::UNet,
    optim: &mut burn::optim::ModuleOptimizer,
    loss_cfg: &LossConfig,
    x: &Tensor<4>,
    targets: &LossTargets,
    n: usize,
    name: &str,
) -> seg_model::UNet {
    let (mut f, mut b, mut o) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let loss = segmentation_loss(loss_cfg, model.forward(x.clone()), targets);
        let _ = loss.clone().into_data();
        f.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        b.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        model = optim.step(1e-3, model, grads);
        o.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "profile {name}: forward+loss {:.1} ms, backward {:.1} ms, optimiser {:.1} ms",
        median(f),
        median(b),
        median(o)
    );
    model
}

fn bench_pytorch() -> Option<Measure> {
    let python = std::env::var_os("SEG_BENCH_PYTHON")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("TORCH_VENV").map(|v| PathBuf::from(v).join("bin/python")))?;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench/unet_reference.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .args(["--steps", &steps().to_string()])
        .args(if batch_norm() {
            &[][..]
        } else {
            &["--no-batch-norm"][..]
        })
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "pytorch reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(Measure {
        name: v["backend"].as_str().unwrap_or("pytorch").to_string(),
        train: v["train_images_per_sec"].as_f64()?,
        infer: v["infer_images_per_sec"].as_f64()?,
    })
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
        augment: Some(AugmentConfig::new()),
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
    let cfg = seg_model::TrainConfig::new()
        .with_epochs(1)
        .with_batch_size(BATCH);
    let split = seg_model::data::Split::new(ds.len(), 0.9, 1).expect("split");
    seg_model::train(
        &UNetConfig::new(),
        &cfg,
        &ds,
        &split,
        BackendKind::default_kind(),
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

fn main() {
    if std::env::args().any(|a| a == "--rss-child") {
        rss_child();
        return;
    }
    println!(
        "seg-model throughput: U-Net depth 4, base 16, batch {BATCH}, 3x{SIZE}x{SIZE}, BCE+Dice, Adam; {} timed steps, medians",
        steps()
    );
    println!("threads: {} (rayon)", rayon::current_num_threads());
    let kinds = [
        #[cfg(feature = "flex")]
        BackendKind::Flex,
        #[cfg(feature = "tch")]
        BackendKind::TchCpu,
    ];
    let only = std::env::var("SEG_BENCH_BACKENDS").ok();
    let generic = std::env::var("SEG_BENCH_GENERIC").is_ok_and(|v| v == "1");
    let results: Vec<Measure> = kinds
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
        .map(bench_backend)
        .collect();
    let reference = bench_pytorch();
    println!(
        "{:<26} {:>14} {:>14} {:>12} {:>12}",
        "backend", "train img/s", "infer img/s", "train ratio", "infer ratio"
    );
    for m in results.iter().chain(reference.iter()) {
        let (tr, ir) = reference.as_ref().map_or((f64::NAN, f64::NAN), |r| {
            (m.train / r.train, m.infer / r.infer)
        });
        println!(
            "{:<26} {:>14.2} {:>14.2} {:>11.2}x {:>11.2}x",
            m.name, m.train, m.infer, tr, ir
        );
    }
    if reference.is_none() {
        println!(
            "(PyTorch reference not run: set SEG_BENCH_PYTHON or run under scripts/with-libtorch.sh)"
        );
    }
    if let Some(ds) = kvasir() {
        let pipeline = bench_pipeline(&ds);
        let consumer = results.iter().map(|m| m.train).fold(0.0, f64::max);
        println!(
            "data pipeline (kvasir-seg, decode+augment @128): {pipeline:.1} img/s = {:.1}x the fastest train step",
            pipeline / consumer
        );
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
