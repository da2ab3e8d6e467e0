//! Keeping a trained model: the run's pictures and redacted configuration as artifacts, the
//! checkpoint (written once) with its metadata, the model in lakeFS in one transaction
//! (commit M, merged into the branch only when complete), then the run's final metrics, model
//! tags, artifacts and MLflow 3 logged model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::atomic::Ordering;

use lakefs_client::{CommitOptions, LakeFsUri, Transaction, UploadOptions};
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
    let l = &ctx.config.lakefs;
    let tx = ctx
        .services
        .lakefs
        .begin(&l.repository, &l.branch, &ctx.owner)
        .await?;
    let commit = match put_model(ctx, tx.branch(), &saved, &metrics).await {
        Ok(commit) => commit,
        Err(e) => {
            tx.discard().await;
            return Err(e);
        }
    };
    let object = model_object(ctx);
    let stored = Stored {
        uri: LakeFsUri::new(&l.repository, &commit, &object)?,
        path: LakeFsUri::new(&l.repository, &l.branch, &object)?,
        commit,
        saved,
        metrics,
    };
    // MLflow points at the model before the branch gets it: the branch never holds a model
    // that MLflow does not point to.
    if let Err(e) = record(ctx, &stored, artifacts.path()).await {
        let kept = tx.keep();
        return Err(PipelineError::Lineage(format!(
            "MLflow did not take the run's record ({e}); the model is kept unmerged on lakeFS branch {kept} (commit {}), and {} holds no model that MLflow does not point to",
            stored.commit, l.branch
        )));
    }
    merge_model(ctx, tx, &stored).await?;
    Ok(stored)
}

/// `<models_path>/<run id>/model.segm`.
fn model_object(ctx: &RunContext<'_>) -> String {
    format!(
        "{}/{}/{MODEL_FILE}",
        ctx.config.lakefs.models_path.trim_matches('/'),
        ctx.run_id
    )
}

/// Merges the model's transaction into the branch, unless Ctrl-C was pressed (then the branch
/// is left as it is). A failed merge keeps the temporary branch and names it.
async fn merge_model(ctx: &RunContext<'_>, tx: Transaction<'_>, stored: &Stored) -> Result<()> {
    let branch = &ctx.config.lakefs.branch;
    if ctx.opts.interrupted.load(Ordering::SeqCst) {
        tx.discard().await;
        return Err(ctx.interrupted("the model was not"));
    }
    let merge = CommitOptions {
        message: format!("merge the model of MLflow run {}", ctx.run_id),
        metadata: BTreeMap::from([
            (commit_meta::KIND.to_string(), kinds::MERGE.to_string()),
            (commit_meta::MODEL_COMMIT.to_string(), stored.commit.clone()),
            (commit_meta::MLFLOW_RUN_ID.to_string(), ctx.run_id.clone()),
        ]),
        allow_empty: false,
    };
    match tx.merge(&merge).await {
        Ok(_) => {
            tx.discard().await;
            Ok(())
        }
        Err(e) => {
            let kept = tx.keep();
            Err(PipelineError::Lineage(format!(
                "cannot merge the model into {branch} ({e}); it is kept on lakeFS branch {kept} (commit {}), where the run's model_uri points",
                stored.commit
            )))
        }
    }
}

/// The model and its metadata onto the transaction's branch, committed (commit M).
async fn put_model(
    ctx: &RunContext<'_>,
    branch: &str,
    saved: &SavedCheckpoint,
    metrics: &BTreeMap<String, f64>,
) -> Result<String> {
    let l = &ctx.config.lakefs;
    let run_id = &ctx.run_id;
    let object = model_object(ctx);
    let meta_object = object.replace(MODEL_FILE, MODEL_META_FILE);
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
    let spinner = ctx.progress.spinner(&format!(
        "uploading the model to {}",
        LakeFsUri::new(&l.repository, &l.branch, "")?
    ));
    let lakefs = &ctx.services.lakefs;
    let model_opts = UploadOptions {
        metadata: BTreeMap::from([
            (commit_meta::SHA256.to_string(), saved.sha256.clone()),
            (commit_meta::MLFLOW_RUN_ID.to_string(), run_id.clone()),
        ]),
        content_type: Some("application/octet-stream".into()),
        if_absent: false,
    };
    let json = UploadOptions {
        content_type: Some("application/json".into()),
        ..UploadOptions::default()
    };
    let meta_file = saved.path.with_file_name(MODEL_META_FILE);
    let uploaded = async {
        lakefs
            .upload_file(&l.repository, branch, &object, &saved.path, &model_opts)
            .await?;
        lakefs
            .upload_file(&l.repository, branch, &meta_object, &meta_file, &json)
            .await?;
        lakefs
            .commit(
                &l.repository,
                branch,
                &format!("model of MLflow run {run_id}"),
                &metadata,
                false,
            )
            .await
    }
    .await;
    spinner.finish_and_clear();
    Ok(uploaded?.id)
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
