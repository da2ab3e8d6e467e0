//! Keeping a trained model: the run's pictures and redacted configuration as artifacts, the
//! checkpoint (written once) with its metadata, the model in lakeFS in one transaction
//! (commit M, merged into the branch only when complete), then the run's final metrics, model
//! tags, artifacts and MLflow 3 logged model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lakefs_client::{CommitOptions, LakeFsError, LakeFsUri, UploadOptions};
use mlflow_client::{Metric, Param, Tag};
use seg_model::{Checkpoint, CheckpointMeta, SavedCheckpoint, TrainOutcome, UNet};

use super::RunContext;
use super::fit::Plan;
use super::report;
use crate::config::Config;
use crate::error::{PipelineError, Result};
use crate::run_record::{MODEL_FILE, MODEL_META_FILE, commit_meta, kinds, tags};

/// Where the model went.
pub(super) struct Stored {
    /// Model commit M.
    pub commit: String,
    /// `lakefs://repo/M/models/<run>/model.segm`.
    pub uri: LakeFsUri,
    /// `lakefs://repo/<branch>/models/<run>/model.segm`.
    pub path: LakeFsUri,
    /// The local checkpoint and its sha256.
    pub saved: SavedCheckpoint,
    /// The best epoch's run-level metrics.
    pub metrics: BTreeMap<String, f64>,
}

/// Writes the checkpoint to `<models_dir>/<run id>/model.segm` and its metadata beside it as
/// `model.json` (as stored in the checkpoint).
pub(super) fn save_local(
    config: &Config,
    run_id: &str,
    model: UNet,
    meta: CheckpointMeta,
) -> Result<SavedCheckpoint> {
    let dir = config.paths.models_dir.join(run_id);
    std::fs::create_dir_all(&dir).map_err(PipelineError::io("create", &dir))?;
    let saved = seg_model::checkpoint::save(&dir.join(MODEL_FILE), model, meta)?;
    let stored_meta = seg_model::checkpoint::read_meta(&saved.path)?;
    let json = serde_json::to_vec_pretty(&stored_meta).map_err(|e| {
        PipelineError::Internal(format!("cannot write the checkpoint metadata as JSON: {e}"))
    })?;
    let meta_path = dir.join(MODEL_META_FILE);
    std::fs::write(&meta_path, json).map_err(PipelineError::io("write", &meta_path))?;
    Ok(saved)
}

/// Keeps the outcome of a finished run: artifacts, checkpoint, lakeFS, MLflow.
pub(super) async fn store(
    ctx: &RunContext<'_>,
    plan: &Plan,
    outcome: TrainOutcome,
) -> Result<Stored> {
    let best = outcome
        .history
        .iter()
        .find(|r| r.epoch == outcome.best_epoch)
        .ok_or_else(|| {
            PipelineError::Internal(format!(
                "the best epoch {} has no report",
                outcome.best_epoch
            ))
        })?;
    let metrics = best.final_metrics();
    let artifacts = tempfile::tempdir().map_err(PipelineError::io("create", "temp dir"))?;
    report::training_curve(
        &outcome.history,
        &artifacts.path().join("training_curve.png"),
    )?;
    let config_path = artifacts.path().join("config.toml");
    std::fs::write(&config_path, ctx.config.redacted_toml()?)
        .map_err(PipelineError::io("write", &config_path))?;
    let overlays: Vec<usize> = plan
        .split
        .valid
        .iter()
        .copied()
        .take(ctx.config.train.overlay_samples)
        .collect();
    let (checkpoint, _) = report::write_overlays(
        Checkpoint {
            model: outcome.model,
            meta: outcome.meta,
        },
        ctx.data.dataset.clone(),
        overlays,
        plan.backend,
        &artifacts.path().join("overlays"),
    )
    .await?;
    let saved = save_local(ctx.config, &ctx.run_id, checkpoint.model, checkpoint.meta)?;
    let (commit, uri, path) = upload_model(ctx, &saved, &metrics).await?;
    let stored = Stored {
        commit,
        uri,
        path,
        saved,
        metrics,
    };
    record(ctx, &stored, artifacts.path()).await?;
    Ok(stored)
}

