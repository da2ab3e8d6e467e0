//! `train`, end to end: connect, prepare the data in lakeFS (commit D), open an MLflow run with
//! the full lineage, train on a blocking thread while metrics stream to MLflow, store the best
//! model in lakeFS in one transaction (commit M), log everything, end the run. Any failure ends
//! the run FAILED (with the error as a tag), Ctrl-C ends it KILLED; the target branch never sees
//! a partial model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lakefs_client::{CommitOptions, LakeFsError, UploadOptions};
use mlflow_client::{
    Dataset, DatasetInput, NewRun, Param, Run, RunGuard, RunStatus, Tag, context_tag,
};
use seg_model::data::Split;
use seg_model::{Checkpoint, Predictor, SegError, StopReason, TrainConfig, TrainEnd, TrainOutcome};
use serde::Serialize;

use crate::config::{Config, Flags, Loaded};
use crate::data::{self, KIND_KEY, KIND_MODEL, PreparedData};
use crate::error::{PipelineError, Result};
use crate::lineage::{self, GitInfo};
use crate::observer::{MetricLogger, MlflowObserver};
use crate::progress::Progress;
use crate::report;
use crate::services::{self, Services};

/// The model file's name inside its run folder.
pub const MODEL_FILE: &str = "model.segm";
/// The metadata file beside it.
pub const MODEL_META_FILE: &str = "model.json";

/// Tags a training run carries (what `register_model` and `infer` read back).
pub mod tags {
    /// Git commit of the code.
    pub const GIT_COMMIT: &str = "git_commit_hash";
    /// Uncommitted changes in the work tree.
    pub const GIT_DIRTY: &str = "git_dirty";
    /// Git branch.
    pub const GIT_BRANCH: &str = "git_branch";
    /// lakeFS repository.
    pub const LAKEFS_REPO: &str = "lakefs_repo";
    /// Data commit D.
    pub const DATA_COMMIT: &str = "lakefs_data_commit";
    /// Model commit M.
    pub const MODEL_COMMIT: &str = "lakefs_model_commit";
    /// `lakefs://repo/<branch>/models/...` (mutable, as the original logged).
    pub const MODEL_PATH: &str = "model_path";
    /// `lakefs://repo/<M>/models/...` (immutable).
    pub const MODEL_URI: &str = "model_uri";
    /// sha256 of the model file.
    pub const MODEL_SHA256: &str = "model_sha256";
    /// The MLflow 3 logged model of the run.
    pub const LOGGED_MODEL_ID: &str = "logged_model_id";
    /// The run this one reproduces.
    pub const REPRODUCED_FROM: &str = "reproduced_from";
    /// Why the run failed.
    pub const ERROR: &str = "error";
}

/// How to run `train`.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// Values from flags.
    pub flags: Flags,
    /// `--data-dir DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--run-name NAME`.
    pub run_name: Option<String>,
    /// `--reproduce RUN_ID`.
    pub reproduce: Option<String>,
    /// `--quiet`: no progress bars.
    pub quiet: bool,
    /// Set by the binary on Ctrl-C.
    pub interrupted: Arc<AtomicBool>,
    /// The folder whose git repository is the code's lineage (default: the current folder).
    pub code_dir: Option<PathBuf>,
}

/// Wall time of a run by phase, in seconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Timings {
    /// Connecting, uploading, downloading and verifying data.
    pub data: f64,
    /// The training loop (compute, validation).
    pub train: f64,
    /// Everything else: MLflow, checkpoint, model upload, pictures.
    pub other: f64,
    /// The whole run.
    pub total: f64,
}

