//! Segmentation loss: BCE-with-logits (binary) or cross-entropy (multi-class), plus soft Dice.
//! Pixels labelled [`IGNORE_INDEX`](crate::data::IGNORE_INDEX) add nothing to either term.

use burn::tensor::activation::{log_softmax, relu, sigmoid};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::IGNORE_INDEX;
use crate::error::{Result, SegError};

/// Weights of the two loss terms: `[train.loss]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// Weight of BCE (binary) or cross-entropy (multi-class).
    pub ce_weight: f64,
    /// Weight of the soft Dice loss.
    pub dice_weight: f64,
    /// Smoothing term of the Dice ratio.
    pub dice_smooth: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            ce_weight: 1.0,
            dice_weight: 1.0,
            dice_smooth: 1.0,
        }
    }
}

impl LossConfig {
    /// Checks the values, naming the first wrong one (`loss.ce_weight`, ...).
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("loss.ce_weight", self.ce_weight),
            ("loss.dice_weight", self.dice_weight),
            ("loss.dice_smooth", self.dice_smooth),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(SegError::invalid(field, value, "must be finite and >= 0"));
            }
        }
        if self.ce_weight + self.dice_weight == 0.0 {
            return Err(SegError::invalid(
                "loss.dice_weight",
                self.dice_weight,
                "must be above 0 when loss.ce_weight is 0 (the loss would be 0)",
            ));
        }
        Ok(())
    }
}

/// Targets of one batch on the device: one-hot (or 0/1 for binary) and the valid-pixel mask.
#[derive(Debug, Clone)]
pub struct LossTargets {
    /// `[batch, outputs, H, W]`: 0/1 per output channel; zero at ignored pixels.
    pub target: Tensor<4>,
    /// `[batch, 1, H, W]`: 1 where the pixel is labelled, 0 where ignored.
    pub valid: Tensor<4>,
    /// Number of labelled pixels (at least 1, to keep means finite).
    pub valid_pixels: f64,
}

impl LossTargets {
    /// Builds targets from class ids `[batch, height, width]` for a model with `outputs`
    /// channels (1 = binary sigmoid).
    pub fn from_masks(
        masks: &[u8],
        batch: usize,
        height: usize,
        width: usize,
        outputs: usize,
        device: &Device,
    ) -> Result<Self> {
        let plane = height * width;
        if outputs == 0 || masks.len() != batch * plane {
            return Err(SegError::InvalidConfig(format!(
                "loss targets: {} mask values for a batch of {batch} at {width}x{height} (expected {}), {outputs} outputs (expected >= 1)",
                masks.len(),
                batch * plane
            )));
        }
        let mut valid = vec![0f32; masks.len()];
        let mut target = vec![0f32; batch * outputs * plane];
        let mut count = 0usize;
        for b in 0..batch {
            for p in 0..plane {
                let id = masks[b * plane + p];
                if id == IGNORE_INDEX {
                    continue;
                }
                valid[b * plane + p] = 1.0;
                count += 1;
                if outputs == 1 {
                    target[b * plane + p] = f32::from(u8::from(id >= 1));
                } else if usize::from(id) < outputs {
                    target[(b * outputs + usize::from(id)) * plane + p] = 1.0;
                }
            }
        }
        Ok(Self {
            target: Tensor::from_data(
                TensorData::new(target, [batch, outputs, height, width]),
                device,
            ),
            valid: Tensor::from_data(TensorData::new(valid, [batch, 1, height, width]), device),
            valid_pixels: count.max(1) as f64,
        })
    }
}

