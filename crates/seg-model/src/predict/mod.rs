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
use serde::{Deserialize, Serialize};

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
    tta: Tta,
}

impl Predictor {
    /// A predictor for `checkpoint` (loaded on `device`), running `batch_size` images at a time.
    pub fn new(checkpoint: Checkpoint, device: Device, batch_size: usize) -> Self {
        Self {
            model: checkpoint.model,
            meta: checkpoint.meta,
            device,
            batch_size: batch_size.max(1),
            tta: Tta::Off,
        }
    }

    /// With test-time augmentation `tta`: each batch also runs through the mode's other
    /// symmetric views and the probability maps (each mapped back) are averaged; `views()`
    /// times the compute.
    pub fn with_tta(mut self, tta: Tta) -> Self {
        self.tta = tta;
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
            let logits = self.model.forward(x.clone());
            tta_probabilities(&self.model, x, logits, self.tta)?
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

/// Test-time augmentation: which symmetric views of each image are predicted; the class
/// probabilities of every view, mapped back, are averaged into the prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tta {
    /// The image alone (1 forward pass).
    #[default]
    Off,
    /// The image and its left-right mirror (2 passes).
    Flip,
    /// The image, mirrored left-right, up-down, and both (4 passes).
    Flips,
    /// The 8 symmetries of a square: the 4 above, each also transposed (8 passes; square
    /// model inputs only).
    Dihedral,
}

impl Tta {
    /// The mode with `views` forward passes per image: 1, 2, 4 or 8.
    pub fn from_views(views: usize) -> Result<Self> {
        match views {
            1 => Ok(Self::Off),
            2 => Ok(Self::Flip),
            4 => Ok(Self::Flips),
            8 => Ok(Self::Dihedral),
            _ => Err(SegError::invalid(
                "tta_views",
                views,
                "must be 1 (off), 2 (left-right mirror), 4 (both mirrors) or 8 (mirrors and transposes)",
            )),
        }
    }

    /// Forward passes per image.
    pub const fn views(self) -> usize {
        match self {
            Self::Off => 1,
            Self::Flip => 2,
            Self::Flips => 4,
            Self::Dihedral => 8,
        }
    }

    /// Whether any view besides the image itself is predicted.
    pub const fn is_on(self) -> bool {
        !matches!(self, Self::Off)
    }

    /// The views, the identity first.
    fn symmetries(self) -> &'static [Symmetry] {
        &SYMMETRIES[..self.views()]
    }
}

/// One symmetry of the square: a transpose (when set) followed by mirrors.
#[derive(Debug, Clone, Copy)]
struct Symmetry {
    transpose: bool,
    mirror_x: bool,
    mirror_y: bool,
}

/// The dihedral group of the square, ordered so that each [`Tta`] mode is a prefix.
const SYMMETRIES: [Symmetry; 8] = {
    const fn s(transpose: bool, mirror_x: bool, mirror_y: bool) -> Symmetry {
        Symmetry {
            transpose,
            mirror_x,
            mirror_y,
        }
    }
    [
        s(false, false, false),
        s(false, true, false),
        s(false, false, true),
        s(false, true, true),
        s(true, false, false),
        s(true, true, false),
        s(true, false, true),
        s(true, true, true),
    ]
};

impl Symmetry {
    fn mirror(self, x: Tensor<4>) -> Tensor<4> {
        match (self.mirror_x, self.mirror_y) {
            (true, true) => x.flip([2, 3]),
            (true, false) => x.flip([3]),
            (false, true) => x.flip([2]),
            (false, false) => x,
        }
    }

    fn transposed(self, x: Tensor<4>) -> Tensor<4> {
        if self.transpose { x.swap_dims(2, 3) } else { x }
    }

    /// The view of `x` `[batch, channels, h, w]`.
    fn apply(self, x: Tensor<4>) -> Tensor<4> {
        self.mirror(self.transposed(x))
    }

    /// A prediction for the view mapped back onto the image.
    fn undo(self, y: Tensor<4>) -> Tensor<4> {
        self.transposed(self.mirror(y))
    }
}

