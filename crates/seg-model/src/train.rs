//! The training loop: epochs of seeded, augmented batches, validation after every epoch,
//! best-checkpoint selection by a chosen metric, early stopping and an LR schedule. Progress
//! leaves only through a [`TrainObserver`]; the library prints nothing.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use burn::config::Config;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;

use burn::optim::{AdamConfig, AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::checkpoint::CheckpointMeta;
use crate::data::{
    AugmentConfig, BatchLoader, LoaderConfig, Preprocess, SegmentationDataset, Split,
};
use crate::ema::WeightEma;
use crate::error::{Result, SegError, backend_call};
use crate::evaluate::{Evaluation, scalar};
use crate::loss::{LossConfig, LossTargets, segmentation_loss};
use crate::metrics::{Metric, SegMetrics, keys};
use crate::model::{UNet, UNetConfig};
use crate::predict::Tta;

/// Learning-rate schedule over epochs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// The shape of a [`LrSchedule`] without its numbers (how configuration files name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrScheduleKind {
    /// [`LrSchedule::Constant`].
    Constant,
    /// [`LrSchedule::Cosine`].
    Cosine,
    /// [`LrSchedule::Step`].
    Step,
}

impl LrSchedule {
    /// The schedule of `kind` with its numbers (the ones another kind uses are ignored),
    /// checked: a cosine's `min_factor` in 0..=1, a step's `every` >= 1 and `gamma` in (0, 1].
    pub fn new(kind: LrScheduleKind, min_factor: f64, every: usize, gamma: f64) -> Result<Self> {
        let schedule = match kind {
            LrScheduleKind::Constant => Self::Constant,
            LrScheduleKind::Cosine => Self::Cosine { min_factor },
            LrScheduleKind::Step => Self::Step { every, gamma },
        };
        schedule.validate()?;
        Ok(schedule)
    }

    /// Checks the numbers, naming the first one that is wrong (`lr_schedule.min_factor`, ...).
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Cosine { min_factor } if !(0.0..=1.0).contains(&min_factor) => Err(
                SegError::invalid("lr_schedule.min_factor", min_factor, "must be in 0..=1"),
            ),
            Self::Step { every: 0, .. } => Err(SegError::invalid(
                "lr_schedule.every",
                0,
                "must be >= 1 (epochs between decays)",
            )),
            Self::Step { gamma, .. } if !(gamma > 0.0 && gamma <= 1.0) => Err(SegError::invalid(
                "lr_schedule.gamma",
                gamma,
                "must be in (0, 1]",
            )),
            _ => Ok(()),
        }
    }

    /// The rate for `epoch` (1-based) of `epochs`; epoch 0 is an error.
    pub fn rate(&self, base: f64, epoch: usize, epochs: usize) -> Result<f64> {
        if epoch == 0 {
            return Err(SegError::InvalidConfig(
                "learning-rate schedule: epochs are counted from 1, got epoch 0".into(),
            ));
        }
        Ok(match *self {
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
        })
    }
}

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Adam, with `weight_decay` as L2 regularisation added to the gradient.
    Adam,
    /// AdamW: Adam with decoupled weight decay (`weight_decay` shrinks the weights directly).
    AdamW,
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
    /// Weight decay (0 = none): L2 for Adam, decoupled for AdamW.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// The optimiser.
    #[config(default = "Optimizer::Adam")]
    pub optimizer: Optimizer,
    /// Epochs of linear learning-rate warm-up before the schedule (0 = none): epoch `e` of
    /// `w` runs at `base * e / (w + 1)`, then the schedule spans the remaining epochs.
    #[config(default = 0)]
    pub warmup_epochs: usize,
    /// Learning-rate schedule.
    #[config(default = "LrSchedule::Cosine { min_factor: 0.05 }")]
    pub lr_schedule: LrSchedule,
    /// Stop after this many epochs without improvement (0 = never).
    #[config(default = 0)]
    pub early_stopping_patience: usize,
    /// Metric that selects the best epoch.
    #[config(default = "Metric::Iou")]
    pub selection_metric: Metric,
    /// Seed of initialisation, split, shuffling and augmentation.
    #[config(default = 42)]
    pub seed: u64,
    /// Training image height.
    #[config(default = 128)]
    pub image_height: usize,
    /// Training image width.
    #[config(default = 128)]
    pub image_width: usize,
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
    /// best model so far is returned. After each epoch the learning-rate schedule is shortened
    /// (never lengthened) to the epochs the budget will allow at the mean epoch time so far,
    /// so that a cosine decay ends within the budget on a slower machine too.
    #[config(default = 0.0)]
    pub time_budget_secs: f64,
    /// Weight EMA decay (0 = off, else in (0, 1)): validation, best-epoch selection and the
    /// returned model use an exponential moving average of the weights and batch-norm
    /// statistics, updated after every optimiser step (horizon about `1 / (1 - decay)` steps).
    #[config(default = 0.0)]
    pub ema_decay: f64,
    /// Also score each epoch's validation with test-time augmentation by these views (as
    /// `infer --tta`), logged beside the plain metrics as `val_tta_iou` / `val_tta_dice` (run
    /// level `tta_iou` / `tta_dice`); selection and the plain metrics are unchanged.
    /// `views() - 1` more forward passes over the validation split per epoch.
    #[config(default = "Tta::Off")]
    pub val_tta: Tta,
    /// After training, score the kept model once more on the validation split with
    /// test-time augmentation by these views ([`TrainOutcome::final_tta`]; skipped when the
    /// run was stopped): what `infer` with the same views delivers, for the price of one
    /// evaluation instead of one per epoch.
    #[config(default = "Tta::Off")]
    pub final_tta: Tta,
}

