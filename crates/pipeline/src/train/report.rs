//! Pictures of a run for MLflow: validation overlays (image | ground truth | prediction); the
//! training curve is drawn by [`super::curve`].

use std::path::Path;

use image::{DynamicImage, GrayImage, Rgb, RgbImage};
use seg_model::data::{ClassInfo, SegmentationDataset};
use seg_model::predict::overlay;
use seg_model::{BackendKind, Checkpoint, Predictor};

use crate::error::{PipelineError, Result};

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
