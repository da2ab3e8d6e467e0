//! Confusion-matrix metrics accumulated over a whole pass: per-class IoU and Dice, their means,
//! and pixel accuracy. Ignored pixels are excluded; a class absent from both prediction and
//! ground truth has no IoU (it is left out of the means rather than counted as 0 or 1).
//!
//! The headline `iou` and `dice` follow the published convention (smp, MONAI, the Kvasir-SEG
//! papers): for a binary task the foreground class's, for a multi-class task the mean over the
//! classes. The mean over every class of a binary task (background included, which flatters
//! it) keeps an explicit name: `mean_iou_with_background`.

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::data::IGNORE_INDEX;

/// Counts of (ground truth, prediction) pairs over pixels: rows are truth, columns predictions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    counts: Array2<u64>,
}

impl ConfusionMatrix {
    /// An empty matrix for `classes` classes.
    pub fn new(classes: usize) -> Self {
        Self {
            counts: Array2::zeros((classes, classes)),
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.counts.nrows()
    }

    /// Adds pixels: `target` and `prediction` hold class ids of equal length; targets equal to
    /// [`IGNORE_INDEX`] or out of range are skipped.
    pub fn update(&mut self, target: &[u8], prediction: &[u8]) {
        let classes = self.classes();
        for (&t, &p) in target.iter().zip(prediction) {
            let (t, p) = (usize::from(t), usize::from(p));
            if t == usize::from(IGNORE_INDEX) || t >= classes || p >= classes {
                continue;
            }
            self.counts[[t, p]] += 1;
        }
    }

    /// Adds another matrix of the same size.
    pub fn merge(&mut self, other: &Self) {
        self.counts += &other.counts;
    }

    /// Count of pixels of class `target` predicted as `prediction`.
    pub fn get(&self, target: usize, prediction: usize) -> u64 {
        self.counts[[target, prediction]]
    }

    /// Labelled pixels counted.
    pub fn total(&self) -> u64 {
        self.counts.sum()
    }

    /// Labelled pixels whose truth is a foreground class (any class but 0, the background).
    pub fn truth_foreground(&self) -> u64 {
        self.total() - self.counts.row(0).sum()
    }

    /// Labelled pixels predicted as a foreground class.
    pub fn predicted_foreground(&self) -> u64 {
        self.total() - self.counts.column(0).sum()
    }

    fn tp_fp_fn(&self, c: usize) -> (u64, u64, u64) {
        let tp = self.counts[[c, c]];
        let predicted = self.counts.column(c).sum();
        let actual = self.counts.row(c).sum();
        (tp, predicted - tp, actual - tp)
    }

    /// IoU of class `c`, `None` when the class appears in neither prediction nor truth.
    pub fn iou(&self, c: usize) -> Option<f64> {
        let (tp, fp, fneg) = self.tp_fp_fn(c);
        let denom = tp + fp + fneg;
        (denom > 0).then(|| tp as f64 / denom as f64)
    }

    /// Dice (F1) of class `c`, `None` when the class appears in neither prediction nor truth.
    pub fn dice(&self, c: usize) -> Option<f64> {
        let (tp, fp, fneg) = self.tp_fp_fn(c);
        let denom = 2 * tp + fp + fneg;
        (denom > 0).then(|| 2.0 * tp as f64 / denom as f64)
    }

    /// Fraction of labelled pixels predicted correctly.
    pub fn pixel_accuracy(&self) -> f64 {
        let total = self.counts.sum();
        let correct = self.counts.diag().sum();
        if total == 0 {
            0.0
        } else {
            correct as f64 / total as f64
        }
    }

    /// All metrics at once.
    pub fn summary(&self) -> SegMetrics {
        let classes = self.counts.len_of(Axis(0));
        let per_class_iou: Vec<Option<f64>> = (0..classes).map(|c| self.iou(c)).collect();
        let per_class_dice: Vec<Option<f64>> = (0..classes).map(|c| self.dice(c)).collect();
        let headline = |per_class: &[Option<f64>]| {
            if classes == 2 {
                // No foreground in truth nor prediction: nothing to find and nothing found.
                per_class[1].unwrap_or(1.0)
            } else {
                mean(per_class)
            }
        };
        SegMetrics {
            iou: headline(&per_class_iou),
            dice: headline(&per_class_dice),
            mean_iou: mean(&per_class_iou),
            mean_dice: mean(&per_class_dice),
            foreground_iou: mean(per_class_iou.get(1..).unwrap_or_default()),
            foreground_dice: mean(per_class_dice.get(1..).unwrap_or_default()),
            pixel_accuracy: self.pixel_accuracy(),
            per_class_iou,
            per_class_dice,
            pixels: self.counts.sum(),
        }
    }
}

fn mean(values: &[Option<f64>]) -> f64 {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    if present.is_empty() {
        0.0
    } else {
        present.iter().sum::<f64>() / present.len() as f64
    }
}

/// The project's metric vocabulary, defined once: the names `train` logs to MLflow per epoch
/// ([`Metric::epoch_name`], validation metrics) and for the run ([`Metric::name`], the best
/// epoch's values), the names promotion criteria and `--best-by` read, and the metric that
/// selects the best epoch (`train.selection_metric`, written as its epoch name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Metric {
    /// Validation loss (lower is better).
    #[serde(rename = "val_loss")]
    Loss,
    /// The headline IoU: the foreground's for a binary task, the mean over classes otherwise.
    #[serde(rename = "val_iou")]
    Iou,
    /// The headline Dice, by the same convention.
    #[serde(rename = "val_dice")]
    Dice,
    /// Mean IoU over every class, background included.
    #[serde(rename = "val_mean_iou_with_background")]
    MeanIouWithBackground,
    /// Mean Dice over every class, background included.
    #[serde(rename = "val_mean_dice_with_background")]
    MeanDiceWithBackground,
    /// IoU of the foreground classes (classes 1..).
    #[serde(rename = "val_foreground_iou")]
    ForegroundIou,
    /// Dice of the foreground classes (classes 1..).
    #[serde(rename = "val_foreground_dice")]
    ForegroundDice,
    /// Fraction of labelled pixels predicted correctly.
    #[serde(rename = "val_pixel_accuracy")]
    PixelAccuracy,
}

