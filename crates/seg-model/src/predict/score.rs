//! A predicted mask scored against its ground-truth file: decoded with the checkpoint's mask
//! encoding and counted into a confusion matrix. A truth that cannot be used (unreadable, of
//! another size, with class ids the model does not know) is said, never scored as zero.

use std::path::Path;

use image::GrayImage;

use crate::data::{MaskEncoding, decode_image};
use crate::metrics::{ConfusionMatrix, SegMetrics};

/// What the ground truth of one image gave.
#[derive(Debug, Clone)]
pub enum Truth {
    /// The image has no ground-truth mask.
    Absent,
    /// Scored: the image's confusion matrix and its metrics.
    Scored {
        /// Pixel counts of (truth, prediction).
        confusion: ConfusionMatrix,
        /// The image's own metrics.
        metrics: SegMetrics,
    },
    /// A ground-truth file exists but cannot be used; why (naming the file).
    Unusable(String),
}

/// Scores `predicted` (class ids at the image's size) against the mask file `truth_path`
/// decoded with `encoding`, over `classes` task classes.
pub fn score_file(
    truth_path: &Path,
    predicted: &GrayImage,
    encoding: &MaskEncoding,
    classes: usize,
) -> Truth {
    let truth = match decode_image(truth_path) {
        Ok(t) => t,
        Err(e) => return Truth::Unusable(format!("ground truth not used: {e}")),
    };
    if (truth.width(), truth.height()) != predicted.dimensions() {
        return Truth::Unusable(format!(
            "ground truth {} is {}x{} but its image is {}x{}: not scored",
            truth_path.display(),
            truth.width(),
            truth.height(),
            predicted.width(),
            predicted.height()
        ));
    }
    let ids = match encoding.decode(&truth, truth_path) {
        Ok(ids) => ids,
        Err(e) => return Truth::Unusable(format!("ground truth not used: {e}")),
    };
    let mut confusion = ConfusionMatrix::new(classes);
    confusion.update(&ids, predicted.as_raw());
    Truth::Scored {
        metrics: confusion.summary(),
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_is_scored_or_said_unusable() {
        let dir = tempfile::tempdir().expect("dir");
        let truth = dir.path().join("t.png");
        GrayImage::from_raw(2, 1, vec![255, 0])
            .expect("mask")
            .save(&truth)
            .expect("save");
        let encoding = MaskEncoding::Binary { threshold: 127 };
        let predicted = GrayImage::from_raw(2, 1, vec![1, 1]).expect("pred");
        match score_file(&truth, &predicted, &encoding, 2) {
            Truth::Scored { metrics, .. } => assert_eq!(metrics.pixel_accuracy, 0.5),
            other => panic!("expected a score, got {other:?}"),
        }
        let wide = GrayImage::from_raw(3, 1, vec![1, 1, 0]).expect("pred");
        assert!(
            matches!(score_file(&truth, &wide, &encoding, 2), Truth::Unusable(m) if m.contains("3x1"))
        );
        let broken = dir.path().join("b.png");
        std::fs::write(&broken, b"not a png").expect("write");
        assert!(matches!(
            score_file(&broken, &predicted, &encoding, 2),
            Truth::Unusable(m) if m.contains("b.png")
        ));
    }
}