impl TrainConfig {
    /// Checks every value, naming the first wrong one by its field (`epochs`, ...).
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(SegError::invalid("epochs", 0, "must be >= 1"));
        }
        if self.batch_size == 0 {
            return Err(SegError::invalid("batch_size", 0, "must be >= 1"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(SegError::invalid(
                "learning_rate",
                self.learning_rate,
                "must be a number > 0",
            ));
        }
        if !(self.time_budget_secs.is_finite() && self.time_budget_secs >= 0.0) {
            return Err(SegError::invalid(
                "time_budget_secs",
                self.time_budget_secs,
                "must be >= 0 (0 = no budget)",
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(SegError::invalid(
                "weight_decay",
                self.weight_decay,
                "must be >= 0",
            ));
        }
        if self.warmup_epochs >= self.epochs {
            return Err(SegError::invalid(
                "warmup_epochs",
                self.warmup_epochs,
                format!("must be below the epochs ({})", self.epochs),
            ));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(SegError::invalid(
                "ema_decay",
                self.ema_decay,
                "must be in [0, 1) (0 = no weight EMA)",
            ));
        }
        self.lr_schedule.validate()?;
        self.augment.validate()?;
        self.loss.validate()
    }
}

impl TrainConfig {
    /// The learning rate of `epoch` (1-based): the warm-up, then the schedule over the
    /// remaining epochs.
    pub fn learning_rate_at(&self, epoch: usize) -> Result<f64> {
        self.learning_rate_planned(epoch, self.epochs)
    }

    /// [`Self::learning_rate_at`] for a run planned to last `planned` epochs (at most
    /// `epochs`): what a time budget leaves of the schedule ([`epochs_within_budget`]).
    pub fn learning_rate_planned(&self, epoch: usize, planned: usize) -> Result<f64> {
        let w = self.warmup_epochs;
        if epoch >= 1 && epoch <= w {
            return Ok(self.learning_rate * epoch as f64 / (w + 1) as f64);
        }
        // Epochs past the plan (the budget allowed more than estimated) stay at its end.
        let planned = planned.min(self.epochs);
        self.lr_schedule.rate(
            self.learning_rate,
            epoch.min(planned.max(w + 1)).saturating_sub(w),
            planned.saturating_sub(w),
        )
    }
}

/// How many epochs a run with a wall-clock budget of `budget_secs` will start, estimated after
/// `done` epochs took `elapsed_secs` in all: a new epoch starts while the budget is not spent.
/// At least `done`; `usize::MAX` when there is nothing to estimate from.
pub fn epochs_within_budget(budget_secs: f64, elapsed_secs: f64, done: usize) -> usize {
    let known = done > 0 && elapsed_secs > 0.0 && budget_secs > 0.0;
    if !known {
        return usize::MAX;
    }
    let per_epoch = elapsed_secs / done as f64;
    // Float-to-integer casts saturate: a huge quotient becomes usize::MAX.
    ((budget_secs / per_epoch).ceil() as usize).max(done)
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
    /// Validation metrics with test-time augmentation ([`TrainConfig::val_tta`]).
    #[serde(default)]
    pub tta_metrics: Option<SegMetrics>,
    /// Training images per second.
    pub train_images_per_sec: f64,
    /// Wall seconds of the epoch (training and validation).
    pub seconds: f64,
    /// Whether this epoch is the best so far.
    pub is_best: bool,
}

impl EpochReport {
    /// The epoch's metrics under the project's per-epoch names ([`Metric::epoch_name`] and
    /// [`keys`]), as `train` logs them with step = epoch.
    pub fn metric_map(&self) -> BTreeMap<String, f64> {
        let mut map: BTreeMap<String, f64> = Metric::ALL
            .iter()
            .map(|m| {
                (
                    m.epoch_name().to_string(),
                    m.value(self.valid_loss, &self.metrics),
                )
            })
            .collect();
        map.extend([
            (keys::TRAIN_LOSS.to_string(), self.train_loss),
            (keys::LEARNING_RATE.to_string(), self.learning_rate),
            (keys::IMAGES_PER_SEC.to_string(), self.train_images_per_sec),
            (keys::EPOCH_SECONDS.to_string(), self.seconds),
        ]);
        for (c, iou) in self.metrics.per_class_iou.iter().enumerate() {
            if let Some(v) = iou {
                map.insert(keys::class_iou(c), *v);
            }
        }
        if let Some(t) = &self.tta_metrics {
            map.insert(keys::VAL_TTA_IOU.to_string(), t.iou);
            map.insert(keys::VAL_TTA_DICE.to_string(), t.dice);
        }
        map
    }

    /// The run-level metrics when this is the best epoch: [`Metric::name`] of each metric and
    /// [`keys::BEST_EPOCH`].
    pub fn final_metrics(&self) -> BTreeMap<String, f64> {
        let mut map: BTreeMap<String, f64> = Metric::ALL
            .iter()
            .map(|m| {
                (
                    m.name().to_string(),
                    m.value(self.valid_loss, &self.metrics),
                )
            })
            .collect();
        map.insert(keys::BEST_EPOCH.to_string(), self.epoch as f64);
        if let Some(t) = &self.tta_metrics {
            map.insert(keys::TTA_IOU.to_string(), t.iou);
            map.insert(keys::TTA_DICE.to_string(), t.dice);
        }
        map
    }
}

/// Why an observer asked training to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The user interrupted (Ctrl-C).
    Interrupted,
    /// The observer failed for good (e.g. the experiment tracker is gone); what it reported.
    ObserverFailed(String),
}

/// What an observer tells the loop after each event: go on, or stop with a reason.
pub type Flow = ControlFlow<StopReason>;

/// Receives training progress and may stop it. Every method defaults to "continue".
pub trait TrainObserver {
    /// Before the first epoch.
    fn on_train_start(&mut self, _start: &TrainStart) -> Flow {
        Flow::Continue(())
    }
    /// At the start of each epoch.
    fn on_epoch_start(&mut self, _epoch: usize, _learning_rate: f64) -> Flow {
        Flow::Continue(())
    }
    /// After each training batch.
    fn on_batch_end(&mut self, _report: &BatchReport) -> Flow {
        Flow::Continue(())
    }
    /// After each epoch's validation.
    fn on_epoch_end(&mut self, _report: &EpochReport) -> Flow {
        Flow::Continue(())
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;
impl TrainObserver for NoObserver {}

/// How a run that produced a model ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainEnd {
    /// Every configured epoch ran.
    Completed,
    /// Early stopping: no improvement for `early_stopping_patience` epochs.
    EarlyStopped,
    /// The time budget was spent.
    TimeBudget,
    /// The observer stopped it during `epoch`; the model is the best of the epochs before.
    Stopped {
        /// The epoch during which it stopped (1-based).
        epoch: usize,
        /// Why.
        reason: StopReason,
    },
}

/// What a run hands back: the best model of the epochs that finished.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The best model (validation mode).
    pub model: UNet,
    /// Metadata for its checkpoint (metrics of the best epoch).
    pub meta: CheckpointMeta,
    /// Every finished epoch's report.
    pub history: Vec<EpochReport>,
    /// Epoch (1-based) of the best model.
    pub best_epoch: usize,
    /// The best model's validation metrics with [`TrainConfig::final_tta`] (when on and the
    /// run was not stopped).
    pub final_tta: Option<FinalTta>,
    /// How the run ended.
    pub end: TrainEnd,
}

/// The kept model scored with test-time augmentation after training.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalTta {
    /// The augmentation.
    pub tta: Tta,
    /// Validation metrics with it.
    pub metrics: SegMetrics,
}

