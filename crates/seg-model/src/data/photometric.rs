//! Photometric augmentations for images from other devices and sites: hue rotation, gamma,
//! Gaussian blur and JPEG re-compression, applied to the training-size pixels (interleaved u8)
//! after the geometric ones. Masks are untouched.

use std::io::Cursor;

use crate::error::{Result, SegError};
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, GrayImage, ImageFormat, RgbImage, imageops};

/// One sample's draw of the photometric augmentations (`AugmentConfig::draw_photometric`); an
/// identity where disabled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Photometric {
    /// Hue rotation about the grey axis, in turns (RGB only).
    pub hue: f32,
    /// Exponent applied to intensities in [0, 1] (1 = unchanged).
    pub gamma: f32,
    /// Standard deviation of the Gaussian blur, in pixels (below 0.3: no blur).
    pub blur_sigma: f32,
    /// JPEG quality of the re-compression (`None`: not re-compressed).
    pub jpeg_quality: Option<u8>,
}

impl Photometric {
    /// No change.
    pub const IDENTITY: Self = Self {
        hue: 0.0,
        gamma: 1.0,
        blur_sigma: 0.0,
        jpeg_quality: None,
    };

    /// Applies the draw to `w` x `h` interleaved pixels with 1 or 3 channels, in the order
    /// colour (hue, gamma), blur, compression: how a camera's pipeline and a site's storage
    /// would have changed the picture.
    pub fn apply(&self, pixels: &mut Vec<u8>, channels: usize, w: u32, h: u32) -> Result<()> {
        if channels == 3 && self.hue != 0.0 {
            rotate_hue(pixels, self.hue);
        }
        if self.gamma != 1.0 {
            let lut: Vec<u8> = (0..=255u8)
                .map(|v| ((f32::from(v) / 255.0).powf(self.gamma) * 255.0).round() as u8)
                .collect();
            for v in pixels.iter_mut() {
                *v = lut[usize::from(*v)];
            }
        }
        if self.blur_sigma >= 0.3 {
            blur(pixels, channels, w, h, self.blur_sigma)?;
        }
        if let Some(quality) = self.jpeg_quality {
            *pixels = jpeg_roundtrip(pixels, channels, w, h, quality)?;
        }
        Ok(())
    }
}