/// What a finished `train` reports (the `--json` object).
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// MLflow run id.
    pub run_id: String,
    /// MLflow experiment id.
    pub experiment_id: String,
    /// The run in the MLflow UI.
    pub run_url: String,
    /// lakeFS data commit D.
    pub data_commit: String,
    /// lakeFS model commit M.
    pub model_commit: String,
    /// `lakefs://repo/M/models/<run>/model.segm`.
    pub model_uri: String,
    /// `lakefs://repo/<branch>/models/<run>/model.segm`.
    pub model_path: String,
    /// sha256 of the model file.
    pub model_sha256: String,
    /// The local checkpoint.
    pub checkpoint: PathBuf,
    /// Final metrics (loss, accuracy, iou, dice, best_epoch).
    pub metrics: BTreeMap<String, f64>,
    /// Epochs run.
    pub epochs_run: usize,
    /// How training ended (completed, early_stopped, time_budget).
    pub ended: String,
    /// Whether the data upload made a new commit.
    pub new_data_commit: bool,
    /// Files uploaded / downloaded for the data.
    pub data_files_uploaded: usize,
    /// Files downloaded into the cache.
    pub data_files_downloaded: usize,
    /// Time by phase.
    pub timings: Timings,
}

/// Runs `train`.
pub async fn train(opts: TrainOptions, progress: &Progress) -> Result<TrainSummary> {
    let started = Instant::now();
    let mut loaded = crate::config::load(opts.config_file.as_deref(), opts.flags.clone())?;
    let services = services::connect(&loaded.config).await?;
    let mut reproduced: Option<Run> = None;
    if let Some(run_id) = &opts.reproduce {
        let run = services.mlflow.get_run(run_id).await.map_err(|e| {
            if e.is_not_found() {
                PipelineError::NotFound(format!(
                    "--reproduce {run_id}: no such MLflow run at {}",
                    loaded.config.mlflow.tracking_uri
                ))
            } else {
                e.into()
            }
        })?;
        let mut flags = opts.flags.clone();
        flags.merge(reproduce_flags(&run));
        loaded = crate::config::load(opts.config_file.as_deref(), flags)?;
        reproduced = Some(run);
    }
    let config = loaded.config.clone();
    let git = lineage::git_info(&opts.code_dir.clone().unwrap_or_else(|| PathBuf::from(".")));
    if let Some(run) = &reproduced
        && run.tag(tags::GIT_COMMIT) != Some(git.commit.as_str())
    {
        tracing::warn!(
            "reproducing run {} trained at git commit {}; this code is at {}{}",
            run.info.run_id,
            run.tag(tags::GIT_COMMIT).unwrap_or("unknown"),
            git.commit,
            if git.dirty {
                " (with uncommitted changes)"
            } else {
                ""
            }
        );
    }
    check_interrupt(&opts)?;

    let encoding = config
        .mask_encoding()
        .map_err(|e| PipelineError::Usage(format!("data.mask_encoding: {e}")))?;
    let prepared = match &reproduced {
        Some(run) => {
            let commit = run.tag(tags::DATA_COMMIT).ok_or_else(|| {
                PipelineError::Lineage(format!(
                    "run {} has no {} tag: it was not trained by this pipeline",
                    run.info.run_id,
                    tags::DATA_COMMIT
                ))
            })?;
            data::download_at(&services.lakefs, &config, commit, &encoding, progress).await?
        }
        None => {
            data::prepare(
                &services.lakefs,
                &config,
                opts.data_dir.as_deref(),
                &encoding,
                progress,
            )
            .await?
        }
    };
    check_interrupt(&opts)?;
    let data_seconds = started.elapsed().as_secs_f64();

    let experiment = services
        .mlflow
        .get_or_create_experiment(&config.mlflow.experiment, &[])
        .await?;
    let mut run_tags = run_tags(&config, &git, &prepared);
    if let Some(run) = &reproduced {
        run_tags.push(Tag::new(tags::REPRODUCED_FROM, &run.info.run_id));
    }
    let run = services
        .mlflow
        .create_run(
            &experiment.experiment_id,
            NewRun {
                run_name: opts.run_name.clone(),
                tags: run_tags,
                ..NewRun::default()
            },
        )
        .await?;
    let guard = RunGuard::new(services.mlflow.clone(), run);
    let run_id = guard.run_id().to_string();
    progress.println(&format!(
        "MLflow run {run_id}: {}",
        run_url(&config, &experiment.experiment_id, &run_id)
    ));
    let result = train_in_run(
        &services,
        &loaded,
        &opts,
        &git,
        &prepared,
        &guard,
        &experiment.experiment_id,
        progress,
    )
    .await;
    let mut summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            let killed = e.exit_code() == crate::error::exit::INTERRUPTED;
            let status = if killed {
                RunStatus::Killed
            } else {
                RunStatus::Failed
            };
            if let Err(tag_err) = services
                .mlflow
                .set_tag(&run_id, tags::ERROR, &truncate(&e.to_string(), 4000))
                .await
            {
                tracing::warn!("could not tag run {run_id} with its error: {tag_err}");
            }
            if let Err(end_err) = guard.end(status).await {
                tracing::warn!("could not end MLflow run {run_id} as {status:?}: {end_err}");
            }
            return Err(e);
        }
    };
    guard.finish().await?;
    summary.timings.data = data_seconds;
    summary.timings.total = started.elapsed().as_secs_f64();
    summary.timings.other =
        (summary.timings.total - summary.timings.data - summary.timings.train).max(0.0);
    Ok(summary)
}

