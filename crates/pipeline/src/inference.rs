//! `infer`: pick a registered model (alias, version) or a training run, resolve its immutable
//! lakeFS URI through MLflow, download it into the cache keyed by commit and verify its sha256
//! (a mismatch is refused, never loaded), predict masks for the inputs with the checkpoint's
//! own preprocessing, write them at each image's original size in the training data's class
//! encoding, score them against ground truth where it exists, and optionally version the
//! predictions in lakeFS with an MLflow inference run linked both ways.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::TryStreamExt;
use image::{DynamicImage, GrayImage, RgbImage};
use lakefs_client::{CommitOptions, LakeFsError, LakeFsUri, UploadDirOptions};
use mlflow_client::{Metric, ModelVersion, NewRun, Param, Run, RunGuard, RunStatus, Tag};
use rayon::prelude::*;
use seg_model::data::{IMAGE_EXTENSIONS, MaskEncoding, decode_image};
use seg_model::metrics::{ConfusionMatrix, SegMetrics};
use seg_model::{Predictor, SegError};
use serde::Serialize;

use crate::config::{Config, Flags};
use crate::data::KIND_KEY;
use crate::error::{PipelineError, Result};
use crate::lineage;
use crate::progress::Progress;
use crate::registration::{self, format_utc, read_choice, truncate_chars};
use crate::services::{self, Services};
use crate::training::{run_url, tags};

/// The value of [`KIND_KEY`] on prediction commits.
pub const KIND_PREDICTIONS: &str = "predictions";

/// Tags an inference run carries.
pub mod run_tags {
    /// `inference` (what kind of run this is).
    pub const KIND: &str = "seg_mlops.kind";
    /// The registered model's name.
    pub const MODEL_NAME: &str = "model_name";
    /// The model version used (absent when picked by run).
    pub const MODEL_VERSION: &str = "model_version";
    /// The training run of the model.
    pub const TRAINING_RUN: &str = "training_run_id";
    /// What was predicted (lakeFS URI at a commit, local folder, file, or stdin).
    pub const INPUT_REF: &str = "input_ref";
    /// The lakeFS commit holding the predictions.
    pub const PREDICTIONS_COMMIT: &str = "lakefs_predictions_commit";
    /// `lakefs://repo/<commit>/<predictions folder>/`.
    pub const PREDICTIONS_URI: &str = "predictions_uri";
}

/// How to pick the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// The registered model's version under this alias.
    Alias(String),
    /// This version of the registered model.
    Version(String),
    /// The model of this training run.
    RunId(String),
    /// A table of runs; the choice is read from stdin (empty line = newest).
    Interactive,
}

/// Where the images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// The images of the model's training data commit D.
    TrainingData,
    /// A local folder (recursively), a single file, or a `lakefs://repo/ref/prefix`.
    Path(String),
    /// Paths on stdin, one per line.
    Stdin,
}

impl InputSpec {
    /// `--input` text: `-` for stdin, anything else a path or URI; none = the training data.
    pub fn from_arg(arg: Option<&str>) -> Self {
        match arg {
            None => Self::TrainingData,
            Some("-") => Self::Stdin,
            Some(p) => Self::Path(p.to_string()),
        }
    }
}

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
    /// `--quiet`.
    pub quiet: bool,
    /// Set by the binary on Ctrl-C.
    pub interrupted: Arc<AtomicBool>,
    /// When the process started (for the time to the first mask).
    pub started: Option<Instant>,
}

/// The model `infer` resolved and verified.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedModel {
    /// Registered model name.
    pub model_name: String,
    /// Registry version (none when picked by a run that was never registered).
    pub version: Option<String>,
    /// The alias it was picked by.
    pub alias: Option<String>,
    /// The training run.
    pub run_id: String,
    /// Its immutable lakeFS URI.
    pub model_uri: String,
    /// sha256 of the model file, verified.
    pub model_sha256: String,
    /// The training data commit D.
    pub data_commit: String,
    /// The lakeFS repository of the training data.
    pub data_repository: String,
    /// Git commit of the training code.
    pub git_commit: String,
    /// The verified file in the cache.
    pub local: PathBuf,
}

impl ResolvedModel {
    /// `<model>-v<version>`, or `run-<run id>` for an unregistered run: the predictions folder.
    pub fn label(&self) -> String {
        match &self.version {
            Some(v) => format!("{}-v{v}", self.model_name),
            None => format!("run-{}", self.run_id),
        }
    }
}

/// Pixel metrics against ground truth.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TruthMetrics {
    /// Images that had a ground-truth mask.
    pub images: usize,
    /// Mean IoU over classes (background included).
    pub iou: f64,
    /// Mean Dice over classes.
    pub dice: f64,
    /// IoU of the foreground classes.
    pub foreground_iou: f64,
    /// Dice of the foreground classes.
    pub foreground_dice: f64,
    /// Fraction of labelled pixels predicted correctly.
    pub pixel_accuracy: f64,
    /// IoU per class name (null: class absent from truth and prediction).
    pub per_class_iou: BTreeMap<String, Option<f64>>,
}

