//! A seeded generator of synthetic segmentation data: random ellipses and polygons of several
//! classes on textured noise. For demos and fast tests; written to disk as a normal dataset.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::config::Config;
use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::mask::MaskEncoding;
use crate::error::{Result, SegError};

/// Most pairs a synthetic set may have.
pub const MAX_COUNT: usize = 100_000;

/// Most pixels a synthetic set may have in all (about 3 GB of RGB).
pub const MAX_PIXELS: u64 = 1 << 30;

/// What to generate.
#[derive(Config, Debug)]
pub struct SyntheticConfig {
    /// Number of image/mask pairs.
    #[config(default = 64)]
    pub count: usize,
    /// Image width.
    #[config(default = 64)]
    pub width: u32,
    /// Image height.
    #[config(default = 64)]
    pub height: u32,
    /// Task classes including background (2 = binary).
    #[config(default = 2)]
    pub num_classes: usize,
    /// 1 (greyscale) or 3 (RGB) image channels.
    #[config(default = 3)]
    pub channels: usize,
    /// Shapes per image, at most.
    #[config(default = 4)]
    pub max_shapes: usize,
    /// Amplitude of the pixel noise (0-255 scale).
    #[config(default = 24.0)]
    pub noise: f32,
    /// Seed: equal seeds give byte-identical datasets.
    #[config(default = 0)]
    pub seed: u64,
}

impl SyntheticConfig {
    /// The mask encoding of the files [`SyntheticConfig::write`] produces.
    pub fn encoding(&self) -> MaskEncoding {
        if self.num_classes == 2 {
            MaskEncoding::Binary { threshold: 127 }
        } else {
            MaskEncoding::Index {
                num_classes: self.num_classes,
            }
        }
    }

    /// Checks the values, naming the first wrong one (`count`, `num_classes`, `channels`).
    pub fn validate(&self) -> Result<()> {
        if self.count < 4 {
            return Err(SegError::invalid(
                "count",
                self.count,
                "must be >= 4 (a training and a validation split)",
            ));
        }
        if self.count > MAX_COUNT {
            return Err(SegError::invalid(
                "count",
                self.count,
                format!("at most {MAX_COUNT} pairs (a synthetic set is for demos and tests)"),
            ));
        }
        if self.width.min(self.height) < 8 {
            return Err(SegError::invalid(
                "width",
                self.width.min(self.height),
                "images of at least 8x8 pixels",
            ));
        }
        let pixels = self.count as u64 * u64::from(self.width) * u64::from(self.height);
        if pixels > MAX_PIXELS {
            return Err(SegError::invalid(
                "count",
                self.count,
                format!(
                    "{} pairs of {}x{} are {pixels} pixels; at most {MAX_PIXELS} in all (fewer or smaller images)",
                    self.count, self.width, self.height
                ),
            ));
        }
        if !(2..=254).contains(&self.num_classes) {
            return Err(SegError::invalid(
                "num_classes",
                self.num_classes,
                "2..=254",
            ));
        }
        if !matches!(self.channels, 1 | 3) {
            return Err(SegError::invalid("channels", self.channels, "1 or 3"));
        }
        Ok(())
    }