impl Metric {
    /// Every metric, in the order tables show them.
    pub const ALL: [Self; 8] = [
        Self::Loss,
        Self::PixelAccuracy,
        Self::Iou,
        Self::Dice,
        Self::ForegroundIou,
        Self::ForegroundDice,
        Self::MeanIouWithBackground,
        Self::MeanDiceWithBackground,
    ];

    /// The run-level name (the best epoch's value): `loss`, `accuracy` (the original script's
    /// name), `iou`, `dice`, `foreground_iou`, `foreground_dice`,
    /// `mean_iou_with_background`, `mean_dice_with_background`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Loss => "loss",
            Self::Iou => "iou",
            Self::Dice => "dice",
            Self::MeanIouWithBackground => "mean_iou_with_background",
            Self::MeanDiceWithBackground => "mean_dice_with_background",
            Self::ForegroundIou => "foreground_iou",
            Self::ForegroundDice => "foreground_dice",
            Self::PixelAccuracy => "accuracy",
        }
    }

    /// The per-epoch validation name: `val_loss`, `val_iou`, ..., `val_pixel_accuracy`.
    pub const fn epoch_name(self) -> &'static str {
        match self {
            Self::Loss => "val_loss",
            Self::Iou => "val_iou",
            Self::Dice => "val_dice",
            Self::MeanIouWithBackground => "val_mean_iou_with_background",
            Self::MeanDiceWithBackground => "val_mean_dice_with_background",
            Self::ForegroundIou => "val_foreground_iou",
            Self::ForegroundDice => "val_foreground_dice",
            Self::PixelAccuracy => "val_pixel_accuracy",
        }
    }

    /// The metric a run-level or per-epoch name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name || m.epoch_name() == name)
    }

    /// Whether lower values are better (the loss).
    pub const fn lower_is_better(self) -> bool {
        matches!(self, Self::Loss)
    }

    /// This metric's value for a pass with mean `loss` and metrics `m`.
    pub fn value(self, loss: f64, m: &SegMetrics) -> f64 {
        match self {
            Self::Loss => loss,
            Self::Iou => m.iou,
            Self::Dice => m.dice,
            Self::MeanIouWithBackground => m.mean_iou,
            Self::MeanDiceWithBackground => m.mean_dice,
            Self::ForegroundIou => m.foreground_iou,
            Self::ForegroundDice => m.foreground_dice,
            Self::PixelAccuracy => m.pixel_accuracy,
        }
    }

    /// The value oriented so that higher is better.
    pub fn score(self, loss: f64, m: &SegMetrics) -> f64 {
        let v = self.value(loss, m);
        if self.lower_is_better() { -v } else { v }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.epoch_name())
    }
}