impl TruthMetrics {
    fn from_summary(images: usize, m: &SegMetrics, names: &[String]) -> Self {
        Self {
            images,
            iou: m.mean_iou,
            dice: m.mean_dice,
            foreground_iou: m.foreground_iou,
            foreground_dice: m.foreground_dice,
            pixel_accuracy: m.pixel_accuracy,
            per_class_iou: names
                .iter()
                .cloned()
                .zip(m.per_class_iou.iter().copied())
                .collect(),
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
    /// Mean IoU over the classes present.
    pub iou: f64,
    /// Mean Dice over the classes present.
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

/// Resolves the model: through the registry (alias, version) or a training run; downloads and
/// verifies it.
pub async fn resolve_model(
    services: &Services,
    config: &Config,
    choice: &ModelChoice,
) -> Result<ResolvedModel> {
    let name = &config.register.model_name;
    let mlflow = &services.mlflow;
    let registry_err = |e: mlflow_client::MlflowError, what: String| {
        if e.is_not_found() || e.to_string().contains("INVALID_PARAMETER_VALUE") {
            PipelineError::NotFound(format!(
                "{what} of registered model {name:?} does not exist at {}: register one with `cargo run -p register_model` (or pick a run with --run-id / --interactive)",
                config.mlflow.tracking_uri
            ))
        } else {
            e.into()
        }
    };
    // The run, when picking it already fetched it.
    let mut picked: Option<Run> = None;
    let (version, alias, run_id): (Option<ModelVersion>, Option<String>, String) = match choice {
        ModelChoice::Alias(alias) => {
            let v = mlflow
                .get_version_by_alias(name, alias)
                .await
                .map_err(|e| registry_err(e, format!("alias {alias:?}")))?
                .ok_or_else(|| {
                    PipelineError::NotFound(format!(
                        "registered model {name:?} has no alias {alias:?} at {}: register a version with `cargo run -p register_model` (or pick --version / --run-id)",
                        config.mlflow.tracking_uri
                    ))
                })?;
            let run = v.run_id.clone();
            (Some(v), Some(alias.clone()), run)
        }
        ModelChoice::Version(n) => {
            let v = mlflow
                .get_model_version(name, n)
                .await
                .map_err(|e| registry_err(e, format!("version {n}")))?;
            let run = v.run_id.clone();
            (Some(v), None, run)
        }
        ModelChoice::RunId(id) => (None, None, id.clone()),
        ModelChoice::Interactive => {
            let run = pick_run_interactively(services, config).await?;
            let id = run.info.run_id.clone();
            picked = Some(run);
            (None, None, id)
        }
    };
    let run = match picked {
        Some(run) => run,
        None => get_training_run(services, config, &run_id).await?,
    };
    let run_uri = run.tag(tags::MODEL_URI).unwrap_or_default().to_string();
    let run_sha = run.tag(tags::MODEL_SHA256).unwrap_or_default().to_string();
    // A run picked directly may be registered: name its version for the predictions folder.
    let version = match version {
        Some(v) => Some(v),
        None => {
            let found: Vec<ModelVersion> = mlflow
                .search_model_versions(Some(format!("name='{name}' and run_id='{run_id}'")), vec![])
                .try_collect()
                .await?;
            found
                .into_iter()
                .filter(|v| v.source == run_uri)
                .max_by_key(|v| v.version.parse::<u64>().unwrap_or(0))
        }
    };
    let (uri, sha) = match &version {
        Some(v) => {
            let sha = v.tag(tags::MODEL_SHA256).unwrap_or(&run_sha).to_string();
            if !run_sha.is_empty() && !sha.eq_ignore_ascii_case(&run_sha) {
                return Err(PipelineError::Lineage(format!(
                    "version {} of {name} records model_sha256 {sha} but its run {run_id} recorded {run_sha}; refusing both",
                    v.version
                )));
            }
            (v.source.clone(), sha)
        }
        None => (run_uri, run_sha),
    };
    if !uri.starts_with("lakefs://") || sha.is_empty() {
        return Err(PipelineError::Lineage(format!(
            "run {run_id} has no lakeFS model with a sha256 ({}={uri:?}, {}={sha:?}): it was not trained by this pipeline",
            tags::MODEL_URI,
            tags::MODEL_SHA256
        )));
    }
    let whose = match &version {
        Some(v) => format!("version {} of {name}", v.version),
        None => format!("model of run {run_id}"),
    };
    let local = registration::fetch_verified(services, config, &uri, &sha, &whose).await?;
    let parsed: LakeFsUri = uri.parse()?;
    Ok(ResolvedModel {
        model_name: name.clone(),
        version: version.map(|v| v.version),
        alias,
        run_id: run_id.clone(),
        model_uri: uri,
        model_sha256: sha,
        data_commit: run.tag(tags::DATA_COMMIT).unwrap_or_default().to_string(),
        data_repository: run
            .tag(tags::LAKEFS_REPO)
            .map_or(parsed.repository, str::to_string),
        git_commit: run.tag(tags::GIT_COMMIT).unwrap_or("unknown").to_string(),
        local,
    })
}

async fn get_training_run(services: &Services, config: &Config, run_id: &str) -> Result<Run> {
    services.mlflow.get_run(run_id).await.map_err(|e| {
        if e.is_not_found() {
            PipelineError::NotFound(format!(
                "no MLflow run {run_id} at {}: list runs with `infer --interactive`",
                config.mlflow.tracking_uri
            ))
        } else {
            e.into()
        }
    })
}

/// Lists the runs with a model (number, run id, git commit, start, main params and metrics)
/// and reads the choice from stdin; an empty line picks the newest.
async fn pick_run_interactively(services: &Services, config: &Config) -> Result<Run> {
    let runs = registration::model_runs(services, config).await?;
    if runs.is_empty() {
        return Err(PipelineError::NotFound(format!(
            "experiment {:?} has no FINISHED run with a model: train one first (cargo run -p train)",
            config.mlflow.experiment
        )));
    }
    let param = |r: &Run, k: &str| {
        r.data
            .params
            .iter()
            .find(|p| p.key == k)
            .map_or("-".to_string(), |p| p.value.clone())
    };
    let metric = |r: &Run, k: &str| r.metric(k).map_or("-".to_string(), |v| format!("{v:.4}"));
    eprintln!(
        "{:>3}  {:<32}  {:<10}  {:<19}  {:>6}  {:>8}  {:>5}  {:<7}  {:>7}  {:>7}  {:>7}",
        "#",
        "run id",
        "git",
        "start (UTC)",
        "epochs",
        "lr",
        "size",
        "backend",
        "loss",
        "iou",
        "dice"
    );
    for (i, r) in runs.iter().enumerate() {
        eprintln!(
            "{:>3}  {:<32}  {:<10}  {:<19}  {:>6}  {:>8}  {:>5}  {:<7}  {:>7}  {:>7}  {:>7}",
            i + 1,
            r.info.run_id,
            truncate_chars(r.tag(tags::GIT_COMMIT).unwrap_or("-"), 10),
            format_utc(r.info.start_time / 1000),
            param(r, "epochs"),
            param(r, "learning_rate"),
            param(r, "image_size"),
            truncate_chars(&param(r, "device"), 7),
            metric(r, "loss"),
            metric(r, "iou"),
            metric(r, "dice"),
        );
    }
    let n = read_choice(runs.len(), "predict with which run?", true)?;
    runs.into_iter()
        .nth(n)
        .ok_or_else(|| PipelineError::Usage("no such run".into()))
}

/// One image to predict.
#[derive(Debug, Clone)]
struct InputItem {
    /// The file on disk.
    path: PathBuf,
    /// What to call it in output (`lakefs://...` for lakeFS inputs).
    name: String,
    /// Relative path of its mask under the output folder.
    rel: PathBuf,
    /// Its ground-truth mask, when one exists.
    truth: Option<PathBuf>,
}

/// The images to predict and what they are.
#[derive(Debug, Clone)]
struct InputSet {
    items: Vec<InputItem>,
    input_ref: String,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The mask file for an image stem in `dir` (any image extension, png first).
fn find_mask(dir: &Path, stem: &std::ffi::OsStr) -> Option<PathBuf> {
    IMAGE_EXTENSIONS.iter().find_map(|ext| {
        let mut name = stem.to_os_string();
        name.push(".");
        name.push(ext);
        let p = dir.join(name);
        p.is_file().then_some(p)
    })
}

/// Ground truth of `image`: `masks_root/<rel>` when the inputs have a known masks folder,
/// else the same path with its last `images` folder replaced by `masks`.
fn truth_for(image: &Path, rel: &Path, masks_root: Option<&Path>) -> Option<PathBuf> {
    let stem = image.file_stem()?;
    if let Some(root) = masks_root {
        let dir = rel.parent().map_or(root.to_path_buf(), |p| root.join(p));
        return find_mask(&dir, stem);
    }
    let parent = image.parent()?;
    let comps: Vec<Component> = parent.components().collect();
    let at = comps.iter().rposition(|c| c.as_os_str() == "images")?;
    let mut dir = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        dir.push(if i == at {
            std::ffi::OsStr::new("masks")
        } else {
            c.as_os_str()
        });
    }
    find_mask(&dir, stem)
}

/// Image files under `root` (recursively, sorted, hidden folders and `skip` left out).
fn walk_images(root: &Path, skip: Option<&Path>) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let hidden = e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.');
            let skipped = skip.is_some_and(|s| e.path().canonicalize().is_ok_and(|p| p == s));
            !hidden && !skipped
        });
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e.path().map_or(root.to_path_buf(), Path::to_path_buf);
            PipelineError::Io {
                action: "list",
                path,
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        if entry.file_type().is_file() && is_image(entry.path()) {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

/// A relative path made safe to join under the output folder (no root, no `..`).
fn safe_rel(path: &Path) -> PathBuf {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Items for `files` under `root` (their paths relative to it name the masks).
fn items_under(
    root: &Path,
    files: Vec<PathBuf>,
    masks_root: Option<&Path>,
    name: impl Fn(&Path, &Path) -> String,
) -> Vec<InputItem> {
    files
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(root)
                .map_or_else(|_| safe_rel(&path), Path::to_path_buf);
            InputItem {
                truth: truth_for(&path, &rel, masks_root),
                name: name(&path, &rel),
                rel,
                path,
            }
        })
        .collect()
}

/// Gathers the inputs.
async fn gather_inputs(
    services: &Services,
    config: &Config,
    model: &ResolvedModel,
    spec: &InputSpec,
    output_dir: &Path,
    progress: &Progress,
) -> Result<InputSet> {
    let local_name = |p: &Path, _: &Path| p.display().to_string();
    match spec {
        InputSpec::TrainingData => {
            if model.data_commit.is_empty() {
                return Err(PipelineError::Lineage(format!(
                    "run {} has no {} tag: pass --input to predict other images",
                    model.run_id,
                    tags::DATA_COMMIT
                )));
            }
            let l = &config.lakefs;
            let (repo, commit) = (&model.data_repository, &model.data_commit);
            let spinner = progress.spinner(&format!(
                "downloading the training data lakefs://{repo}/{commit}/"
            ));
            let images = services
                .lakefs
                .download_prefix(repo, commit, &l.images_path, &config.paths.cache_dir, 16)
                .await?;
            let masks = services
                .lakefs
                .download_prefix(repo, commit, &l.masks_path, &config.paths.cache_dir, 16)
                .await?;
            spinner.finish_and_clear();
            let files = walk_images(&images.dir, None)?;
            let prefix = format!("{}/", l.images_path.trim_matches('/'));
            let items = items_under(&images.dir, files, Some(&masks.dir), |_, rel| {
                format!("lakefs://{repo}/{commit}/{prefix}{}", rel.to_string_lossy())
            });
            Ok(InputSet {
                items,
                input_ref: format!("lakefs://{repo}/{commit}/{prefix}"),
            })
        }
        InputSpec::Path(text) if text.starts_with("lakefs://") => {
            let uri: LakeFsUri = text.parse()?;
            let commit = services
                .lakefs
                .resolve_commit(&uri.repository, &uri.reference)
                .await
                .map_err(|e| {
                    if e.is_not_found() {
                        PipelineError::NotFound(format!(
                            "--input {text}: no repository {:?} or ref {:?} in lakeFS at {}",
                            uri.repository, uri.reference, config.lakefs.endpoint
                        ))
                    } else {
                        e.into()
                    }
                })?;
            let spinner = progress.spinner(&format!("downloading {text}"));
            let images = services
                .lakefs
                .download_prefix(
                    &uri.repository,
                    &commit,
                    &uri.path,
                    &config.paths.cache_dir,
                    16,
                )
                .await?;
            // Ground truth beside lakeFS images: the same prefix with `images` -> `masks`.
            let masks_prefix = uri.path.trim_matches('/').split('/').collect::<Vec<_>>();
            let masks_dir = match masks_prefix.iter().rposition(|s| *s == "images") {
                Some(at) => {
                    let mut parts = masks_prefix.clone();
                    parts[at] = "masks";
                    services
                        .lakefs
                        .download_prefix(
                            &uri.repository,
                            &commit,
                            &parts[..=at].join("/"),
                            &config.paths.cache_dir,
                            16,
                        )
                        .await
                        .ok()
                        .filter(|r| r.files > 0)
                        .map(|r| (r.dir, parts[at + 1..].join("/")))
                }
                None => None,
            };
            spinner.finish_and_clear();
            let files = walk_images(&images.dir, None)?;
            let masks_root = masks_dir.map(|(dir, rest)| dir.join(rest));
            let path = uri.path.trim_matches('/').to_string();
            let (repo, c) = (uri.repository.clone(), commit.clone());
            let items = items_under(&images.dir, files, masks_root.as_deref(), |_, rel| {
                let rel = rel.to_string_lossy();
                if path.is_empty() {
                    format!("lakefs://{repo}/{c}/{rel}")
                } else {
                    format!("lakefs://{repo}/{c}/{path}/{rel}")
                }
            });
            Ok(InputSet {
                items,
                input_ref: format!("lakefs://{}/{commit}/{}", uri.repository, uri.path),
            })
        }
        InputSpec::Path(text) => {
            let path = PathBuf::from(text);
            let meta = std::fs::metadata(&path).map_err(PipelineError::io("read", &path))?;
            if meta.is_file() {
                let rel = PathBuf::from(path.file_name().unwrap_or(path.as_os_str()));
                let items = vec![InputItem {
                    truth: truth_for(&path, &rel, None),
                    name: path.display().to_string(),
                    rel,
                    path: path.clone(),
                }];
                return Ok(InputSet {
                    items,
                    input_ref: absolute(&path).display().to_string(),
                });
            }
            // A dataset folder (images/ + masks/): its images, scored against its masks.
            let (root, masks_root) = if path.join("images").is_dir() {
                let masks = path.join("masks");
                (path.join("images"), masks.is_dir().then_some(masks))
            } else {
                (path.clone(), None)
            };
            let skip = output_dir.canonicalize().ok();
            let files = walk_images(&root, skip.as_deref())?;
            Ok(InputSet {
                items: items_under(&root, files, masks_root.as_deref(), local_name),
                input_ref: absolute(&path).display().to_string(),
            })
        }
        InputSpec::Stdin => {
            let lines: Vec<String> = tokio::task::spawn_blocking(|| {
                std::io::stdin()
                    .lock()
                    .lines()
                    .map_while(std::result::Result::ok)
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .await
            .map_err(|e| PipelineError::Usage(format!("cannot read stdin: {e}")))?;
            let items = lines
                .into_iter()
                .map(|line| {
                    let path = PathBuf::from(&line);
                    let rel = if path.is_relative() {
                        safe_rel(&path)
                    } else {
                        PathBuf::from(path.file_name().unwrap_or(path.as_os_str()))
                    };
                    InputItem {
                        truth: truth_for(&path, &rel, None),
                        name: line,
                        rel,
                        path,
                    }
                })
                .collect();
            Ok(InputSet {
                items,
                input_ref: "stdin".into(),
            })
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Mask paths under `out` for the items: `<rel>.png`, or `<file name>.png` where two inputs
/// would share a mask; refuses to overwrite any input.
fn assign_outputs(items: &[InputItem], out: &Path) -> Result<Vec<PathBuf>> {
    let inputs: HashSet<PathBuf> = items
        .iter()
        .filter_map(|i| i.path.canonicalize().ok())
        .collect();
    let mut taken: HashMap<PathBuf, usize> = HashMap::new();
    let mut paths = Vec::with_capacity(items.len());
    for item in items {
        let mut rel = item.rel.with_extension("png");
        if taken.contains_key(&rel) {
            let mut name = item.rel.as_os_str().to_os_string();
            name.push(".png");
            rel = PathBuf::from(name);
        }
        let n = taken.entry(rel.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            rel = rel.with_extension(format!("{n}.png"));
        }
        let path = out.join(&rel);
        let resolved = path
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .zip(path.file_name())
            .map(|(p, f)| p.join(f));
        if resolved.as_ref().is_some_and(|p| inputs.contains(p)) {
            return Err(PipelineError::Usage(format!(
                "writing the mask of {} to {} would overwrite an input: choose another --output",
                item.name,
                path.display()
            )));
        }
        paths.push(path);
    }
    Ok(paths)
}

/// The mask image in the training data's class encoding: binary 0/255, index ids, or the
/// palette's colours.
fn encode_mask(mask: &GrayImage, encoding: &MaskEncoding) -> DynamicImage {
    match encoding {
        MaskEncoding::Binary { .. } => {
            let mut m = mask.clone();
            for p in m.pixels_mut() {
                p.0[0] = if p.0[0] > 0 { 255 } else { 0 };
            }
            DynamicImage::ImageLuma8(m)
        }
        MaskEncoding::Index { .. } => DynamicImage::ImageLuma8(mask.clone()),
        MaskEncoding::Palette { classes } => {
            DynamicImage::ImageRgb8(RgbImage::from_fn(mask.width(), mask.height(), |x, y| {
                let id = usize::from(mask.get_pixel(x, y).0[0]);
                image::Rgb(classes.get(id).map_or([0, 0, 0], |c| c.color))
            }))
        }
    }
}

fn save_png(img: &DynamicImage, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(PipelineError::io("create", dir))?;
    }
    // Write beside, then rename: a mask on disk is always complete.
    let tmp = path.with_extension("png.part");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| PipelineError::Io {
            action: "write",
            path: tmp.clone(),
            source: std::io::Error::other(e),
        })?;
    std::fs::rename(&tmp, path).map_err(PipelineError::io("write", path))
}

/// What one predicted image contributes.
struct Written {
    result: ImageResult,
    confusion: Option<ConfusionMatrix>,
}

/// The prediction loop's outcome.
struct LoopOutcome {
    written: Vec<PathBuf>,
    overlays: Vec<PathBuf>,
    failed: Vec<String>,
    confusion: ConfusionMatrix,
    truth_images: usize,
    /// Class names of the model, in id order.
    class_names: Vec<String>,
    seconds: f64,
    first_mask: Option<Instant>,
}

/// Everything the blocking prediction loop needs.
struct LoopInput {
    items: Vec<InputItem>,
    outputs: Vec<PathBuf>,
    output_dir: PathBuf,
    overlay: bool,
    model_file: PathBuf,
    sha256: String,
    backend: seg_model::BackendKind,
    batch_size: usize,
    interrupted: Arc<AtomicBool>,
    progress: Progress,
}

/// Predicts batch by batch on a blocking thread; `emit` gets every image as it is written.
fn prediction_loop(input: LoopInput, mut emit: impl FnMut(&ImageResult)) -> Result<LoopOutcome> {
    let device = input.backend.device();
    let checkpoint =
        seg_model::checkpoint::load_verified(&input.model_file, &input.sha256, &device)?;
    let meta = checkpoint.meta.clone();
    let classes = meta.classes.clone();
    let names: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
    let task_classes = meta.model.task_classes();
    let predictor = Predictor::new(checkpoint, device, input.batch_size);
    let bar = input.progress.bar(
        input.items.len() as u64,
        "{bar:30} {pos}/{len} images [{elapsed} < {eta}] {msg}",
    );
    let started = Instant::now();
    let mut outcome = LoopOutcome {
        written: Vec::new(),
        overlays: Vec::new(),
        failed: Vec::new(),
        confusion: ConfusionMatrix::new(task_classes),
        truth_images: 0,
        class_names: names.clone(),
        seconds: 0.0,
        first_mask: None,
    };
    let pairs: Vec<(&InputItem, &PathBuf)> = input.items.iter().zip(&input.outputs).collect();
    for chunk in pairs.chunks(input.batch_size.max(1)) {
        if input.interrupted.load(Ordering::SeqCst) {
            bar.abandon();
            return Err(PipelineError::Interrupted);
        }
        let decoded: Vec<(usize, std::result::Result<DynamicImage, SegError>, f64)> = chunk
            .par_iter()
            .enumerate()
            .map(|(i, (item, _))| {
                let t = Instant::now();
                let img = decode_image(&item.path);
                (i, img, t.elapsed().as_secs_f64() * 1000.0)
            })
            .collect();
        // The decoded images (handed to the predictor as they are) and, beside them, which
        // input each is and how long it took to decode.
        let mut images: Vec<DynamicImage> = Vec::with_capacity(chunk.len());
        let mut ok: Vec<(usize, f64)> = Vec::with_capacity(chunk.len());
        for (i, img, ms) in decoded {
            match img {
                Ok(img) => {
                    images.push(img);
                    ok.push((i, ms));
                }
                Err(e) => {
                    let name = &chunk[i].0.name;
                    bar.suspend(|| tracing::warn!("skipped {name}: {e}"));
                    outcome.failed.push(name.clone());
                }
            }
        }
        if ok.is_empty() {
            bar.inc(chunk.len() as u64);
            continue;
        }
        let t_pred = Instant::now();
        let predictions = predictor.predict(&images)?;
        let share = t_pred.elapsed().as_secs_f64() * 1000.0 / ok.len() as f64;
        let results: Vec<Result<Written>> = ok
            .par_iter()
            .zip(images.par_iter())
            .zip(predictions.par_iter())
            .map(|(((i, decode_ms), img), pred)| {
                let t = Instant::now();
                let (item, mask_path) = chunk[*i];
                save_png(&encode_mask(&pred.mask, &meta.mask_encoding), mask_path)?;
                let overlay = if input.overlay {
                    let rel = mask_path
                        .strip_prefix(&input.output_dir)
                        .unwrap_or(mask_path);
                    let path = input.output_dir.join("overlays").join(rel);
                    let painted = seg_model::predict::overlay(img, &pred.mask, &classes, 0.45);
                    save_png(&DynamicImage::ImageRgb8(painted), &path)?;
                    Some(path)
                } else {
                    None
                };
                let (truth, confusion) = match &item.truth {
                    Some(t) => score(t, img, &pred.mask, &meta.mask_encoding, task_classes)?,
                    None => (None, None),
                };
                let total = pred.class_pixels.iter().sum::<u64>().max(1) as f64;
                Ok(Written {
                    result: ImageResult {
                        kind: "image",
                        input: item.name.clone(),
                        mask: mask_path.clone(),
                        overlay,
                        width: img.width(),
                        height: img.height(),
                        class_fractions: names
                            .iter()
                            .cloned()
                            .zip(pred.class_pixels.iter().map(|&c| c as f64 / total))
                            .collect(),
                        mean_confidence: pred.mean_confidence,
                        ms: decode_ms + share + t.elapsed().as_secs_f64() * 1000.0,
                        truth,
                    },
                    confusion,
                })
            })
            .collect();
        for r in results {
            let w = r?;
            if outcome.first_mask.is_none() {
                outcome.first_mask = Some(Instant::now());
            }
            if let Some(c) = &w.confusion {
                outcome.confusion.merge(c);
                outcome.truth_images += 1;
            }
            outcome.written.push(w.result.mask.clone());
            if let Some(o) = &w.result.overlay {
                outcome.overlays.push(o.clone());
            }
            bar.suspend(|| emit(&w.result));
        }
        bar.inc(chunk.len() as u64);
        bar.set_message(format!(
            "{:.1} img/s",
            outcome.written.len() as f64 / started.elapsed().as_secs_f64().max(1e-9)
        ));
    }
    bar.finish_and_clear();
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Scores a predicted mask against its ground-truth file (skipped with a warning when the
/// sizes differ or the file does not decode).
fn score(
    truth_path: &Path,
    img: &DynamicImage,
    predicted: &GrayImage,
    encoding: &MaskEncoding,
    classes: usize,
) -> Result<(Option<ImageTruth>, Option<ConfusionMatrix>)> {
    let truth_img = match decode_image(truth_path) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("ground truth not used: {e}");
            return Ok((None, None));
        }
    };
    if (truth_img.width(), truth_img.height()) != (img.width(), img.height()) {
        tracing::warn!(
            "ground truth {} is {}x{} but its image is {}x{}: not scored",
            truth_path.display(),
            truth_img.width(),
            truth_img.height(),
            img.width(),
            img.height()
        );
        return Ok((None, None));
    }
    let ids = match encoding.decode(&truth_img, truth_path) {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!("ground truth not used: {e}");
            return Ok((None, None));
        }
    };
    let mut c = ConfusionMatrix::new(classes);
    c.update(&ids, predicted.as_raw());
    let s = c.summary();
    Ok((
        Some(ImageTruth {
            mask: truth_path.to_path_buf(),
            iou: s.mean_iou,
            dice: s.mean_dice,
            pixel_accuracy: s.pixel_accuracy,
        }),
        Some(c),
    ))
}

/// Runs `infer`; `emit` gets each image as its mask is written (the `--json` lines).
pub async fn infer(
    opts: InferOptions,
    progress: &Progress,
    emit: impl FnMut(&ImageResult) + Send + 'static,
) -> Result<InferSummary> {
    let loaded = crate::config::load(opts.config_file.as_deref(), opts.flags.clone())?;
    let config = loaded.config;
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
    let model = resolve_model(&services, &config, &choice).await?;
    progress.println(&format!(
        "model {} ({}, run {}, sha256 {} verified)",
        model.label(),
        model.model_uri,
        model.run_id,
        &model.model_sha256[..model.model_sha256.len().min(12)]
    ));
    let output_dir = config.infer.output_dir.clone();
    std::fs::create_dir_all(&output_dir).map_err(PipelineError::io("create", &output_dir))?;
    let inputs = gather_inputs(&services, &config, &model, &spec, &output_dir, progress).await?;
    if inputs.items.is_empty() {
        return Err(PipelineError::Data(format!(
            "no images in {} (extensions: {})",
            inputs.input_ref,
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    let outputs = assign_outputs(&inputs.items, &output_dir)?;
    let backend = config.infer_backend();
    tracing::info!(
        "predicting {} images from {} on {backend} into {}",
        inputs.items.len(),
        inputs.input_ref,
        output_dir.display()
    );
    let loop_input = LoopInput {
        items: inputs.items.clone(),
        outputs,
        output_dir: output_dir.clone(),
        overlay: config.infer.overlay,
        model_file: model.local.clone(),
        sha256: model.model_sha256.clone(),
        backend,
        batch_size: config.infer.batch_size,
        interrupted: opts.interrupted.clone(),
        progress: progress.clone(),
    };
    let outcome = tokio::task::spawn_blocking(move || prediction_loop(loop_input, emit))
        .await
        .map_err(|e| {
            PipelineError::Model(SegError::Backend(format!(
                "the prediction thread stopped: {e}"
            )))
        })??;
    let metrics = (outcome.truth_images > 0).then(|| {
        TruthMetrics::from_summary(
            outcome.truth_images,
            &outcome.confusion.summary(),
            &outcome.class_names,
        )
    });
    let mut summary = InferSummary {
        kind: "summary",
        input_ref: inputs.input_ref.clone(),
        images: outcome.written.len(),
        failed: outcome.failed.len(),
        failed_inputs: outcome.failed.clone(),
        output_dir: output_dir.clone(),
        metrics,
        backend: backend.to_string(),
        seconds: outcome.seconds,
        images_per_sec: outcome.written.len() as f64 / outcome.seconds.max(1e-9),
        first_mask_secs: opts
            .started
            .zip(outcome.first_mask)
            .map(|(s, f)| f.duration_since(s).as_secs_f64()),
        predictions_commit: None,
        predictions_uri: None,
        inference_run_id: None,
        inference_run_url: None,
        model,
    };
    if opts.commit {
        if summary.images == 0 {
            return Err(PipelineError::Data(
                "no mask was written, so there is nothing to commit".into(),
            ));
        }
        commit_predictions(&services, &config, &outcome, &mut summary, progress).await?;
    }
    Ok(summary)
}

/// `--commit`: an MLflow inference run, the masks (and a manifest) uploaded under
/// `<predictions_path>/<label>/` in one lakeFS transaction whose commit names the run, the run
/// tagged with the commit. A failure ends the run FAILED and leaves the branch untouched.
async fn commit_predictions(
    services: &Services,
    config: &Config,
    outcome: &LoopOutcome,
    summary: &mut InferSummary,
    progress: &Progress,
) -> Result<()> {
    let mlflow = &services.mlflow;
    let model = &summary.model;
    let experiment = mlflow
        .get_or_create_experiment(&config.mlflow.experiment, &[])
        .await?;
    let git = lineage::git_info(Path::new("."));
    let stamp = format_utc(mlflow_client::now_millis() / 1000)
        .replace([' ', ':'], "")
        .replace('-', "");
    let mut run_tags = vec![
        Tag::new(run_tags::KIND, "inference"),
        Tag::new(run_tags::MODEL_NAME, &model.model_name),
        Tag::new(run_tags::TRAINING_RUN, &model.run_id),
        Tag::new(run_tags::INPUT_REF, &summary.input_ref),
        Tag::new(tags::MODEL_URI, &model.model_uri),
        Tag::new(tags::MODEL_SHA256, &model.model_sha256),
        Tag::new(tags::DATA_COMMIT, &model.data_commit),
        Tag::new(tags::GIT_COMMIT, &git.commit),
        Tag::new("mlflow.source.git.commit", &git.commit),
        Tag::new("mlflow.source.name", "infer"),
    ];
    if let Some(v) = &model.version {
        run_tags.push(Tag::new(run_tags::MODEL_VERSION, v));
    }
    let run = mlflow
        .create_run(
            &experiment.experiment_id,
            NewRun {
                run_name: Some(format!("inference-{}-{stamp}", model.label())),
                tags: run_tags,
                ..NewRun::default()
            },
        )
        .await?;
    let guard = RunGuard::new(mlflow.clone(), run);
    let run_id = guard.run_id().to_string();
    let result = commit_in_run(services, config, outcome, summary, &run_id, progress).await;
    match result {
        Ok(()) => {
            guard.finish().await?;
            summary.inference_run_url = Some(run_url(config, &experiment.experiment_id, &run_id));
            Ok(())
        }
        Err(e) => {
            let status = if e.exit_code() == crate::error::exit::INTERRUPTED {
                RunStatus::Killed
            } else {
                RunStatus::Failed
            };
            let _ = mlflow.set_tag(&run_id, tags::ERROR, &e.to_string()).await;
            if let Err(end) = guard.end(status).await {
                tracing::warn!("could not end MLflow run {run_id}: {end}");
            }
            Err(e)
        }
    }
}

async fn commit_in_run(
    services: &Services,
    config: &Config,
    outcome: &LoopOutcome,
    summary: &mut InferSummary,
    run_id: &str,
    progress: &Progress,
) -> Result<()> {
    let mlflow = &services.mlflow;
    let model = summary.model.clone();
    let version = model.version.clone().unwrap_or_default();
    mlflow
        .log_batch(
            run_id,
            &[],
            &[
                Param::new("model_name", &model.model_name),
                Param::new(
                    "model_version",
                    if version.is_empty() { "none" } else { &version },
                ),
                Param::new("training_run_id", &model.run_id),
                Param::new("input_ref", &summary.input_ref),
                Param::new("count", summary.images.to_string()),
                Param::new("backend", &summary.backend),
                Param::new("batch_size", config.infer.batch_size.to_string()),
            ],
            &[],
        )
        .await?;
    // Stage exactly this call's outputs (masks, overlays, manifest) by relative path.
    let stage = tempfile::tempdir().map_err(PipelineError::io("create", "temp dir"))?;
    for file in outcome.written.iter().chain(&outcome.overlays) {
        let rel = file.strip_prefix(&summary.output_dir).unwrap_or(file);
        let dest = stage.path().join(rel);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(PipelineError::io("create", dir))?;
        }
        if std::fs::hard_link(file, &dest).is_err() {
            std::fs::copy(file, &dest).map_err(PipelineError::io("copy", file))?;
        }
    }
    let manifest = serde_json::json!({
        "model_name": model.model_name,
        "model_version": model.version,
        "model_uri": model.model_uri,
        "model_sha256": model.model_sha256,
        "training_run_id": model.run_id,
        "data_commit": model.data_commit,
        "input_ref": summary.input_ref,
        "inference_run_id": run_id,
        "images": summary.images,
        "failed_inputs": summary.failed_inputs,
        "metrics": summary.metrics,
    });
    let manifest_path = stage.path().join("manifest.json");
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
    )
    .map_err(PipelineError::io("write", &manifest_path))?;
    let l = &config.lakefs;
    let repo = model.data_repository.clone();
    let prefix = format!(
        "{}/{}/",
        config.infer.predictions_path.trim_matches('/'),
        model.label().replace('_', "-")
    );
    let metadata = BTreeMap::from([
        (KIND_KEY.to_string(), KIND_PREDICTIONS.to_string()),
        ("mlflow_run_id".to_string(), run_id.to_string()),
        ("model_name".to_string(), model.model_name.clone()),
        ("model_version".to_string(), version.clone()),
        ("model_uri".to_string(), model.model_uri.clone()),
        ("training_run_id".to_string(), model.run_id.clone()),
        ("input_ref".to_string(), summary.input_ref.clone()),
        ("images".to_string(), summary.images.to_string()),
    ]);
    let spinner = progress.spinner(&format!(
        "committing {} predictions to lakefs://{repo}/{}/{prefix}",
        summary.images, l.branch
    ));
    let stage_dir = stage.path().to_path_buf();
    let outcome_tx = services
        .lakefs
        .transaction(
            &repo,
            &l.branch,
            &CommitOptions {
                message: format!(
                    "predictions of {} on {} (MLflow run {run_id})",
                    model.label(),
                    summary.input_ref
                ),
                metadata,
                allow_empty: false,
            },
            |tx| {
                let (stage_dir, prefix, repo) = (stage_dir.clone(), prefix.clone(), repo.clone());
                async move {
                    services
                        .lakefs
                        .upload_dir(
                            &stage_dir,
                            &repo,
                            &tx,
                            &prefix,
                            &UploadDirOptions {
                                mirror: true,
                                ..UploadDirOptions::default()
                            },
                        )
                        .await?;
                    Ok::<_, LakeFsError>(())
                }
            },
        )
        .await;
    spinner.finish_and_clear();
    let commit = match outcome_tx {
        Ok(done) => done.merged_commit_id,
        Err(e) => return Err(e.into()),
    };
    let uri = format!("lakefs://{repo}/{commit}/{prefix}");
    let mut metrics = vec![
        Metric::now("images", summary.images as f64, 0),
        Metric::now("failed", summary.failed as f64, 0),
        Metric::now("images_per_sec", summary.images_per_sec, 0),
    ];
    if let Some(m) = &summary.metrics {
        metrics.extend([
            Metric::now("iou", m.iou, 0),
            Metric::now("dice", m.dice, 0),
            Metric::now("foreground_iou", m.foreground_iou, 0),
            Metric::now("pixel_accuracy", m.pixel_accuracy, 0),
        ]);
    }
    mlflow
        .log_batch(
            run_id,
            &metrics,
            &[],
            &[
                Tag::new(run_tags::PREDICTIONS_COMMIT, &commit),
                Tag::new(run_tags::PREDICTIONS_URI, &uri),
            ],
        )
        .await?;
    summary.predictions_commit = Some(commit);
    summary.predictions_uri = Some(uri);
    summary.inference_run_id = Some(run_id.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth_is_found_beside_images() {
        let dir = tempfile::tempdir().expect("dir");
        let images = dir.path().join("set/images/sub");
        let masks = dir.path().join("set/masks/sub");
        std::fs::create_dir_all(&images).expect("mkdir");
        std::fs::create_dir_all(&masks).expect("mkdir");
        std::fs::write(images.join("a.jpg"), b"x").expect("write");
        std::fs::write(masks.join("a.png"), b"x").expect("write");
        std::fs::write(images.join("b.jpg"), b"x").expect("write");
        let rel = Path::new("sub/a.jpg");
        assert_eq!(
            truth_for(&images.join("a.jpg"), rel, None),
            Some(masks.join("a.png"))
        );
        assert_eq!(
            truth_for(
                &images.join("a.jpg"),
                rel,
                Some(&dir.path().join("set/masks"))
            ),
            Some(masks.join("a.png"))
        );
        assert_eq!(
            truth_for(&images.join("b.jpg"), Path::new("sub/b.jpg"), None),
            None
        );
    }

    #[test]
    fn masks_never_collide_nor_overwrite_inputs() {
        let dir = tempfile::tempdir().expect("dir");
        let item = |name: &str| InputItem {
            path: dir.path().join(name),
            name: name.into(),
            rel: PathBuf::from(name),
            truth: None,
        };
        std::fs::write(dir.path().join("a.png"), b"x").expect("write");
        let items = vec![item("a.jpg"), item("a.jpeg"), item("b.jpg")];
        let out = dir.path().join("out");
        let paths = assign_outputs(&items, &out).expect("paths");
        assert_eq!(paths[0], out.join("a.png"));
        assert_eq!(paths[1], out.join("a.jpeg.png"));
        assert_eq!(paths[2], out.join("b.png"));
        // Output folder = input folder: the mask of a.jpg would be the input a.png.
        let items = vec![item("a.png")];
        let err = assign_outputs(&items, dir.path()).expect_err("refused");
        assert!(err.to_string().contains("overwrite"), "{err}");
        assert_eq!(
            safe_rel(Path::new("../x/./y.png")),
            PathBuf::from("x/y.png")
        );
    }

    #[test]
    fn masks_use_the_training_encoding() {
        let mask = GrayImage::from_raw(2, 1, vec![0, 1]).expect("mask");
        let binary = encode_mask(&mask, &MaskEncoding::Binary { threshold: 127 });
        assert_eq!(binary.to_luma8().into_raw(), vec![0, 255]);
        let index = encode_mask(&mask, &MaskEncoding::Index { num_classes: 3 });
        assert_eq!(index.to_luma8().into_raw(), vec![0, 1]);
        let palette = MaskEncoding::Palette {
            classes: vec![
                seg_model::data::ClassInfo {
                    name: "bg".into(),
                    color: [1, 2, 3],
                },
                seg_model::data::ClassInfo {
                    name: "fg".into(),
                    color: [9, 8, 7],
                },
            ],
        };
        assert_eq!(
            encode_mask(&mask, &palette).to_rgb8().into_raw(),
            vec![1, 2, 3, 9, 8, 7]
        );
    }
}