    /// Generates pair `index`: interleaved image pixels and class ids.
    pub fn generate(&self, index: usize) -> (Vec<u8>, Vec<u8>) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed.wrapping_mul(1_000_003) ^ index as u64);
        let (w, h) = (self.width as usize, self.height as usize);
        let mut mask = vec![0u8; w * h];
        let mut color = vec![[0f32; 3]; w * h];
        // Textured background: a random low-frequency wave plus pixel noise.
        let base: [f32; 3] = [rng.random_range(60.0..110.0); 3];
        let (fx, fy, phase) = (
            rng.random_range(0.02..0.15),
            rng.random_range(0.02..0.15),
            rng.random_range(0.0..std::f32::consts::TAU),
        );
        for y in 0..h {
            for x in 0..w {
                let wave = 20.0 * ((x as f32) * fx + (y as f32) * fy + phase).sin();
                color[y * w + x] = base.map(|b| b + wave);
            }
        }
        let shapes = rng.random_range(1..=self.max_shapes.max(1));
        for _ in 0..shapes {
            let class = rng.random_range(1..self.num_classes.max(2)) as u8;
            let tint = class_tint(class);
            let (cx, cy) = (
                rng.random_range(0.0..w as f32),
                rng.random_range(0.0..h as f32),
            );
            let r = rng.random_range(0.08..0.25) * w.min(h) as f32;
            let shape = if rng.random_bool(0.5) {
                Shape::Ellipse {
                    cx,
                    cy,
                    rx: r,
                    ry: r * rng.random_range(0.5..1.0),
                    angle: rng.random_range(0.0..std::f32::consts::PI),
                }
            } else {
                let n = rng.random_range(3..=6);
                let mut angles: Vec<f32> = (0..n)
                    .map(|_| rng.random_range(0.0..std::f32::consts::TAU))
                    .collect();
                angles.sort_by(f32::total_cmp);
                Shape::Polygon(
                    angles
                        .iter()
                        .map(|a| {
                            let rr = r * rng.random_range(0.7..1.3);
                            (cx + rr * a.cos(), cy + rr * a.sin())
                        })
                        .collect(),
                )
            };
            for y in 0..h {
                for x in 0..w {
                    if shape.contains(x as f32 + 0.5, y as f32 + 0.5) {
                        mask[y * w + x] = class;
                        let stripe = 12.0 * ((x + y) as f32 * 0.6 * f32::from(class)).sin();
                        color[y * w + x] = tint.map(|t| t + stripe);
                    }
                }
            }
        }
        let mut pixels = Vec::with_capacity(w * h * self.channels);
        for c in &color {
            let noisy =
                c.map(|v| (v + rng.random_range(-self.noise..=self.noise)).clamp(0.0, 255.0));
            if self.channels == 1 {
                pixels.push((0.299 * noisy[0] + 0.587 * noisy[1] + 0.114 * noisy[2]) as u8);
            } else {
                pixels.extend(noisy.map(|v| v as u8));
            }
        }
        (pixels, mask)
    }

    /// Writes `count` pairs as `dir/images/synth_NNNNN.png` and `dir/masks/synth_NNNNN.png`
    /// (binary masks as 0/255, multi-class as index PNGs) and returns their mask encoding. The
    /// set is written into a temporary folder beside `dir` and renamed to `dir` only when
    /// complete; `stop` set (Ctrl-C) ends the writing within one pair per thread, with
    /// [`SegError::Cancelled`] and nothing left behind.
    pub fn write(&self, dir: &Path, stop: &AtomicBool) -> Result<MaskEncoding> {
        self.validate()?;
        let name = dir.file_name().map_or_else(
            || "synthetic".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let partial = dir.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        let written = self.write_into(&partial, stop).and_then(|()| {
            if dir.exists() {
                // An earlier, incomplete set (or another process's complete one): replaced.
                std::fs::remove_dir_all(dir).map_err(|e| SegError::io("remove", dir, e))?;
            }
            std::fs::rename(&partial, dir).map_err(|e| SegError::io("rename", &partial, e))
        });
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
        written?;
        Ok(self.encoding())
    }

    /// Whether `dir` holds the complete set (every pair's two files).
    pub fn is_written(&self, dir: &Path) -> bool {
        (0..self.count).all(|i| {
            let name = format!("synth_{i:05}.png");
            dir.join("images").join(&name).is_file() && dir.join("masks").join(&name).is_file()
        }) && std::fs::read_dir(dir.join("images")).is_ok_and(|d| d.count() == self.count)
    }

    fn write_into(&self, dir: &Path, stop: &AtomicBool) -> Result<()> {
        use rayon::prelude::*;
        for sub in ["images", "masks"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| SegError::io("create", &d, e))?;
        }
        (0..self.count).into_par_iter().try_for_each(|i| {
            if stop.load(Ordering::Relaxed) {
                return Err(SegError::Cancelled {
                    what: format!("writing the synthetic set into {}", dir.display()),
                });
            }
            let (pixels, mut mask) = self.generate(i);
            if self.num_classes == 2 {
                mask.iter_mut().for_each(|m| *m *= 255);
            }
            let name = format!("synth_{i:05}.png");
            let image_path = dir.join("images").join(&name);
            let save_err = |p: &Path, e: image::ImageError| SegError::Io {
                action: "write",
                path: p.to_path_buf(),
                source: std::io::Error::other(e),
            };
            if self.channels == 1 {
                GrayImage::from_fn(self.width, self.height, |x, y| {
                    Luma([pixels[(y * self.width + x) as usize]])
                })
                .save(&image_path)
                .map_err(|e| save_err(&image_path, e))?;
            } else {
                RgbImage::from_fn(self.width, self.height, |x, y| {
                    let p = 3 * (y * self.width + x) as usize;
                    Rgb([pixels[p], pixels[p + 1], pixels[p + 2]])
                })
                .save(&image_path)
                .map_err(|e| save_err(&image_path, e))?;
            }
            let mask_path = dir.join("masks").join(&name);
            GrayImage::from_fn(self.width, self.height, |x, y| {
                Luma([mask[(y * self.width + x) as usize]])
            })
            .save(&mask_path)
            .map_err(|e| save_err(&mask_path, e))
        })
    }
}