/// The loss of a batch, as a scalar tensor (differentiable when `logits` is).
pub fn segmentation_loss(config: &LossConfig, logits: Tensor<4>, t: &LossTargets) -> Tensor<1> {
    let [_, outputs, _, _] = logits.dims();
    let smooth = config.dice_smooth;
    let (ce, dice) = if outputs == 1 {
        // Stable BCE with logits: max(x, 0) - x*y + log(1 + exp(-|x|)).
        let y = t.target.clone();
        let bce = relu(logits.clone()) - logits.clone() * y.clone()
            + logits.clone().abs().neg().exp().log1p();
        let ce = (bce * t.valid.clone()).sum().div_scalar(t.valid_pixels);
        let p = sigmoid(logits) * t.valid.clone();
        let inter = (p.clone() * y.clone()).sum();
        let denom = p.sum() + y.sum();
        let dice = inter.mul_scalar(2.0).add_scalar(smooth) / denom.add_scalar(smooth);
        (ce, dice.neg().add_scalar(1.0))
    } else {
        let log_p = log_softmax(logits, 1);
        let ce = (log_p.clone() * t.target.clone())
            .sum()
            .neg()
            .div_scalar(t.valid_pixels);
        let p = log_p.exp() * t.valid.clone();
        // Per-class soft Dice over the whole batch, averaged over classes.
        let inter = (p.clone() * t.target.clone())
            .sum_dims(&[0, 2, 3])
            .flatten::<1>(0, 3);
        let denom =
            (p.sum_dims(&[0, 2, 3]) + t.target.clone().sum_dims(&[0, 2, 3])).flatten::<1>(0, 3);
        let dice = inter.mul_scalar(2.0).add_scalar(smooth) / denom.add_scalar(smooth);
        (ce, dice.mean().neg().add_scalar(1.0))
    };
    ce.mul_scalar(config.ce_weight) + dice.mul_scalar(config.dice_weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        crate::BackendKind::default_kind().device()
    }

    fn scalar(t: Tensor<1>) -> f64 {
        t.into_data().try_to_vec::<f32>().expect("f32")[0] as f64
    }

    #[test]
    fn bce_matches_hand_computed_value_and_skips_ignored_pixels() {
        let d = device();
        // Pixels: logit 0 with target 1, logit 2 with target 0, logit 5 ignored.
        let logits =
            Tensor::<4>::from_data(TensorData::new(vec![0.0f32, 2.0, 5.0], [1, 1, 1, 3]), &d);
        let t = LossTargets::from_masks(&[1, 0, IGNORE_INDEX], 1, 1, 3, 1, &d).expect("targets");
        let cfg = LossConfig {
            dice_weight: 0.0,
            ..LossConfig::default()
        };
        let expected = ((2f64).ln() + (2.0 + (-2f64).exp().ln_1p())) / 2.0;
        let got = scalar(segmentation_loss(&cfg, logits, &t));
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn cross_entropy_matches_hand_computed_value() {
        let d = device();
        // One pixel, 3 classes, logits [1, 2, 3], target class 2; second pixel ignored.
        let logits = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 9.0, 2.0, 9.0, 3.0, 9.0], [1, 3, 1, 2]),
            &d,
        );
        let t = LossTargets::from_masks(&[2, IGNORE_INDEX], 1, 1, 2, 3, &d).expect("targets");
        let cfg = LossConfig {
            dice_weight: 0.0,
            ..LossConfig::default()
        };
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let got = scalar(segmentation_loss(&cfg, logits, &t));
        assert!((got - (lse - 3.0)).abs() < 1e-5, "{got}");
    }

    #[test]
    fn dice_is_near_zero_for_a_perfect_prediction() {
        let d = device();
        let logits = Tensor::<4>::from_data(
            TensorData::new(vec![20.0f32, -20.0, 20.0, -20.0], [1, 1, 2, 2]),
            &d,
        );
        let t = LossTargets::from_masks(&[1, 0, 1, 0], 1, 2, 2, 1, &d).expect("targets");
        assert!(
            LossTargets::from_masks(&[1, 0, 1], 1, 2, 2, 1, &d).is_err(),
            "short mask"
        );
        assert!(
            LossTargets::from_masks(&[1, 0, 1, 0], 1, 2, 2, 0, &d).is_err(),
            "no outputs"
        );
        let cfg = LossConfig {
            ce_weight: 0.0,
            ..LossConfig::default()
        };
        assert!(scalar(segmentation_loss(&cfg, logits, &t)) < 1e-4);
    }
}
