//! The training curve for MLflow, drawn with plotters and an embedded font (DejaVu Sans, so the
//! picture looks the same on every machine, fonts installed or not): loss per epoch (train and
//! validation) above, the validation scores (foreground IoU and Dice for binary models, the
//! class mean otherwise) below; axes with labels and a legend in each panel.

use std::path::Path;

use image::RgbImage;
use plotters::prelude::*;
use plotters::style::FontStyle;
use seg_model::EpochReport;

use crate::error::{PipelineError, Result};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 720;
/// The font family name the embedded font is registered under.
const FAMILY: &str = "sans-serif";
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VALID: RGBColor = RGBColor(255, 127, 14);
const IOU: RGBColor = RGBColor(44, 160, 44);
const DICE: RGBColor = RGBColor(148, 103, 189);

/// One line of a panel.
struct Series<'a> {
    label: &'a str,
    color: RGBColor,
    values: Vec<f64>,
}

/// Writes the training curve of `history` as a PNG.
pub(super) fn training_curve(history: &[EpochReport], path: &Path) -> Result<()> {
    let failed =
        |e: String| PipelineError::Internal(format!("cannot draw the training curve: {e}"));
    // Registering again replaces the same bytes: harmless.
    plotters::style::register_font(FAMILY, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| failed("the embedded font does not load".into()))?;
    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(e.to_string()))?;
        let (top, bottom) = root.split_vertically(HEIGHT / 2);
        let epochs: Vec<f64> = history.iter().map(|r| r.epoch as f64).collect();
        let loss = [
            Series {
                label: "train loss",
                color: TRAIN,
                values: history.iter().map(|r| r.train_loss).collect(),
            },
            Series {
                label: "validation loss",
                color: VALID,
                values: history.iter().map(|r| r.valid_loss).collect(),
            },
        ];
        let scores = [
            Series {
                label: "validation IoU",
                color: IOU,
                values: history.iter().map(|r| r.metrics.iou).collect(),
            },
            Series {
                label: "validation Dice",
                color: DICE,
                values: history.iter().map(|r| r.metrics.dice).collect(),
            },
        ];
        let top_loss = loss
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite())
            .fold(1e-6, f64::max)
            * 1.1;
        let upper = SeriesLabelPosition::UpperRight;
        let lower = SeriesLabelPosition::LowerRight;
        panel(
            &top,
            ("Loss per epoch", "loss"),
            &epochs,
            &loss,
            (top_loss, upper),
        )
        .map_err(|e| failed(e.to_string()))?;
        let titles = ("Validation scores per epoch", "score (0-1)");
        panel(&bottom, titles, &epochs, &scores, (1.0, lower))
            .map_err(|e| failed(e.to_string()))?;
        root.present().map_err(|e| failed(e.to_string()))?;
    }
    let img = RgbImage::from_raw(WIDTH, HEIGHT, buffer)
        .ok_or_else(|| failed("the picture buffer has the wrong size".into()))?;
    img.save(path).map_err(|e| PipelineError::Io {
        action: "write",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}

/// One panel: title, axes with labels, a line with points per series, a legend where the
/// curves usually are not (losses fall, scores rise).
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    (title, y_label): (&str, &str),
    epochs: &[f64],
    series: &[Series<'_>],
    (y_max, legend): (f64, SeriesLabelPosition),
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let last = epochs.last().copied().unwrap_or(1.0).max(2.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(60)
        .build_cartesian_2d(1.0..last, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_label)
        .x_labels(epochs.len().clamp(2, 12))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for s in series {
        let color = s.color;
        let points: Vec<(f64, f64)> = epochs
            .iter()
            .copied()
            .zip(s.values.iter().copied())
            .filter(|(_, v)| v.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()?;
    Ok(())
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
            tta_metrics: None,
            negatives: None,
            train_images_per_sec: 1.0,
            seconds: 1.0,
            is_best: false,
        }
    }

    #[test]
    fn the_curve_has_its_series_and_its_labels() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("curve.png");
        training_curve(
            &[epoch(1, 1.0, 0.2), epoch(2, 0.5, 0.6), epoch(3, 0.3, 0.8)],
            &path,
        )
        .expect("draw");
        let img = image::open(&path).expect("png").to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        for color in [TRAIN, VALID, IOU, DICE] {
            let rgb = [color.0, color.1, color.2];
            assert!(
                img.pixels().filter(|p| p.0 == rgb).count() > 50,
                "series colour {rgb:?} drawn"
            );
        }
        // Text (axis labels, titles, legends) is drawn in black, anti-aliased: many dark
        // pixels in the left label column where no series is drawn.
        let dark = (0..HEIGHT)
            .flat_map(|y| (0..40).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 100, "axis labels drawn ({dark} dark pixels)");
    }
}