/// Rotates each RGB pixel's chroma about the grey axis by `turns` of the colour circle (the
/// I/Q plane of YIQ), keeping its luma.
fn rotate_hue(rgb: &mut [u8], turns: f32) {
    let (sin, cos) = (turns * std::f32::consts::TAU).sin_cos();
    for px in rgb.chunks_exact_mut(3) {
        let [r, g, b] = [px[0], px[1], px[2]].map(f32::from);
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        let i = 0.596 * r - 0.274 * g - 0.322 * b;
        let q = 0.211 * r - 0.523 * g + 0.312 * b;
        let (i, q) = (cos * i - sin * q, sin * i + cos * q);
        let out = [
            y + 0.956 * i + 0.621 * q,
            y - 0.272 * i - 0.647 * q,
            y - 1.106 * i + 1.703 * q,
        ];
        for (v, o) in px.iter_mut().zip(out) {
            *v = o.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Gaussian blur of interleaved pixels (`image`'s own, edges clamped).
fn blur(pixels: &mut Vec<u8>, channels: usize, w: u32, h: u32, sigma: f32) -> Result<()> {
    let raw = std::mem::take(pixels);
    let len = raw.len();
    let wrong = || SegError::buffer("blur input", len, w, h, channels);
    *pixels = if channels == 3 {
        let img = RgbImage::from_raw(w, h, raw).ok_or_else(wrong)?;
        imageops::blur(&img, sigma).into_raw()
    } else {
        let img = GrayImage::from_raw(w, h, raw).ok_or_else(wrong)?;
        imageops::blur(&img, sigma).into_raw()
    };
    Ok(())
}

/// Encodes the pixels as a JPEG of `quality` and decodes them again.
fn jpeg_roundtrip(pixels: &[u8], channels: usize, w: u32, h: u32, quality: u8) -> Result<Vec<u8>> {
    let failed = |e: image::ImageError| SegError::Augment(format!("JPEG re-compression: {e}"));
    let colour = if channels == 3 {
        ExtendedColorType::Rgb8
    } else {
        ExtendedColorType::L8
    };
    let mut encoded = Vec::new();
    JpegEncoder::new_with_quality(&mut encoded, quality)
        .encode(pixels, w, h, colour)
        .map_err(failed)?;
    let decoded = image::load(Cursor::new(encoded), ImageFormat::Jpeg).map_err(failed)?;
    Ok(if channels == 3 {
        decoded.into_rgb8().into_raw()
    } else {
        decoded.into_luma8().into_raw()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: usize, h: usize) -> Vec<u8> {
        (0..w * h)
            .flat_map(|p| {
                let (x, y) = (p % w, p / w);
                [(x * 255 / w) as u8, (y * 255 / h) as u8, 128]
            })
            .collect()
    }

    #[test]
    fn the_identity_changes_nothing() {
        let mut pixels = gradient(8, 8);
        let before = pixels.clone();
        Photometric::IDENTITY
            .apply(&mut pixels, 3, 8, 8)
            .expect("identity");
        assert_eq!(pixels, before);
    }

    #[test]
    fn a_hue_rotation_keeps_grey_and_luma_and_a_full_turn_comes_back() {
        let mut rgb = vec![90u8, 90, 90, 150, 110, 100];
        let before = rgb.clone();
        rotate_hue(&mut rgb, 0.25);
        assert_eq!(&rgb[..3], &[90, 90, 90], "grey has no hue");
        assert_ne!(&rgb[3..], &before[3..], "a colour turns");
        let luma =
            |p: &[u8]| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
        assert!((luma(&rgb[3..]) - luma(&before[3..])).abs() < 2.0);
        let mut back = before.clone();
        rotate_hue(&mut back, 1.0);
        let worst = back.iter().zip(&before).map(|(a, b)| a.abs_diff(*b)).max();
        assert!(worst <= Some(1), "{back:?}");
    }

    #[test]
    fn gamma_keeps_black_and_white_and_darkens_above_one() {
        let mut grey = vec![0u8, 128, 255];
        Photometric {
            gamma: 2.0,
            ..Photometric::IDENTITY
        }
        .apply(&mut grey, 1, 3, 1)
        .expect("gamma");
        assert_eq!(grey, [0, 64, 255], "255 (128 / 255)^2 = 64.25");
    }

    #[test]
    fn blur_keeps_flat_areas_and_the_mean_and_softens_an_edge() {
        let (w, h) = (12, 4);
        let mut edge: Vec<u8> = (0..w * h)
            .map(|p| if p % w < 6 { 0 } else { 240 })
            .collect();
        let mean = |v: &[u8]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let before = mean(&edge);
        blur(&mut edge, 1, w as u32, h as u32, 1.0).expect("blur");
        assert_eq!(
            (edge[0], edge[w - 1]),
            (0, 240),
            "far from the edge nothing moves"
        );
        assert!(edge[5] > 0 && edge[6] < 240, "{edge:?}");
        assert!((mean(&edge) - before).abs() < 1.0);
    }

    #[test]
    fn jpeg_recompression_keeps_the_size_and_loses_detail_with_quality() {
        let pixels = gradient(32, 32);
        let error = |q| {
            let out = jpeg_roundtrip(&pixels, 3, 32, 32, q).expect("jpeg");
            assert_eq!(out.len(), pixels.len());
            out.iter()
                .zip(&pixels)
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum::<u64>()
        };
        assert!(error(10) > error(95), "lower quality loses more");
    }
}
