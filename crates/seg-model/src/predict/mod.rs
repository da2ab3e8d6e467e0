//! Batched inference: images of any size -> model at the training size -> probabilities ->
//! bilinear resize back to each image's own size -> class mask (threshold or argmax).
//!
//! - [`files`]: the loop over image files (decode, predict, score, hand over), as `infer` runs it.
//! - [`score`]: a predicted mask against its ground-truth file.

pub mod files;
pub mod score;

pub use files::{FileInput, FileOutcome, Predicted, predict_files};
pub use score::{Truth, score_file};

use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageBuffer, Luma, Rgb, RgbImage};
use rayon::prelude::*;

use crate::checkpoint::{Checkpoint, CheckpointMeta};
use crate::data::{ClassInfo, IGNORE_INDEX};
use crate::error::{Result, SegError, backend_call};
use crate::model::UNet;

/// The prediction for one image, at the image's own size.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Class id per pixel.
    pub mask: GrayImage,
    /// Mean over pixels of the winning class's probability.
    pub mean_confidence: f32,
    /// Pixels per class.
    pub class_pixels: Vec<u64>,
}

/// Runs a loaded checkpoint on batches of images.
#[derive(Debug)]
pub struct Predictor {
    model: UNet,
    meta: CheckpointMeta,
    device: Device,
    batch_size: usize,
    flip_tta: bool,
}

impl Predictor {
    /// A predictor for `checkpoint` (loaded on `device`), running `batch_size` images at a time.
    pub fn new(checkpoint: Checkpoint, device: Device, batch_size: usize) -> Self {
        crate::tune_allocator();
        Self {
            model: checkpoint.model,
            meta: checkpoint.meta,
            device,
            batch_size: batch_size.max(1),
            flip_tta: false,
        }
    }

    /// With `on`, test-time augmentation: each batch also runs mirrored left-right and the
    /// two probability maps (the mirrored one mirrored back) are averaged. Twice the compute.
    pub fn with_flip_tta(mut self, on: bool) -> Self {
        self.flip_tta = on;
        self
    }

    /// The checkpoint back (to save it after predicting with it).
    pub fn into_checkpoint(self) -> Checkpoint {
        Checkpoint {
            model: self.model,
            meta: self.meta,
        }
    }

    /// The checkpoint's metadata.
    pub fn meta(&self) -> &CheckpointMeta {
        &self.meta
    }

    /// Images per forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Class probabilities `[n, classes, h, w]` at the training size for preprocessed inputs
    /// (`[n, channels, h, w]`); binary models give two channels (background, foreground).
    pub fn probabilities(&self, inputs: Vec<f32>, n: usize) -> Result<Vec<f32>> {
        let pre = &self.meta.preprocess;
        if inputs.len() != n * pre.channels * pre.height * pre.width {
            return Err(SegError::buffer(
                "model input",
                inputs.len(),
                pre.width as u32,
                pre.height as u32,
                n * pre.channels,
            ));
        }
        backend_call("prediction", || {
            let x = Tensor::<4>::from_data(
                TensorData::new(inputs, [n, pre.channels, pre.height, pre.width]),
                &self.device,
            );
            let mut probs = class_probabilities(self.model.forward(x.clone()));
            if self.flip_tta {
                let mirrored = class_probabilities(self.model.forward(x.flip([3]))).flip([3]);
                probs = probs.add(mirrored).div_scalar(2.0);
            }
            probs
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| SegError::Backend(format!("{e:?}")))
        })
    }

    /// Predicts masks for `images`, each returned at its own size.
    pub fn predict(&self, images: &[DynamicImage]) -> Result<Vec<Prediction>> {
        let pre = &self.meta.preprocess;
        let plane = pre.height * pre.width;
        let classes = self.meta.model.task_classes();
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.batch_size) {
            let inputs: Vec<f32> = chunk
                .par_iter()
                .map(|img| pre.image_to_chw(img))
                .flatten_iter()
                .collect();
            let probs = self.probabilities(inputs, chunk.len())?;
            let preds: Vec<Prediction> = chunk
                .par_iter()
                .enumerate()
                .map(|(i, img)| {
                    let p = &probs[i * classes * plane..(i + 1) * classes * plane];
                    self.decide(p, img.width(), img.height())
                })
                .collect::<Result<_>>()?;
            out.extend(preds);
        }
        Ok(out)
    }

    /// Resizes the class probabilities to `width` x `height` and picks a class per pixel.
    fn decide(&self, probs: &[f32], width: u32, height: u32) -> Result<Prediction> {
        let pre = &self.meta.preprocess;
        let classes = self.meta.model.task_classes();
        let plane = pre.height * pre.width;
        let (pw, ph) = (pre.width as u32, pre.height as u32);
        let resized: Vec<Vec<f32>> = (0..classes)
            .map(|c| {
                let channel = probs[c * plane..(c + 1) * plane].to_vec();
                let img: ImageBuffer<Luma<f32>, Vec<f32>> = ImageBuffer::from_raw(pw, ph, channel)
                    .ok_or_else(|| SegError::buffer("probabilities", plane, pw, ph, 1))?;
                Ok(if (width, height) == (pw, ph) {
                    img.into_raw()
                } else {
                    image::imageops::resize(&img, width, height, FilterType::Triangle).into_raw()
                })
            })
            .collect::<Result<_>>()?;
        let n = (width * height) as usize;
        let mut mask = vec![0u8; n];
        let mut class_pixels = vec![0u64; classes];
        let mut confidence = 0f64;
        for (i, m) in mask.iter_mut().enumerate() {
            let (best, p) = if classes == 2 && self.meta.model.num_classes == 1 {
                let fg = resized[1][i];
                if fg >= self.meta.threshold {
                    (1, fg)
                } else {
                    (0, 1.0 - fg)
                }
            } else {
                (0..classes).fold((0, f32::MIN), |(bc, bp), c| {
                    if resized[c][i] > bp {
                        (c, resized[c][i])
                    } else {
                        (bc, bp)
                    }
                })
            };
            *m = best as u8;
            class_pixels[best] += 1;
            confidence += f64::from(p);
        }
        Ok(Prediction {
            mask: GrayImage::from_raw(width, height, mask)
                .ok_or_else(|| SegError::buffer("mask", n, width, height, 1))?,
            mean_confidence: (confidence / n.max(1) as f64) as f32,
            class_pixels,
        })
    }
}

