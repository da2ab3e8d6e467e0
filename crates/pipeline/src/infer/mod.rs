//! `infer`: pick a registered model (alias, version) or a training run ([`crate::model_ref`]),
//! predict masks for the inputs with the checkpoint's own preprocessing, write them at each
//! image's original size in the training data's class encoding, score them against ground
//! truth where it exists, and optionally version the predictions in lakeFS with an MLflow
//! inference run linked both ways.
//!
//! - [`inputs`]: what to predict and its ground truth.
//! - [`outputs`]: where masks and overlays go.
//! - [`predict`]: the prediction loop's wiring to seg-model.
//! - [`publish`]: versioning the predictions (`--commit`).

pub mod inputs;
mod outputs;
mod predict;
mod publish;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use seg_model::data::IMAGE_EXTENSIONS;
use seg_model::metrics::{FalseAlarms, SegMetrics};
use serde::Serialize;

use crate::config::Flags;
use crate::error::{PipelineError, Result};
use crate::model_ref::{self, ModelChoice, ResolvedModel};
use crate::services;
use crate::terminal::Progress;

pub use inputs::InputSpec;

/// How to run `infer`.
#[derive(Debug, Clone, Default)]
pub struct InferOptions {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// Values from flags (`infer.*`, `register.alias`, ...).
    pub flags: Flags,
    /// Which model (none: the configured alias).
    pub choice: Option<ModelChoice>,
    /// `--input`.
    pub input: Option<String>,
    /// `--commit`: version the predictions in lakeFS and log an MLflow inference run.
    pub commit: bool,
    /// `--overwrite`: replace masks an earlier infer wrote in the output folder.
    pub overwrite: bool,
    /// `--quiet`.
    pub quiet: bool,
    /// Set by the binary on Ctrl-C.
    pub interrupted: Arc<AtomicBool>,
    /// When the process started (for the time to the first mask).
    pub started: Option<Instant>,
}

/// Pixel metrics against ground truth.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TruthMetrics {
    /// Images that had a ground-truth mask.
    pub images: usize,
    /// The headline IoU: the foreground's for a binary model, the mean over classes otherwise.
    pub iou: f64,
    /// The headline Dice, by the same convention.
    pub dice: f64,
    /// Mean IoU over every class, background included.
    pub mean_iou_with_background: f64,
    /// Mean Dice over every class, background included.
    pub mean_dice_with_background: f64,
    /// IoU of the foreground classes.
    pub foreground_iou: f64,
    /// Dice of the foreground classes.
    pub foreground_dice: f64,
    /// Fraction of labelled pixels predicted correctly.
    pub pixel_accuracy: f64,
    /// IoU per class name (null: class absent from truth and prediction).
    pub per_class_iou: BTreeMap<String, Option<f64>>,
    /// Images whose ground truth has no foreground (healthy tissue, an empty scene).
    pub empty_truth_images: usize,
    /// Of those, images with more than 1 % of their pixels predicted as foreground.
    pub false_alarm_images: usize,
    /// Of those, images with any foreground predicted.
    pub any_foreground_images: usize,
    /// `false_alarm_images / empty_truth_images` (null without such images).
    pub false_alarm_rate: Option<f64>,
}

impl TruthMetrics {
    fn from_summary(images: usize, m: &SegMetrics, names: &[String], alarms: &FalseAlarms) -> Self {
        Self {
            images,
            iou: m.iou,
            dice: m.dice,
            mean_iou_with_background: m.mean_iou,
            mean_dice_with_background: m.mean_dice,
            foreground_iou: m.foreground_iou,
            foreground_dice: m.foreground_dice,
            pixel_accuracy: m.pixel_accuracy,
            per_class_iou: names
                .iter()
                .cloned()
                .zip(m.per_class_iou.iter().copied())
                .collect(),
            empty_truth_images: alarms.empty_truth_images,
            false_alarm_images: alarms.false_alarms,
            any_foreground_images: alarms.any_foreground,
            false_alarm_rate: alarms.rate(),
        }
    }
}