/// Per-epoch and run-level names that are not validation metrics.
pub mod keys {
    /// Mean training loss of an epoch.
    pub const TRAIN_LOSS: &str = "train_loss";
    /// Loss of one training batch (step = global batch number).
    pub const BATCH_LOSS: &str = "train_batch_loss";
    /// Learning rate of an epoch.
    pub const LEARNING_RATE: &str = "lr";
    /// Training images per second of an epoch.
    pub const IMAGES_PER_SEC: &str = "images_per_sec";
    /// Wall seconds of an epoch.
    pub const EPOCH_SECONDS: &str = "epoch_seconds";
    /// The epoch whose model was kept (run level).
    pub const BEST_EPOCH: &str = "best_epoch";
    /// Headline validation IoU of an epoch with flip test-time augmentation (`infer --tta`).
    pub const VAL_TTA_IOU: &str = "val_tta_iou";
    /// Headline validation Dice of an epoch with flip test-time augmentation.
    pub const VAL_TTA_DICE: &str = "val_tta_dice";
    /// The best epoch's [`VAL_TTA_IOU`] (run level).
    pub const TTA_IOU: &str = "tta_iou";
    /// Headline IoU of the kept model with `train.final_tta_views` test-time augmentation,
    /// scored once after training (run level).
    pub const FINAL_TTA_IOU: &str = "final_tta_iou";
    /// Headline Dice of the kept model with `train.final_tta_views` (run level).
    pub const FINAL_TTA_DICE: &str = "final_tta_dice";
    /// The best epoch's [`VAL_TTA_DICE`] (run level).
    pub const TTA_DICE: &str = "tta_dice";
    /// Share of an epoch's validation images without foreground in their truth that get
    /// foreground predicted on more than 1 % of their pixels (only when there are such images).
    pub const VAL_FALSE_ALARM_RATE: &str = "val_false_alarm_rate";
    /// Headline validation Dice of an epoch over the images with foreground in their truth
    /// alone (only when the validation set also holds images without).
    pub const VAL_POSITIVE_DICE: &str = "val_positive_dice";
    /// The best epoch's [`VAL_FALSE_ALARM_RATE`] (run level).
    pub const FALSE_ALARM_RATE: &str = "false_alarm_rate";
    /// The best epoch's [`VAL_POSITIVE_DICE`] (run level).
    pub const POSITIVE_DICE: &str = "positive_dice";
    /// [`FALSE_ALARM_RATE`] of the kept model with `train.tta.final_views` (run level).
    pub const FINAL_TTA_FALSE_ALARM_RATE: &str = "final_tta_false_alarm_rate";
    /// [`POSITIVE_DICE`] of the kept model with `train.tta.final_views` (run level).
    pub const FINAL_TTA_POSITIVE_DICE: &str = "final_tta_positive_dice";
    /// The foreground threshold chosen on validation (`train.choose_threshold`, run level).
    pub const THRESHOLD: &str = "threshold";
    /// The validation Dice at [`THRESHOLD`] (chosen on the same pixels: optimistic).
    pub const THRESHOLD_DICE: &str = "threshold_dice";

    /// Validation IoU of class `c` in an epoch.
    pub fn class_iou(c: usize) -> String {
        format!("val_iou_class{c}")
    }
}

/// Metrics of one evaluation pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegMetrics {
    /// The headline IoU: the foreground class's for a binary task (1 when neither truth nor
    /// prediction has foreground), the mean over classes for a multi-class task.
    pub iou: f64,
    /// The headline Dice, by the same convention.
    pub dice: f64,
    /// Mean IoU over classes present in truth or prediction, background included.
    pub mean_iou: f64,
    /// Mean Dice over the same classes, background included.
    pub mean_dice: f64,
    /// Mean IoU over classes 1.. (for a binary task: the IoU of the foreground).
    pub foreground_iou: f64,
    /// Mean Dice over classes 1.. (for a binary task: the Dice of the foreground).
    pub foreground_dice: f64,
    /// Fraction of labelled pixels predicted correctly.
    pub pixel_accuracy: f64,
    /// IoU per class (`None`: class absent from truth and prediction).
    pub per_class_iou: Vec<Option<f64>>,
    /// Dice per class.
    pub per_class_dice: Vec<Option<f64>>,
    /// Labelled pixels counted.
    pub pixels: u64,
}

/// Image-level false alarms: of the images whose ground truth has no foreground pixel (healthy
/// tissue, an empty scene), how many got foreground predicted at all, and how many on more than
/// [`FalseAlarms::FRACTION`] of their pixels (what a reader would flag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FalseAlarms {
    /// Images whose ground truth has no foreground.
    pub empty_truth_images: usize,
    /// Of those, images with any pixel predicted as foreground.
    pub any_foreground: usize,
    /// Of those, images with more than [`FalseAlarms::FRACTION`] of their pixels predicted as
    /// foreground: the false alarms.
    pub false_alarms: usize,
}

