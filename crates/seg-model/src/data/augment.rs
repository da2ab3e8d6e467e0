//! Seeded augmentations applied jointly to an image and its mask: random scale-crop, rotation
//! by a small angle, flips, 90-degree rotations, brightness, contrast and saturation, and the
//! photometric ones of [`super::photometric`] (hue, gamma, blur, JPEG). Each sample's
//! randomness comes from `(seed, epoch, index)` alone, so results do not depend on thread
//! scheduling.

use image::imageops;
use image::{GrayImage, ImageBuffer, Luma, Rgb};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::dataset::RawSample;
use super::mask::IGNORE_INDEX;
use super::photometric::Photometric;
use super::preprocess::{Preprocess, resize_mask, resize_pixels};
use crate::error::{Result, SegError};

/// Which augmentations run during training (validation never augments): `[train.augment]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Random horizontal flip.
    pub hflip: bool,
    /// Random vertical flip.
    pub vflip: bool,
    /// Random rotation by a multiple of 90 degrees (180 only for non-square sizes).
    pub rotate90: bool,
    /// Largest zoom of the random scale-crop (1.0 disables it).
    pub max_scale: f32,
    /// Largest brightness shift, in [0, 1] intensity units (0 disables it).
    pub brightness: f32,
    /// Largest relative contrast change (0 disables it).
    pub contrast: f32,
    /// Largest rotation by an arbitrary angle, in degrees either way (0 disables it). Pixels
    /// rotated in from outside the image are black and unlabelled (ignored by the loss).
    pub rotate_degrees: f32,
    /// Largest relative saturation change of RGB images (0 disables it).
    pub saturation: f32,
    /// Largest hue rotation of RGB images, in turns of the colour circle either way (0
    /// disables it).
    pub hue: f32,
    /// Largest gamma change: the exponent is drawn in [1 / (1 + gamma), 1 + gamma] on a log
    /// scale (0 disables it).
    pub gamma: f32,
    /// Largest standard deviation of a Gaussian blur, in pixels at the training size (0
    /// disables it).
    pub blur_sigma: f32,
    /// Lowest JPEG quality of a re-compression at the training size; the quality is drawn in
    /// [jpeg_quality, 95] (0 disables it).
    pub jpeg_quality: u8,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            hflip: true,
            vflip: true,
            rotate90: true,
            max_scale: 1.25,
            brightness: 0.1,
            contrast: 0.1,
            rotate_degrees: 0.0,
            saturation: 0.0,
            hue: 0.0,
            gamma: 0.0,
            blur_sigma: 0.0,
            jpeg_quality: 0,
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all.
    pub fn none() -> Self {
        Self {
            hflip: false,
            vflip: false,
            rotate90: false,
            max_scale: 1.0,
            brightness: 0.0,
            contrast: 0.0,
            rotate_degrees: 0.0,
            saturation: 0.0,
            hue: 0.0,
            gamma: 0.0,
            blur_sigma: 0.0,
            jpeg_quality: 0,
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        let checks = [
            ("augment.max_scale", self.max_scale, 1.0, 4.0),
            ("augment.brightness", self.brightness, 0.0, 1.0),
            ("augment.contrast", self.contrast, 0.0, 1.0),
            ("augment.rotate_degrees", self.rotate_degrees, 0.0, 180.0),
            ("augment.saturation", self.saturation, 0.0, 1.0),
            ("augment.hue", self.hue, 0.0, 0.5),
            ("augment.gamma", self.gamma, 0.0, 2.0),
            ("augment.blur_sigma", self.blur_sigma, 0.0, 5.0),
        ];
        for (field, value, lo, hi) in checks {
            if !(lo..=hi).contains(&value) {
                return Err(SegError::invalid(
                    field,
                    value,
                    format!("must be between {lo} and {hi}"),
                ));
            }
        }
        if self.jpeg_quality != 0 && !(5..=95).contains(&self.jpeg_quality) {
            return Err(SegError::invalid(
                "augment.jpeg_quality",
                self.jpeg_quality,
                "must be 0 (off) or between 5 and 95",
            ));
        }
        Ok(())
    }

    /// Draws one sample's hue, gamma, blur and JPEG quality; draws nothing from `rng` for the
    /// disabled ones, so that configurations without them keep their random streams.
    pub fn draw_photometric(&self, rng: &mut ChaCha8Rng) -> Photometric {
        let mut out = Photometric::IDENTITY;
        if self.hue > 0.0 {
            out.hue = rng.random_range(-self.hue..=self.hue);
        }
        if self.gamma > 0.0 {
            let most = (1.0 + self.gamma).ln();
            out.gamma = rng.random_range(-most..=most).exp();
        }
        if self.blur_sigma > 0.0 {
            out.blur_sigma = rng.random_range(0.0..=self.blur_sigma);
        }
        if self.jpeg_quality > 0 {
            out.jpeg_quality = Some(rng.random_range(self.jpeg_quality..=95));
        }
        out
    }
}

