//! The training loop: epochs of seeded, augmented batches, validation after every epoch,
//! best-checkpoint selection by a chosen metric, early stopping and an LR schedule. Progress
//! leaves only through a [`TrainObserver`]; the library prints nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use burn::config::Config;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::checkpoint::CheckpointMeta;
use crate::data::{
    AugmentConfig, BatchLoader, LoaderConfig, Preprocess, SegmentationDataset, Split,
};
use crate::error::{Result, SegError};
use crate::loss::{LossConfig, LossTargets, segmentation_loss};
use crate::metrics::{ConfusionMatrix, SegMetrics};
use crate::model::{UNet, UNetConfig};

/// Learning-rate schedule over epochs.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// Cosine decay from the base rate to `base * min_factor` at the last epoch.
    Cosine {
        /// Final rate as a fraction of the base rate.
        min_factor: f64,
    },
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: usize,
        /// Decay factor.
        gamma: f64,
    },
}

impl LrSchedule {
    /// The rate for `epoch` (1-based) of `epochs`.
    pub fn rate(&self, base: f64, epoch: usize, epochs: usize) -> f64 {
        match *self {
            Self::Constant => base,
            Self::Cosine { min_factor } => {
                let t = if epochs <= 1 {
                    0.0
                } else {
                    (epoch - 1) as f64 / (epochs - 1) as f64
                };
                let min = base * min_factor;
                min + 0.5 * (base - min) * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Self::Step { every, gamma } => base * gamma.powi(((epoch - 1) / every.max(1)) as i32),
        }
    }
}

/// The metric that picks the best checkpoint and drives early stopping.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum SelectionMetric {
    /// Mean IoU over classes (higher is better).
    MeanIou,
    /// Mean Dice over classes.
    MeanDice,
    /// IoU of the foreground classes.
    ForegroundIou,
    /// Dice of the foreground classes.
    ForegroundDice,
    /// Pixel accuracy.
    PixelAccuracy,
    /// Validation loss (lower is better).
    ValidLoss,
}

impl SelectionMetric {
    /// The value of this metric in a report (oriented so that higher is better).
    fn score(&self, r: &EpochReport) -> f64 {
        match self {
            Self::MeanIou => r.metrics.mean_iou,
            Self::MeanDice => r.metrics.mean_dice,
            Self::ForegroundIou => r.metrics.foreground_iou,
            Self::ForegroundDice => r.metrics.foreground_dice,
            Self::PixelAccuracy => r.metrics.pixel_accuracy,
            Self::ValidLoss => -r.valid_loss,
        }
    }

    /// Name used in metric maps (`valid_mean_iou`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::MeanIou => "valid_mean_iou",
            Self::MeanDice => "valid_mean_dice",
            Self::ForegroundIou => "valid_foreground_iou",
            Self::ForegroundDice => "valid_foreground_dice",
            Self::PixelAccuracy => "valid_pixel_accuracy",
            Self::ValidLoss => "valid_loss",
        }
    }
}

/// Hyperparameters of a training run.
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// Maximum number of epochs.
    #[config(default = 20)]
    pub epochs: usize,
    /// Samples per batch.
    #[config(default = 8)]
    pub batch_size: usize,
    /// Base learning rate (Adam).
    #[config(default = 1e-3)]
    pub learning_rate: f64,
    /// L2 weight decay (0 = none).
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Learning-rate schedule.
    #[config(default = "LrSchedule::Cosine { min_factor: 0.05 }")]
    pub lr_schedule: LrSchedule,
    /// Stop after this many epochs without improvement (0 = never).
    #[config(default = 0)]
    pub early_stopping_patience: usize,
    /// Metric that selects the best epoch.
    #[config(default = "SelectionMetric::MeanIou")]
    pub selection_metric: SelectionMetric,
    /// Seed of initialisation, split, shuffling and augmentation.
    #[config(default = 42)]
    pub seed: u64,
    /// Training image height.
    #[config(default = 128)]
    pub image_height: usize,
    /// Training image width.
    #[config(default = 128)]
    pub image_width: usize,
    /// Fraction of pairs held out for validation.
    #[config(default = 0.2)]
    pub valid_fraction: f64,
    /// Estimate per-channel mean/std from the training split (else identity normalisation).
    #[config(default = true)]
    pub estimate_normalization: bool,
    /// Training augmentations.
    #[config(default = "AugmentConfig::new()")]
    pub augment: AugmentConfig,
    /// Loss weights.
    #[config(default = "LossConfig::new()")]
    pub loss: LossConfig,
    /// Batches prepared ahead of the model.
    #[config(default = 4)]
    pub prefetch: usize,
    /// Wall-clock budget in seconds (0 = none): no new epoch starts once it is spent, and the
    /// best model so far is returned.
    #[config(default = 0.0)]
    pub time_budget_secs: f64,
}