fn class_tint(class: u8) -> [f32; 3] {
    const TINTS: [[f32; 3]; 8] = [
        [200.0, 60.0, 60.0],
        [60.0, 190.0, 70.0],
        [70.0, 80.0, 210.0],
        [210.0, 200.0, 60.0],
        [190.0, 70.0, 200.0],
        [60.0, 200.0, 200.0],
        [230.0, 140.0, 40.0],
        [150.0, 150.0, 150.0],
    ];
    TINTS[(usize::from(class) - 1) % TINTS.len()]
}

enum Shape {
    Ellipse {
        cx: f32,
        cy: f32,
        rx: f32,
        ry: f32,
        angle: f32,
    },
    Polygon(Vec<(f32, f32)>),
}

impl Shape {
    fn contains(&self, x: f32, y: f32) -> bool {
        match self {
            Self::Ellipse {
                cx,
                cy,
                rx,
                ry,
                angle,
            } => {
                let (dx, dy) = (x - cx, y - cy);
                let (s, c) = angle.sin_cos();
                let (u, v) = (dx * c + dy * s, -dx * s + dy * c);
                (u / rx).powi(2) + (v / ry).powi(2) <= 1.0
            }
            Self::Polygon(points) => {
                // Even-odd rule.
                let mut inside = false;
                let mut j = points.len() - 1;
                for i in 0..points.len() {
                    let (xi, yi) = points[i];
                    let (xj, yj) = points[j];
                    if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                        inside = !inside;
                    }
                    j = i;
                }
                inside
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_seeded_and_uses_all_classes() {
        let cfg = SyntheticConfig::new().with_num_classes(4).with_count(30);
        assert_eq!(cfg.generate(3), cfg.generate(3));
        assert_ne!(cfg.generate(3), cfg.generate(4));
        let mut seen = [false; 4];
        for i in 0..30 {
            for m in cfg.generate(i).1 {
                seen[usize::from(m)] = true;
            }
        }
        assert_eq!(seen, [true; 4]);
    }

    #[test]
    fn the_set_is_bounded_complete_or_absent_and_stops_when_asked() {
        let huge = SyntheticConfig::new().with_count(1_000_000_000);
        let err = huge.validate().expect_err("too many").to_string();
        assert!(err.contains("at most 100000 pairs"), "{err}");
        let wide = SyntheticConfig::new()
            .with_count(90_000)
            .with_width(512)
            .with_height(512);
        assert!(wide.validate().is_err());
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("set");
        let cfg = SyntheticConfig::new()
            .with_count(6)
            .with_width(16)
            .with_height(16);
        let stopped = cfg
            .write(&dir, &AtomicBool::new(true))
            .expect_err("stopped");
        assert!(matches!(stopped, SegError::Cancelled { .. }), "{stopped}");
        let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("list").collect();
        assert!(left.is_empty(), "nothing is left behind: {left:?}");
        // A set cut short by an older writer is not taken for a complete one, and is replaced.
        std::fs::create_dir_all(dir.join("images")).expect("mkdir");
        std::fs::create_dir_all(dir.join("masks")).expect("mkdir");
        assert!(!cfg.is_written(&dir));
        cfg.write(&dir, &AtomicBool::new(false)).expect("write");
        assert!(cfg.is_written(&dir));
    }
}
