//! The learning-rate schedule over epochs (cosine, step, constant) after a linear warm-up.

use super::*;

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