impl TrainConfig {
    /// Checks every value, naming the first wrong one.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(SegError::InvalidConfig(m));
        if self.epochs == 0 {
            return bad("train.epochs = 0 (use at least 1)".into());
        }
        if self.batch_size == 0 {
            return bad("train.batch_size = 0 (use at least 1)".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "train.learning_rate = {} (must be > 0)",
                self.learning_rate
            ));
        }
        if !(self.time_budget_secs.is_finite() && self.time_budget_secs >= 0.0) {
            return bad(format!(
                "train.time_budget_secs = {} (must be >= 0)",
                self.time_budget_secs
            ));
        }
        if !(self.valid_fraction > 0.0 && self.valid_fraction < 1.0) {
            return bad(format!(
                "train.valid_fraction = {} (must be in (0, 1))",
                self.valid_fraction
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "train.weight_decay = {} (must be >= 0)",
                self.weight_decay
            ));
        }
        match self.lr_schedule {
            LrSchedule::Cosine { min_factor } if !(0.0..=1.0).contains(&min_factor) => {
                return bad(format!(
                    "lr_schedule cosine min_factor = {min_factor} (use 0..=1)"
                ));
            }
            LrSchedule::Step { every, gamma } if every == 0 || !(gamma > 0.0 && gamma <= 1.0) => {
                return bad(format!(
                    "lr_schedule step every = {every}, gamma = {gamma} (every >= 1, 0 < gamma <= 1)"
                ));
            }
            _ => {}
        }
        self.augment.validate()?;
        self.loss.validate()
    }
}

/// Facts about a run, sent once before the first epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainStart {
    /// Training pairs.
    pub train_samples: usize,
    /// Validation pairs.
    pub valid_samples: usize,
    /// Batches per training epoch.
    pub batches_per_epoch: usize,
    /// Trainable parameters of the model.
    pub parameters: usize,
    /// The backend.
    pub backend: String,
    /// The normalisation in use.
    pub preprocess: Preprocess,
}

/// Progress after one training batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchReport {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Batch within the epoch (1-based).
    pub batch: usize,
    /// Batches in the epoch.
    pub batches: usize,
    /// Loss of this batch.
    pub loss: f64,
    /// Images per second over this batch (data wait included).
    pub images_per_sec: f64,
    /// Global step (batches so far, 1-based).
    pub step: usize,
}

/// Results of one epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochReport {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Learning rate used.
    pub learning_rate: f64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Mean validation loss.
    pub valid_loss: f64,
    /// Validation metrics.
    pub metrics: SegMetrics,
    /// Training images per second.
    pub train_images_per_sec: f64,
    /// Wall seconds of the epoch (training and validation).
    pub seconds: f64,
    /// Whether this epoch is the best so far.
    pub is_best: bool,
}

impl EpochReport {
    /// Flat `name -> value` map for experiment trackers.
    pub fn metric_map(&self) -> BTreeMap<String, f64> {
        let m = &self.metrics;
        let mut map = BTreeMap::from([
            ("train_loss".to_string(), self.train_loss),
            ("valid_loss".to_string(), self.valid_loss),
            ("valid_mean_iou".to_string(), m.mean_iou),
            ("valid_mean_dice".to_string(), m.mean_dice),
            ("valid_foreground_iou".to_string(), m.foreground_iou),
            ("valid_foreground_dice".to_string(), m.foreground_dice),
            ("valid_pixel_accuracy".to_string(), m.pixel_accuracy),
            ("learning_rate".to_string(), self.learning_rate),
            (
                "train_images_per_sec".to_string(),
                self.train_images_per_sec,
            ),
        ]);
        for (c, iou) in m.per_class_iou.iter().enumerate() {
            if let Some(v) = iou {
                map.insert(format!("valid_iou_class{c}"), *v);
            }
        }
        map
    }
}

