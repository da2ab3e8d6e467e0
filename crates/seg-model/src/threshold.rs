//! The foreground threshold of a binary model, chosen on validation: a histogram of the
//! predicted foreground probability of every labelled pixel, split by its truth, gives the Dice
//! at every threshold from one pass. The chosen threshold becomes the checkpoint's
//! `threshold`, which `infer`, the [`crate::Predictor`] and the ONNX graph all apply.

use serde::{Deserialize, Serialize};

/// Foreground-probability histogram of a binary task's labelled pixels, split by truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThresholdSweep {
    foreground: Vec<u64>,
    background: Vec<u64>,
}

/// A threshold chosen on validation, with the Dice at it and at 0.5.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChosenThreshold {
    /// Pixels whose foreground probability is at least this are foreground.
    pub threshold: f32,
    /// The validation Dice at `threshold` (chosen on the same pixels: optimistic).
    pub dice: f64,
    /// The validation Dice at 0.5.
    pub dice_at_half: f64,
}

impl Default for ThresholdSweep {
    fn default() -> Self {
        Self {
            foreground: vec![0; Self::BINS],
            background: vec![0; Self::BINS],
        }
    }
}

impl ThresholdSweep {
    /// Bins of the histogram: the thresholds are multiples of `1 / BINS`.
    pub const BINS: usize = 100;
    /// The thresholds considered, in bins: 0.10 to 0.90.
    const CHOICES: std::ops::RangeInclusive<usize> = 10..=90;

    /// Counts pixels: class ids `truth` (0 background, 1 foreground, anything else is not
    /// counted) and each pixel's predicted foreground probability.
    pub fn update(&mut self, truth: &[u8], foreground: &[f32]) {
        for (&t, &p) in truth.iter().zip(foreground) {
            let bin = ((p.clamp(0.0, 1.0) * Self::BINS as f32) as usize).min(Self::BINS - 1);
            match t {
                0 => self.background[bin] += 1,
                1 => self.foreground[bin] += 1,
                _ => {}
            }
        }
    }

    /// The foreground Dice when pixels with probability at least `bin / BINS` are foreground
    /// (1 when neither truth nor prediction holds any).
    pub fn dice_at(&self, bin: usize) -> f64 {
        let bin = bin.min(Self::BINS);
        let tp: u64 = self.foreground[bin..].iter().sum();
        let fp: u64 = self.background[bin..].iter().sum();
        let missed: u64 = self.foreground[..bin].iter().sum();
        let denominator = 2 * tp + fp + missed;
        if denominator == 0 {
            1.0
        } else {
            2.0 * tp as f64 / denominator as f64
        }
    }

    /// The threshold of 0.10 to 0.90 with the highest Dice; of equal ones, the nearest 0.5.
    pub fn best(&self) -> ChosenThreshold {
        let half = Self::BINS / 2;
        let mut best = (half, self.dice_at(half));
        for bin in Self::CHOICES {
            let dice = self.dice_at(bin);
            if dice > best.1 || (dice == best.1 && bin.abs_diff(half) < best.0.abs_diff(half)) {
                best = (bin, dice);
            }
        }
        ChosenThreshold {
            threshold: best.0 as f32 / Self::BINS as f32,
            dice: best.1,
            dice_at_half: self.dice_at(half),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_finds_the_threshold_that_separates_truth() {
        let mut sweep = ThresholdSweep::default();
        // Foreground predicted at 0.35-0.45, background at 0.05-0.30 and one stray at 0.6.
        sweep.update(
            &[1, 1, 1, 0, 0, 0, 0, 255],
            &[0.35, 0.4, 0.45, 0.05, 0.2, 0.3, 0.6, 0.9],
        );
        // At 0.5 only the stray is foreground: Dice 0.
        assert_eq!(sweep.dice_at(50), 0.0);
        let chosen = sweep.best();
        // 0.31 .. 0.35 keep all three and the stray: 6 / 7; the first of those nearest 0.5.
        assert!((chosen.dice - 6.0 / 7.0).abs() < 1e-12, "{chosen:?}");
        assert!((chosen.threshold - 0.35).abs() < 1e-6, "{chosen:?}");
        assert_eq!(chosen.dice_at_half, 0.0);
        // The ignored pixel (255) counts nowhere; nothing at all scores 1.
        assert_eq!(ThresholdSweep::default().dice_at(50), 1.0);
    }

    #[test]
    fn a_tie_keeps_the_threshold_nearest_one_half() {
        let mut sweep = ThresholdSweep::default();
        sweep.update(&[1, 0], &[0.95, 0.02]);
        let chosen = sweep.best();
        assert_eq!(chosen.dice, 1.0);
        assert!((chosen.threshold - 0.5).abs() < 1e-6, "{chosen:?}");
    }
}
