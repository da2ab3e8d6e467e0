//! Confusion-matrix metrics accumulated over a whole pass: per-class IoU and Dice, their means,
//! and pixel accuracy. Ignored pixels are excluded; a class absent from both prediction and
//! ground truth has no IoU (it is left out of the means rather than counted as 0 or 1).

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
        SegMetrics {
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

/// Metrics of one evaluation pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegMetrics {
    /// Mean IoU over classes present in truth or prediction (background included).
    pub mean_iou: f64,
    /// Mean Dice over the same classes.
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!((s.foreground_iou - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
        assert_eq!(m.dice(1), Some(0.8));
        assert!((s.pixel_accuracy - 4.0 / 6.0).abs() < 1e-12);
        let mut twice = m.clone();
        twice.merge(&m);
        assert_eq!(twice.get(1, 1), 4);
        assert_eq!(twice.summary().mean_iou, s.mean_iou);
    }
}