/// Receives training progress. Every method has a no-op default.
pub trait TrainObserver {
    /// Before the first epoch.
    fn on_train_start(&mut self, _start: &TrainStart) {}
    /// At the start of each epoch.
    fn on_epoch_start(&mut self, _epoch: usize, _learning_rate: f64) {}
    /// After each training batch.
    fn on_batch_end(&mut self, _report: &BatchReport) {}
    /// After each epoch's validation.
    fn on_epoch_end(&mut self, _report: &EpochReport) {}
    /// Polled before every batch: return true to stop (training then fails with
    /// [`SegError::Interrupted`]), e.g. after Ctrl-C.
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;
impl TrainObserver for NoObserver {}

/// What a finished run hands back.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The best model (validation mode).
    pub model: UNet,
    /// Metadata for its checkpoint (metrics of the best epoch).
    pub meta: CheckpointMeta,
    /// Every epoch's report.
    pub history: Vec<EpochReport>,
    /// Epoch (1-based) of the best model.
    pub best_epoch: usize,
    /// Whether early stopping or the time budget ended the run before `epochs`.
    pub stopped_early: bool,
}

/// Trains a U-Net on `dataset` split by `split`.
///
/// Reproducible for a given seed on the CPU backends, provided no other training runs in the
/// same process at the same time: burn seeds one process-wide RNG.
pub fn train(
    model_config: &UNetConfig,
    config: &TrainConfig,
    dataset: &SegmentationDataset,
    split: &Split,
    backend: BackendKind,
    observer: &mut dyn TrainObserver,
) -> Result<TrainOutcome> {
    config.validate()?;
    model_config.validate()?;
    model_config.check_input_size(config.image_height, config.image_width)?;
    let task_classes = dataset.encoding().num_classes();
    if model_config.task_classes() != task_classes {
        return Err(SegError::InvalidConfig(format!(
            "model.num_classes = {} does not fit a dataset with {task_classes} classes (use 1 for binary, else the class count)",
            model_config.num_classes
        )));
    }
    if split.train.is_empty() || split.valid.is_empty() {
        return Err(SegError::EmptyDataset {
            dir: dataset.root().to_path_buf(),
        });
    }
    let (h, w, c) = (
        config.image_height,
        config.image_width,
        model_config.in_channels,
    );
    let preprocess = if config.estimate_normalization {
        Preprocess::estimate(dataset, &split.train, h, w, c, 256)?
    } else {
        Preprocess::unnormalized(h, w, c)
    };
    let train_device = backend.training_device();
    let eval_device = backend.device();
    train_device.seed(config.seed);
    let mut model = model_config.init(&train_device)?;
    let mut optim = AdamConfig::new()
        .with_weight_decay(
            (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32)),
        )
        .init();

    let shared = Arc::new(dataset.clone());
    let pre = Arc::new(preprocess.clone());
    let train_loader = LoaderConfig {
        batch_size: config.batch_size,
        shuffle: true,
        augment: Some(config.augment.clone()),
        seed: config.seed,
        prefetch: config.prefetch,
    };
    let valid_loader = LoaderConfig {
        shuffle: false,
        augment: None,
        ..train_loader.clone()
    };
    observer.on_train_start(&TrainStart {
        train_samples: split.train.len(),
        valid_samples: split.valid.len(),
        batches_per_epoch: split.train.len().div_ceil(config.batch_size),
        parameters: model.num_params(),
        backend: backend.to_string(),
        preprocess: preprocess.clone(),
    });

    let mut history: Vec<EpochReport> = Vec::new();
    let mut best: Option<(f64, usize, UNet)> = None;
    let mut since_best = 0usize;
    let mut stopped_early = false;
    let mut step = 0usize;
    let run_clock = Instant::now();
    for epoch in 1..=config.epochs {
        let started = Instant::now();
        let lr = config
            .lr_schedule
            .rate(config.learning_rate, epoch, config.epochs);
        observer.on_epoch_start(epoch, lr);
        let loader = BatchLoader::start(
            shared.clone(),
            &split.train,
            pre.clone(),
            &train_loader,
            epoch,
        );
        let batches = loader.num_batches();
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        let mut batch_clock = Instant::now();
        for (b, batch) in loader.enumerate() {
            if observer.should_stop() {
                return Err(SegError::Interrupted { epoch });
            }
            let batch = batch?;
            let x = Tensor::<4>::from_data(
                TensorData::new(batch.images, [batch.len, c, h, w]),
                &train_device,
            );
            let targets = LossTargets::from_masks(
                &batch.masks,
                batch.len,
                h,
                w,
                model_config.num_classes,
                &train_device,
            );
            let loss = segmentation_loss(&config.loss, model.forward(x), &targets);
            let value = scalar(&loss)?;
            if !value.is_finite() {
                return Err(SegError::Diverged {
                    epoch,
                    batch: b + 1,
                    loss: value,
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            loss_sum += value * batch.len as f64;
            seen += batch.len;
            step += 1;
            let elapsed = batch_clock.elapsed().as_secs_f64();
            batch_clock = Instant::now();
            observer.on_batch_end(&BatchReport {
                epoch,
                batch: b + 1,
                batches,
                loss: value,
                images_per_sec: batch.len as f64 / elapsed.max(1e-9),
                step,
            });
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let snapshot = model.valid();
        let (valid_loss, metrics) = evaluate_split(
            &snapshot,
            model_config,
            &config.loss,
            &shared,
            &split.valid,
            &pre,
            &valid_loader,
            &eval_device,
        )?;
        let mut report = EpochReport {
            epoch,
            learning_rate: lr,
            train_loss: loss_sum / seen.max(1) as f64,
            valid_loss,
            metrics,
            train_images_per_sec: seen as f64 / train_seconds.max(1e-9),
            seconds: started.elapsed().as_secs_f64(),
            is_best: false,
        };
        let score = config.selection_metric.score(&report);
        if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
            report.is_best = true;
            best = Some((score, epoch, snapshot));
            since_best = 0;
        } else {
            since_best += 1;
        }
        observer.on_epoch_end(&report);
        history.push(report);
        if config.early_stopping_patience > 0 && since_best >= config.early_stopping_patience {
            stopped_early = epoch < config.epochs;
            break;
        }
        if config.time_budget_secs > 0.0
            && run_clock.elapsed().as_secs_f64() >= config.time_budget_secs
        {
            stopped_early = epoch < config.epochs;
            break;
        }
    }
    let (_, best_epoch, model) =
        best.ok_or_else(|| SegError::InvalidConfig("no epoch ran".into()))?;
    let best_report = &history[best_epoch - 1];
    let mut metric_map = best_report.metric_map();
    metric_map.insert("best_epoch".into(), best_epoch as f64);
    let meta = CheckpointMeta::new(
        model_config.clone(),
        dataset.encoding().clone(),
        preprocess,
        metric_map,
        best_epoch,
    );
    Ok(TrainOutcome {
        model,
        meta,
        history,
        best_epoch,
        stopped_early,
    })
}

fn scalar(t: &Tensor<1>) -> Result<f64> {
    let v = t
        .to_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| SegError::Backend(format!("{e:?}")))?;
    Ok(f64::from(v.first().copied().unwrap_or(f32::NAN)))
}

/// Class ids predicted from logits `[batch, outputs, h, w]`: threshold 0 on the logit for a
/// binary model (probability 0.5), argmax otherwise. Returns `[batch, h, w]` ids.
pub fn predict_ids(logits: Tensor<4>) -> Result<Vec<u8>> {
    let [b, outputs, h, w] = logits.dims();
    if outputs == 1 {
        let v = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| SegError::Backend(format!("{e:?}")))?;
        Ok(v.into_iter().map(|x| u8::from(x > 0.0)).collect())
    } else {
        let ids = logits.argmax(1).reshape([b * h * w]);
        let v = ids
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| SegError::Backend(format!("{e:?}")))?;
        Ok(v.into_iter().map(|x| x as u8).collect())
    }
}