impl FalseAlarms {
    /// The share of an image's pixels above which predicted foreground is a false alarm.
    pub const FRACTION: f64 = 0.01;

    /// Counts one image, given its own confusion matrix (an image with foreground in its truth
    /// is not counted).
    pub fn add(&mut self, image: &ConfusionMatrix) {
        if image.total() == 0 || image.truth_foreground() > 0 {
            return;
        }
        self.empty_truth_images += 1;
        let predicted = image.predicted_foreground();
        self.any_foreground += usize::from(predicted > 0);
        self.false_alarms += usize::from(predicted as f64 > Self::FRACTION * image.total() as f64);
    }

    /// The false-alarm rate over the images without foreground, if there were any.
    pub fn rate(&self) -> Option<f64> {
        (self.empty_truth_images > 0)
            .then(|| self.false_alarms as f64 / self.empty_truth_images as f64)
    }
}

/// Scores of an evaluation whose images include some without foreground in their truth (the
/// negatives: healthy tissue, empty scenes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NegativeScores {
    /// Image-level false alarms on the negatives.
    pub false_alarms: FalseAlarms,
    /// Metrics over the images with foreground alone (what the score would be without the
    /// negatives).
    pub positive: SegMetrics,
}

/// Image-level bookkeeping beside an evaluation's pixel confusion matrix: false alarms on the
/// images without foreground in their truth, and the confusion over the images with some.
#[derive(Debug, Clone)]
pub struct ImageTally {
    false_alarms: FalseAlarms,
    with_foreground: ConfusionMatrix,
}

impl ImageTally {
    /// An empty tally for `classes` classes.
    pub fn new(classes: usize) -> Self {
        Self {
            false_alarms: FalseAlarms::default(),
            with_foreground: ConfusionMatrix::new(classes),
        }
    }

    /// Counts a batch: `truth` and `predicted` hold one image after another, `pixels` each.
    pub fn update(&mut self, truth: &[u8], predicted: &[u8], pixels: usize) {
        for (t, p) in truth
            .chunks(pixels.max(1))
            .zip(predicted.chunks(pixels.max(1)))
        {
            let mut image = ConfusionMatrix::new(self.with_foreground.classes());
            image.update(t, p);
            if image.truth_foreground() > 0 {
                self.with_foreground.merge(&image);
            } else {
                self.false_alarms.add(&image);
            }
        }
    }

