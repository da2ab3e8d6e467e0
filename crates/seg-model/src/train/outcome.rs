//! How a run ended and what it produced: the best model, its history and final scores.

use super::*;

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
    /// The foreground threshold chosen on validation ([`TrainConfig::choose_threshold`], a
    /// binary model, a run not stopped); the checkpoint's threshold.
    pub threshold: Option<ChosenThreshold>,
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
    /// False alarms and the score over the images with foreground, when the validation set
    /// holds images without.
    pub negatives: Option<NegativeScores>,
}

impl FinalTta {
    /// Run-level metrics: [`keys::FINAL_TTA_IOU`], [`keys::FINAL_TTA_DICE`].
    /// With negatives in the validation set also [`keys::FINAL_TTA_FALSE_ALARM_RATE`] and
    /// [`keys::FINAL_TTA_POSITIVE_DICE`].
    pub fn metric_map(&self) -> BTreeMap<String, f64> {
        let mut map = BTreeMap::from([
            (keys::FINAL_TTA_IOU.to_string(), self.metrics.iou),
            (keys::FINAL_TTA_DICE.to_string(), self.metrics.dice),
        ]);
        if let Some(n) = &self.negatives {
            map.extend(negative_metrics(
                n,
                keys::FINAL_TTA_FALSE_ALARM_RATE,
                keys::FINAL_TTA_POSITIVE_DICE,
            ));
        }
        map
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
        if let Some(t) = &self.threshold {
            map.insert(keys::THRESHOLD.to_string(), f64::from(t.threshold));
            map.insert(keys::THRESHOLD_DICE.to_string(), t.dice);
        }
        Some(map)
    }

    /// Whether the run ended before its configured epochs (early stop, budget, or stopped).
    pub fn stopped_early(&self) -> bool {
        self.end != TrainEnd::Completed
    }
}
