//! Evaluation of a model on a split: mean loss and confusion-matrix metrics, without
//! augmentation (and, on request, those of test-time augmentation beside them); and the
//! class ids a model's logits predict.

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

use crate::data::{BatchLoader, LoaderConfig, Preprocess, SegmentationDataset};
use crate::error::{Result, SegError, backend_call};
use crate::loss::{LossConfig, LossTargets, segmentation_loss};
use crate::metrics::{ConfusionMatrix, ImageTally, NegativeScores, SegMetrics};
use crate::model::UNet;
use crate::predict::{Tta, class_probabilities, tta_probabilities};
use crate::threshold::ThresholdSweep;

/// What evaluating a model on some samples of a dataset needs.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The dataset.
    pub dataset: Arc<SegmentationDataset>,
    /// Preprocessing (the model's training size and normalisation).
    pub preprocess: Arc<Preprocess>,
    /// Batching (shuffle and augmentation are ignored).
    pub loader: LoaderConfig,
    /// Loss weights.
    pub loss: LossConfig,
    /// The model's output channels (1 = binary sigmoid).
    pub num_classes: usize,
    /// Device to evaluate on.
    pub device: Device,
    /// Also score test-time augmentation with these views (as `infer --tta`: the
    /// probabilities of each view, mapped back, averaged): `views() - 1` more forward passes.
    pub tta: Tta,
}

/// What [`Evaluation::run`] measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Mean loss of the plain predictions.
    pub loss: f64,
    /// Metrics of the plain predictions.
    pub metrics: SegMetrics,
    /// Metrics of the test-time-augmented predictions ([`Evaluation::tta`]).
    pub tta: Option<SegMetrics>,
    /// False alarms and the score over the images with foreground, when some images have
    /// none in their truth (plain predictions).
    pub negatives: Option<NegativeScores>,
    /// The same for the test-time-augmented predictions.
    pub tta_negatives: Option<NegativeScores>,
}

/// What one evaluated batch gives.
struct BatchOut {
    loss: f64,
    ids: Vec<u8>,
    tta_ids: Option<Vec<u8>>,
    foreground: Option<Vec<f32>>,
}

impl Evaluation {
    /// Mean loss and metrics of `model` over the samples `indices`.
    pub fn run(&self, model: &UNet, indices: &[usize]) -> Result<Scores> {
        Ok(self.run_swept(model, indices, false)?.0)
    }

    /// [`Self::run`], and with `sweep` for a binary model the histogram of the foreground
    /// probabilities it predicts with [`Self::tta`] (plain when off), to choose a threshold.
    pub fn run_swept(
        &self,
        model: &UNet,
        indices: &[usize],
        sweep: bool,
    ) -> Result<(Scores, Option<ThresholdSweep>)> {
        let pre = &self.preprocess;
        let (h, w, c) = (pre.height, pre.width, pre.channels);
        let loader = LoaderConfig {
            shuffle: false,
            augment: None,
            ..self.loader.clone()
        };
        let task_classes = if self.num_classes == 1 {
            2
        } else {
            self.num_classes
        };
        let mut confusion = ConfusionMatrix::new(task_classes);
        let mut tta_confusion = ConfusionMatrix::new(task_classes);
        let (mut tally, mut tta_tally) =
            (ImageTally::new(task_classes), ImageTally::new(task_classes));
        let mut swept = (sweep && self.num_classes == 1).then(ThresholdSweep::default);
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for batch in BatchLoader::start(self.dataset.clone(), indices, pre.clone(), &loader, 0) {
            let batch = batch?;
            let x = Tensor::<4>::from_data(
                TensorData::new(batch.images, [batch.len, c, h, w]),
                &self.device,
            );
            let targets = LossTargets::from_masks(
                &batch.masks,
                batch.len,
                h,
                w,
                self.num_classes,
                &self.device,
            )?;
            let BatchOut {
                loss,
                ids,
                tta_ids,
                foreground,
            } = self.forward(model, x, &targets, swept.is_some())?;
            if let (Some(swept), Some(foreground)) = (swept.as_mut(), foreground) {
                swept.update(&batch.masks, &foreground);
            }
            loss_sum += loss * batch.len as f64;
            seen += batch.len;
            confusion.update(&batch.masks, &ids);
            tally.update(&batch.masks, &ids, h * w);
            if let Some(ids) = tta_ids {
                tta_confusion.update(&batch.masks, &ids);
                tta_tally.update(&batch.masks, &ids, h * w);
            }
        }
        Ok((
            Scores {
                loss: loss_sum / seen.max(1) as f64,
                metrics: confusion.summary(),
                tta: self.tta.is_on().then(|| tta_confusion.summary()),
                negatives: tally.negatives(),
                tta_negatives: tta_tally.negatives(),
            },
            swept,
        ))
    }