impl FinalTta {
    /// Run-level metrics: [`keys::FINAL_TTA_IOU`], [`keys::FINAL_TTA_DICE`].
    pub fn metric_map(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            (keys::FINAL_TTA_IOU.to_string(), self.metrics.iou),
            (keys::FINAL_TTA_DICE.to_string(), self.metrics.dice),
        ])
    }
}

impl TrainOutcome {
    /// The run-level metrics: the best epoch's ([`EpochReport::final_metrics`]) and, with
    /// [`TrainConfig::final_tta`], the kept model's TTA scores; `None` if the best epoch has
    /// no report.
    pub fn final_metrics(&self) -> Option<BTreeMap<String, f64>> {
        let best = self.history.iter().find(|r| r.epoch == self.best_epoch)?;
        let mut map = best.final_metrics();
        if let Some(f) = &self.final_tta {
            map.extend(f.metric_map());
        }
        Some(map)
    }

    /// Whether the run ended before its configured epochs (early stop, budget, or stopped).
    pub fn stopped_early(&self) -> bool {
        self.end != TrainEnd::Completed
    }
}

/// Trains a U-Net on `dataset` split by `split`.
///
/// When the observer stops the run, the best model of the epochs that finished is returned
/// (with [`TrainEnd::Stopped`]); when it stops before any epoch finished, the error is
/// [`SegError::Interrupted`] or [`SegError::ObserverFailed`].
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
    crate::tune_allocator();
    let mut run = Run::setup(model_config, config, dataset, split, backend)?;
    let mut selection = Selection::new(config.selection_metric, config.early_stopping_patience);
    let clock = Instant::now();
    let mut end = match observer.on_train_start(&run.start_facts()) {
        ControlFlow::Break(reason) => TrainEnd::Stopped { epoch: 1, reason },
        ControlFlow::Continue(()) => TrainEnd::Completed,
    };
    let epochs = if end == TrainEnd::Completed {
        config.epochs
    } else {
        0
    };
    // The epochs the schedule runs over: shortened when the budget will not allow them all.
    let mut planned = config.epochs;
    for epoch in 1..=epochs {
        let (report, snapshot) = match run.epoch(epoch, planned, observer)? {
            EpochResult::Finished(done) => *done,
            EpochResult::Stopped(reason) => {
                end = TrainEnd::Stopped { epoch, reason };
                break;
            }
        };
        let report = selection.consider(report, snapshot);
        let flow = observer.on_epoch_end(&report);
        selection.history.push(report);
        let last = epoch == config.epochs;
        if let ControlFlow::Break(reason) = flow {
            end = TrainEnd::Stopped { epoch, reason };
            break;
        }
        if selection.patience_spent() {
            if !last {
                end = TrainEnd::EarlyStopped;
            }
            break;
        }
        if config.time_budget_secs > 0.0 {
            let elapsed = clock.elapsed().as_secs_f64();
            if elapsed >= config.time_budget_secs {
                if !last {
                    end = TrainEnd::TimeBudget;
                }
                break;
            }
            let fit = epochs_within_budget(config.time_budget_secs, elapsed, epoch);
            planned = planned.min(fit.max(epoch + 1));
        }
    }
    selection.finish(run, end)
}

