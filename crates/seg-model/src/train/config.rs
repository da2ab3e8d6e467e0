//! Training hyperparameters ([`TrainConfig`]) with their checks, the optimizer, and the epochs a
//! wall-clock budget allows. [`TrainConfig`] is what a configuration file's `[train]` table
//! holds, key for key (nested tables for the optimizer, the schedule, augmentation, loss and
//! test-time augmentation); unknown keys are refused and every key has a default.

use super::*;

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Adam, with `weight_decay` as L2 regularisation added to the gradient.
    Adam,
    /// AdamW: Adam with decoupled weight decay (`weight_decay` shrinks the weights directly).
    AdamW,
}

/// The optimiser and its weight decay (`[train.optimizer]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// adam | adamw.
    pub kind: Optimizer,
    /// Weight decay (0 = none): L2 for Adam, decoupled for AdamW.
    pub weight_decay: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: Optimizer::Adam,
            weight_decay: 0.0,
        }
    }
}

/// The side of the (square) training images, or `[height, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageSize {
    /// A square of `side` pixels.
    pub const fn square(side: usize) -> Self {
        Self {
            height: side,
            width: side,
        }
    }
}

impl Serialize for ImageSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if self.height == self.width {
            s.serialize_u64(self.height as u64)
        } else {
            [self.height, self.width].serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ImageSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a side in pixels (128) or [height, width]")]
        enum Form {
            Side(usize),
            Pair([usize; 2]),
        }
        Ok(match Form::deserialize(d)? {
            Form::Side(side) => Self::square(side),
            Form::Pair([height, width]) => Self { height, width },
        })
    }
}

/// Test-time augmentation while training (`[train.tta]`), written as view counts: 1 (off),
/// 2 (left-right mirror), 4 (both mirrors), 8 (mirrors and transposes; square inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainTta {
    /// Also score every epoch's validation with these views, logged beside the plain metrics
    /// as `val_tta_iou` / `val_tta_dice` (run level `tta_iou` / `tta_dice`); selection and the
    /// plain metrics are unchanged. `views - 1` more forward passes per epoch.
    #[serde(rename = "validation_views", with = "views")]
    pub validation: Tta,
    /// After training, score the kept model once more on the validation split with these
    /// views ([`TrainOutcome::final_tta`]; skipped when the run was stopped): what `infer`
    /// with the same views delivers, for one evaluation instead of one per epoch.
    #[serde(rename = "final_views", with = "views")]
    pub after_training: Tta,
}

/// A [`Tta`] written as its number of views.
pub mod views {
    use super::Tta;
    use serde::{Deserialize, Deserializer, Serializer};

    /// The number of views.
    pub fn serialize<S: Serializer>(tta: &Tta, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(tta.views() as u64)
    }

    /// The mode of that many views; any other count is refused, naming the allowed ones.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tta, D::Error> {
        let views = usize::deserialize(d)?;
        Tta::from_views(views).map_err(|e| match e {
            crate::SegError::InvalidValue { allowed, .. } => {
                serde::de::Error::custom(format!("{views} views: {allowed}"))
            }
            other => serde::de::Error::custom(other),
        })
    }
}

/// Hyperparameters of a training run: the `[train]` table of a configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// Base learning rate.
    pub learning_rate: f64,
    /// Training images are resized to this size.
    pub image_size: ImageSize,
    /// The backend that trains (flex | tch | tch-cuda:N).
    pub backend: BackendKind,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Epochs of linear learning-rate warm-up before the schedule (0 = none): epoch `e` of
    /// `w` runs at `base * e / (w + 1)`, then the schedule spans the remaining epochs.
    pub warmup_epochs: usize,
    /// Stop after this many epochs without improvement (0 = never).
    pub early_stopping_patience: usize,
    /// Metric that selects the best epoch.
    pub selection_metric: Metric,
    /// Wall-clock budget in seconds (0 = none): no new epoch starts once it is spent, and the
    /// best model so far is returned. After each epoch the learning-rate schedule is shortened
    /// (never lengthened) to the epochs the budget will allow at the mean epoch time so far,
    /// so that a cosine decay ends within the budget on a slower machine too.
    pub time_budget_secs: f64,
    /// Weight EMA decay (0 = off, else in (0, 1)): validation, best-epoch selection and the
    /// returned model use an exponential moving average of the weights and batch-norm
    /// statistics, updated after every optimiser step (horizon about `1 / (1 - decay)` steps).
    pub ema_decay: f64,
    /// Estimate per-channel mean/std from the training split (else identity normalisation).
    pub estimate_normalization: bool,
    /// Batches prepared ahead of the model.
    pub prefetch: usize,
    /// Share of each epoch's training pairs drawn from the negatives (training pairs whose
    /// mask has no foreground: healthy tissue, empty scenes), drawn afresh every epoch beside
    /// every pair with foreground (all negatives when fewer exist; 0 = none). Unset: every
    /// training pair, every epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_fraction: Option<f64>,
    /// After training, choose a binary model's foreground threshold on the validation split,
    /// from the probabilities of [`TrainTta::after_training`]'s views: of 0.10 to 0.90 the one
    /// with the highest Dice. The checkpoint carries it, so `infer`, the Predictor and the ONNX
    /// graph apply it. Off: 0.5.
    pub choose_threshold: bool,
    /// The optimiser.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule after the warm-up.
    pub schedule: LrSchedule,
    /// Training augmentations.
    pub augment: AugmentConfig,
    /// Loss weights.
    pub loss: LossConfig,
    /// Test-time augmentation of validation.
    pub tta: TrainTta,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 8,
            learning_rate: 1e-3,
            image_size: ImageSize::square(128),
            backend: BackendKind::default_kind(),
            seed: 42,
            warmup_epochs: 0,
            early_stopping_patience: 0,
            selection_metric: Metric::Iou,
            time_budget_secs: 0.0,
            ema_decay: 0.0,
            estimate_normalization: true,
            prefetch: 4,
            negative_fraction: None,
            choose_threshold: false,
            optimizer: OptimizerConfig::default(),
            schedule: LrSchedule::default(),
            augment: AugmentConfig::default(),
            loss: LossConfig::default(),
            tta: TrainTta::default(),
        }
    }
}

impl TrainConfig {
    /// Checks every value, naming the first wrong one by its key in `[train]` (`epochs`,
    /// `optimizer.weight_decay`, `schedule.min_factor`, ...).
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
        let ImageSize { height, width } = self.image_size;
        if height == 0 || width == 0 {
            return Err(SegError::invalid(
                "image_size",
                format!("{height}x{width}"),
                "must be at least 1 pixel each way",
            ));
        }
        if !(self.time_budget_secs.is_finite() && self.time_budget_secs >= 0.0) {
            return Err(SegError::invalid(
                "time_budget_secs",
                self.time_budget_secs,
                "must be >= 0 (0 = no budget)",
            ));
        }
        let decay = self.optimizer.weight_decay;
        if !(decay.is_finite() && decay >= 0.0) {
            return Err(SegError::invalid(
                "optimizer.weight_decay",
                decay,
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
        if let Some(f) = self.negative_fraction
            && !(0.0..1.0).contains(&f)
        {
            return Err(SegError::invalid(
                "negative_fraction",
                f,
                "must be in [0, 1) (0.2 = one training pair in five is a negative)",
            ));
        }
        self.schedule.validate()?;
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
        self.schedule.rate(
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