/// Mean loss and metrics of `model` over `indices` without augmentation.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_split(
    model: &UNet,
    model_config: &UNetConfig,
    loss_config: &LossConfig,
    dataset: &Arc<SegmentationDataset>,
    indices: &[usize],
    preprocess: &Arc<Preprocess>,
    loader: &LoaderConfig,
    device: &burn::tensor::Device,
) -> Result<(f64, SegMetrics)> {
    let (h, w, c) = (preprocess.height, preprocess.width, preprocess.channels);
    let mut confusion = ConfusionMatrix::new(model_config.task_classes());
    let (mut loss_sum, mut seen) = (0.0, 0usize);
    for batch in BatchLoader::start(dataset.clone(), indices, preprocess.clone(), loader, 0) {
        let batch = batch?;
        let x = Tensor::<4>::from_data(TensorData::new(batch.images, [batch.len, c, h, w]), device);
        let logits = model.forward(x);
        let targets = LossTargets::from_masks(
            &batch.masks,
            batch.len,
            h,
            w,
            model_config.num_classes,
            device,
        );
        loss_sum +=
            scalar(&segmentation_loss(loss_config, logits.clone(), &targets))? * batch.len as f64;
        seen += batch.len;
        confusion.update(&batch.masks, &predict_ids(logits)?);
    }
    Ok((loss_sum / seen.max(1) as f64, confusion.summary()))
}
