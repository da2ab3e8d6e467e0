//! Keeping a trained model: the run's pictures and redacted configuration as artifacts, the
//! MLflow 3 logged model (pending), the checkpoint (written once) with its metadata and the
//! MLflow model folder around it, the folder in lakeFS in one transaction (commit M, merged
//! into the branch only when complete), then the run's final metrics, model tags, artifacts,
//! and the logged model made ready and linked as the run's output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::atomic::Ordering;

use lakefs_client::{CommitOptions, LakeFsUri, Transaction, UploadOptions};
use mlflow_client::{Metric, Tag};
use seg_model::{Checkpoint, CheckpointMeta, SavedCheckpoint, TrainOutcome, UNet};

use super::RunContext;
use super::mlflow_model::{self, Identity};
use super::plan::Plan;
use super::{curve, params, report};
use crate::config::Config;
use crate::error::{PipelineError, Result};
use crate::run_record::{MODEL_FILE, MODEL_META_FILE, commit_meta, kinds, tags};

/// A logged model's status when its run could not keep it.
const UPLOAD_FAILED: &str = "LOGGED_MODEL_UPLOAD_FAILED";

/// Where the model went.
pub(super) struct Stored {
    /// Model commit M.
    pub commit: String,
    /// `lakefs://repo/M/models/<run>/model.segm`.
    pub uri: LakeFsUri,
    /// `lakefs://repo/<branch>/models/<run>/model.segm`.
    pub path: LakeFsUri,
    /// `lakefs://repo/M/models/<run>/`: the MLflow model folder.
    pub folder: LakeFsUri,
    /// sha256 of every file of the folder.
    pub files: BTreeMap<String, String>,
    /// The MLflow 3 logged model.
    pub model_id: String,
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
    seg_model::checkpoint::write_atomically(&meta_path, &json)?;
    Ok(saved)
}

