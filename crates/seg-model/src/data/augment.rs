//! Seeded augmentations applied jointly to an image and its mask: random scale-crop, flips,
//! 90-degree rotations, brightness and contrast. Each sample's randomness comes from
//! `(seed, epoch, index)` alone, so results do not depend on thread scheduling.

use burn::config::Config;
use image::imageops;
use image::{GrayImage, ImageBuffer, Luma, Rgb};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::dataset::RawSample;
use super::preprocess::{Preprocess, resize_mask, resize_pixels};
use crate::error::{Result, SegError};

/// Which augmentations run during training (validation never augments).
#[derive(Config, Debug, PartialEq)]
pub struct AugmentConfig {
    /// Random horizontal flip.
    #[config(default = true)]
    pub hflip: bool,
    /// Random vertical flip.
    #[config(default = true)]
    pub vflip: bool,
    /// Random rotation by a multiple of 90 degrees (180 only for non-square sizes).
    #[config(default = true)]
    pub rotate90: bool,
    /// Largest zoom of the random scale-crop (1.0 disables it).
    #[config(default = 1.25)]
    pub max_scale: f32,
    /// Largest brightness shift, in [0, 1] intensity units (0 disables it).
    #[config(default = 0.1)]
    pub brightness: f32,
    /// Largest relative contrast change (0 disables it).
    #[config(default = 0.1)]
    pub contrast: f32,
}

impl AugmentConfig {
    /// No augmentation at all.
    pub fn none() -> Self {
        Self::new()
            .with_hflip(false)
            .with_vflip(false)
            .with_rotate90(false)
            .with_max_scale(1.0)
            .with_brightness(0.0)
            .with_contrast(0.0)
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if !(1.0..=4.0).contains(&self.max_scale)
            || !(0.0..=1.0).contains(&self.brightness)
            || !(0.0..=1.0).contains(&self.contrast)
        {
            return Err(SegError::InvalidConfig(format!(
                "augment.max_scale = {} must be in [1, 4], brightness = {} and contrast = {} in [0, 1]",
                self.max_scale, self.brightness, self.contrast
            )));
        }
        Ok(())
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
    let pixels = resize_pixels(&sample.image, pre.channels, sw, sh);
    let mask = resize_mask(&sample.mask, iw, ih, sw, sh)?;
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
    let geometry = |img: ImageBufferAny| -> ImageBufferAny {
        img.crop(x0, y0, w, h).transform(hflip, vflip, turns)
    };
    let pixels = geometry(ImageBufferAny::from_raw(pre.channels, sw, sh, pixels)?).into_raw();
    let mask = geometry(ImageBufferAny::from_raw(1, sw, sh, mask)?).into_raw();
    Ok((pre.normalize_hwc(&pixels, brightness, contrast), mask))
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
        let cfg = AugmentConfig::new().with_brightness(0.0).with_contrast(0.0);
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
}