/// One predicted image (a `--json` line).
#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    /// Always `"image"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The input file (local path; the lakeFS object for lakeFS inputs).
    pub input: String,
    /// The mask written.
    pub mask: PathBuf,
    /// The overlay written (with `--overlay`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay: Option<PathBuf>,
    /// Width of the image and mask.
    pub width: u32,
    /// Height of the image and mask.
    pub height: u32,
    /// Fraction of pixels per class name.
    pub class_fractions: BTreeMap<String, f64>,
    /// Mean probability of the winning class.
    pub mean_confidence: f32,
    /// Milliseconds spent on this image (decode, its share of the batch, write).
    pub ms: f64,
    /// IoU / Dice / accuracy of this image against its ground truth, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truth: Option<ImageTruth>,
}

/// One image's scores against its ground truth.
#[derive(Debug, Clone, Serialize)]
pub struct ImageTruth {
    /// The ground-truth mask file.
    pub mask: PathBuf,
    /// The headline IoU (foreground for a binary model; 1 when the image has no foreground
    /// and none is predicted).
    pub iou: f64,
    /// The headline Dice, by the same convention.
    pub dice: f64,
    /// Pixel accuracy.
    pub pixel_accuracy: f64,
}

/// What `infer` did (the last `--json` line).
#[derive(Debug, Clone, Serialize)]
pub struct InferSummary {
    /// Always `"summary"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The model used.
    pub model: ResolvedModel,
    /// What was predicted.
    pub input_ref: String,
    /// Masks written.
    pub images: usize,
    /// Inputs that could not be read (each reported on stderr).
    pub failed: usize,
    /// The failed inputs.
    pub failed_inputs: Vec<String>,
    /// Where the masks are.
    pub output_dir: PathBuf,
    /// Scores over all inputs that have ground truth.
    pub metrics: Option<TruthMetrics>,
    /// The backend used.
    pub backend: String,
    /// Whether test-time augmentation was on.
    pub tta: bool,
    /// Views averaged per image (1 without test-time augmentation).
    pub tta_views: usize,
    /// Seconds of the prediction loop.
    pub seconds: f64,
    /// Images per second of the prediction loop.
    pub images_per_sec: f64,
    /// Seconds from process start to the first mask on disk.
    pub first_mask_secs: Option<f64>,
    /// lakeFS commit of the predictions (`--commit`).
    pub predictions_commit: Option<String>,
    /// `lakefs://repo/<commit>/predictions/<label>/` (`--commit`).
    pub predictions_uri: Option<String>,
    /// The MLflow inference run (`--commit`).
    pub inference_run_id: Option<String>,
    /// The MLflow inference run in the UI.
    pub inference_run_url: Option<String>,
}