fn check_interrupt(opts: &TrainOptions) -> Result<()> {
    if opts.interrupted.load(Ordering::SeqCst) {
        Err(PipelineError::Interrupted)
    } else {
        Ok(())
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The MLflow UI address of a run.
pub fn run_url(config: &Config, experiment_id: &str, run_id: &str) -> String {
    format!(
        "{}/#/experiments/{experiment_id}/runs/{run_id}",
        config.mlflow.tracking_uri.trim_end_matches('/')
    )
}

fn run_tags(config: &Config, git: &GitInfo, data: &PreparedData) -> Vec<Tag> {
    let mut t = vec![
        Tag::new(tags::GIT_COMMIT, &git.commit),
        Tag::new(tags::GIT_DIRTY, git.dirty.to_string()),
        Tag::new("mlflow.source.git.commit", &git.commit),
        Tag::new("mlflow.source.name", "train"),
        Tag::new("mlflow.source.type", "LOCAL"),
        Tag::new(tags::LAKEFS_REPO, &config.lakefs.repository),
        Tag::new(tags::DATA_COMMIT, &data.commit),
        Tag::new("lakefs_data_uri", data.uri(config)),
    ];
    if let Some(branch) = &git.branch {
        t.push(Tag::new(tags::GIT_BRANCH, branch));
        t.push(Tag::new("mlflow.source.git.branch", branch));
    }
    t
}

/// Params: every training, model and data setting (names as in the config; `train.` keys
/// without their prefix, as the original logged `learning_rate`, `batch_size`, ...).
fn config_params(config: &Config) -> Vec<Param> {
    let mut out = Vec::new();
    let value = serde_json::to_value(config).unwrap_or_default();
    for section in ["train", "model", "data"] {
        if let Some(map) = value.get(section).and_then(|v| v.as_object()) {
            for (key, v) in map {
                let name = if section == "train" {
                    key.clone()
                } else {
                    format!("{section}.{key}")
                };
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.push(Param::new(name, text));
            }
        }
    }
    out
}

/// Flags that set every logged setting of `run` back (for `--reproduce`).
pub fn reproduce_flags(run: &Run) -> Flags {
    let mut flags = Flags::new();
    for p in &run.data.params {
        let key = if p.key.contains('.') {
            p.key.clone()
        } else {
            format!("train.{}", p.key)
        };
        let section_ok = ["train.", "model.", "data."]
            .iter()
            .any(|s| key.starts_with(s));
        if !section_ok || RUN_FACT_PARAMS.contains(&p.key.as_str()) {
            continue;
        }
        // Params are text: numbers, booleans and lists were written as JSON, strings as is.
        let value = serde_json::from_str::<serde_json::Value>(&p.value)
            .ok()
            .and_then(|j| figment::value::Value::serialize(j).ok())
            .unwrap_or_else(|| figment::value::Value::from(p.value.clone()));
        flags.set(&key, Some(value));
    }
    flags
}

/// Params that describe the run rather than set it (not replayed by `--reproduce`).
const RUN_FACT_PARAMS: &[&str] = &[
    "device",
    "dataset_size",
    "train_size",
    "valid_size",
    "in_channels",
    "classes",
    "unet_config",
    "parameters",
];

/// Everything after the run exists: params and inputs, training, model storage, artifacts.
#[allow(clippy::too_many_arguments)]
async fn train_in_run(
    services: &Services,
    loaded: &Loaded,
    opts: &TrainOptions,
    git: &GitInfo,
    prepared: &PreparedData,
    guard: &RunGuard,
    experiment_id: &str,
    progress: &Progress,
) -> Result<TrainSummary> {
    let config = &loaded.config;
    let mlflow = &services.mlflow;
    let run_id = guard.run_id().to_string();
    let split = Split::new(
        prepared.dataset.len(),
        config.data.valid_fraction,
        config.data.split_seed,
    )?;
    let classes = prepared.dataset.encoding().num_classes();
    let model_config = config.model_config(prepared.in_channels, classes);
    let backend = config.backend();
    let train_config = train_config(config)?;

    let mut params = config_params(config);
    params.extend([
        Param::new("device", backend.to_string()),
        Param::new("dataset_size", prepared.dataset.len().to_string()),
        Param::new("train_size", split.train.len().to_string()),
        Param::new("valid_size", split.valid.len().to_string()),
        Param::new("in_channels", prepared.in_channels.to_string()),
        Param::new("classes", classes.to_string()),
        Param::new(
            "unet_config",
            serde_json::to_string(&model_config).unwrap_or_default(),
        ),
    ]);
    mlflow.log_batch(&run_id, &[], &params, &[]).await?;
    mlflow
        .log_inputs(&run_id, &dataset_inputs(config, prepared, &split))
        .await?;

    // Training on a blocking thread; metrics flow to MLflow through the logger.
    let logger = MetricLogger::start(
        mlflow.clone(),
        run_id.clone(),
        Duration::from_secs(2),
        Duration::from_secs(120),
    );
    let observer = MlflowObserver::new(
        logger.sender(),
        opts.interrupted.clone(),
        progress.clone(),
        train_config.epochs,
    );
    let train_started = Instant::now();
    let outcome = run_training(
        model_config.clone(),
        train_config.clone(),
        prepared.dataset.clone(),
        split.clone(),
        backend,
        observer,
    )
    .await;
    let train_seconds = train_started.elapsed().as_secs_f64();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let report = logger.finish().await;
            if report.lost > 0 {
                tracing::warn!("{} metric values could not be logged", report.lost);
            }
            return Err(e);
        }
    };
    if let TrainEnd::Stopped { epoch, reason } = &outcome.end {
        let report = logger.finish().await;
        tracing::info!("logged {} metric values before stopping", report.logged);
        // Keep the best model of the finished epochs locally; the branch gets nothing.
        let dir = config.paths.models_dir.join(&run_id);
        std::fs::create_dir_all(&dir).map_err(PipelineError::io("create", &dir))?;
        let path = dir.join(MODEL_FILE);
        let saved = seg_model::checkpoint::save(&path, outcome.model, outcome.meta)?;
        progress.println(&format!(
            "stopped in epoch {epoch}; the best model so far is at {} (not uploaded)",
            saved.path.display()
        ));
        return Err(match reason {
            StopReason::Interrupted => PipelineError::Interrupted,
            StopReason::ObserverFailed(why) => PipelineError::Model(SegError::ObserverFailed {
                epoch: *epoch,
                reason: why.clone(),
            }),
        });
    }

    // Pictures while the model is in memory; then the checkpoint.
    let artifacts_dir = tempfile::tempdir().map_err(PipelineError::io("create", "temp dir"))?;
    let best = outcome
        .history
        .iter()
        .find(|r| r.epoch == outcome.best_epoch)
        .cloned();
    report::training_curve(
        &outcome.history,
        &artifacts_dir.path().join("training_curve.png"),
    )?;
    std::fs::write(
        artifacts_dir.path().join("config.toml"),
        config.redacted_toml(),
    )
    .map_err(PipelineError::io(
        "write",
        artifacts_dir.path().join("config.toml"),
    ))?;
    let checkpoint = Checkpoint {
        model: outcome.model,
        meta: outcome.meta,
    };
    let (checkpoint, overlays) = write_overlays(
        checkpoint,
        prepared,
        &split,
        config.train.overlay_samples,
        backend,
        &artifacts_dir.path().join("overlays"),
    )
    .await?;
    let dir = config.paths.models_dir.join(&run_id);
    std::fs::create_dir_all(&dir).map_err(PipelineError::io("create", &dir))?;
    let local = dir.join(MODEL_FILE);
    let saved = seg_model::checkpoint::save(&local, checkpoint.model, checkpoint.meta.clone())?;
    let meta_json = serde_json::to_vec_pretty(&checkpoint.meta).unwrap_or_default();
    std::fs::write(dir.join(MODEL_META_FILE), &meta_json)
        .map_err(PipelineError::io("write", dir.join(MODEL_META_FILE)))?;

    // Final metrics of the best epoch: names as the original logged them, real values.
    let mut metrics = BTreeMap::new();
    if let Some(best) = &best {
        metrics.insert("loss".to_string(), best.valid_loss);
        metrics.insert("accuracy".to_string(), best.metrics.pixel_accuracy);
        metrics.insert("iou".to_string(), best.metrics.mean_iou);
        metrics.insert("dice".to_string(), best.metrics.mean_dice);
        metrics.insert("best_epoch".to_string(), best.epoch as f64);
    }

    // The model into lakeFS in one transaction: commit M.
    let l = &config.lakefs;
    let models_prefix = l.models_path.trim_matches('/');
    let object = format!("{models_prefix}/{run_id}/{MODEL_FILE}");
    let meta_object = format!("{models_prefix}/{run_id}/{MODEL_META_FILE}");
    let mut commit_meta = BTreeMap::from([
        (KIND_KEY.to_string(), KIND_MODEL.to_string()),
        ("mlflow_run_id".to_string(), run_id.clone()),
        (tags::GIT_COMMIT.to_string(), git.commit.clone()),
        ("data_commit".to_string(), prepared.commit.clone()),
        ("sha256".to_string(), saved.sha256.clone()),
        (
            "metrics".to_string(),
            serde_json::to_string(&metrics).unwrap_or_default(),
        ),
    ]);
    commit_meta.insert("model_path".to_string(), object.clone());
    let spinner = progress.spinner(&format!(
        "uploading the model to lakefs://{}/{}",
        l.repository, l.branch
    ));
    let upload = services
        .lakefs
        .transaction(
            &l.repository,
            &l.branch,
            &CommitOptions {
                message: format!("model of MLflow run {run_id}"),
                metadata: commit_meta,
                allow_empty: false,
            },
            |tx| {
                let (object, meta_object) = (object.clone(), meta_object.clone());
                let (local, sha) = (local.clone(), saved.sha256.clone());
                let meta_json = meta_json.clone();
                async move {
                    let opts = UploadOptions {
                        metadata: BTreeMap::from([
                            ("sha256".to_string(), sha),
                            ("mlflow_run_id".to_string(), run_id_of(&object)),
                        ]),
                        content_type: Some("application/octet-stream".into()),
                        if_absent: false,
                    };
                    services
                        .lakefs
                        .upload_file(&l.repository, &tx, &object, &local, &opts)
                        .await?;
                    services
                        .lakefs
                        .upload_bytes(
                            &l.repository,
                            &tx,
                            &meta_object,
                            meta_json.into(),
                            &UploadOptions {
                                content_type: Some("application/json".into()),
                                ..UploadOptions::default()
                            },
                        )
                        .await?;
                    Ok::<_, LakeFsError>(())
                }
            },
        )
        .await;
    spinner.finish_and_clear();
    let model_commit = upload?.merged_commit_id;
    let model_uri = format!("lakefs://{}/{model_commit}/{object}", l.repository);
    let model_path = format!("lakefs://{}/{}/{object}", l.repository, l.branch);

    // Lineage and results into MLflow.
    let final_metrics: Vec<mlflow_client::Metric> = metrics
        .iter()
        .map(|(k, v)| mlflow_client::Metric::now(k, *v, 0))
        .collect();
    mlflow
        .log_batch(
            &run_id,
            &final_metrics,
            &[],
            &[
                Tag::new(tags::MODEL_COMMIT, &model_commit),
                Tag::new(tags::MODEL_URI, &model_uri),
                Tag::new(tags::MODEL_PATH, &model_path),
                Tag::new(tags::MODEL_SHA256, &saved.sha256),
            ],
        )
        .await?;
    let artifact_root = &guard.run().info.artifact_uri;
    mlflow
        .upload_artifact_dir(artifact_root, "", artifacts_dir.path())
        .await?;
    mlflow
        .upload_artifact(
            artifact_root,
            &format!("model/{MODEL_META_FILE}"),
            &dir.join(MODEL_META_FILE),
        )
        .await?;
    let logged = mlflow
        .create_logged_model(
            experiment_id,
            &config.register.model_name,
            Some(&run_id),
            &[Param::new("backend", backend.to_string())],
            &[
                Tag::new("lakefs_uri", &model_uri),
                Tag::new("sha256", &saved.sha256),
                Tag::new(tags::DATA_COMMIT, &prepared.commit),
            ],
        )
        .await?;
    mlflow.finalize_logged_model(&logged.info.model_id).await?;
    mlflow
        .set_tag(&run_id, tags::LOGGED_MODEL_ID, &logged.info.model_id)
        .await?;
    let report = logger.finish().await;
    if report.lost > 0 {
        return Err(PipelineError::Lineage(format!(
            "{} metric values could not be logged to MLflow ({}); the model is in lakeFS at {model_uri}",
            report.lost,
            report.last_error.unwrap_or_default()
        )));
    }
    tracing::debug!(
        "{overlays} overlays, {} metric values logged",
        report.logged
    );

    Ok(TrainSummary {
        run_id: run_id.clone(),
        experiment_id: experiment_id.to_string(),
        run_url: run_url(config, experiment_id, &run_id),
        data_commit: prepared.commit.clone(),
        model_commit,
        model_uri,
        model_path,
        model_sha256: saved.sha256,
        checkpoint: local,
        metrics,
        epochs_run: outcome.history.len(),
        ended: match outcome.end {
            TrainEnd::Completed => "completed",
            TrainEnd::EarlyStopped => "early_stopped",
            TrainEnd::TimeBudget => "time_budget",
            TrainEnd::Stopped { .. } => "stopped",
        }
        .into(),
        new_data_commit: prepared.committed,
        data_files_uploaded: prepared.uploaded,
        data_files_downloaded: prepared.downloaded,
        timings: Timings {
            train: train_seconds,
            ..Timings::default()
        },
    })
}