/// Keeps the outcome of a finished run: artifacts, checkpoint, lakeFS, MLflow.
pub(super) async fn store(
    ctx: &RunContext<'_>,
    plan: &Plan,
    outcome: TrainOutcome,
) -> Result<Stored> {
    let metrics = outcome.final_metrics().ok_or_else(|| {
        PipelineError::Internal(format!(
            "the best epoch {} has no report",
            outcome.best_epoch
        ))
    })?;
    let artifacts = tempfile::tempdir().map_err(PipelineError::io("create", "temp dir"))?;
    curve::training_curve(
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
        .take(ctx.config.mlflow.overlay_samples)
        .collect();
    let (checkpoint, _) = report::write_overlays(
        Checkpoint {
            model: outcome.model,
            meta: outcome.meta,
        },
        ctx.data.dataset.clone(),
        overlays,
        plan.train.backend,
        &artifacts.path().join("overlays"),
    )
    .await?;
    let model_id = create_logged_model(ctx).await?;
    let kept = keep(ctx, checkpoint, metrics, &model_id, artifacts.path()).await;
    if kept.is_err() {
        let mlflow = &ctx.services.mlflow;
        if let Err(e) = mlflow
            .set_logged_model_status(&model_id, UPLOAD_FAILED)
            .await
        {
            tracing::warn!("cannot mark logged model {model_id} {UPLOAD_FAILED}: {e}");
        }
    }
    kept
}

/// The MLflow 3 logged model of the run (pending until the model is kept), with the run's
/// params.
async fn create_logged_model(ctx: &RunContext<'_>) -> Result<String> {
    let logged = ctx
        .services
        .mlflow
        .create_logged_model(
            &ctx.experiment_id,
            &ctx.config.register.model_name,
            Some(&ctx.run_id),
            &params::config_params(ctx.config)?,
            &[Tag::new(tags::DATA_COMMIT, &ctx.data.commit)],
        )
        .await?;
    Ok(logged.info.model_id)
}

/// Writes the model folder, puts it in lakeFS (commit M), records it in MLflow and merges it.
async fn keep(
    ctx: &RunContext<'_>,
    checkpoint: Checkpoint,
    metrics: BTreeMap<String, f64>,
    model_id: &str,
    artifacts: &Path,
) -> Result<Stored> {
    let saved = save_local(
        ctx.config,
        &ctx.run_id,
        checkpoint.model.clone(),
        checkpoint.meta,
    )?;
    let checkpoint_path = saved.path.clone();
    keep_saved(ctx, checkpoint.model, saved, metrics, model_id, artifacts)
        .await
        .map_err(|e| e.model_kept_at(checkpoint_path))
}

/// [`keep`] once the checkpoint is saved locally.
async fn keep_saved(
    ctx: &RunContext<'_>,
    trained: UNet,
    saved: SavedCheckpoint,
    metrics: BTreeMap<String, f64>,
    model_id: &str,
    artifacts: &Path,
) -> Result<Stored> {
    let meta = seg_model::checkpoint::read_meta(&saved.path)?;
    let dir = saved.path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let identity = Identity {
        run_id: &ctx.run_id,
        model_id,
        created_secs: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let model = Checkpoint {
        model: trained,
        meta,
    };
    let files = mlflow_model::write(&dir, &model, &identity)?;
    let l = &ctx.config.lakefs;
    let tx = ctx
        .services
        .lakefs
        .begin(&l.repository, &l.branch, &ctx.owner)
        .await?;
    let commit = match put_model(ctx, tx.branch(), &dir, &files, &metrics).await {
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
        folder: LakeFsUri::new(&l.repository, &commit, &folder_object(ctx))?,
        files,
        model_id: model_id.to_string(),
        commit,
        saved,
        metrics,
    };
    // MLflow points at the model before the branch gets it: the branch never holds a model
    // that MLflow does not point to.
    if let Err(e) = record(ctx, &stored, artifacts).await {
        let kept = tx.keep();
        return Err(PipelineError::Lineage(format!(
            "MLflow did not take the run's record ({e}); the model is kept unmerged on lakeFS branch {kept} (commit {}), and {} holds no model that MLflow does not point to",
            stored.commit, l.branch
        )));
    }
    merge_model(ctx, tx, &stored).await?;
    Ok(stored)
}

/// `<models_path>/<run id>/`: the MLflow model folder.
fn folder_object(ctx: &RunContext<'_>) -> String {
    format!(
        "{}/{}/",
        ctx.config.lakefs.models_path.trim_matches('/'),
        ctx.run_id
    )
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

/// The model folder onto the transaction's branch, committed (commit M). Every file carries
/// its sha256 (and the run id) as object metadata; the commit lists them all.
async fn put_model(
    ctx: &RunContext<'_>,
    branch: &str,
    dir: &Path,
    files: &BTreeMap<String, String>,
    metrics: &BTreeMap<String, f64>,
) -> Result<String> {
    let l = &ctx.config.lakefs;
    let run_id = &ctx.run_id;
    let object = model_object(ctx);
    let sha = files.get(MODEL_FILE).cloned().unwrap_or_default();
    let metadata = BTreeMap::from([
        (commit_meta::KIND.to_string(), kinds::MODEL.to_string()),
        (commit_meta::MLFLOW_RUN_ID.to_string(), run_id.clone()),
        (tags::GIT_COMMIT.to_string(), ctx.git.commit.clone()),
        (
            commit_meta::DATA_COMMIT.to_string(),
            ctx.data.commit.clone(),
        ),
        (commit_meta::SHA256.to_string(), sha),
        (
            commit_meta::METRICS.to_string(),
            to_json("metrics", metrics)?,
        ),
        (commit_meta::MODEL_PATH.to_string(), object),
        (
            commit_meta::FILES_SHA256.to_string(),
            to_json("file hashes", files)?,
        ),
    ]);
    let spinner = ctx.progress.spinner(&format!(
        "uploading the model to {}",
        LakeFsUri::new(&l.repository, &l.branch, "")?
    ));
    let lakefs = &ctx.services.lakefs;
    let folder = folder_object(ctx);
    let uploaded = async {
        for (name, sha) in files {
            let opts = UploadOptions {
                metadata: BTreeMap::from([
                    (commit_meta::SHA256.to_string(), sha.clone()),
                    (commit_meta::MLFLOW_RUN_ID.to_string(), run_id.clone()),
                ]),
                content_type: Some(content_type(name).into()),
                if_absent: false,
            };
            let key = format!("{folder}{name}");
            lakefs
                .upload_file(&l.repository, branch, &key, &dir.join(name), &opts)
                .await?;
        }
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

/// The content type a model folder file is stored with.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("json") => "application/json",
        Some("yaml") | Some("txt") => "text/plain",
        _ if name == crate::run_record::model_folder::MLMODEL => "text/plain",
        _ => "application/octet-stream",
    }
}

/// `value` as JSON; `what` names it in the error.
fn to_json<T: serde::Serialize + ?Sized>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| PipelineError::Internal(format!("cannot write the {what} as JSON: {e}")))
}

/// The run's final metrics (also on the logged model), model tags, artifacts (pictures,
/// config, model metadata); the logged model tagged, made ready and linked as the run's output.
async fn record(ctx: &RunContext<'_>, stored: &Stored, artifacts: &Path) -> Result<()> {
    let mlflow = &ctx.services.mlflow;
    let run_id = &ctx.run_id;
    let final_metrics: Vec<Metric> = stored
        .metrics
        .iter()
        .map(|(k, v)| Metric::now(k, *v, 0).for_model(&stored.model_id))
        .collect();
    let sha = &stored.saved.sha256;
    let files = to_json("file hashes", &stored.files)?;
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
                Tag::new(tags::MODEL_FOLDER_URI, stored.folder.to_string()),
                Tag::new(tags::MODEL_FILES_SHA256, &files),
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
    let model_id = &stored.model_id;
    mlflow
        .set_logged_model_tags(
            model_id,
            &[
                Tag::new(tags::LOGGED_MODEL_LAKEFS_URI, stored.folder.to_string()),
                Tag::new(tags::LOGGED_MODEL_SHA256, sha),
                Tag::new(tags::MODEL_FILES_SHA256, &files),
            ],
        )
        .await?;
    mlflow.finalize_logged_model(model_id).await?;
    mlflow.log_outputs(run_id, model_id, 0).await?;
    mlflow
        .set_tag(run_id, tags::LOGGED_MODEL_ID, model_id)
        .await?;
    Ok(())
}
