//! Prediction over image files, batch by batch: the files of a batch are decoded in parallel
//! (one that does not decode is handed over as [`FileOutcome::Unreadable`] and the rest go on),
//! predicted at their own sizes, scored against their ground truth where they have one, and
//! given to the caller twice: to `write` in parallel (mask files, overlays) and then, in input
//! order, to `collect`, which may stop the run between batches.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use image::DynamicImage;
use rayon::prelude::*;

use super::score::{Truth, score_file};
use super::{Prediction, Predictor};
use crate::data::decode_image;
use crate::error::SegError;

/// One image file to predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInput {
    /// The image file.
    pub path: PathBuf,
    /// Its ground-truth mask file, when it has one.
    pub truth: Option<PathBuf>,
}

/// One predicted image, as `write` sees it.
#[derive(Debug)]
pub struct Predicted<'a> {
    /// Position of the file in the inputs.
    pub index: usize,
    /// The decoded image.
    pub image: &'a DynamicImage,
    /// Its prediction, at the image's size.
    pub prediction: &'a Prediction,
    /// What its ground truth gave.
    pub truth: &'a Truth,
}

/// What became of one input, in input order.
#[derive(Debug)]
pub enum FileOutcome<W> {
    /// Predicted and written.
    Done {
        /// Position of the file in the inputs.
        index: usize,
        /// What `write` returned.
        written: W,
        /// What its ground truth gave.
        truth: Truth,
        /// Milliseconds spent on it: decoding, its share of the batch, scoring and writing.
        ms: f64,
    },
    /// The file did not decode; nothing was written for it.
    Unreadable {
        /// Position of the file in the inputs.
        index: usize,
        /// Why.
        error: SegError,
    },
}

/// Runs `predictor` over `inputs` in batches of its batch size. `write` gets each predicted
/// image (in parallel within a batch); `collect` gets each outcome in input order and stops
/// the run with `Break` (checked after every batch). Returns `Break` when `collect` stopped
/// it. A backend failure or a `write` error ends the run with that error.
pub fn predict_files<W, E>(
    predictor: &Predictor,
    inputs: &[FileInput],
    write: impl Fn(&Predicted<'_>) -> Result<W, E> + Sync,
    mut collect: impl FnMut(FileOutcome<W>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, E>
where
    W: Send,
    E: From<SegError> + Send,
{
    let batch = predictor.batch_size();
    for (b, chunk) in inputs.chunks(batch).enumerate() {
        let first = b * batch;
        let outcomes = predict_chunk(predictor, chunk, first, &write)?;
        let mut flow = ControlFlow::Continue(());
        for outcome in outcomes {
            if collect(outcome).is_break() {
                flow = ControlFlow::Break(());
            }
        }
        if flow.is_break() {
            return Ok(flow);
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// Decodes, predicts, scores and writes one batch; outcomes in input order.
fn predict_chunk<W, E>(
    predictor: &Predictor,
    chunk: &[FileInput],
    first: usize,
    write: &(impl Fn(&Predicted<'_>) -> Result<W, E> + Sync),
) -> Result<Vec<FileOutcome<W>>, E>
where
    W: Send,
    E: From<SegError> + Send,
{
    let decoded: Vec<(Result<DynamicImage, SegError>, f64)> = chunk
        .par_iter()
        .map(|input| {
            let t = Instant::now();
            (decode_image(&input.path), millis(t))
        })
        .collect();
    let mut outcomes: Vec<Option<FileOutcome<W>>> = Vec::with_capacity(chunk.len());
    let mut images = Vec::with_capacity(chunk.len());
    let mut readable = Vec::with_capacity(chunk.len());
    for (i, (image, ms)) in decoded.into_iter().enumerate() {
        match image {
            Ok(image) => {
                images.push(image);
                readable.push((i, ms));
                outcomes.push(None);
            }
            Err(error) => outcomes.push(Some(FileOutcome::Unreadable {
                index: first + i,
                error,
            })),
        }
    }
    if !images.is_empty() {
        let t = Instant::now();
        let predictions = predictor.predict(&images)?;
        let share = millis(t) / images.len() as f64;
        let meta = predictor.meta();
        let classes = meta.model.task_classes();
        let done: Vec<Result<(usize, FileOutcome<W>), E>> = readable
            .par_iter()
            .zip(images.par_iter())
            .zip(predictions.par_iter())
            .map(|(((i, decode_ms), image), prediction)| {
                let t = Instant::now();
                let truth = chunk[*i].truth.as_ref().map_or(Truth::Absent, |path| {
                    score_file(path, &prediction.mask, &meta.mask_encoding, classes)
                });
                let written = write(&Predicted {
                    index: first + i,
                    image,
                    prediction,
                    truth: &truth,
                })?;
                let ms = decode_ms + share + millis(t);
                let outcome = FileOutcome::Done {
                    index: first + i,
                    written,
                    truth,
                    ms,
                };
                Ok((*i, outcome))
            })
            .collect();
        for result in done {
            let (i, outcome) = result?;
            outcomes[i] = Some(outcome);
        }
    }
    Ok(outcomes.into_iter().flatten().collect())
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
