//! `train`, end to end: connect, prepare the data in lakeFS (commit D), open an MLflow run with
//! the full lineage, train on a blocking thread while metrics stream to MLflow ([`fit`]), store
//! the best model in lakeFS in one transaction (commit M) and record it ([`store`]), end the
//! run. Any failure ends the run FAILED (with the error as a tag), Ctrl-C ends it KILLED; the
//! target branch never sees a partial model.
//!
//! - [`params`]: the run's tags, params and dataset inputs; `--reproduce`'s flags.
//! - [`observer`]: metrics to MLflow without stalling training; progress; Ctrl-C.
//! - [`report`]: the training curve and validation overlays.

mod curve;
mod fit;
pub mod mlflow_model;
pub mod observer;
pub mod params;
mod plan;
mod report;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use lakefs_client::ClientError as _;
use mlflow_client::{NewRun, Run, RunGuard};
use seg_model::TrainEnd;
use serde::Serialize;

use crate::config::{Config, Flags, Loaded};
use crate::data::{self, PreparedData};
use crate::error::{PipelineError, Result};
use crate::leftovers;
use crate::lineage::{self, GitInfo};
use crate::run_record::{self, tags};
use crate::services::{self, Services};
use crate::terminal::Progress;

pub use params::reproduce_flags;

/// How to run `train`.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// Values from flags.
    pub flags: Flags,
    /// `--data-dir DIR`, repeated for the union of several folders.
    pub data_dir: Vec<PathBuf>,
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
    /// `lakefs://repo/M/models/<run>/`: the MLflow model folder (registered versions' source).
    pub model_folder_uri: String,
    /// `lakefs://repo/<branch>/models/<run>/model.segm`.
    pub model_path: String,
    /// sha256 of the model file.
    pub model_sha256: String,
    /// The local checkpoint.
    pub checkpoint: PathBuf,
    /// Final metrics (the best epoch's: loss, accuracy, iou, dice, ..., best_epoch).
    pub metrics: BTreeMap<String, f64>,
    /// Epochs run.
    pub epochs_run: usize,
    /// How training ended (completed, early_stopped, time_budget).
    pub ended: String,
    /// Whether the data upload made a new commit.
    pub new_data_commit: bool,
    /// Files uploaded for the data.
    pub data_files_uploaded: usize,
    /// Files downloaded into the cache.
    pub data_files_downloaded: usize,
    /// Time by phase.
    pub timings: Timings,
}

/// Everything the steps of one run share once the run exists.
pub(crate) struct RunContext<'a> {
    services: &'a Services,
    config: &'a Config,
    opts: &'a TrainOptions,
    git: &'a GitInfo,
    data: &'a PreparedData,
    run_id: String,
    experiment_id: String,
    artifact_uri: String,
    /// Owner part of this run's temporary lakeFS branches.
    owner: String,
    progress: &'a Progress,
}

/// Runs `train`.
pub async fn train(opts: TrainOptions, progress: &Progress) -> Result<TrainSummary> {
    let started = Instant::now();
    let (loaded, services, reproduced) = setup(&opts).await?;
    let config = &loaded.config;
    let git = lineage::git_info(&opts.code_dir.clone().unwrap_or_else(|| PathBuf::from(".")));
    if let Some(r) = &reproduced {
        warn_if_code_differs(&r.run, &git);
    }
    let reproduced_run = reproduced.as_ref().map(|r| &r.run);
    check_interrupt(&opts, None)?;
    let me = leftovers::me();
    clean_up_after_others(&services, config, &me).await;
    let data = prepare_data(&services, config, &opts, reproduced_run, progress, &me).await?;
    let merged = data.committed.then(|| {
        format!(
            "the data commit {} was merged into {}",
            data.commit, config.lakefs.branch
        )
    });
    check_interrupt(&opts, merged)?;
    let data_seconds = started.elapsed().as_secs_f64();
    let experiment = services
        .mlflow
        .get_or_create_experiment(
            &config.mlflow.experiment,
            &crate::run_record::experiment_tags(),
        )
        .await?;
    let mut run_tags = params::run_tags(config, &git, &data, reproduced_run)?;
    if let Some(r) = reproduced.as_ref().filter(|r| !r.overrides.is_empty()) {
        run_tags.push(mlflow_client::Tag::new(
            tags::REPRODUCE_OVERRIDES,
            &r.overrides,
        ));
    }
    run_tags.extend(me.run_tags());
    let new_run = NewRun {
        run_name: opts.run_name.clone(),
        tags: run_tags,
        ..NewRun::default()
    };
    let run = services
        .mlflow
        .create_run(&experiment.experiment_id, new_run)
        .await?;
    let ctx = RunContext {
        services: &services,
        config,
        opts: &opts,
        git: &git,
        data: &data,
        run_id: run.info.run_id.clone(),
        experiment_id: experiment.experiment_id.clone(),
        artifact_uri: run.info.artifact_uri.clone(),
        owner: me.tx_owner(Some(&run.info.run_id)),
        progress,
    };
    let guard = RunGuard::new(services.mlflow.clone(), run);
    let url = run_record::run_url(&config.mlflow.tracking_uri, &ctx.experiment_id, &ctx.run_id);
    progress.println(&format!("MLflow run {}: {url}", ctx.run_id));
    let result = in_run(&ctx).await;
    let mut summary = run_record::end_run(&services.mlflow, guard, result).await?;
    summary.timings.data = data_seconds;
    summary.timings.total = started.elapsed().as_secs_f64();
    summary.timings.other =
        (summary.timings.total - summary.timings.data - summary.timings.train).max(0.0);
    Ok(summary)
}

