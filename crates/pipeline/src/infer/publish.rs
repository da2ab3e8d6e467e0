//! `infer --commit`: an MLflow inference run, this call's masks and overlays with a manifest
//! uploaded under `<predictions_path>/<label>/` in one lakeFS transaction whose commit names the
//! run, then the run tagged with the commit. The facts about the predictions are written once
//! ([`PredictionFacts`]) and become the run's tags and params, the manifest and the commit
//! metadata. A failure ends the run FAILED and leaves the branch untouched.

use std::collections::BTreeMap;
use std::path::Path;

use lakefs_client::{CommitOptions, LakeFsUri, UploadDirOptions};
use mlflow_client::{Metric, NewRun, Param, RunGuard, Tag};
use serde::Serialize;

use super::InferSummary;
use super::predict::LoopOutcome;
use crate::config::Config;
use crate::error::{PipelineError, Result};
use crate::leftovers;
use crate::lineage;
use crate::model_ref::ResolvedModel;
use crate::run_record::{self, commit_meta, kinds, tags};
use crate::services::Services;
use crate::terminal::{Progress, format_utc};

/// What a predictions commit is: the model that made it and what it predicted.
#[derive(Debug, Clone, Serialize)]
struct PredictionFacts {
    model_name: String,
    model_version: Option<String>,
    model_uri: String,
    model_sha256: String,
    training_run_id: String,
    data_commit: String,
    input_ref: String,
    images: usize,
    failed: usize,
}

impl PredictionFacts {
    fn new(model: &ResolvedModel, summary: &InferSummary) -> Self {
        Self {
            model_name: model.model_name.clone(),
            model_version: model.version.clone(),
            model_uri: model.model_uri.clone(),
            model_sha256: model.model_sha256.clone(),
            training_run_id: model.run_id.clone(),
            data_commit: model.data_commit.clone(),
            input_ref: summary.input_ref.clone(),
            images: summary.images,
            failed: summary.failed,
        }
    }

    /// The facts as `(name, text)` pairs (absent values left out).
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            (tags::MODEL_NAME, self.model_name.clone()),
            (tags::MODEL_URI, self.model_uri.clone()),
            (tags::MODEL_SHA256, self.model_sha256.clone()),
            (tags::TRAINING_RUN, self.training_run_id.clone()),
            (tags::DATA_COMMIT, self.data_commit.clone()),
            (tags::INPUT_REF, self.input_ref.clone()),
            ("images", self.images.to_string()),
            ("failed", self.failed.to_string()),
        ];
        if let Some(v) = &self.model_version {
            pairs.push((tags::MODEL_VERSION, v.clone()));
        }
        pairs
    }
}

/// Versions the predictions of `outcome` (see the module documentation).
pub(super) async fn commit(
    services: &Services,
    config: &Config,
    outcome: &LoopOutcome,
    summary: &mut InferSummary,
    progress: &Progress,
) -> Result<()> {
    let mlflow = &services.mlflow;
    let facts = PredictionFacts::new(&summary.model, summary);
    let experiment = mlflow
        .get_or_create_experiment(
            &config.mlflow.experiment,
            &crate::run_record::experiment_tags(),
        )
        .await?;
    let git = lineage::git_info(Path::new("."));
    let stamp = format_utc(mlflow_client::now_millis() / 1000)
        .replace([' ', ':'], "")
        .replace('-', "");
    let mut run_tags = run_record::code_tags(&git, "infer");
    run_tags.push(Tag::new(tags::KIND, kinds::INFERENCE));
    run_tags.extend(leftovers::me().run_tags());
    run_tags.extend(facts.pairs().into_iter().map(|(k, v)| Tag::new(k, v)));
    let new_run = NewRun {
        run_name: Some(format!("inference-{}-{stamp}", summary.model.label())),
        tags: run_tags,
        ..NewRun::default()
    };
    let run = mlflow
        .create_run(&experiment.experiment_id, new_run)
        .await?;
    let run_id = run.info.run_id.clone();
    let guard = RunGuard::new(mlflow.clone(), run);
    let result = in_run(
        services, config, outcome, summary, &facts, &run_id, progress,
    )
    .await;
    if result.is_ok() && summary.failed > 0 {
        // The masks that were written are committed; the run says what is missing.
        let why = format!(
            "{} of {} inputs could not be read and have no mask (listed in manifest.json): {}",
            summary.failed,
            summary.failed + summary.images,
            summary.failed_inputs.join(", ")
        );
        run_record::end_failed_after(mlflow, guard, &why).await;
    } else {
        run_record::end_run(mlflow, guard, result).await?;
    }
    summary.inference_run_url = Some(run_record::run_url(
        &config.mlflow.tracking_uri,
        &experiment.experiment_id,
        &run_id,
    ));
    Ok(())
}

