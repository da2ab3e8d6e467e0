//! Training really learns: synthetic data reaches validation IoU >= 0.8 in a small budget, the
//! same seed gives the same metrics, and the best checkpoint round-trips bit-identically.

use seg_model::data::{SegmentationDataset, Split, SyntheticConfig};
use std::ops::ControlFlow;

use seg_model::{
    EpochReport, Flow, ImageSize, LrSchedule, Predictor, SegError, StopReason, TrainConfig,
    TrainEnd, TrainObserver, UNetConfig, checkpoint,
};

/// burn's CPU backends seed one process-wide RNG: trainings in parallel test threads would
/// interleave it and lose reproducibility, so the tests of this file train one at a time.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    TRAINING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Recorder {
    epochs: Vec<EpochReport>,
    batches: usize,
}

impl TrainObserver for Recorder {
    fn on_batch_end(&mut self, report: &seg_model::BatchReport) -> Flow {
        assert!(report.loss.is_finite());
        self.batches += 1;
        Flow::Continue(())
    }
    fn on_epoch_end(&mut self, report: &EpochReport) -> Flow {
        self.epochs.push(report.clone());
        Flow::Continue(())
    }
}

/// Stops training at a given global batch with a given reason.
struct StopAt {
    batch: usize,
    seen: usize,
    reason: StopReason,
}

