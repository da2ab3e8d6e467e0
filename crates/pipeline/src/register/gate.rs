//! The promotion decision: the challenger's per-image scores against the champion's on the
//! same images, the paired bootstrap interval of the mean difference, and the rule of
//! `[register.gate]`: promoted only when the interval's lower bound is above the required gain
//! (so a challenger equal to the champion, interval [0, 0], is refused).

use seg_model::compare::{Interval, ScoredImage, paired_bootstrap};
use serde::Serialize;

use crate::config::{GateMetric, GateSection};
use crate::error::Result;

/// What the gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The alias moves to the challenger.
    Promoted,
    /// The alias stays: the challenger is not shown to be better.
    Refused,
    /// Refused, but moved anyway with `--force`.
    Forced,
}

impl Decision {
    /// The decision for a challenger that is (or is not) `better`, with or without `--force`.
    pub fn of(better: bool, force: bool) -> Self {
        match (better, force) {
            (true, _) => Self::Promoted,
            (false, true) => Self::Forced,
            (false, false) => Self::Refused,
        }
    }

    /// Its name in tags and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Promoted => "promoted",
            Self::Refused => "refused",
            Self::Forced => "forced",
        }
    }
}

/// The comparison of the challenger with the champion on one evaluation set.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The metric compared.
    pub metric: GateMetric,
    /// Images scored.
    pub images: usize,
    /// The challenger's mean.
    pub challenger_mean: f64,
    /// The champion's mean, when there is a champion.
    pub champion_mean: Option<f64>,
    /// Mean per-image gain (challenger - champion) with its interval.
    pub difference: Option<Interval>,
    /// The gain the lower bound must exceed.
    pub required: f64,
    /// Whether the rule holds (no champion: true).
    pub better: bool,
}

/// Applies `gate` to the per-image scores (the same images, in the same order).
pub fn judge(
    gate: &GateSection,
    challenger: &[ScoredImage],
    champion: Option<&[ScoredImage]>,
) -> Result<Verdict> {
    let values =
        |s: &[ScoredImage]| -> Vec<f64> { s.iter().map(|i| gate.metric.of(&i.metrics)).collect() };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let ours = values(challenger);
    let Some(theirs) = champion.map(values) else {
        return Ok(Verdict {
            metric: gate.metric,
            images: ours.len(),
            challenger_mean: mean(&ours),
            champion_mean: None,
            difference: None,
            required: 0.0,
            better: true,
        });
    };
    let diffs: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a - b).collect();
    let interval = paired_bootstrap(&diffs, gate.resamples, gate.confidence, gate.seed)?;
    let champion_mean = mean(&theirs);
    let required = gate
        .min_absolute_change
        .max(gate.min_relative_change * champion_mean.abs());
    Ok(Verdict {
        metric: gate.metric,
        images: ours.len(),
        challenger_mean: mean(&ours),
        champion_mean: Some(champion_mean),
        difference: Some(interval),
        required,
        better: interval.low > required,
    })
}

impl Verdict {
    /// The one line that says the decision with its numbers, e.g. `challenger v7 +0.0120 dice
    /// [+0.0040, +0.0200] over champion v5 on eval@a1b2c3 (200 images): promoted`.
    pub fn line(
        &self,
        challenger: &str,
        champion: Option<&str>,
        set: &str,
        decision: Decision,
    ) -> String {
        let (Some(d), Some(champion)) = (self.difference, champion) else {
            return format!(
                "challenger v{challenger} {} {:.4} on {set} ({} images): {} (the first version: judged on the absolute criteria alone)",
                self.metric.name(),
                self.challenger_mean,
                self.images,
                decision.name()
            );
        };
        let why = match decision {
            Decision::Promoted => String::new(),
            _ => format!(
                " (the interval's lower bound {:+.4} is not above the required {:+.4}{})",
                d.low,
                self.required,
                if decision == Decision::Forced {
                    "; moved with --force"
                } else {
                    ""
                }
            ),
        };
        format!(
            "challenger v{challenger} {:+.4} {} [{:+.4}, {:+.4}] over champion v{champion} on {set} ({} images): {}{why}",
            d.mean,
            self.metric.name(),
            d.low,
            d.high,
            self.images,
            decision.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seg_model::ConfusionMatrix;

    fn scored(dice_like: &[(u64, u64)]) -> Vec<ScoredImage> {
        // (found, missed) foreground pixels out of 10: Dice 2f / (2f + m).
        dice_like
            .iter()
            .map(|&(found, missed)| {
                let mut m = ConfusionMatrix::new(2);
                let truth: Vec<u8> = vec![1; (found + missed) as usize];
                let pred: Vec<u8> = (0..found + missed).map(|i| u8::from(i < found)).collect();
                m.update(&truth, &pred);
                ScoredImage {
                    metrics: m.summary(),
                    mask: image::GrayImage::new(1, 1),
                }
            })
            .collect()
    }

    fn gate() -> GateSection {
        GateSection {
            metric: GateMetric::Dice,
            min_absolute_change: 0.0,
            min_relative_change: 0.0,
            confidence: 0.95,
            resamples: 2000,
            seed: 0,
        }
    }

    #[test]
    fn better_is_promoted_equal_and_worse_are_not() {
        let champion = scored(&[(5, 5); 40]);
        let better = scored(&[(9, 1); 40]);
        let v = judge(&gate(), &better, Some(&champion)).expect("verdict");
        assert!(
            v.better && v.difference.expect("interval").low > 0.0,
            "{v:?}"
        );
        let same = judge(&gate(), &champion, Some(&champion)).expect("verdict");
        assert!(
            !same.better,
            "an interval [0, 0] does not clear 0: {same:?}"
        );
        let worse = judge(&gate(), &champion, Some(&better)).expect("verdict");
        assert!(!worse.better);
        let strict = GateSection {
            min_relative_change: 2.0,
            ..gate()
        };
        assert!(
            !judge(&strict, &better, Some(&champion))
                .expect("verdict")
                .better
        );
        let first = judge(&gate(), &better, None).expect("verdict");
        assert!(first.better && first.champion_mean.is_none());
        let line = v.line("7", Some("5"), "eval@abc", Decision::Promoted);
        assert!(
            line.starts_with("challenger v7 +0.") && line.ends_with("(40 images): promoted"),
            "{line}"
        );
    }
}