    /// The scores, when some image had no foreground in its truth.
    pub fn negatives(&self) -> Option<NegativeScores> {
        (self.false_alarms.empty_truth_images > 0).then(|| NegativeScores {
            false_alarms: self.false_alarms,
            positive: self.with_foreground.summary(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_scores_negatives_apart_from_the_images_with_foreground() {
        let mut tally = ImageTally::new(2);
        // Four images of 4 pixels: two with foreground, one negative with a false alarm on a
        // pixel (25 % > 1 %), one clean negative.
        let truth = [
            0, 1, 1, 0, /**/ 1, 0, 0, 0, /**/ 0, 0, 0, 0, /**/ 0, 0, 0, 0,
        ];
        let predicted = [
            0, 1, 0, 0, /**/ 1, 0, 0, 1, /**/ 0, 0, 1, 0, /**/ 0, 0, 0, 0,
        ];
        tally.update(&truth[..8], &predicted[..8], 4);
        assert_eq!(tally.negatives(), None, "no negative seen yet");
        tally.update(&truth[8..], &predicted[8..], 4);
        let scores = tally.negatives().expect("negatives were seen");
        assert_eq!(
            scores.false_alarms,
            FalseAlarms {
                empty_truth_images: 2,
                any_foreground: 1,
                false_alarms: 1
            }
        );
        // Over the two images with foreground: tp 2, fn 1, fp 1 -> Dice 4 / 6.
        assert!((scores.positive.dice - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn false_alarms_count_images_without_foreground() {
        let image = |truth: &[u8], predicted: &[u8]| {
            let mut m = ConfusionMatrix::new(2);
            m.update(truth, predicted);
            m
        };
        let mut alarms = FalseAlarms::default();
        let empty = [0u8; 200];
        let mut two = [0u8; 200];
        two[..2].fill(1);
        let mut three = [0u8; 200];
        three[..3].fill(1);
        alarms.add(&image(&empty, &empty)); // clean
        alarms.add(&image(&empty, &two)); // 1 %: foreground, not an alarm
        alarms.add(&image(&empty, &three)); // 1.5 %: an alarm
        alarms.add(&image(&three, &three)); // a polyp: not counted
        assert_eq!(
            alarms,
            FalseAlarms {
                empty_truth_images: 3,
                any_foreground: 2,
                false_alarms: 1
            }
        );
        assert_eq!(alarms.rate(), Some(1.0 / 3.0));
        assert_eq!(FalseAlarms::default().rate(), None);
    }

    #[test]
    fn every_metric_has_one_run_name_and_one_epoch_name() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(m));
            assert_eq!(Metric::from_name(m.epoch_name()), Some(m));
            let json = serde_json::to_string(&m).expect("serialise");
            assert_eq!(json, format!("\"{}\"", m.epoch_name()));
        }
        assert_eq!(Metric::from_name("valid_mean_iou"), None);
        assert!(Metric::Loss.lower_is_better() && !Metric::Iou.lower_is_better());
    }

    #[test]
    fn binary_example_by_hand() {
        // truth:      1 1 0 0 255
        // prediction: 1 0 1 0 1
        // class 1: tp 1, fp 1, fn 1 -> IoU 1/3, Dice 2/4; class 0: tp 1, fp 1, fn 1 -> same.
        let mut m = ConfusionMatrix::new(2);
        m.update(&[1, 1, 0, 0, IGNORE_INDEX], &[1, 0, 1, 0, 1]);
        assert_eq!(m.iou(1), Some(1.0 / 3.0));
        assert_eq!(m.dice(1), Some(0.5));
        let s = m.summary();
        assert!((s.mean_iou - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.pixel_accuracy, 0.5);
        assert_eq!(s.pixels, 4);
        assert!((s.foreground_dice - 0.5).abs() < 1e-12);
        assert_eq!(
            (s.iou, s.dice),
            (1.0 / 3.0, 0.5),
            "binary headline = foreground"
        );
    }

    #[test]
    fn the_binary_headline_is_the_foreground_and_not_flattered_by_background() {
        // 100 pixels: 90 background predicted right, 10 foreground of which 4 found, 2 false
        // alarms. Background IoU 88/96, foreground IoU 4/12.
        let mut truth = vec![0u8; 90];
        truth.extend([1u8; 10]);
        let mut pred = vec![0u8; 88];
        pred.extend([1, 1]);
        pred.extend([1, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
        let mut m = ConfusionMatrix::new(2);
        m.update(&truth, &pred);
        let s = m.summary();
        assert!((s.iou - 4.0 / 12.0).abs() < 1e-12, "{}", s.iou);
        assert!((s.dice - 8.0 / 16.0).abs() < 1e-12, "{}", s.dice);
        assert!((s.mean_iou - (88.0 / 96.0 + 4.0 / 12.0) / 2.0).abs() < 1e-12);
        assert!(
            s.mean_iou > s.iou + 0.25,
            "the background-inclusive mean flatters"
        );
        // Nothing to find and nothing found: a perfect foreground score, not 0.
        let mut empty = ConfusionMatrix::new(2);
        empty.update(&[0, 0], &[0, 0]);
        assert_eq!((empty.summary().iou, empty.summary().dice), (1.0, 1.0));
    }

    #[test]
    fn multiclass_example_by_hand_and_absent_classes_are_skipped() {
        // 4 classes; class 3 never appears.
        // truth 0 0 1 1 2 2, prediction 0 1 1 1 2 0
        let mut m = ConfusionMatrix::new(4);
        m.update(&[0, 0, 1, 1, 2, 2], &[0, 1, 1, 1, 2, 0]);
        // class 0: tp1 fp1 fn1 -> 1/3; class 1: tp2 fp1 fn0 -> 2/3; class 2: tp1 fp0 fn1 -> 1/2
        assert_eq!(m.iou(3), None);
        let s = m.summary();
        let expected = (1.0 / 3.0 + 2.0 / 3.0 + 0.5) / 3.0;
        assert!((s.mean_iou - expected).abs() < 1e-12, "{}", s.mean_iou);
        assert_eq!(
            s.iou, s.mean_iou,
            "multi-class headline = mean over classes"
        );
        assert!((s.foreground_iou - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
        assert_eq!(m.dice(1), Some(0.8));
        assert!((s.pixel_accuracy - 4.0 / 6.0).abs() < 1e-12);
        let mut twice = m.clone();
        twice.merge(&m);
        assert_eq!(twice.get(1, 1), 4);
        assert_eq!(twice.summary().mean_iou, s.mean_iou);
    }
}
