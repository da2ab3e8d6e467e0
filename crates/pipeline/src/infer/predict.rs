//! `infer`'s side of the prediction loop: the verified checkpoint on the chosen backend,
//! seg-model's loop over the image files ([`seg_model::predict::files`]), each mask (and
//! overlay) written as it comes, a progress bar, one warning per unreadable input or unusable
//! ground truth, and the scores summed over the images that have ground truth.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use image::DynamicImage;
use seg_model::metrics::{ConfusionMatrix, FalseAlarms};
use seg_model::predict::{FileInput, FileOutcome, Predicted, Truth, predict_files};
use seg_model::{BackendKind, Predictor, Tta};

use super::inputs::InputItem;
use super::outputs;
use super::{ImageResult, ImageTruth};
use crate::error::{PipelineError, Result};
use crate::terminal::Progress;

/// Everything the blocking prediction loop needs.
pub(super) struct LoopInput {
    pub items: Vec<InputItem>,
    pub outputs: Vec<PathBuf>,
    pub output_dir: PathBuf,
    pub overlay: bool,
    pub model_file: PathBuf,
    pub sha256: String,
    pub backend: BackendKind,
    pub batch_size: usize,
    pub tta: Tta,
    pub interrupted: Arc<AtomicBool>,
    pub progress: Progress,
}

/// The prediction loop's outcome.
pub(super) struct LoopOutcome {
    /// Masks written.
    pub written: Vec<PathBuf>,
    /// Overlays written.
    pub overlays: Vec<PathBuf>,
    /// Inputs that could not be read.
    pub failed: Vec<String>,
    /// The first unreadable input and why (`name: reason`).
    pub first_failure: Option<String>,
    /// Pixel counts over the images with ground truth.
    pub confusion: ConfusionMatrix,
    /// Images with ground truth.
    pub truth_images: usize,
    /// False alarms on the images whose ground truth has no foreground.
    pub false_alarms: FalseAlarms,
    /// Class names of the model, in id order.
    pub class_names: Vec<String>,
    /// Seconds of the loop.
    pub seconds: f64,
    /// When the first mask was on disk.
    pub first_mask: Option<Instant>,
}

/// What writing one prediction produced.
struct Written {
    mask: PathBuf,
    overlay: Option<PathBuf>,
    width: u32,
    height: u32,
    class_fractions: BTreeMap<String, f64>,
    mean_confidence: f32,
}

/// Predicts batch by batch on the calling (blocking) thread; `emit` gets every image as it is
/// written.
pub(super) fn run(input: LoopInput, mut emit: impl FnMut(&ImageResult)) -> Result<LoopOutcome> {
    let device = input.backend.device();
    let checkpoint =
        seg_model::checkpoint::load_verified(&input.model_file, &input.sha256, &device)?;
    let meta = checkpoint.meta.clone();
    let names: Vec<String> = meta.classes.iter().map(|c| c.name.clone()).collect();
    let predictor = Predictor::new(checkpoint, device, input.batch_size).with_tta(input.tta);
    let files: Vec<FileInput> = input
        .items
        .iter()
        .map(|i| FileInput {
            path: i.path.clone(),
            truth: i.truth.clone(),
        })
        .collect();
    let bar = input.progress.bar(
        files.len() as u64,
        "{bar:30} {pos}/{len} images [{elapsed} < {eta}] {msg}",
    );
    let started = Instant::now();
    let mut outcome = LoopOutcome {
        written: Vec::new(),
        overlays: Vec::new(),
        failed: Vec::new(),
        first_failure: None,
        confusion: ConfusionMatrix::new(meta.model.task_classes()),
        truth_images: 0,
        false_alarms: FalseAlarms::default(),
        class_names: names.clone(),
        seconds: 0.0,
        first_mask: None,
    };
    let write = |p: &Predicted<'_>| -> Result<Written> {
        let mask = &input.outputs[p.index];
        outputs::save_png(&meta.mask_encoding.encode(&p.prediction.mask), mask)?;
        let overlay = if input.overlay {
            let path = outputs::overlay_path(&input.output_dir, mask);
            let painted =
                seg_model::predict::overlay(p.image, &p.prediction.mask, &meta.classes, 0.45);
            outputs::save_png(&DynamicImage::ImageRgb8(painted), &path)?;
            Some(path)
        } else {
            None
        };
        let total = p.prediction.class_pixels.iter().sum::<u64>().max(1) as f64;
        Ok(Written {
            mask: mask.clone(),
            overlay,
            width: p.image.width(),
            height: p.image.height(),
            class_fractions: names
                .iter()
                .cloned()
                .zip(p.prediction.class_pixels.iter().map(|&c| c as f64 / total))
                .collect(),
            mean_confidence: p.prediction.mean_confidence,
        })
    };
    let collect = |done: FileOutcome<Written>| {
        bar.suspend(|| take(&input.items, &mut outcome, done, &mut emit));
        bar.inc(1);
        bar.set_message(format!(
            "{:.1} img/s",
            outcome.written.len() as f64 / started.elapsed().as_secs_f64().max(1e-9)
        ));
        if input.interrupted.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let flow = predict_files(&predictor, &files, write, collect)?;
    if flow.is_break() {
        bar.abandon();
        return Err(PipelineError::Interrupted);
    }
    bar.finish_and_clear();
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Adds one input's outcome: its mask, its scores, or its failure (a warning naming it).
fn take(
    items: &[InputItem],
    outcome: &mut LoopOutcome,
    done: FileOutcome<Written>,
    emit: &mut impl FnMut(&ImageResult),
) {
    let (index, written, truth, ms) = match done {
        FileOutcome::Unreadable { index, error } => {
            let name = &items[index].name;
            tracing::warn!("skipped {name}: {error}");
            outcome.first_failure.get_or_insert_with(|| {
                // The decoder's errors name the file already.
                let error = error.to_string();
                if error.contains(name.as_str()) {
                    error
                } else {
                    format!("{name}: {error}")
                }
            });
            outcome.failed.push(name.clone());
            return;
        }
        FileOutcome::Done {
            index,
            written,
            truth,
            ms,
        } => (index, written, truth, ms),
    };
    outcome.first_mask.get_or_insert_with(Instant::now);
    let truth = match truth {
        Truth::Scored { confusion, metrics } => {
            outcome.confusion.merge(&confusion);
            outcome.false_alarms.add(&confusion);
            outcome.truth_images += 1;
            items[index].truth.clone().map(|mask| ImageTruth {
                mask,
                iou: metrics.iou,
                dice: metrics.dice,
                pixel_accuracy: metrics.pixel_accuracy,
            })
        }
        Truth::Unusable(why) => {
            tracing::warn!("{why}");
            None
        }
        Truth::Absent => None,
    };
    outcome.written.push(written.mask.clone());
    if let Some(o) = &written.overlay {
        outcome.overlays.push(o.clone());
    }
    emit(&ImageResult {
        kind: "image",
        input: items[index].name.clone(),
        mask: written.mask,
        overlay: written.overlay,
        width: written.width,
        height: written.height,
        class_fractions: written.class_fractions,
        mean_confidence: written.mean_confidence,
        ms,
        truth,
    });
}