/// Mean class probabilities `[batch, classes, h, w]` over the views of `tta` of inputs `x`,
/// given the model's `logits` for `x` itself: the rule of `infer --tta` and of `val_tta`.
pub(crate) fn tta_probabilities(
    model: &UNet,
    x: Tensor<4>,
    logits: Tensor<4>,
    tta: Tta,
) -> Result<Tensor<4>> {
    let [_, _, h, w] = x.dims();
    if tta == Tta::Dihedral && h != w {
        return Err(SegError::InvalidConfig(format!(
            "test-time augmentation with 8 views transposes the input, which needs a square model input (this model's is {w}x{h}); use 2 or 4 views"
        )));
    }
    let views = tta.symmetries()[1..]
        .iter()
        .map(|view| view.undo(model.forward(view.apply(x.clone()))));
    Ok(mean_probabilities(logits, views))
}

/// The mean of the per-class probabilities ([`class_probabilities`]) of predictions given as
/// logits, `first` and the `rest`: probabilities are averaged, not logits or votes.
pub(crate) fn mean_probabilities(
    first: Tensor<4>,
    rest: impl IntoIterator<Item = Tensor<4>>,
) -> Tensor<4> {
    let (sum, n) = rest
        .into_iter()
        .fold((class_probabilities(first), 1usize), |(sum, n), logits| {
            (sum.add(class_probabilities(logits)), n + 1)
        });
    if n > 1 { sum.div_scalar(n as f32) } else { sum }
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

    fn predictor(tta: Tta) -> Predictor {
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
        Predictor::new(Checkpoint { model, meta }, device, 2).with_tta(tta)
    }

    /// `planes` 16x16 planes of `buf` with pixel (x, y) read from `at(x, y)`.
    fn remap(buf: &[f32], at: impl Fn(usize, usize) -> (usize, usize)) -> Vec<f32> {
        buf.chunks(256)
            .flat_map(|plane| {
                (0..256).map(|i| {
                    let (x, y) = at(i % 16, i / 16);
                    plane[y * 16 + x]
                })
            })
            .collect()
    }

    /// Each mode's probabilities are the mean of the plain model's on the mode's views, each
    /// mapped back by hand (mirrors and transposes written out on the buffers, not tensors).
    #[test]
    fn tta_averages_the_views_mapped_back() {
        let pixels: Vec<f32> = (0..3 * 16 * 16).map(|i| (i % 23) as f32 / 23.0).collect();
        // One model for every mode: a second seeded init could differ when tests run in
        // parallel on a backend whose generator is global (libtorch's).
        let mut model = predictor(Tta::Off);
        let plain = &model;
        // (view of the input, map of a prediction back) per symmetry, in SYMMETRIES' order.
        type Map = fn(usize, usize) -> (usize, usize);
        let maps: [(Map, Map); 8] = [
            (|x, y| (x, y), |x, y| (x, y)),
            (|x, y| (15 - x, y), |x, y| (15 - x, y)),
            (|x, y| (x, 15 - y), |x, y| (x, 15 - y)),
            (|x, y| (15 - x, 15 - y), |x, y| (15 - x, 15 - y)),
            (|x, y| (y, x), |x, y| (y, x)),
            (|x, y| (y, 15 - x), |x, y| (15 - y, x)),
            (|x, y| (15 - y, x), |x, y| (y, 15 - x)),
            (|x, y| (15 - y, 15 - x), |x, y| (15 - y, 15 - x)),
        ];
        let views: Vec<Vec<f32>> = maps
            .iter()
            .map(|(view, back)| {
                let p = plain.probabilities(remap(&pixels, view), 1).expect("probs");
                remap(&p, back)
            })
            .collect();
        for (tta, n) in [
            (Tta::Off, 1),
            (Tta::Flip, 2),
            (Tta::Flips, 4),
            (Tta::Dihedral, 8),
        ] {
            assert_eq!(tta.views(), n);
            assert_eq!(Tta::from_views(n).expect("views"), tta);
            model = model.with_tta(tta);
            let got = model.probabilities(pixels.clone(), 1).expect("probs");
            for (i, g) in got.iter().enumerate() {
                let want = views[..n].iter().map(|v| v[i]).sum::<f32>() / n as f32;
                assert!((g - want).abs() < 1e-5, "{tta:?} at {i}: {g} vs {want}");
            }
        }
        assert!(Tta::from_views(3).is_err());
    }
}
