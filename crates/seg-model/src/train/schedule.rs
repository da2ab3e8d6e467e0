//! The learning-rate schedule over epochs (cosine, step, constant) after a linear warm-up.

use super::*;

/// Learning-rate schedule over epochs (`[train.schedule]`, tagged by `kind`; numbers left
/// out take their defaults, numbers of another kind are refused).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// Cosine decay from the base rate to `base * min_factor` at the last epoch.
    Cosine {
        /// Final rate as a fraction of the base rate (default 0.05).
        #[serde(default = "default_min_factor")]
        min_factor: f64,
    },
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays (default 10).
        #[serde(default = "default_every")]
        every: usize,
        /// Decay factor (default 0.5).
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
}

fn default_min_factor() -> f64 {
    0.05
}

fn default_every() -> usize {
    10
}

fn default_gamma() -> f64 {
    0.5
}

impl Default for LrSchedule {
    fn default() -> Self {
        Self::Cosine {
            min_factor: default_min_factor(),
        }
    }
}

impl LrSchedule {
    /// Checks the numbers, naming the first one that is wrong (`schedule.min_factor`, ...).
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Cosine { min_factor } if !(0.0..=1.0).contains(&min_factor) => Err(
                SegError::invalid("schedule.min_factor", min_factor, "must be in 0..=1"),
            ),
            Self::Step { every: 0, .. } => Err(SegError::invalid(
                "schedule.every",
                0,
                "must be >= 1 (epochs between decays)",
            )),
            Self::Step { gamma, .. } if !(gamma > 0.0 && gamma <= 1.0) => Err(SegError::invalid(
                "schedule.gamma",
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
