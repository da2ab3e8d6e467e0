//! Evaluation of a model on a split: mean loss and confusion-matrix metrics, without
//! augmentation; and the class ids a model's logits predict.

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

use crate::data::{BatchLoader, LoaderConfig, Preprocess, SegmentationDataset};
use crate::error::{Result, SegError, backend_call};
use crate::loss::{LossConfig, LossTargets, segmentation_loss};
use crate::metrics::{ConfusionMatrix, SegMetrics};
use crate::model::UNet;

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
}

impl Evaluation {
    /// Mean loss and metrics of `model` over the samples `indices`.
    pub fn run(&self, model: &UNet, indices: &[usize]) -> Result<(f64, SegMetrics)> {
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
            let (loss, ids) = backend_call("evaluation", || {
                let logits = model.forward(x);
                let loss = scalar(&segmentation_loss(&self.loss, logits.clone(), &targets))?;
                Ok((loss, predict_ids(logits)?))
            })?;
            loss_sum += loss * batch.len as f64;
            seen += batch.len;
            confusion.update(&batch.masks, &ids);
        }
        Ok((loss_sum / seen.max(1) as f64, confusion.summary()))
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
