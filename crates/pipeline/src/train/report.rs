//! Pictures of a run for MLflow: the training curve (loss and IoU per epoch) and validation
//! overlays (image | ground truth | prediction).

use std::path::Path;

use image::{DynamicImage, GrayImage, Rgb, RgbImage};
use seg_model::data::{ClassInfo, SegmentationDataset};
use seg_model::predict::overlay;
use seg_model::{BackendKind, Checkpoint, EpochReport, Predictor};

use crate::error::{PipelineError, Result};

const WIDTH: u32 = 900;
const PANEL_HEIGHT: u32 = 300;
const MARGIN: u32 = 30;
/// Train loss (blue), validation loss (orange) in the top panel; validation IoU (green) and
/// Dice (purple) in the bottom panel.
const COLORS: [[u8; 3]; 4] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [148, 103, 189],
];

/// Draws the training curve: top panel train and validation loss (blue, orange), bottom panel
/// validation mean IoU and Dice on a 0..1 scale (green, purple); one tick per epoch, grid
/// lines at quarters. Writes a PNG.
pub(super) fn training_curve(history: &[EpochReport], path: &Path) -> Result<()> {
    let mut img = RgbImage::from_pixel(WIDTH, 2 * PANEL_HEIGHT, Rgb([255, 255, 255]));
    let n = history.len();
    let losses: Vec<[f64; 2]> = history
        .iter()
        .map(|r| [r.train_loss, r.valid_loss])
        .collect();
    let max_loss = losses
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(1e-9, f64::max);
    let scores: Vec<[f64; 2]> = history
        .iter()
        .map(|r| [r.metrics.iou, r.metrics.dice])
        .collect();
    for (panel, (series, top)) in [(losses, max_loss), (scores, 1.0)].into_iter().enumerate() {
        let y0 = panel as u32 * PANEL_HEIGHT;
        let plot = Plot {
            left: MARGIN,
            right: WIDTH - MARGIN,
            top: y0 + MARGIN,
            bottom: y0 + PANEL_HEIGHT - MARGIN,
        };
        plot.frame(&mut img, n);
        for k in 0..2 {
            let color = COLORS[panel * 2 + k];
            let points: Vec<(f64, f64)> = series
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, (v[k] / top).clamp(0.0, 1.0)))
                .collect();
            plot.polyline(&mut img, &points, n, color);
        }
    }
    img.save(path).map_err(|e| PipelineError::Io {
        action: "write",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}

/// The drawing area of one panel.
struct Plot {
    left: u32,
    right: u32,
    top: u32,
    bottom: u32,
}

impl Plot {
    fn x(&self, i: f64, n: usize) -> f64 {
        let span = (n.max(2) - 1) as f64;
        f64::from(self.left) + i / span * f64::from(self.right - self.left)
    }

    fn y(&self, v: f64) -> f64 {
        f64::from(self.bottom) - v * f64::from(self.bottom - self.top)
    }

    fn frame(&self, img: &mut RgbImage, n: usize) {
        let grey = [200, 200, 200];
        for q in 0..=4 {
            let y = self.y(f64::from(q) / 4.0);
            line(
                img,
                (f64::from(self.left), y),
                (f64::from(self.right), y),
                grey,
            );
        }
        for i in 0..n {
            let x = self.x(i as f64, n);
            line(
                img,
                (x, f64::from(self.bottom)),
                (x, f64::from(self.bottom) + 5.0),
                [0, 0, 0],
            );
        }
        let black = [0, 0, 0];
        let (l, r, t, b) = (
            f64::from(self.left),
            f64::from(self.right),
            f64::from(self.top),
            f64::from(self.bottom),
        );
        line(img, (l, b), (r, b), black);
        line(img, (l, t), (l, b), black);
    }

    fn polyline(&self, img: &mut RgbImage, points: &[(f64, f64)], n: usize, color: [u8; 3]) {
        let mapped: Vec<(f64, f64)> = points
            .iter()
            .map(|&(i, v)| (self.x(i, n), self.y(v)))
            .collect();
        for w in mapped.windows(2) {
            for d in [-1.0, 0.0, 1.0] {
                line(img, (w[0].0, w[0].1 + d), (w[1].0, w[1].1 + d), color);
            }
        }
        for &(x, y) in &mapped {
            for dx in -3..=3 {
                for dy in -3..=3 {
                    put(img, x + f64::from(dx), y + f64::from(dy), color);
                }
            }
        }
    }
}

fn put(img: &mut RgbImage, x: f64, y: f64, color: [u8; 3]) {
    if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, Rgb(color));
    }
}