/// Everything a run sets up once: model, optimiser, preprocessing, loaders, devices.
struct Run<'a> {
    model_config: &'a UNetConfig,
    config: &'a TrainConfig,
    dataset: &'a SegmentationDataset,
    split: &'a Split,
    backend: BackendKind,
    /// The model being trained (taken out for each optimiser step, which consumes it).
    model: Option<UNet>,
    /// The weight average that is validated instead of `model`, when on.
    ema: Option<WeightEma>,
    optim: burn::optim::ModuleOptimizer,
    shared: Arc<SegmentationDataset>,
    preprocess: Arc<Preprocess>,
    train_loader: LoaderConfig,
    train_device: Device,
    eval: Evaluation,
    step: usize,
}

/// What one epoch produced.
enum EpochResult {
    /// Trained and validated: its report and the model snapshot (validation mode).
    Finished(Box<(EpochReport, UNet)>),
    /// The observer stopped it.
    Stopped(StopReason),
}

impl<'a> Run<'a> {
    fn setup(
        model_config: &'a UNetConfig,
        config: &'a TrainConfig,
        dataset: &'a SegmentationDataset,
        split: &'a Split,
        backend: BackendKind,
    ) -> Result<Self> {
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
        let preprocess = Arc::new(if config.estimate_normalization {
            Preprocess::estimate(dataset, &split.train, h, w, c, 256)?
        } else {
            Preprocess::unnormalized(h, w, c)
        });
        let train_device = backend.training_device();
        train_device.seed(config.seed);
        let model = model_config.init(&train_device)?;
        let ema = (config.ema_decay > 0.0).then(|| WeightEma::new(config.ema_decay, &model));
        let optim = match config.optimizer {
            Optimizer::Adam => AdamConfig::new()
                .with_weight_decay(
                    (config.weight_decay > 0.0)
                        .then(|| WeightDecayConfig::new(config.weight_decay as f32)),
                )
                .init(),
            Optimizer::AdamW => AdamWConfig::new()
                .with_weight_decay(config.weight_decay as f32)
                .init(),
        };
        let train_loader = LoaderConfig {
            batch_size: config.batch_size,
            shuffle: true,
            augment: Some(config.augment.clone()),
            seed: config.seed,
            prefetch: config.prefetch,
        };
        let shared = Arc::new(dataset.clone());
        let eval = Evaluation {
            dataset: shared.clone(),
            preprocess: preprocess.clone(),
            loader: LoaderConfig {
                shuffle: false,
                augment: None,
                ..train_loader.clone()
            },
            loss: config.loss.clone(),
            num_classes: model_config.num_classes,
            device: backend.device(),
            tta: config.val_tta,
        };
        Ok(Self {
            model_config,
            config,
            dataset,
            split,
            backend,
            model: Some(model),
            ema,
            optim,
            shared,
            preprocess,
            train_loader,
            train_device,
            eval,
            step: 0,
        })
    }

