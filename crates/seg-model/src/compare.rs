//! Two models on the same images: every image scored by the one rule `infer` uses
//! ([`predict_files`] with [`score_file`](crate::predict::score_file)), and a paired bootstrap
//! confidence interval of the mean per-image difference, so that "better" means more than the
//! noise of which images happen to be in the set.

use std::ops::ControlFlow;

use image::GrayImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SegError};
use crate::metrics::SegMetrics;
use crate::predict::{FileInput, FileOutcome, Predictor, Truth, predict_files};

/// One image of an evaluation set as a model predicted it.
#[derive(Debug, Clone)]
pub struct ScoredImage {
    /// The image's metrics against its ground truth.
    pub metrics: SegMetrics,
    /// The predicted class ids at the image's size.
    pub mask: GrayImage,
}

/// Predicts and scores every one of `inputs` (each must have a usable ground truth): the
/// scores in input order. An unreadable image or ground truth is an error naming it: an
/// evaluation set with holes would compare models on different images.
pub fn score_images(predictor: &Predictor, inputs: &[FileInput]) -> Result<Vec<ScoredImage>> {
    if let Some(missing) = inputs.iter().find(|i| i.truth.is_none()) {
        return Err(SegError::InvalidConfig(format!(
            "{} has no ground-truth mask: every image of an evaluation set needs one",
            missing.path.display()
        )));
    }
    let mut scored: Vec<ScoredImage> = Vec::with_capacity(inputs.len());
    let mut failure: Option<SegError> = None;
    let flow = predict_files(
        predictor,
        inputs,
        |p| Ok::<_, SegError>(p.prediction.mask.clone()),
        |outcome| {
            let result = match outcome {
                FileOutcome::Done {
                    written,
                    truth: Truth::Scored { metrics, .. },
                    ..
                } => Ok(ScoredImage {
                    metrics,
                    mask: written,
                }),
                FileOutcome::Done {
                    truth: Truth::Unusable(why),
                    ..
                } => Err(SegError::InvalidConfig(why)),
                FileOutcome::Done { index, .. } => Err(SegError::InvalidConfig(format!(
                    "{} was not scored",
                    inputs[index].path.display()
                ))),
                FileOutcome::Unreadable { error, .. } => Err(error),
            };
            match result {
                Ok(image) => {
                    scored.push(image);
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            }
        },
    )?;
    match (flow, failure) {
        (_, Some(e)) => Err(e),
        (ControlFlow::Break(()), None) => Err(SegError::InvalidConfig(
            "the evaluation stopped before its end".into(),
        )),
        (ControlFlow::Continue(()), None) => Ok(scored),
    }
}

/// A confidence interval of a mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The mean itself.
    pub mean: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Its confidence (0.95 for 95 %).
    pub confidence: f64,
}

/// The percentile bootstrap interval of the mean of `diffs` (per-image differences of two
/// models on the same images: resampling images keeps each image's pair together):
/// `resamples` draws with replacement from a generator seeded with `seed`, so equal inputs
/// give equal intervals.
pub fn paired_bootstrap(
    diffs: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Result<Interval> {
    if diffs.is_empty() {
        return Err(SegError::InvalidConfig(
            "no paired scores to compare".into(),
        ));
    }
    if resamples == 0 || !(confidence > 0.0 && confidence < 1.0) {
        return Err(SegError::invalid(
            "confidence",
            confidence,
            "a confidence in (0, 1) and at least one resample",
        ));
    }
    let n = diffs.len();
    let mean = diffs.iter().sum::<f64>() / n as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| diffs[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| {
        let i = ((resamples - 1) as f64 * q).round() as usize;
        means[i.min(resamples - 1)]
    };
    Ok(Interval {
        mean,
        low: at(tail),
        high: at(1.0 - tail),
        confidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_is_seeded_and_brackets_the_mean() {
        let diffs: Vec<f64> = (0..200)
            .map(|i| 0.01 + 0.05 * ((i % 7) as f64 - 3.0) / 3.0)
            .collect();
        let a = paired_bootstrap(&diffs, 10_000, 0.95, 7).expect("interval");
        let b = paired_bootstrap(&diffs, 10_000, 0.95, 7).expect("interval");
        assert_eq!(a, b, "the same seed gives the same interval");
        assert!(a.low < a.mean && a.mean < a.high, "{a:?}");
        let c = paired_bootstrap(&diffs, 10_000, 0.95, 8).expect("interval");
        assert_ne!(a, c);
        // Identical models: every difference 0, the interval is [0, 0].
        let same = paired_bootstrap(&[0.0; 50], 1000, 0.95, 0).expect("interval");
        assert_eq!((same.low, same.mean, same.high), (0.0, 0.0, 0.0));
        assert!(paired_bootstrap(&[], 10, 0.95, 0).is_err());
        assert!(paired_bootstrap(&[1.0], 10, 1.5, 0).is_err());
    }
}