/// The RNG for one sample of one epoch.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    let mix = seed
        ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (index as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    ChaCha8Rng::seed_from_u64(mix)
}

/// Prepares one sample for the model: resize (with optional augmentation) to the training size,
/// normalise. Returns CHW floats and the class-id mask at the training size.
pub fn prepare_sample(
    sample: &RawSample,
    pre: &Preprocess,
    augment: Option<(&AugmentConfig, &mut ChaCha8Rng)>,
) -> Result<(Vec<f32>, Vec<u8>)> {
    let (w, h) = (pre.width as u32, pre.height as u32);
    let (iw, ih) = (sample.image.width(), sample.image.height());
    let Some((cfg, rng)) = augment else {
        let pixels = pre.resize_image(&sample.image);
        return Ok((
            pre.normalize_hwc(&pixels, 0.0, 1.0),
            resize_mask(&sample.mask, iw, ih, w, h)?,
        ));
    };
    // Scale-crop: resize to a random size >= the target, then crop the target at random.
    let scale = if cfg.max_scale > 1.0 {
        rng.random_range(1.0..=cfg.max_scale)
    } else {
        1.0
    };
    let (sw, sh) = (
        ((w as f32) * scale).round().max(w as f32) as u32,
        ((h as f32) * scale).round().max(h as f32) as u32,
    );
    let (x0, y0) = (rng.random_range(0..=sw - w), rng.random_range(0..=sh - h));
    let mut pixels = resize_pixels(&sample.image, pre.channels, sw, sh);
    let mut mask = resize_mask(&sample.mask, iw, ih, sw, sh)?;
    let hflip = cfg.hflip && rng.random_bool(0.5);
    let vflip = cfg.vflip && rng.random_bool(0.5);
    let turns = if !cfg.rotate90 {
        0
    } else if w == h {
        rng.random_range(0..4u8)
    } else {
        2 * rng.random_range(0..2u8)
    };
    let brightness = if cfg.brightness > 0.0 {
        rng.random_range(-cfg.brightness..=cfg.brightness)
    } else {
        0.0
    };
    let contrast = if cfg.contrast > 0.0 {
        rng.random_range(1.0 - cfg.contrast..=1.0 + cfg.contrast)
    } else {
        1.0
    };
    // Drawn after the others, and only when enabled, so that configurations without them
    // see the same random numbers as before they existed.
    if cfg.rotate_degrees > 0.0 {
        let angle = rng
            .random_range(-cfg.rotate_degrees..=cfg.rotate_degrees)
            .to_radians();
        (pixels, mask) = rotate(&pixels, &mask, pre.channels, sw, sh, angle);
    }
    let saturation = if cfg.saturation > 0.0 {
        rng.random_range(1.0 - cfg.saturation..=1.0 + cfg.saturation)
    } else {
        1.0
    };
    let geometry = |img: ImageBufferAny| -> ImageBufferAny {
        img.crop(x0, y0, w, h).transform(hflip, vflip, turns)
    };
    let mut pixels = geometry(ImageBufferAny::from_raw(pre.channels, sw, sh, pixels)?).into_raw();
    let mask = geometry(ImageBufferAny::from_raw(1, sw, sh, mask)?).into_raw();
    if pre.channels == 3 && saturation != 1.0 {
        saturate(&mut pixels, saturation);
    }
    cfg.draw_photometric(rng)
        .apply(&mut pixels, pre.channels, w, h)?;
    Ok((pre.normalize_hwc(&pixels, brightness, contrast), mask))
}

