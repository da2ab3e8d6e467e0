//! Training hyperparameters ([`TrainConfig`]) with their checks, the optimizer, and the epochs a
//! wall-clock budget allows.

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