/// The run id is the folder above the model file.
fn run_id_of(object: &str) -> String {
    object.rsplit('/').nth(1).unwrap_or_default().to_string()
}

/// seg-model's training configuration from the config.
fn train_config(config: &Config) -> Result<TrainConfig> {
    let t = &config.train;
    let schedule = config.lr_schedule().map_err(|(key, value, allowed)| {
        PipelineError::Usage(format!("{key} = {value}: {allowed}"))
    })?;
    let metric = config
        .selection_metric()
        .map_err(|v| PipelineError::Usage(format!("train.selection_metric = {v:?}")))?;
    Ok(TrainConfig::new()
        .with_epochs(t.epochs)
        .with_batch_size(t.batch_size)
        .with_learning_rate(t.learning_rate)
        .with_weight_decay(t.weight_decay)
        .with_lr_schedule(schedule)
        .with_early_stopping_patience(t.early_stopping_patience)
        .with_selection_metric(metric)
        .with_seed(t.seed)
        .with_image_height(t.image_size)
        .with_image_width(t.image_size)
        .with_valid_fraction(config.data.valid_fraction)
        .with_time_budget_secs(t.time_budget_secs)
        .with_augment(if t.augment {
            seg_model::data::AugmentConfig::new()
        } else {
            seg_model::data::AugmentConfig::none()
        }))
}