/// Rotates an interleaved `w` x `h` image (bilinear) and its mask (nearest) by `angle` radians
/// about the centre. Pixels that come from outside are black and [`IGNORE_INDEX`].
fn rotate(
    pixels: &[u8],
    mask: &[u8],
    channels: usize,
    w: u32,
    h: u32,
    angle: f32,
) -> (Vec<u8>, Vec<u8>) {
    let (w, h) = (w as usize, h as usize);
    let (sin, cos) = angle.sin_cos();
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let mut out = vec![0u8; pixels.len()];
    let mut out_mask = vec![IGNORE_INDEX; mask.len()];
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            // Where the output pixel comes from: the inverse rotation.
            let sx = cos * dx + sin * dy + cx;
            let sy = -sin * dx + cos * dy + cy;
            let (nx, ny) = (sx.round(), sy.round());
            if nx >= 0.0 && ny >= 0.0 && (nx as usize) < w && (ny as usize) < h {
                out_mask[y * w + x] = mask[ny as usize * w + nx as usize];
            }
            if sx <= -1.0 || sy <= -1.0 || sx >= w as f32 || sy >= h as f32 {
                continue;
            }
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let taps = [
                (x0, y0, (1.0 - fx) * (1.0 - fy)),
                (x0 + 1.0, y0, fx * (1.0 - fy)),
                (x0, y0 + 1.0, (1.0 - fx) * fy),
                (x0 + 1.0, y0 + 1.0, fx * fy),
            ];
            for ch in 0..channels {
                let mut v = 0.0f32;
                for &(tx, ty, wt) in &taps {
                    if tx >= 0.0 && ty >= 0.0 && (tx as usize) < w && (ty as usize) < h {
                        v +=
                            wt * f32::from(pixels[(ty as usize * w + tx as usize) * channels + ch]);
                    }
                }
                out[(y * w + x) * channels + ch] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    (out, out_mask)
}

/// Scales each RGB pixel's distance from its grey value by `factor` (0 = grey, 1 = unchanged).
fn saturate(rgb: &mut [u8], factor: f32) {
    for px in rgb.chunks_exact_mut(3) {
        let [r, g, b] = [px[0], px[1], px[2]].map(f32::from);
        let grey = 0.299 * r + 0.587 * g + 0.114 * b;
        for v in px.iter_mut() {
            *v = (grey + factor * (f32::from(*v) - grey))
                .round()
                .clamp(0.0, 255.0) as u8;
        }
    }
}

/// A grey or RGB u8 buffer with the geometric operations augmentation needs.
enum ImageBufferAny {
    Grey(GrayImage),
    Rgb(ImageBuffer<Rgb<u8>, Vec<u8>>),
}

macro_rules! each {
    ($self:expr, $img:ident => $body:expr) => {
        match $self {
            ImageBufferAny::Grey($img) => ImageBufferAny::Grey($body),
            ImageBufferAny::Rgb($img) => ImageBufferAny::Rgb($body),
        }
    };
}

impl ImageBufferAny {
    fn from_raw(channels: usize, w: u32, h: u32, raw: Vec<u8>) -> Result<Self> {
        let got = raw.len();
        let wrong = || SegError::buffer("augmentation input", got, w, h, channels);
        if channels == 1 {
            ImageBuffer::<Luma<u8>, _>::from_raw(w, h, raw)
                .map(Self::Grey)
                .ok_or_else(wrong)
        } else {
            ImageBuffer::from_raw(w, h, raw)
                .map(Self::Rgb)
                .ok_or_else(wrong)
        }
    }

    fn crop(self, x: u32, y: u32, w: u32, h: u32) -> Self {
        if x == 0 && y == 0 && self.dims() == (w, h) {
            return self;
        }
        each!(self, img => imageops::crop_imm(&img, x, y, w, h).to_image())
    }

    fn transform(self, hflip: bool, vflip: bool, turns: u8) -> Self {
        let mut out = self;
        if hflip {
            out = each!(out, img => imageops::flip_horizontal(&img));
        }
        if vflip {
            out = each!(out, img => imageops::flip_vertical(&img));
        }
        match turns {
            1 => each!(out, img => imageops::rotate90(&img)),
            2 => each!(out, img => imageops::rotate180(&img)),
            3 => each!(out, img => imageops::rotate270(&img)),
            _ => out,
        }
    }

    fn dims(&self) -> (u32, u32) {
        match self {
            Self::Grey(i) => i.dimensions(),
            Self::Rgb(i) => i.dimensions(),
        }
    }

    fn into_raw(self) -> Vec<u8> {
        match self {
            Self::Grey(i) => i.into_raw(),
            Self::Rgb(i) => i.into_raw(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::DynamicImage;

    fn sample() -> RawSample {
        let mut img = image::RgbImage::new(20, 20);
        let mut mask = vec![0u8; 400];
        for y in 0..20 {
            for x in 0..20 {
                let fg = x < 10 && y < 6;
                img.put_pixel(x, y, Rgb(if fg { [250, 250, 250] } else { [5, 5, 5] }));
                mask[(y * 20 + x) as usize] = u8::from(fg);
            }
        }
        RawSample {
            image: DynamicImage::ImageRgb8(img),
            mask,
        }
    }

    #[test]
    fn augmentation_is_deterministic_and_keeps_image_and_mask_aligned() {
        let pre = Preprocess::unnormalized(16, 16, 3);
        let cfg = AugmentConfig {
            brightness: 0.0,
            contrast: 0.0,
            ..AugmentConfig::default()
        };
        let s = sample();
        for i in 0..20 {
            let a = prepare_sample(&s, &pre, Some((&cfg, &mut sample_rng(7, 1, i)))).expect("a");
            let b = prepare_sample(&s, &pre, Some((&cfg, &mut sample_rng(7, 1, i)))).expect("b");
            assert_eq!(a, b, "same seed, same result");
            let (img, mask) = a;
            // Foreground pixels are bright in the image: alignment survives flips/rotations.
            let bright_fg = mask
                .iter()
                .enumerate()
                .filter(|(_, m)| **m == 1)
                .filter(|(p, _)| img[*p] > 0.6)
                .count();
            let fg = mask.iter().filter(|m| **m == 1).count();
            assert!(
                fg > 0 && bright_fg * 10 >= fg * 8,
                "{bright_fg}/{fg} aligned"
            );
        }
    }

    #[test]
    fn rotation_keeps_image_and_mask_aligned_and_ignores_what_comes_from_outside() {
        let pre = Preprocess::unnormalized(16, 16, 3);
        let cfg = AugmentConfig {
            rotate_degrees: 40.0,
            ..AugmentConfig::none()
        };
        let s = sample();
        let mut ignored_somewhere = false;
        for i in 0..20 {
            let (img, mask) =
                prepare_sample(&s, &pre, Some((&cfg, &mut sample_rng(3, 0, i)))).expect("rot");
            let fg: Vec<usize> = (0..mask.len()).filter(|&p| mask[p] == 1).collect();
            let bright = fg.iter().filter(|&&p| img[p] > 0.6).count();
            assert!(
                !fg.is_empty() && bright * 10 >= fg.len() * 8,
                "{bright}/{} aligned",
                fg.len()
            );
            for p in (0..mask.len()).filter(|&p| mask[p] == IGNORE_INDEX) {
                ignored_somewhere = true;
                assert!(img[p] < 0.5, "a pixel from outside is dark ({})", img[p]);
            }
        }
        assert!(ignored_somewhere, "40-degree turns bring in corners");
    }

    #[test]
    fn a_quarter_turn_is_an_exact_rotation_and_no_turn_is_the_identity() {
        let (w, h) = (5usize, 5usize);
        let pixels: Vec<u8> = (0..w * h * 3).map(|v| (v * 3 % 251) as u8).collect();
        let mask: Vec<u8> = (0..w * h).map(|v| (v % 3) as u8).collect();
        let (same, same_mask) = rotate(&pixels, &mask, 3, 5, 5, 0.0);
        assert_eq!((same, same_mask), (pixels.clone(), mask.clone()));
        let (turned, turned_mask) = rotate(&pixels, &mask, 3, 5, 5, std::f32::consts::FRAC_PI_2);
        let want = ImageBufferAny::from_raw(3, 5, 5, pixels)
            .expect("rgb")
            .transform(false, false, 1)
            .into_raw();
        let want_mask = ImageBufferAny::from_raw(1, 5, 5, mask)
            .expect("grey")
            .transform(false, false, 1)
            .into_raw();
        assert_eq!(turned, want);
        assert_eq!(turned_mask, want_mask);
    }

    #[test]
    fn saturation_moves_colours_towards_or_away_from_grey() {
        let mut rgb = vec![200u8, 100, 50, 10, 10, 10];
        saturate(&mut rgb, 1.0);
        assert_eq!(rgb, [200, 100, 50, 10, 10, 10], "factor 1 changes nothing");
        saturate(&mut rgb, 0.0);
        assert_eq!(rgb, [124, 124, 124, 10, 10, 10], "factor 0 is grey");
        let mut rgb = vec![150u8, 100, 100];
        saturate(&mut rgb, 1.5);
        assert!(rgb[0] > 150 && rgb[1] < 100, "{rgb:?}");
    }

    #[test]
    fn out_of_range_strengths_name_their_field() {
        let err = AugmentConfig {
            rotate_degrees: 270.0,
            ..AugmentConfig::default()
        }
        .validate()
        .expect_err("270 degrees");
        assert!(err.to_string().contains("augment.rotate_degrees"), "{err}");
        let err = AugmentConfig {
            saturation: -0.1,
            ..AugmentConfig::default()
        }
        .validate()
        .expect_err("negative");
        assert!(err.to_string().contains("augment.saturation"), "{err}");
    }
}