    fn start_facts(&self) -> TrainStart {
        TrainStart {
            train_samples: self.split.train.len(),
            valid_samples: self.split.valid.len(),
            batches_per_epoch: self.split.train.len().div_ceil(self.config.batch_size),
            parameters: self.model.as_ref().map_or(0, |m| m.num_params()),
            backend: self.backend.to_string(),
            preprocess: (*self.preprocess).clone(),
        }
    }

    /// Trains one epoch of a run planned to last `planned` epochs, then validates it.
    fn epoch(
        &mut self,
        epoch: usize,
        planned: usize,
        observer: &mut dyn TrainObserver,
    ) -> Result<EpochResult> {
        let config = self.config;
        let started = Instant::now();
        let lr = config.learning_rate_planned(epoch, planned)?;
        if let ControlFlow::Break(reason) = observer.on_epoch_start(epoch, lr) {
            return Ok(EpochResult::Stopped(reason));
        }
        let loader = BatchLoader::start(
            self.shared.clone(),
            &self.split.train,
            self.preprocess.clone(),
            &self.train_loader,
            epoch,
        );
        let batches = loader.num_batches();
        let (c, h, w) = (
            self.preprocess.channels,
            self.preprocess.height,
            self.preprocess.width,
        );
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        let mut batch_clock = Instant::now();
        for (b, batch) in loader.enumerate() {
            let batch = batch?;
            let len = batch.len;
            let value = self.step_on(batch, [c, h, w], lr, (epoch, b + 1))?;
            loss_sum += value * len as f64;
            seen += len;
            self.step += 1;
            let elapsed = batch_clock.elapsed().as_secs_f64();
            batch_clock = Instant::now();
            let flow = observer.on_batch_end(&BatchReport {
                epoch,
                batch: b + 1,
                batches,
                loss: value,
                images_per_sec: len as f64 / elapsed.max(1e-9),
                step: self.step,
            });
            if let ControlFlow::Break(reason) = flow {
                return Ok(EpochResult::Stopped(reason));
            }
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let snapshot = match &self.ema {
            Some(ema) => ema.snapshot(),
            None => self.model.as_ref().ok_or_else(missing_model)?.valid(),
        };
        let scores = self.eval.run(&snapshot, &self.split.valid)?;
        let report = EpochReport {
            epoch,
            learning_rate: lr,
            train_loss: loss_sum / seen.max(1) as f64,
            valid_loss: scores.loss,
            metrics: scores.metrics,
            tta_metrics: scores.tta,
            train_images_per_sec: seen as f64 / train_seconds.max(1e-9),
            seconds: started.elapsed().as_secs_f64(),
            is_best: false,
        };
        Ok(EpochResult::Finished(Box::new((report, snapshot))))
    }
}

impl Run<'_> {
    /// One optimiser step on `batch` (`[channels, height, width]` per image) at rate `lr`;
    /// the batch's loss. `at` is (epoch, batch), 1-based, for a divergence error.
    fn step_on(
        &mut self,
        batch: crate::data::Batch,
        [c, h, w]: [usize; 3],
        lr: f64,
        (epoch, b): (usize, usize),
    ) -> Result<f64> {
        let x = Tensor::<4>::from_data(
            TensorData::new(batch.images, [batch.len, c, h, w]),
            &self.train_device,
        );
        let targets = LossTargets::from_masks(
            &batch.masks,
            batch.len,
            h,
            w,
            self.model_config.num_classes,
            &self.train_device,
        )?;
        let model = self.model.take().ok_or_else(missing_model)?;
        let (optim, loss_config) = (&mut self.optim, &self.config.loss);
        let (model, value) = backend_call("training step", || {
            let loss = segmentation_loss(loss_config, model.forward(x), &targets);
            let value = scalar(&loss)?;
            if !value.is_finite() {
                return Err(SegError::Diverged {
                    epoch,
                    batch: b,
                    loss: value,
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            Ok((optim.step(lr, model, grads), value))
        })?;
        self.model = Some(model);
        if let (Some(ema), Some(model)) = (&mut self.ema, &self.model) {
            ema.update(model)?;
        }
        Ok(value)
    }
}

fn missing_model() -> SegError {
    SegError::Backend("the model was lost in a failed optimiser step".into())
}

/// Best-epoch selection and early stopping.
struct Selection {
    metric: Metric,
    patience: usize,
    best: Option<(f64, usize, UNet)>,
    since_best: usize,
    history: Vec<EpochReport>,
}

impl Selection {
    fn new(metric: Metric, patience: usize) -> Self {
        Self {
            metric,
            patience,
            best: None,
            since_best: 0,
            history: Vec::new(),
        }
    }

    /// Scores an epoch; keeps its snapshot when it is the best so far (marking the report).
    fn consider(&mut self, mut report: EpochReport, snapshot: UNet) -> EpochReport {
        let score = self.metric.score(report.valid_loss, &report.metrics);
        if self.best.as_ref().is_none_or(|(s, _, _)| score > *s) {
            report.is_best = true;
            self.best = Some((score, report.epoch, snapshot));
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        report
    }

    fn patience_spent(&self) -> bool {
        self.patience > 0 && self.since_best >= self.patience
    }

    /// The outcome: the best model and its checkpoint metadata, or the stop as an error when
    /// no epoch finished.
    fn finish(self, run: Run<'_>, end: TrainEnd) -> Result<TrainOutcome> {
        let Some((_, best_epoch, model)) = self.best else {
            return Err(match end {
                TrainEnd::Stopped {
                    epoch,
                    reason: StopReason::Interrupted,
                } => SegError::Interrupted { epoch },
                TrainEnd::Stopped {
                    epoch,
                    reason: StopReason::ObserverFailed(reason),
                } => SegError::ObserverFailed { epoch, reason },
                _ => SegError::InvalidConfig("no epoch ran".into()),
            });
        };
        let metric_map = self
            .history
            .iter()
            .find(|r| r.epoch == best_epoch)
            .ok_or_else(|| SegError::InvalidConfig("best epoch has no report".into()))?
            .metric_map();
        let stopped = matches!(end, TrainEnd::Stopped { .. });
        let final_tta = if run.config.final_tta.is_on() && !stopped {
            let scores = Evaluation {
                tta: run.config.final_tta,
                ..run.eval.clone()
            }
            .run(&model, &run.split.valid)?;
            let metrics = scores.tta.ok_or_else(|| {
                SegError::Backend("test-time augmentation produced no metrics".into())
            })?;
            Some(FinalTta {
                tta: run.config.final_tta,
                metrics,
            })
        } else {
            None
        };
        let meta = CheckpointMeta::new(
            run.model_config.clone(),
            run.dataset.encoding().clone(),
            (*run.preprocess).clone(),
            metric_map,
            best_epoch,
        );
        let mut outcome = TrainOutcome {
            model,
            meta,
            history: self.history,
            best_epoch,
            final_tta,
            end,
        };
        // The checkpoint carries the best epoch's per-epoch and run-level names.
        outcome
            .meta
            .metrics
            .extend(outcome.final_metrics().unwrap_or_default());
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_then_the_schedule_over_the_remaining_epochs() {
        let config = TrainConfig::new()
            .with_epochs(6)
            .with_learning_rate(1.0)
            .with_warmup_epochs(2)
            .with_lr_schedule(LrSchedule::Cosine { min_factor: 0.0 });
        let rates: Vec<f64> = (1..=6)
            .map(|e| config.learning_rate_at(e).expect("rate"))
            .collect();
        assert!((rates[0] - 1.0 / 3.0).abs() < 1e-12 && (rates[1] - 2.0 / 3.0).abs() < 1e-12);
        assert!(
            (rates[2] - 1.0).abs() < 1e-12,
            "the schedule starts at the base rate"
        );
        assert!(
            rates[5].abs() < 1e-12,
            "and reaches its floor at the last epoch"
        );
        let none = config.clone().with_warmup_epochs(0);
        assert_eq!(none.learning_rate_at(1).expect("rate"), 1.0);
        let err = config
            .with_warmup_epochs(6)
            .validate()
            .expect_err("too long");
        assert!(err.to_string().contains("warmup_epochs = 6"), "{err}");
    }

    #[test]
    fn a_budget_shortens_the_schedule_to_the_epochs_that_fit() {
        // 10 s per epoch, 95 s budget: epochs start at 0, 10, ..., 90 s, so 10 of them.
        assert_eq!(epochs_within_budget(95.0, 30.0, 3), 10);
        assert_eq!(epochs_within_budget(100.0, 30.0, 3), 10);
        assert_eq!(epochs_within_budget(101.0, 30.0, 3), 11);
        // Never fewer than the epochs already done; nothing to go on without any.
        assert_eq!(epochs_within_budget(10.0, 60.0, 3), 3);
        assert_eq!(epochs_within_budget(10.0, 0.0, 0), usize::MAX);
        let config = TrainConfig::new()
            .with_epochs(12)
            .with_learning_rate(1.0)
            .with_warmup_epochs(2)
            .with_lr_schedule(LrSchedule::Cosine { min_factor: 0.0 });
        let planned = config.learning_rate_planned(8, 8).expect("rate");
        assert!(planned.abs() < 1e-12, "the floor at the planned last epoch");
        assert_eq!(
            config.learning_rate_planned(5, 99).expect("rate"),
            config.learning_rate_at(5).expect("rate"),
            "a plan beyond the configured epochs changes nothing"
        );
        let past = config.learning_rate_planned(10, 8).expect("rate");
        assert!(
            past.abs() < 1e-12,
            "an epoch past the plan stays at the floor"
        );
        assert_eq!(
            config.learning_rate_planned(1, 8).expect("rate"),
            config.learning_rate_at(1).expect("rate"),
            "the warm-up is not shortened"
        );
    }
}