/// The model and its metadata into lakeFS in one transaction; returns M and the model's URIs
/// at M and on the branch.
async fn upload_model(
    ctx: &RunContext<'_>,
    saved: &SavedCheckpoint,
    metrics: &BTreeMap<String, f64>,
) -> Result<(String, LakeFsUri, LakeFsUri)> {
    let l = &ctx.config.lakefs;
    let run_id = &ctx.run_id;
    let folder = format!("{}/{run_id}", l.models_path.trim_matches('/'));
    let object = format!("{folder}/{MODEL_FILE}");
    let meta_object = format!("{folder}/{MODEL_META_FILE}");
    let metrics_json = serde_json::to_string(metrics)
        .map_err(|e| PipelineError::Internal(format!("cannot write the metrics as JSON: {e}")))?;
    let metadata = BTreeMap::from([
        (commit_meta::KIND.to_string(), kinds::MODEL.to_string()),
        (commit_meta::MLFLOW_RUN_ID.to_string(), run_id.clone()),
        (tags::GIT_COMMIT.to_string(), ctx.git.commit.clone()),
        (
            commit_meta::DATA_COMMIT.to_string(),
            ctx.data.commit.clone(),
        ),
        (commit_meta::SHA256.to_string(), saved.sha256.clone()),
        (commit_meta::METRICS.to_string(), metrics_json),
        (commit_meta::MODEL_PATH.to_string(), object.clone()),
    ]);
    let branch = LakeFsUri::new(&l.repository, &l.branch, "")?;
    let spinner = ctx
        .progress
        .spinner(&format!("uploading the model to {branch}"));
    let meta_file = saved.path.with_file_name(MODEL_META_FILE);
    let lakefs = &ctx.services.lakefs;
    let upload = lakefs
        .transaction(
            &l.repository,
            &l.branch,
            &CommitOptions {
                message: format!("model of MLflow run {run_id}"),
                metadata,
                allow_empty: false,
            },
            |tx| {
                let (object, meta_object) = (object.clone(), meta_object.clone());
                let (model_file, meta_file) = (saved.path.clone(), meta_file.clone());
                let model_opts = UploadOptions {
                    metadata: BTreeMap::from([
                        (commit_meta::SHA256.to_string(), saved.sha256.clone()),
                        (commit_meta::MLFLOW_RUN_ID.to_string(), run_id.clone()),
                    ]),
                    content_type: Some("application/octet-stream".into()),
                    if_absent: false,
                };
                async move {
                    lakefs
                        .upload_file(&l.repository, &tx, &object, &model_file, &model_opts)
                        .await?;
                    let json = UploadOptions {
                        content_type: Some("application/json".into()),
                        ..UploadOptions::default()
                    };
                    lakefs
                        .upload_file(&l.repository, &tx, &meta_object, &meta_file, &json)
                        .await?;
                    Ok::<_, LakeFsError>(())
                }
            },
        )
        .await;
    spinner.finish_and_clear();
    let commit = upload?.merged_commit_id;
    let uri = LakeFsUri::new(&l.repository, &commit, &object)?;
    let path = LakeFsUri::new(&l.repository, &l.branch, &object)?;
    Ok((commit, uri, path))
}

/// The run's final metrics, model tags, artifacts (pictures, config, model metadata) and its
/// MLflow 3 logged model.
async fn record(ctx: &RunContext<'_>, stored: &Stored, artifacts: &Path) -> Result<()> {
    let mlflow = &ctx.services.mlflow;
    let run_id = &ctx.run_id;
    let final_metrics: Vec<Metric> = stored
        .metrics
        .iter()
        .map(|(k, v)| Metric::now(k, *v, 0))
        .collect();
    let sha = &stored.saved.sha256;
    mlflow
        .log_batch(
            run_id,
            &final_metrics,
            &[],
            &[
                Tag::new(tags::MODEL_COMMIT, &stored.commit),
                Tag::new(tags::MODEL_URI, stored.uri.to_string()),
                Tag::new(tags::MODEL_PATH, stored.path.to_string()),
                Tag::new(tags::MODEL_SHA256, sha),
            ],
        )
        .await?;
    mlflow
        .upload_artifact_dir(&ctx.artifact_uri, "", artifacts)
        .await?;
    let meta_file: PathBuf = stored.saved.path.with_file_name(MODEL_META_FILE);
    mlflow
        .upload_artifact(
            &ctx.artifact_uri,
            &format!("model/{MODEL_META_FILE}"),
            &meta_file,
        )
        .await?;
    let logged = mlflow
        .create_logged_model(
            &ctx.experiment_id,
            &ctx.config.register.model_name,
            Some(run_id),
            &[Param::new("backend", ctx.config.train.backend.to_string())],
            &[
                Tag::new("lakefs_uri", stored.uri.to_string()),
                Tag::new("sha256", sha),
                Tag::new(tags::DATA_COMMIT, &ctx.data.commit),
            ],
        )
        .await?;
    mlflow.finalize_logged_model(&logged.info.model_id).await?;
    mlflow
        .set_tag(run_id, tags::LOGGED_MODEL_ID, &logged.info.model_id)
        .await?;
    Ok(())
}