/// The configuration (with a reproduced run's params over the flags), the checked services,
/// and the run being reproduced.
async fn setup(opts: &TrainOptions) -> Result<(Loaded, Services, Option<Reproduced>)> {
    let loaded = crate::config::load(opts.config_file.as_deref(), opts.flags.clone())?;
    let services = services::connect(&loaded.config).await?;
    let Some(run_id) = &opts.reproduce else {
        return Ok((loaded, services, None));
    };
    let run = services.mlflow.get_run(run_id).await.map_err(|e| {
        if e.is_not_found() {
            PipelineError::NotFound(format!(
                "--reproduce {run_id}: no such MLflow run at {}",
                run_record::without_credentials(&loaded.config.mlflow.tracking_uri)
            ))
        } else {
            e.into()
        }
    })?;
    // The run's own settings and repository, with flags given beside --reproduce over them
    // (named in a warning and recorded as the run's reproduce_overrides tag).
    let mut flags = reproduce_flags(&run)?;
    if let Some(repo) = run.tag(tags::LAKEFS_REPO) {
        flags.set("lakefs.repository", Some(repo.to_string()));
    }
    let overrides = opts.flags.differences(&flags);
    if !overrides.is_empty() {
        tracing::warn!(
            "reproducing run {run_id} with settings of your own: {} (recorded as the run's {} tag)",
            overrides.join(", "),
            tags::REPRODUCE_OVERRIDES
        );
    }
    flags.merge(opts.flags.clone());
    let loaded = crate::config::load(opts.config_file.as_deref(), flags)?;
    let overrides = overrides.join("; ");
    Ok((loaded, services, Some(Reproduced { run, overrides })))
}

/// The run `--reproduce` names, and the settings given beside it that replaced the run's.
struct Reproduced {
    run: Run,
    overrides: String,
}

/// Warns when `run` was trained from another git commit than this code's.
fn warn_if_code_differs(run: &Run, git: &GitInfo) {
    if run.tag(tags::GIT_COMMIT) == Some(git.commit.as_str()) {
        return;
    }
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

/// The data of the run: the reproduced run's data commit, or the prepared upload.
async fn prepare_data(
    services: &Services,
    config: &Config,
    opts: &TrainOptions,
    reproduced: Option<&Run>,
    progress: &Progress,
    me: &leftovers::Me,
) -> Result<PreparedData> {
    let encoding = config.mask_encoding()?;
    match reproduced {
        Some(run) => {
            let commit = run.tag(tags::DATA_COMMIT).ok_or_else(|| {
                PipelineError::Lineage(format!(
                    "run {} has no {} tag: it was not trained by this pipeline",
                    run.info.run_id,
                    tags::DATA_COMMIT
                ))
            })?;
            data::download_at(&services.lakefs, config, commit, &encoding, None, progress).await
        }
        None => {
            let dirs = &opts.data_dir;
            let owner = me.tx_owner(None);
            let who = data::Uploader {
                owner: &owner,
                interrupted: &opts.interrupted,
            };
            data::prepare(&services.lakefs, config, dirs, &encoding, progress, who).await
        }
    }
}

/// Stops when Ctrl-C was pressed; `done` says what was merged into lakeFS already.
fn check_interrupt(opts: &TrainOptions, done: Option<String>) -> Result<()> {
    if !opts.interrupted.load(Ordering::SeqCst) {
        return Ok(());
    }
    Err(match done {
        Some(what) => PipelineError::InterruptedAfter(what),
        None => PipelineError::Interrupted,
    })
}

impl RunContext<'_> {
    /// The error of an interrupt during this run: what it had merged into lakeFS (its data
    /// commit, when the upload made one), or nothing.
    fn interrupted(&self, not_merged: &str) -> PipelineError {
        if self.data.committed {
            PipelineError::InterruptedAfter(format!(
                "the data commit {} was merged into {} ({not_merged})",
                self.data.commit, self.config.lakefs.branch
            ))
        } else {
            PipelineError::Interrupted
        }
    }
}