/// Paints a class mask with the classes' colours (ignored pixels grey).
pub fn colorize(mask: &GrayImage, classes: &[ClassInfo]) -> RgbImage {
    RgbImage::from_fn(mask.width(), mask.height(), |x, y| {
        let id = mask.get_pixel(x, y).0[0];
        Rgb(if id == IGNORE_INDEX {
            [128, 128, 128]
        } else {
            classes
                .get(usize::from(id))
                .map_or([255, 255, 255], |c| c.color)
        })
    })
}

/// Blends the coloured mask over the image (`alpha` = mask opacity; background class 0 is left
/// unpainted so the image shows through).
pub fn overlay(
    image: &DynamicImage,
    mask: &GrayImage,
    classes: &[ClassInfo],
    alpha: f32,
) -> RgbImage {
    let mut rgb = image.to_rgb8();
    if rgb.dimensions() != mask.dimensions() {
        rgb = image::imageops::resize(&rgb, mask.width(), mask.height(), FilterType::Triangle);
    }
    let alpha = alpha.clamp(0.0, 1.0);
    for (x, y, px) in rgb.enumerate_pixels_mut() {
        let id = mask.get_pixel(x, y).0[0];
        if id == 0 || id == IGNORE_INDEX {
            continue;
        }
        let color = classes
            .get(usize::from(id))
            .map_or([255, 255, 255], |c| c.color);
        for (channel, c) in px.0.iter_mut().zip(color) {
            *channel = (f32::from(*channel) * (1.0 - alpha) + f32::from(c) * alpha) as u8;
        }
    }
    rgb
}

/// Per-class probabilities `[batch, classes, h, w]` from logits: `[1 - p, p]` of the sigmoid
/// for a binary model's single channel, the softmax otherwise.
pub(crate) fn class_probabilities(logits: Tensor<4>) -> Tensor<4> {
    if logits.dims()[1] == 1 {
        let p = sigmoid(logits);
        Tensor::cat(vec![p.clone().neg().add_scalar(1.0), p], 1)
    } else {
        softmax(logits, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{MaskEncoding, Preprocess};
    use crate::model::UNetConfig;
    use burn::module::Module;

    fn predictor(tta: bool) -> Predictor {
        let device = crate::BackendKind::default_kind().device();
        device.seed(7);
        let config = UNetConfig::new()
            .with_num_classes(1)
            .with_base_channels(4)
            .with_depth(2);
        let model = config.init(&device).expect("model").valid();
        let meta = CheckpointMeta::new(
            config,
            MaskEncoding::default(),
            Preprocess::unnormalized(16, 16, 3),
            std::collections::BTreeMap::new(),
            1,
        );
        Predictor::new(Checkpoint { model, meta }, device, 2).with_flip_tta(tta)
    }

    #[test]
    fn flip_tta_averages_the_image_and_its_mirror() {
        let pixels: Vec<f32> = (0..3 * 16 * 16).map(|i| (i % 23) as f32 / 23.0).collect();
        let mirror: Vec<f32> = pixels
            .chunks(16)
            .flat_map(|row| row.iter().rev().copied().collect::<Vec<_>>())
            .collect();
        let plain = predictor(false);
        let a = plain.probabilities(pixels.clone(), 1).expect("probs");
        let b = plain.probabilities(mirror, 1).expect("probs");
        let b_back: Vec<f32> = b
            .chunks(16)
            .flat_map(|row| row.iter().rev().copied().collect::<Vec<_>>())
            .collect();
        let tta = predictor(true).probabilities(pixels, 1).expect("probs");
        for ((t, x), y) in tta.iter().zip(&a).zip(&b_back) {
            assert!((t - (x + y) / 2.0).abs() < 1e-5, "{t} vs ({x} + {y}) / 2");
        }
    }
}