/// Runs `infer`; `emit` gets each image as its mask is written (the `--json` lines).
pub async fn infer(
    opts: InferOptions,
    progress: &Progress,
    emit: impl FnMut(&ImageResult) + Send + 'static,
) -> Result<InferSummary> {
    let config = crate::config::load(opts.config_file.as_deref(), opts.flags.clone())?.config;
    let spec = InputSpec::from_arg(opts.input.as_deref());
    if spec == InputSpec::Stdin && opts.choice == Some(ModelChoice::Interactive) {
        return Err(PipelineError::Usage(
            "--interactive reads the choice from stdin, so --input - cannot read paths from it: pass --run-id, or a folder".into(),
        ));
    }
    let services = services::connect(&config).await?;
    let choice = opts
        .choice
        .clone()
        .unwrap_or_else(|| ModelChoice::Alias(config.register.alias.clone()));
    let model = model_ref::resolve(&services, &config, &choice).await?;
    progress.println(&format!(
        "model {} ({}, run {}, sha256 {} verified)",
        model.label(),
        model.model_uri,
        model.run_id,
        &model.model_sha256[..model.model_sha256.len().min(12)]
    ));
    let output_dir = config.infer.output_dir.clone();
    if output_dir.exists() && !output_dir.is_dir() {
        return Err(PipelineError::Usage(format!(
            "--output {} is a file: give a folder (the masks are written into it; it is created when missing)",
            output_dir.display()
        )));
    }
    let inputs = inputs::gather(&services, &config, &model, &spec, &output_dir, progress).await?;
    if inputs.items.is_empty() {
        return Err(PipelineError::Data(format!(
            "no images in {} (extensions: {}); nothing was written",
            inputs.input_ref,
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    let created = first_missing(&output_dir);
    std::fs::create_dir_all(&output_dir).map_err(PipelineError::io("create", &output_dir))?;
    let input_ref = inputs.input_ref.clone();
    let loop_input = predict::LoopInput {
        outputs: outputs::assign(
            &inputs.items,
            &output_dir,
            config.infer.overlay,
            opts.overwrite,
        )?,
        items: inputs.items,
        output_dir,
        overlay: config.infer.overlay,
        model_file: model.local.clone(),
        sha256: model.model_sha256.clone(),
        backend: config.infer_backend(),
        batch_size: config.infer.batch_size,
        tta: config.infer.tta()?,
        interrupted: opts.interrupted.clone(),
        progress: progress.clone(),
    };
    let mut summary = InferSummary::empty(model, input_ref, &loop_input);
    let outcome = predict_all(loop_input, emit).await?;
    summary.record(&outcome, opts.started);
    if let (true, Some(first)) = (outcome.written.is_empty(), &outcome.first_failure) {
        if let Some(top) = created {
            outputs::remove_unused(&summary.output_dir, &top);
        }
        return Err(PipelineError::Data(format!(
            "none of the {} inputs could be read, so no mask was written; the first: {first}",
            outcome.failed.len()
        )));
    }
    if opts.commit {
        if summary.images == 0 {
            return Err(PipelineError::Data(
                "no mask was written, so there is nothing to commit".into(),
            ));
        }
        publish::commit(&services, &config, &outcome, &mut summary, progress).await?;
    }
    Ok(summary)
}

/// The outermost folder of `path` (itself included) that does not exist yet.
fn first_missing(path: &Path) -> Option<PathBuf> {
    let mut missing = None;
    let mut at = Some(path);
    while let Some(p) = at.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        missing = Some(p.to_path_buf());
        at = p.parent();
    }
    missing
}

/// Runs the prediction loop on a blocking thread.
async fn predict_all(
    input: predict::LoopInput,
    emit: impl FnMut(&ImageResult) + Send + 'static,
) -> Result<predict::LoopOutcome> {
    tracing::info!(
        "predicting {} images on {} into {}",
        input.items.len(),
        input.backend,
        input.output_dir.display()
    );
    tokio::task::spawn_blocking(move || predict::run(input, emit))
        .await
        .map_err(|e| PipelineError::Internal(format!("the prediction thread stopped: {e}")))?
}

impl InferSummary {
    /// The summary before predicting: the model, the inputs, where masks go, the backend.
    fn empty(model: ResolvedModel, input_ref: String, input: &predict::LoopInput) -> Self {
        Self {
            kind: "summary",
            model,
            input_ref,
            images: 0,
            failed: 0,
            failed_inputs: Vec::new(),
            output_dir: input.output_dir.clone(),
            metrics: None,
            backend: input.backend.to_string(),
            tta: input.tta.is_on(),
            tta_views: input.tta.views(),
            seconds: 0.0,
            images_per_sec: 0.0,
            first_mask_secs: None,
            predictions_commit: None,
            predictions_uri: None,
            inference_run_id: None,
            inference_run_url: None,
        }
    }

    /// What the prediction loop did; `started` is when the process started.
    fn record(&mut self, outcome: &predict::LoopOutcome, started: Option<Instant>) {
        self.images = outcome.written.len();
        self.failed = outcome.failed.len();
        self.failed_inputs = outcome.failed.clone();
        self.metrics = (outcome.truth_images > 0).then(|| {
            let summary = outcome.confusion.summary();
            TruthMetrics::from_summary(
                outcome.truth_images,
                &summary,
                &outcome.class_names,
                &outcome.false_alarms,
            )
        });
        self.seconds = outcome.seconds;
        self.images_per_sec = self.images as f64 / outcome.seconds.max(1e-9);
        self.first_mask_secs = started
            .zip(outcome.first_mask)
            .map(|(s, f)| f.duration_since(s).as_secs_f64());
    }
}