/// Params, the lakeFS transaction and the run's result tags and metrics.
async fn in_run(
    services: &Services,
    config: &Config,
    outcome: &LoopOutcome,
    summary: &mut InferSummary,
    facts: &PredictionFacts,
    run_id: &str,
    progress: &Progress,
) -> Result<()> {
    let mlflow = &services.mlflow;
    let mut params: Vec<Param> = facts
        .pairs()
        .into_iter()
        .map(|(k, v)| Param::new(k, v))
        .collect();
    params.extend([
        Param::new("backend", &summary.backend),
        Param::new("batch_size", config.infer.batch_size.to_string()),
        Param::new("tta", summary.tta.to_string()),
        Param::new("tta_views", summary.tta_views.to_string()),
    ]);
    mlflow.log_batch(run_id, &[], &params, &[]).await?;
    let stage = stage_files(outcome, summary, facts, run_id)?;
    let uri = upload(
        services,
        config,
        summary,
        facts,
        stage.path(),
        run_id,
        progress,
    )
    .await?;
    let mut metrics = vec![
        Metric::now("images", summary.images as f64, 0),
        Metric::now("failed", summary.failed as f64, 0),
        Metric::now("images_per_sec", summary.images_per_sec, 0),
    ];
    if let Some(m) = &summary.metrics {
        metrics.extend([
            Metric::now("iou", m.iou, 0),
            Metric::now("dice", m.dice, 0),
            Metric::now("mean_iou_with_background", m.mean_iou_with_background, 0),
            Metric::now("mean_dice_with_background", m.mean_dice_with_background, 0),
            Metric::now("foreground_iou", m.foreground_iou, 0),
            Metric::now("foreground_dice", m.foreground_dice, 0),
            Metric::now("pixel_accuracy", m.pixel_accuracy, 0),
        ]);
        if let Some(rate) = m.false_alarm_rate {
            metrics.extend([
                Metric::now("empty_truth_images", m.empty_truth_images as f64, 0),
                Metric::now("false_alarm_images", m.false_alarm_images as f64, 0),
                Metric::now("false_alarm_rate", rate, 0),
            ]);
        }
    }
    let result_tags = [
        Tag::new(tags::PREDICTIONS_COMMIT, &uri.reference),
        Tag::new(tags::PREDICTIONS_URI, uri.to_string()),
    ];
    mlflow
        .log_batch(run_id, &metrics, &[], &result_tags)
        .await?;
    summary.predictions_commit = Some(uri.reference.clone());
    summary.predictions_uri = Some(uri.to_string());
    summary.inference_run_id = Some(run_id.to_string());
    Ok(())
}

/// Exactly this call's outputs (masks, overlays) by relative path, and the manifest.
fn stage_files(
    outcome: &LoopOutcome,
    summary: &InferSummary,
    facts: &PredictionFacts,
    run_id: &str,
) -> Result<tempfile::TempDir> {
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
    let mut manifest = serde_json::to_value(facts)
        .map_err(|e| PipelineError::Internal(format!("cannot write the manifest: {e}")))?;
    manifest["inference_run_id"] = serde_json::json!(run_id);
    manifest["failed_inputs"] = serde_json::json!(summary.failed_inputs);
    manifest["metrics"] = serde_json::to_value(&summary.metrics)
        .map_err(|e| PipelineError::Internal(format!("cannot write the manifest: {e}")))?;
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| PipelineError::Internal(format!("cannot write the manifest: {e}")))?;
    let path = stage.path().join("manifest.json");
    std::fs::write(&path, text).map_err(PipelineError::io("write", &path))?;
    Ok(stage)
}

/// Mirrors `stage` into `<predictions_path>/<label>/` in one transaction; the URI of the
/// folder at the merged commit.
async fn upload(
    services: &Services,
    config: &Config,
    summary: &InferSummary,
    facts: &PredictionFacts,
    stage: &Path,
    run_id: &str,
    progress: &Progress,
) -> Result<LakeFsUri> {
    let repo = &summary.model.data_repository;
    let branch = &config.lakefs.branch;
    crate::data::ensure_branch(&services.lakefs, config, repo).await?;
    let prefix = format!(
        "{}/{}/",
        config.infer.predictions_path.trim_matches('/'),
        summary.model.label().replace('_', "-")
    );
    let mut metadata: BTreeMap<String, String> = facts
        .pairs()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    metadata.insert(commit_meta::KIND.into(), kinds::PREDICTIONS.into());
    metadata.insert(commit_meta::MLFLOW_RUN_ID.into(), run_id.into());
    let target = LakeFsUri::new(repo, branch, &prefix)?;
    let spinner = progress.spinner(&format!(
        "committing {} predictions to {target}",
        summary.images
    ));
    let commit = CommitOptions {
        message: format!(
            "predictions of {} on {} (MLflow run {run_id})",
            summary.model.label(),
            summary.input_ref
        ),
        metadata,
        allow_empty: false,
    };
    let lakefs = &services.lakefs;
    let owner = leftovers::me().tx_owner(Some(run_id));
    let tx = lakefs.begin(repo, branch, &owner).await?;
    let done = async {
        let mirror = UploadDirOptions {
            mirror: true,
            ..UploadDirOptions::default()
        };
        lakefs
            .upload_dir(stage, repo, tx.branch(), &prefix, &mirror)
            .await?;
        match tx.commit(&commit).await {
            Ok(_) => tx.merge(&commit).await,
            // The branch holds exactly these predictions already: they are at its head.
            Err(e) if e.is_nothing_to_commit() => Ok(tx.base().to_string()),
            Err(e) => Err(e),
        }
    }
    .await;
    tx.discard().await;
    spinner.finish_and_clear();
    Ok(target.at(&done?)?)
}
