//! The picture of a comparison: each image of the evaluation set as a point, the champion's
//! score across, the challenger's up, with the diagonal where they are equal (points above it:
//! images the challenger does better). Drawn with plotters and the embedded font, like the
//! training curve.

use std::path::Path;

use image::RgbImage;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{PipelineError, Result};

const SIDE: u32 = 640;
const FAMILY: &str = "sans-serif";
const POINT: RGBColor = RGBColor(31, 119, 180);

/// Writes the scatter of `pairs` (champion, challenger) of `metric` as a PNG at `path`.
pub(super) fn comparison(
    pairs: &[(f64, f64)],
    metric: &str,
    (champion, challenger): (&str, &str),
    path: &Path,
) -> Result<()> {
    let failed = |e: String| PipelineError::Internal(format!("cannot draw the comparison: {e}"));
    plotters::style::register_font(FAMILY, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| failed("the embedded font does not load".into()))?;
    let mut buffer = vec![255u8; (SIDE * SIDE * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (SIDE, SIDE)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Per-image {metric}: {challenger} vs {champion}"),
                (FAMILY, 20),
            )
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(|e| failed(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(format!("{champion} (champion)"))
            .y_desc(format!("{challenger} (challenger)"))
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| failed(e.to_string()))?;
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, 0.0), (1.0, 1.0)],
                RGBColor(150, 150, 150).stroke_width(1),
            ))
            .map_err(|e| failed(e.to_string()))?;
        chart
            .draw_series(pairs.iter().map(|&(x, y)| {
                Circle::new(
                    (x.clamp(0.0, 1.0), y.clamp(0.0, 1.0)),
                    3,
                    POINT.mix(0.6).filled(),
                )
            }))
            .map_err(|e| failed(e.to_string()))?;
        root.present().map_err(|e| failed(e.to_string()))?;
    }
    let img = RgbImage::from_raw(SIDE, SIDE, buffer)
        .ok_or_else(|| failed("the picture buffer has the wrong size".into()))?;
    img.save(path).map_err(|e| PipelineError::Io {
        action: "write",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}
