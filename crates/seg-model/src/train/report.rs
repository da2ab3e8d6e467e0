//! What training reports while it runs: the start, batches, epochs, and the observer that
//! receives them and may stop the run.

use super::*;

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
    /// False alarms and the score over the images with foreground, when the validation set
    /// holds images without foreground.
    #[serde(default)]
    pub negatives: Option<NegativeScores>,
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
        if let Some(n) = &self.negatives {
            map.extend(negative_metrics(
                n,
                keys::VAL_FALSE_ALARM_RATE,
                keys::VAL_POSITIVE_DICE,
            ));
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
        if let Some(n) = &self.negatives {
            map.extend(negative_metrics(
                n,
                keys::FALSE_ALARM_RATE,
                keys::POSITIVE_DICE,
            ));
        }
        map
    }
}

/// The false-alarm rate and the Dice over the images with foreground, under the names given.
pub(super) fn negative_metrics(
    scores: &NegativeScores,
    false_alarm_rate: &str,
    positive_dice: &str,
) -> [(String, f64); 2] {
    [
        (
            false_alarm_rate.to_string(),
            scores.false_alarms.rate().unwrap_or(0.0),
        ),
        (positive_dice.to_string(), scores.positive.dice),
    ]
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
