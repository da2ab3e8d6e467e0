//! Turning a decoded image into the model's input: resize, channel conversion, normalisation.
//! The same [`Preprocess`] is stored in every checkpoint so inference matches training exactly.

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageBuffer};
use serde::{Deserialize, Serialize};

use super::dataset::SegmentationDataset;
use crate::error::{Result, SegError};

/// Input geometry and per-channel normalisation of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Training height in pixels.
    pub height: usize,
    /// Training width in pixels.
    pub width: usize,
    /// 1 (greyscale) or 3 (RGB).
    pub channels: usize,
    /// Per-channel mean of pixel values scaled to [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of pixel values scaled to [0, 1].
    pub std: Vec<f32>,
}

impl Preprocess {
    /// Identity normalisation (mean 0, std 1) at the given size.
    pub fn unnormalized(height: usize, width: usize, channels: usize) -> Self {
        Self {
            height,
            width,
            channels,
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.channels, 1 | 3)
            || self.mean.len() != self.channels
            || self.std.len() != self.channels
        {
            return Err(SegError::InvalidConfig(format!(
                "preprocess has {} channels with {} means and {} stds",
                self.channels,
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0)
            || self.height == 0
            || self.width == 0
        {
            return Err(SegError::InvalidConfig(format!(
                "preprocess std {:?} must be positive and size {}x{} non-zero",
                self.std, self.height, self.width
            )));
        }
        Ok(())
    }

    /// Estimates mean and std from up to `max_images` images of `indices` (evenly spaced), at
    /// the training size. Deterministic for a given dataset and index list.
    pub fn estimate(
        dataset: &SegmentationDataset,
        indices: &[usize],
        height: usize,
        width: usize,
        channels: usize,
        max_images: usize,
    ) -> Result<Self> {
        use rayon::prelude::*;
        if indices.is_empty() {
            return Err(SegError::EmptyDataset {
                dir: dataset.root().to_path_buf(),
            });
        }
        let step = indices.len().div_ceil(max_images.max(1));
        let picked: Vec<usize> = indices.iter().step_by(step).copied().collect();
        let plain = Self::unnormalized(height, width, channels);
        let sums: Vec<(Vec<f64>, Vec<f64>, u64)> = picked
            .par_iter()
            .map(|&i| {
                let sample = dataset.load(i)?;
                let chw = plain.image_to_chw(&sample.image);
                let plane = height * width;
                let mut s = vec![0.0; channels];
                let mut sq = vec![0.0; channels];
                for c in 0..channels {
                    for &v in &chw[c * plane..(c + 1) * plane] {
                        s[c] += f64::from(v);
                        sq[c] += f64::from(v) * f64::from(v);
                    }
                }
                Ok((s, sq, plane as u64))
            })
            .collect::<Result<_>>()?;
        let mut s = vec![0.0; channels];
        let mut sq = vec![0.0; channels];
        let mut n = 0u64;
        for (a, b, k) in sums {
            for c in 0..channels {
                s[c] += a[c];
                sq[c] += b[c];
            }
            n += k;
        }
        let n = n as f64;
        let mean: Vec<f32> = s.iter().map(|v| (v / n) as f32).collect();
        let std: Vec<f32> = (0..channels)
            .map(|c| ((sq[c] / n - (s[c] / n).powi(2)).max(1e-6).sqrt() as f32).max(1e-3))
            .collect();
        Ok(Self {
            height,
            width,
            channels,
            mean,
            std,
        })
    }

    /// Resizes (bilinear) to the training size and converts to this preprocess's channels:
    /// interleaved u8 pixels, `height * width * channels`.
    pub fn resize_image(&self, image: &DynamicImage) -> Vec<u8> {
        resize_pixels(image, self.channels, self.width as u32, self.height as u32)
    }

    /// Converts interleaved u8 pixels at the training size into normalised CHW floats.
    pub fn normalize_hwc(&self, pixels: &[u8], brightness: f32, contrast: f32) -> Vec<f32> {
        let plane = self.height * self.width;
        let c = self.channels;
        let mut out = vec![0.0f32; plane * c];
        for ch in 0..c {
            let (mean, inv_std) = (self.mean[ch], 1.0 / self.std[ch]);
            let dst = &mut out[ch * plane..(ch + 1) * plane];
            for (i, d) in dst.iter_mut().enumerate() {
                let v = f32::from(pixels[i * c + ch]) / 255.0;
                let v = ((v - 0.5) * contrast + 0.5 + brightness).clamp(0.0, 1.0);
                *d = (v - mean) * inv_std;
            }
        }
        out
    }

    /// Resize, convert and normalise in one go: the model input for one image (CHW floats).
    pub fn image_to_chw(&self, image: &DynamicImage) -> Vec<f32> {
        self.normalize_hwc(&self.resize_image(image), 0.0, 1.0)
    }
}

/// Resizes an image (bilinear) to `width` x `height` with 1 or 3 channels, interleaved u8.
pub fn resize_pixels(image: &DynamicImage, channels: usize, width: u32, height: u32) -> Vec<u8> {
    let same = image.width() == width && image.height() == height;
    if channels == 1 {
        let grey = image.to_luma8();
        if same {
            grey.into_raw()
        } else {
            image::imageops::resize(&grey, width, height, FilterType::Triangle).into_raw()
        }
    } else {
        let rgb = image.to_rgb8();
        if same {
            rgb.into_raw()
        } else {
            image::imageops::resize(&rgb, width, height, FilterType::Triangle).into_raw()
        }
    }
}

/// Resizes a class-id mask with nearest-neighbour sampling (ids are never blended).
pub fn resize_mask(
    ids: &[u8],
    width: u32,
    height: u32,
    to_width: u32,
    to_height: u32,
) -> Result<Vec<u8>> {
    let img: GrayImage = ImageBuffer::from_raw(width, height, ids.to_vec())
        .ok_or_else(|| SegError::buffer("mask", ids.len(), width, height, 1))?;
    if (width, height) == (to_width, to_height) {
        return Ok(img.into_raw());
    }
    Ok(image::imageops::resize(&img, to_width, to_height, FilterType::Nearest).into_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_applies_mean_and_std_per_channel() {
        let p = Preprocess {
            height: 1,
            width: 2,
            channels: 3,
            mean: vec![0.0, 0.5, 1.0],
            std: vec![1.0, 0.5, 2.0],
        };
        let out = p.normalize_hwc(&[255, 255, 255, 0, 0, 0], 0.0, 1.0);
        assert_eq!(out, vec![1.0, 0.0, 1.0, -1.0, 0.0, -0.5]);
    }

    #[test]
    fn nearest_mask_resize_keeps_ids() {
        let ids = vec![0, 1, 2, 3];
        let up = resize_mask(&ids, 2, 2, 4, 4).expect("resize");
        assert!(
            resize_mask(&ids, 3, 3, 4, 4).is_err(),
            "a wrong-sized buffer is an error"
        );
        assert_eq!(up.len(), 16);
        assert!(up.iter().all(|v| ids.contains(v)));
        assert_eq!(up[0], 0);
        assert_eq!(up[15], 3);
    }
}