/// Removes what processes of this host that are gone left behind: their temporary branches
/// in the repository, their RUNNING runs in the experiment (ended FAILED). A failure here is
/// a warning: the run itself does not depend on it.
async fn clean_up_after_others(services: &Services, config: &Config, me: &leftovers::Me) {
    let repo = &config.lakefs.repository;
    match leftovers::clean_tx_branches(&services.lakefs, repo, me).await {
        Ok(_) => {}
        Err(PipelineError::LakeFs(e)) if e.is_not_found() => {}
        Err(e) => tracing::warn!("could not look for leftover temporary branches of {repo}: {e}"),
    }
    let experiment = match services
        .mlflow
        .get_experiment_by_name(&config.mlflow.experiment)
        .await
    {
        Ok(Some(experiment)) => experiment,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!("could not look for runs left RUNNING: {e}");
            return;
        }
    };
    if let Err(e) = leftovers::fail_dead_runs(&services.mlflow, &experiment.experiment_id, me).await
    {
        tracing::warn!("could not end runs left RUNNING by processes that are gone: {e}");
    }
}

/// Foreground pixels of the validation split; none is a warning: every score on it is
/// perfect for a model that predicts background everywhere, so it measures nothing (and
/// `register_model` refuses the run without `--force`).
async fn validation_foreground(ctx: &RunContext<'_>, plan: &plan::Plan) -> Result<u64> {
    let dataset = ctx.data.dataset.clone();
    let valid = plan.split.valid.clone();
    let pixels = tokio::task::spawn_blocking(move || dataset.foreground_pixels(&valid))
        .await
        .map_err(|e| PipelineError::Internal(format!("the mask counting thread stopped: {e}")))??;
    if pixels == 0 {
        tracing::warn!(
            "the validation split ({} pairs) has no foreground pixel: its Dice and IoU measure nothing (background everywhere scores 1.0); register_model refuses the run without --force; change data.valid_fraction or data.split_seed, or add images with objects",
            plan.split.valid.len()
        );
    }
    Ok(pixels)
}

/// Everything after the run exists: params and inputs, training, storing the model.
async fn in_run(ctx: &RunContext<'_>) -> Result<TrainSummary> {
    let plan = plan::Plan::new(ctx)?;
    let mlflow = &ctx.services.mlflow;
    let foreground = validation_foreground(ctx, &plan).await?;
    mlflow
        .set_tag(
            &ctx.run_id,
            tags::VALIDATION_FOREGROUND,
            &foreground.to_string(),
        )
        .await?;
    let run_params = params::run_params(ctx.config, ctx.data, &plan.split, &plan.model)?;
    mlflow.log_batch(&ctx.run_id, &[], &run_params, &[]).await?;
    let inputs = params::dataset_inputs(ctx.config, ctx.data, &plan.split)?;
    mlflow.log_inputs(&ctx.run_id, &inputs).await?;
    let (outcome, train_seconds) = fit::fit(ctx, &plan).await?;
    let (epochs_run, end) = (outcome.history.len(), outcome.end.clone());
    let stored = store::store(ctx, &plan, outcome).await?;
    Ok(TrainSummary {
        run_id: ctx.run_id.clone(),
        experiment_id: ctx.experiment_id.clone(),
        run_url: run_record::run_url(
            &ctx.config.mlflow.tracking_uri,
            &ctx.experiment_id,
            &ctx.run_id,
        ),
        data_commit: ctx.data.commit.clone(),
        model_commit: stored.commit,
        model_uri: stored.uri.to_string(),
        model_folder_uri: stored.folder.to_string(),
        model_path: stored.path.to_string(),
        model_sha256: stored.saved.sha256,
        checkpoint: stored.saved.path,
        metrics: stored.metrics,
        epochs_run,
        ended: match end {
            TrainEnd::Completed => "completed",
            TrainEnd::EarlyStopped => "early_stopped",
            TrainEnd::TimeBudget => "time_budget",
            TrainEnd::Stopped { .. } => "stopped",
        }
        .into(),
        new_data_commit: ctx.data.committed,
        data_files_uploaded: ctx.data.uploaded,
        data_files_downloaded: ctx.data.downloaded,
        timings: Timings {
            train: train_seconds,
            ..Timings::default()
        },
    })
}