    /// Loss and class ids of one batch (with test-time augmentation when on), and with
    /// `foreground` the foreground probability of every pixel as predicted.
    fn forward(
        &self,
        model: &UNet,
        x: Tensor<4>,
        targets: &LossTargets,
        foreground: bool,
    ) -> Result<BatchOut> {
        backend_call("evaluation", || {
            let logits = model.forward(x.clone());
            let loss = scalar(&segmentation_loss(&self.loss, logits.clone(), targets))?;
            let tta = if self.tta.is_on() {
                Some(tta_probabilities(model, x, logits.clone(), self.tta)?)
            } else {
                None
            };
            let foreground = if foreground {
                let probabilities = match &tta {
                    Some(p) => p.clone(),
                    None => class_probabilities(logits.clone()),
                };
                Some(
                    probabilities
                        .narrow(1, 1, 1)
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec::<f32>()
                        .map_err(|e| SegError::Backend(format!("{e:?}")))?,
                )
            } else {
                None
            };
            Ok(BatchOut {
                loss,
                ids: predict_ids(logits)?,
                tta_ids: tta.map(predict_ids).transpose()?,
                foreground,
            })
        })
    }
}

/// The value of a one-element tensor.
pub(crate) fn scalar(t: &Tensor<1>) -> Result<f64> {
    let v = t
        .to_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| SegError::Backend(format!("{e:?}")))?;
    Ok(f64::from(v.first().copied().unwrap_or(f32::NAN)))
}

/// Class ids predicted from logits `[batch, outputs, h, w]`: threshold 0 on the logit for a
/// binary model (probability 0.5), argmax otherwise. Returns `[batch, h, w]` ids.
pub fn predict_ids(logits: Tensor<4>) -> Result<Vec<u8>> {
    let [b, outputs, h, w] = logits.dims();
    if outputs == 1 {
        let v = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| SegError::Backend(format!("{e:?}")))?;
        Ok(v.into_iter().map(|x| u8::from(x > 0.0)).collect())
    } else {
        let ids = logits.argmax(1).reshape([b * h * w]);
        let v = ids
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| SegError::Backend(format!("{e:?}")))?;
        Ok(v.into_iter().map(|x| x as u8).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::mean_probabilities;

    fn logits(values: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
        let device = crate::BackendKind::default_kind().device();
        Tensor::from_data(TensorData::new(values, shape), &device)
    }

    /// The TTA rule averages probabilities (not logits, not votes): a confident mirror
    /// outvotes a hesitant plain prediction and the other way round.
    #[test]
    fn tta_ids_threshold_the_mean_probability() {
        let flip_tta_ids = |a, b| predict_ids(mean_probabilities(a, [b]));
        // Plain logits 0.2 / -0.2 / 3 / -3 against mirrored -2 / 2 / -1 / 1.
        let plain = logits(vec![0.2, -0.2, 3.0, -3.0], [1, 1, 1, 4]);
        let mirrored = logits(vec![-2.0, 2.0, -1.0, 1.0], [1, 1, 1, 4]);
        assert_eq!(predict_ids(plain.clone()).expect("ids"), vec![1, 0, 1, 0]);
        assert_eq!(
            flip_tta_ids(plain, mirrored).expect("ids"),
            vec![0, 1, 1, 0]
        );
        // Three classes, two pixels: the mean softmax's argmax.
        let plain = logits(vec![1.0, 0.0, 0.0, 0.9, 0.0, 0.0], [1, 3, 1, 2]);
        let mirrored = logits(vec![0.0, 0.0, 3.0, 0.0, 0.0, 0.0], [1, 3, 1, 2]);
        assert_eq!(predict_ids(plain.clone()).expect("ids"), vec![0, 1]);
        assert_eq!(flip_tta_ids(plain, mirrored).expect("ids"), vec![1, 1]);
    }
}