impl TrainObserver for StopAt {
    fn on_batch_end(&mut self, _report: &seg_model::BatchReport) -> Flow {
        self.seen += 1;
        if self.seen == self.batch {
            ControlFlow::Break(self.reason.clone())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn synthetic(dir: &std::path::Path, classes: usize) -> SegmentationDataset {
    let cfg = SyntheticConfig::new()
        .with_count(64)
        .with_width(32)
        .with_height(32)
        .with_num_classes(classes)
        .with_max_shapes(3)
        .with_seed(7);
    let encoding = cfg
        .write(dir, &std::sync::atomic::AtomicBool::new(false))
        .expect("write synthetic data");
    SegmentationDataset::open(dir, encoding).expect("open synthetic data")
}

fn small_run(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 4,
        learning_rate: 3e-3,
        image_size: ImageSize::square(32),
        schedule: LrSchedule::Cosine { min_factor: 0.1 },
        seed: 11,
        ..TrainConfig::default()
    }
}

fn with_tta(config: TrainConfig, validation: seg_model::Tta, after: seg_model::Tta) -> TrainConfig {
    TrainConfig {
        tta: seg_model::TrainTta {
            validation,
            after_training: after,
        },
        ..config
    }
}

fn model(classes: usize) -> UNetConfig {
    UNetConfig::new()
        .with_num_classes(if classes == 2 { 1 } else { classes })
        .with_base_channels(16)
        .with_depth(2)
}

#[test]
fn binary_synthetic_reaches_iou_080_and_is_deterministic() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = synthetic(dir.path(), 2);
    let config = small_run(12);
    let split = Split::new(ds.len(), 0.2, config.seed).expect("split");
    let mut rec = Recorder {
        epochs: vec![],
        batches: 0,
    };
    let outcome = seg_model::train(&model(2), &config, &ds, &split, &mut rec).expect("train");
    let best = &outcome.history[outcome.best_epoch - 1];
    eprintln!(
        "mean IoU per epoch: {:?}",
        outcome
            .history
            .iter()
            .map(|r| (r.metrics.mean_iou * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    );
    assert!(
        best.metrics.mean_iou >= 0.8,
        "best mean IoU {:.3} < 0.8 (history: {:?})",
        best.metrics.mean_iou,
        outcome
            .history
            .iter()
            .map(|r| r.metrics.mean_iou)
            .collect::<Vec<_>>()
    );
    assert_eq!(rec.epochs.len(), 12);
    assert_eq!(outcome.end, TrainEnd::Completed);
    assert_eq!(rec.batches, 12 * split.train.len().div_ceil(4));
    assert!(outcome.history.last().expect("epochs").train_loss < outcome.history[0].train_loss);

    // Same seed, same data: same metrics on the CPU backend.
    let mut again = Recorder {
        epochs: vec![],
        batches: 0,
    };
    let second =
        seg_model::train(&model(2), &small_run(3), &ds, &split, &mut again).expect("train");
    let mut third = Recorder {
        epochs: vec![],
        batches: 0,
    };
    let repeat =
        seg_model::train(&model(2), &small_run(3), &ds, &split, &mut third).expect("train");
    for (a, b) in second.history.iter().zip(&repeat.history) {
        assert_eq!(a.train_loss, b.train_loss, "epoch {} train loss", a.epoch);
        assert_eq!(a.metrics, b.metrics, "epoch {} metrics", a.epoch);
    }

    // Save, load, predict: bit-identical probabilities.
    let path = dir.path().join("model.segm");
    let device = config.backend.device();
    let saved = checkpoint::save(&path, outcome.model.clone(), outcome.meta.clone()).expect("save");
    assert_eq!(saved.sha256, checkpoint::file_sha256(&path).expect("hash"));
    let loaded = checkpoint::load_verified(&path, &saved.sha256, &device).expect("load");
    assert_eq!(loaded.meta.model, outcome.meta.model);
    let images: Vec<_> = (0..4)
        .map(|i| ds.load(split.valid[i]).expect("sample").image)
        .collect();
    let pre = &outcome.meta.preprocess;
    let inputs: Vec<f32> = images.iter().flat_map(|i| pre.image_to_chw(i)).collect();
    let original = Predictor::new(
        seg_model::Checkpoint {
            model: outcome.model,
            meta: outcome.meta.clone(),
        },
        device.clone(),
        4,
    );
    let reloaded = Predictor::new(loaded, device, 4);
    let a = original.probabilities(inputs.clone(), 4).expect("predict");
    let b = reloaded.probabilities(inputs, 4).expect("predict");
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // Masks come back at the image's own size.
    let preds = reloaded.predict(&images).expect("predict");
    assert_eq!(preds[0].mask.dimensions(), images[0].dimensions_pair());
}

/// Each of `configs` trained on the same synthetic binary data and split, one at a time.
fn trained_on_binary_data<const N: usize>(
    configs: [TrainConfig; N],
) -> [seg_model::TrainOutcome; N] {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = synthetic(dir.path(), 2);
    let split = Split::new(ds.len(), 0.2, 11).expect("split");
    configs.map(|config| {
        let mut rec = Recorder {
            epochs: vec![],
            batches: 0,
        };
        seg_model::train(&model(2), &config, &ds, &split, &mut rec).expect("train")
    })
}

/// Weight EMA changes what is validated (and kept), not what is trained.
#[test]
fn weight_ema_changes_what_is_validated_not_what_is_trained() {
    let [plain, averaged] = trained_on_binary_data([
        small_run(3),
        TrainConfig {
            ema_decay: 0.9,
            ..small_run(3)
        },
    ]);
    assert_eq!(averaged.history.len(), 3);
    for (a, b) in plain.history.iter().zip(&averaged.history) {
        assert_eq!(a.train_loss, b.train_loss, "epoch {} train loss", a.epoch);
        assert_ne!(a.valid_loss, b.valid_loss, "epoch {} validation", a.epoch);
    }
    let err = TrainConfig {
        ema_decay: 1.0,
        ..small_run(3)
    }
    .validate()
    .expect_err("decay 1");
    assert!(err.to_string().contains("ema_decay = 1"), "{err}");
}

/// Validation with TTA adds its metrics beside the plain ones and changes nothing else: the
/// same training, the same plain metrics and selection; the final TTA scoring adds run-level
/// metrics of the kept model.
#[test]
fn tta_validation_is_logged_beside_the_plain_metrics() {
    use seg_model::Tta;
    let [plain, tta, dihedral] = trained_on_binary_data([
        small_run(2),
        with_tta(small_run(2), Tta::Flip, Tta::Off),
        with_tta(small_run(2), Tta::Flips, Tta::Dihedral),
    ]);
    assert!(plain.final_tta.is_none() && tta.final_tta.is_none());
    assert!(!plain.meta.metrics.contains_key("final_tta_dice"));
    assert_eq!(dihedral.best_epoch, plain.best_epoch);
    let kept = &dihedral.history[dihedral.best_epoch - 1];
    assert_eq!(kept.metrics, plain.history[plain.best_epoch - 1].metrics);
    let last = dihedral.final_tta.as_ref().expect("final TTA");
    assert_eq!(last.tta, Tta::Dihedral);
    assert_eq!(last.metrics.pixels, kept.metrics.pixels);
    assert_eq!(dihedral.meta.metrics["final_tta_dice"], last.metrics.dice);
    assert_eq!(dihedral.meta.metrics["final_tta_iou"], last.metrics.iou);
    assert!(kept.tta_metrics.is_some(), "per-epoch 4-view TTA");
    assert_eq!(tta.best_epoch, plain.best_epoch);
    for (a, b) in plain.history.iter().zip(&tta.history) {
        assert_eq!(a.train_loss, b.train_loss, "epoch {} train loss", a.epoch);
        assert_eq!(
            a.valid_loss, b.valid_loss,
            "epoch {} validation loss",
            a.epoch
        );
        assert_eq!(a.metrics, b.metrics, "epoch {} plain metrics", a.epoch);
        assert!(a.tta_metrics.is_none() && !a.metric_map().contains_key("val_tta_dice"));
        let t = b.tta_metrics.as_ref().expect("TTA metrics");
        assert!((0.0..=1.0).contains(&t.dice) && t.pixels == b.metrics.pixels);
        let map = b.metric_map();
        assert_eq!(map["val_tta_dice"], t.dice);
        assert_eq!(map["val_tta_iou"], t.iou);
        assert_eq!(map["val_dice"], b.metrics.dice);
    }
    let best = &tta.history[tta.best_epoch - 1];
    let finals = best.final_metrics();
    assert_eq!(
        finals["tta_dice"],
        best.tta_metrics.as_ref().expect("tta").dice
    );
    assert!(
        !plain.history[plain.best_epoch - 1]
            .final_metrics()
            .contains_key("tta_dice")
    );
}

/// Records each epoch and then waits, so that epochs take a known minimum time.
struct SlowRecorder {
    epochs: Vec<EpochReport>,
    wait: std::time::Duration,
}

impl TrainObserver for SlowRecorder {
    fn on_epoch_end(&mut self, report: &EpochReport) -> Flow {
        self.epochs.push(report.clone());
        std::thread::sleep(self.wait);
        Flow::Continue(())
    }
}

#[test]
fn a_time_budget_stops_the_run_and_ends_the_cosine_decay_within_it() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = synthetic(dir.path(), 2);
    let split = Split::new(ds.len(), 0.2, 11).expect("split");
    // 200 epochs configured, epochs of at least 0.5 s, a 5 s budget: about ten run (the
    // margins leave room for a loaded machine, where an epoch's compute took 1.8 s).
    let config = TrainConfig {
        time_budget_secs: 5.0,
        ..small_run(200)
    };
    let mut rec = SlowRecorder {
        epochs: vec![],
        wait: std::time::Duration::from_millis(500),
    };
    let outcome = seg_model::train(&model(2), &config, &ds, &split, &mut rec).expect("train");
    assert_eq!(outcome.end, TrainEnd::TimeBudget);
    let rates: Vec<f64> = rec.epochs.iter().map(|e| e.learning_rate).collect();
    assert!(
        (2..=11).contains(&rates.len()),
        "{} epochs ran",
        rates.len()
    );
    assert!(
        rates.windows(2).all(|w| w[1] <= w[0]),
        "the rate only falls: {rates:?}"
    );
    // A 200-epoch cosine would still be at ~99.9 % of the base rate here; the shortened one
    // has (nearly) reached its floor of 0.1x.
    let last = rates[rates.len() - 1];
    assert!(last < 0.3 * config.learning_rate, "{rates:?}");
}

trait Dims {
    fn dimensions_pair(&self) -> (u32, u32);
}
impl Dims for image::DynamicImage {
    fn dimensions_pair(&self) -> (u32, u32) {
        (self.width(), self.height())
    }
}

#[test]
fn multiclass_synthetic_learns() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = synthetic(dir.path(), 4);
    let config = small_run(15);
    let split = Split::new(ds.len(), 0.2, config.seed).expect("split");
    let outcome = seg_model::train(&model(4), &config, &ds, &split, &mut seg_model::NoObserver)
        .expect("train");
    let best = &outcome.history[outcome.best_epoch - 1];
    eprintln!(
        "mean IoU per epoch: {:?}",
        outcome
            .history
            .iter()
            .map(|r| (r.metrics.mean_iou * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    );
    assert!(
        best.metrics.mean_iou >= 0.8,
        "mean IoU {:.3}",
        best.metrics.mean_iou
    );
    assert_eq!(best.metrics.per_class_iou.len(), 4);
}

#[test]
fn a_stopped_training_returns_the_best_model_so_far_or_a_typed_error() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = synthetic(dir.path(), 2);
    let config = small_run(4);
    let split = Split::new(ds.len(), 0.2, config.seed).expect("split");
    let per_epoch = split.train.len().div_ceil(4);

    // Interrupted in the middle of epoch 3: epochs 1-2 finished, the best of them comes back.
    let mut stop = StopAt {
        batch: 2 * per_epoch + 1,
        seen: 0,
        reason: StopReason::Interrupted,
    };
    let outcome =
        seg_model::train(&model(2), &config, &ds, &split, &mut stop).expect("best so far");
    assert_eq!(
        outcome.end,
        TrainEnd::Stopped {
            epoch: 3,
            reason: StopReason::Interrupted
        }
    );
    assert!(outcome.stopped_early());
    assert_eq!(outcome.history.len(), 2);
    assert!(outcome.best_epoch <= 2);
    assert_eq!(outcome.meta.epoch, outcome.best_epoch);

    // An observer that fails before any epoch finished: a typed error naming the reason.
    let mut fail = StopAt {
        batch: 1,
        seen: 0,
        reason: StopReason::ObserverFailed("tracker gone".into()),
    };
    let err = seg_model::train(&model(2), &config, &ds, &split, &mut fail)
        .expect_err("nothing to return");
    assert!(
        matches!(&err, SegError::ObserverFailed { epoch: 1, reason } if reason == "tracker gone"),
        "{err}"
    );
    let mut interrupt = StopAt {
        batch: 1,
        seen: 0,
        reason: StopReason::Interrupted,
    };
    let err = seg_model::train(&model(2), &config, &ds, &split, &mut interrupt)
        .expect_err("interrupted in epoch 1");
    assert!(matches!(err, SegError::Interrupted { epoch: 1 }), "{err}");
}

/// With `choose_threshold`, a binary run's checkpoint carries the threshold its validation
/// sweep chose, the run-level metrics name it, and it scores at least what 0.5 scores.
#[test]
fn a_chosen_threshold_is_the_checkpoints_and_scores_at_least_one_half() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = synthetic(dir.path(), 2);
    let config = TrainConfig {
        choose_threshold: true,
        ..small_run(3)
    };
    let split = Split::new(ds.len(), 0.2, config.seed).expect("split");
    let outcome = seg_model::train(&model(2), &config, &ds, &split, &mut seg_model::NoObserver)
        .expect("train");
    let chosen = outcome.threshold.expect("a threshold was chosen");
    assert!((0.1..=0.9).contains(&chosen.threshold), "{chosen:?}");
    assert_eq!(outcome.meta.threshold, chosen.threshold);
    assert!(chosen.dice >= chosen.dice_at_half, "{chosen:?}");
    // Without test-time augmentation after training the sweep saw the plain predictions of
    // the kept epoch: at 0.5 it scores what that epoch's validation scored.
    let best = &outcome.history[outcome.best_epoch - 1];
    assert!(
        (chosen.dice_at_half - best.metrics.dice).abs() < 1e-3,
        "{chosen:?} against {}",
        best.metrics.dice
    );
    let metrics = outcome.final_metrics().expect("metrics");
    assert_eq!(metrics["threshold"], f64::from(chosen.threshold));
    assert_eq!(metrics["threshold_dice"], chosen.dice);
}