/// The datasets of the run as MLflow inputs, one per split (MLflow keeps one input per
/// dataset name and digest): digest = D (MLflow keeps 36 characters; the source has all of it),
/// source = the lakeFS URI at D, context = training / validation, profile = the split's size.
fn dataset_inputs(config: &Config, data: &PreparedData, split: &Split) -> Vec<DatasetInput> {
    let uri = data.uri(config);
    let source = serde_json::json!({ "uri": uri }).to_string();
    let name = format!("{}/{}", config.lakefs.repository, data::data_root(config));
    [
        ("training", split.train.len()),
        ("validation", split.valid.len()),
    ]
    .into_iter()
    .map(|(context, rows)| DatasetInput {
        tags: vec![context_tag(context)],
        dataset: Dataset {
            name: format!("{} ({context} split)", name.trim_end_matches('/')),
            digest: data.commit.chars().take(36).collect(),
            source_type: "lakefs".into(),
            source: source.clone(),
            schema: None,
            profile: Some(
                serde_json::json!({
                    "num_rows": rows,
                    "pairs": data.stats.pairs,
                    "classes": data.dataset.encoding().num_classes(),
                })
                .to_string(),
            ),
        },
    })
    .collect()
}

/// Trains on a blocking thread (burn's loop is synchronous and CPU-bound).
async fn run_training(
    model_config: seg_model::UNetConfig,
    train_config: TrainConfig,
    dataset: seg_model::data::SegmentationDataset,
    split: Split,
    backend: seg_model::BackendKind,
    mut observer: MlflowObserver,
) -> Result<TrainOutcome> {
    tokio::task::spawn_blocking(move || {
        seg_model::train(
            &model_config,
            &train_config,
            &dataset,
            &split,
            backend,
            &mut observer,
        )
    })
    .await
    .map_err(|e| {
        PipelineError::Model(SegError::Backend(format!(
            "the training thread stopped: {e}"
        )))
    })?
    .map_err(|e| match e {
        SegError::Interrupted { .. } => PipelineError::Interrupted,
        e => PipelineError::Model(e),
    })
}

/// Writes up to `count` validation overlays (image | truth | prediction) into `dir`; gives the
/// checkpoint back.
async fn write_overlays(
    checkpoint: Checkpoint,
    data: &PreparedData,
    split: &Split,
    count: usize,
    backend: seg_model::BackendKind,
    dir: &Path,
) -> Result<(Checkpoint, usize)> {
    if count == 0 {
        return Ok((checkpoint, 0));
    }
    std::fs::create_dir_all(dir).map_err(PipelineError::io("create", dir))?;
    let dataset = data.dataset.clone();
    let indices: Vec<usize> = split.valid.iter().copied().take(count).collect();
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
            let truth = image::GrayImage::from_raw(
                sample.image.width(),
                sample.image.height(),
                sample.mask.clone(),
            )
            .ok_or_else(|| PipelineError::Data(format!("mask of pair {i} has the wrong size")))?;
            let stem = dataset
                .pairs()
                .get(*i)
                .map_or_else(|| format!("sample{i}"), |p| p.stem.clone());
            let path = dir.join(format!("{stem}.png"));
            report::overlay_triptych(&sample.image, &truth, &pred.mask, &classes)
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
    .map_err(|e| PipelineError::Data(format!("overlay thread stopped: {e}")))?
}