/// A straight line, one sample per pixel of its longer side.
fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), color: [u8; 3]) {
    let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as usize;
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        put(img, a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t, color);
    }
}

/// Image | ground truth overlay | prediction overlay, side by side, at the image's size.
pub(super) fn overlay_triptych(
    image: &DynamicImage,
    truth: &GrayImage,
    prediction: &GrayImage,
    classes: &[ClassInfo],
) -> RgbImage {
    let original = image.to_rgb8();
    let (w, h) = original.dimensions();
    let truth = overlay(image, truth, classes, 0.5);
    let predicted = overlay(image, prediction, classes, 0.5);
    let mut out = RgbImage::from_pixel(3 * w + 8, h, Rgb([255, 255, 255]));
    for (i, part) in [original, truth, predicted].iter().enumerate() {
        image::imageops::overlay(&mut out, part, i as i64 * i64::from(w + 4), 0);
    }
    out
}

/// Writes up to `count` overlays (image | truth | prediction) of the validation pairs
/// `indices` into `dir` on a blocking thread; gives the checkpoint back with how many it wrote.
pub(super) async fn write_overlays(
    checkpoint: Checkpoint,
    dataset: SegmentationDataset,
    indices: Vec<usize>,
    backend: BackendKind,
    dir: &Path,
) -> Result<(Checkpoint, usize)> {
    if indices.is_empty() {
        return Ok((checkpoint, 0));
    }
    std::fs::create_dir_all(dir).map_err(PipelineError::io("create", dir))?;
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<(Checkpoint, usize)> {
        let classes = checkpoint.meta.classes.clone();
        let predictor = Predictor::new(checkpoint, backend.device(), 8);
        let samples: Vec<_> = indices
            .iter()
            .map(|&i| dataset.load(i))
            .collect::<std::result::Result<_, _>>()?;
        let images: Vec<_> = samples.iter().map(|s| s.image.clone()).collect();
        let predictions = predictor.predict(&images)?;
        for ((i, sample), pred) in indices.iter().zip(&samples).zip(&predictions) {
            let (w, h) = (sample.image.width(), sample.image.height());
            let truth = GrayImage::from_raw(w, h, sample.mask.clone()).ok_or_else(|| {
                PipelineError::Data(format!(
                    "the mask of pair {i} does not fit its {w}x{h} image"
                ))
            })?;
            let stem = dataset
                .pairs()
                .get(*i)
                .map_or_else(|| format!("sample{i}"), |p| p.stem.clone());
            let path = dir.join(format!("{stem}.png"));
            overlay_triptych(&sample.image, &truth, &pred.mask, &classes)
                .save(&path)
                .map_err(|e| PipelineError::Io {
                    action: "write",
                    path: path.clone(),
                    source: std::io::Error::other(e),
                })?;
        }
        Ok((predictor.into_checkpoint(), indices.len()))
    })
    .await
    .map_err(|e| PipelineError::Internal(format!("the overlay thread stopped: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use seg_model::SegMetrics;

    fn epoch(e: usize, loss: f64, iou: f64) -> EpochReport {
        EpochReport {
            epoch: e,
            learning_rate: 1e-3,
            train_loss: loss,
            valid_loss: loss * 1.1,
            metrics: SegMetrics {
                iou,
                dice: (iou + 1.0) / 2.0,
                mean_iou: iou,
                mean_dice: (iou + 1.0) / 2.0,
                foreground_iou: iou,
                foreground_dice: iou,
                pixel_accuracy: iou,
                per_class_iou: vec![],
                per_class_dice: vec![],
                pixels: 1,
            },
            train_images_per_sec: 1.0,
            seconds: 1.0,
            is_best: false,
        }
    }

    #[test]
    fn the_curve_is_a_png_with_the_series_drawn() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("curve.png");
        training_curve(
            &[epoch(1, 1.0, 0.2), epoch(2, 0.5, 0.6), epoch(3, 0.3, 0.8)],
            &path,
        )
        .expect("draw");
        let img = image::open(&path).expect("png").to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, 2 * PANEL_HEIGHT));
        for color in COLORS {
            assert!(
                img.pixels().any(|p| p.0 == color),
                "series colour {color:?} drawn"
            );
        }
    }
}
