//! Model references: a registered model's alias or version, or a training run, resolved
//! through MLflow to the model's immutable lakeFS URI, downloaded into the cache keyed by
//! commit and checked against its recorded sha256 (a mismatch is refused, never loaded). Used
//! by `register_model` (the run's model) and `infer` (any reference).

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::TryStreamExt;
use lakefs_client::LakeFsUri;
use mlflow_client::{ClientError as _, MlflowError, ModelVersion, Run, RunSearch, RunStatus};
use serde::Serialize;

use crate::config::Config;
use crate::error::{PipelineError, Result};
use crate::run_record::{MODEL_FILE, ModelLineage, kinds, params, tags};
use crate::services::Services;
use crate::terminal::{Table, format_utc, read_choice, truncate_chars};

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

/// A model resolved and verified.
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
    /// Git commit of the training code, when the run knew it.
    pub git_commit: Option<String>,
    /// The verified file in the cache.
    pub local: PathBuf,
}

impl ResolvedModel {
    /// `<model>-v<version>`, or `run-<run id>` for an unregistered run.
    pub fn label(&self) -> String {
        match &self.version {
            Some(v) => format!("{}-v{v}", self.model_name),
            None => format!("run-{}", self.run_id),
        }
    }
}

/// Resolves `choice`: through the registry (alias, version) or a training run; downloads and
/// verifies the model.
pub async fn resolve(
    services: &Services,
    config: &Config,
    choice: &ModelChoice,
) -> Result<ResolvedModel> {
    let name = &config.register.model_name;
    let (version, alias, run) = match choice {
        ModelChoice::Alias(alias) => {
            let v = version_by_alias(services, config, alias).await?;
            let run = training_run(services, config, &v.run_id).await?;
            (Some(v), Some(alias.clone()), run)
        }
        ModelChoice::Version(n) => {
            let v = services
                .mlflow
                .get_model_version(name, n)
                .await
                .map_err(|e| registry_error(config, e, &format!("version {n}")))?;
            let run = training_run(services, config, &v.run_id).await?;
            (Some(v), None, run)
        }
        ModelChoice::RunId(id) => {
            let run = training_run(services, config, id).await?;
            require_finished(&run)?;
            (None, None, run)
        }
        ModelChoice::Interactive => (None, None, pick_run(services, config).await?),
    };
    let version = match version {
        Some(v) => Some(v),
        None => registered_version_of(services, config, &run).await?,
    };
    verified(services, config, run, version, alias).await
}

/// The model of `run` (and of `version` when it is registered), checked and downloaded.
async fn verified(
    services: &Services,
    config: &Config,
    run: Run,
    version: Option<ModelVersion>,
    alias: Option<String>,
) -> Result<ResolvedModel> {
    let name = &config.register.model_name;
    let lineage = ModelLineage::try_from(&run)?;
    let run_id = lineage.run_id.clone();
    let run_sha = lineage.model_sha256.clone();
    let (uri, sha, whose) = match &version {
        Some(v) => {
            let sha = v.tag(tags::MODEL_SHA256).unwrap_or(&run_sha).to_string();
            if !sha.eq_ignore_ascii_case(&run_sha) {
                return Err(PipelineError::Lineage(format!(
                    "version {} of {name} records model_sha256 {sha} but its run {run_id} recorded {run_sha}; refusing both",
                    v.version
                )));
            }
            let whose = format!("version {} of {name}", v.version);
            (v.source.clone(), sha, whose)
        }
        None => (
            lineage.source.clone(),
            run_sha,
            format!("model of run {run_id}"),
        ),
    };
    if !uri.starts_with("lakefs://") {
        return Err(PipelineError::Lineage(format!(
            "the model of run {run_id} is at {uri:?}, not in lakeFS: it was not stored by `train`"
        )));
    }
    let parsed: LakeFsUri = uri.parse()?;
    let local = if uri.ends_with('/') {
        let files = folder_files(&run, &sha)?;
        fetch_folder(services, config, &parsed, &files, &whose).await?
    } else {
        fetch_verified(services, config, &parsed, &sha, &whose).await?
    };
    Ok(ResolvedModel {
        model_name: name.clone(),
        version: version.map(|v| v.version),
        alias,
        run_id,
        model_uri: uri,
        model_sha256: sha,
        data_commit: lineage.data_commit,
        data_repository: lineage.repository.unwrap_or(parsed.repository),
        git_commit: lineage.git_commit,
        local,
    })
}

/// The registered version under `alias`.
async fn version_by_alias(
    services: &Services,
    config: &Config,
    alias: &str,
) -> Result<ModelVersion> {
    let name = &config.register.model_name;
    services
        .mlflow
        .get_version_by_alias(name, alias)
        .await
        .map_err(|e| registry_error(config, e, &format!("alias {alias:?}")))?
        .ok_or_else(|| {
            PipelineError::NotFound(format!(
                "registered model {name:?} has no alias {alias:?} at {}: register a version with `cargo run -p register_model` (or pick --version / --run-id)",
                config.mlflow.tracking_uri
            ))
        })
}

/// A registry error: "does not exist" for MLflow's not-found answers and its
/// `INVALID_PARAMETER_VALUE` code (MLflow answers a missing version or alias with either),
/// else as it is.
fn registry_error(config: &Config, e: MlflowError, what: &str) -> PipelineError {
    let missing = e.is_not_found()
        || matches!(e.cause(), MlflowError::InvalidParameter { code, .. } if code == "INVALID_PARAMETER_VALUE");
    if !missing {
        return e.into();
    }
    PipelineError::NotFound(format!(
        "{what} of registered model {:?} does not exist at {}: register one with `cargo run -p register_model` (or pick a run with --run-id / --interactive)",
        config.register.model_name, config.mlflow.tracking_uri
    ))
}

/// The newest version of the configured model registered from `run`'s model, if any.
async fn registered_version_of(
    services: &Services,
    config: &Config,
    run: &Run,
) -> Result<Option<ModelVersion>> {
    let name = &config.register.model_name;
    let run_uri = run.tag(tags::MODEL_URI).unwrap_or_default();
    let folder_uri = run.tag(tags::MODEL_FOLDER_URI).unwrap_or_default();
    let found: Vec<ModelVersion> = services
        .mlflow
        .search_model_versions(
            Some(format!("name='{name}' and run_id='{}'", run.info.run_id)),
            vec![],
        )
        .try_collect()
        .await?;
    newest(
        found
            .into_iter()
            .filter(|v| v.source == run_uri || (!folder_uri.is_empty() && v.source == folder_uri)),
        name,
    )
}

/// The version with the highest number; a version that is not a number is an error.
fn newest(
    versions: impl Iterator<Item = ModelVersion>,
    name: &str,
) -> Result<Option<ModelVersion>> {
    let mut best: Option<(u64, ModelVersion)> = None;
    for v in versions {
        let n: u64 = v.version.parse().map_err(|_| {
            PipelineError::Lineage(format!(
                "MLflow returned version {:?} of {name}, which is not a version number",
                v.version
            ))
        })?;
        if best.as_ref().is_none_or(|(m, _)| n > *m) {
            best = Some((n, v));
        }
    }
    Ok(best.map(|(_, v)| v))
}

/// Refuses a run that did not end FINISHED: a FAILED or KILLED run may have stopped before its
/// model was merged, so its `model_uri` can name a model that was never stored.
pub fn require_finished(run: &Run) -> Result<()> {
    let status = run.info.status;
    if status == RunStatus::Finished {
        return Ok(());
    }
    let status = serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{status:?}"));
    Err(PipelineError::NotFound(format!(
        "run {} is {status}, not FINISHED: its model may never have been stored; pick a FINISHED training run (`register_model --manual` lists them)",
        run.info.run_id
    )))
}

/// The training run `run_id` (an inference run is refused).
pub async fn training_run(services: &Services, config: &Config, run_id: &str) -> Result<Run> {
    let run = services.mlflow.get_run(run_id).await.map_err(|e| {
        if e.is_not_found() {
            PipelineError::NotFound(format!(
                "no MLflow run {run_id} at {}: list runs with `infer --interactive` or `register_model --manual`",
                config.mlflow.tracking_uri
            ))
        } else {
            e.into()
        }
    })?;
    if run.tag(tags::KIND) == Some(kinds::INFERENCE) {
        return Err(PipelineError::NotFound(format!(
            "run {run_id} is an inference run, not a training run: pick a training run (`register_model --manual` lists them)"
        )));
    }
    Ok(run)
}

/// The FINISHED training runs of the experiment that stored a model, newest first.
pub async fn model_runs(services: &Services, config: &Config) -> Result<Vec<Run>> {
    let experiment = services
        .mlflow
        .get_experiment_by_name(&config.mlflow.experiment)
        .await?
        .ok_or_else(|| {
            PipelineError::NotFound(format!(
                "no MLflow experiment {:?} at {}: train a model first (cargo run -p train)",
                config.mlflow.experiment, config.mlflow.tracking_uri
            ))
        })?;
    let runs: Vec<Run> = services
        .mlflow
        .search_runs(RunSearch {
            experiment_ids: vec![experiment.experiment_id],
            filter: Some(format!(
                "attributes.status = 'FINISHED' and tags.{} LIKE 'lakefs://%'",
                tags::MODEL_URI
            )),
            order_by: vec!["attributes.start_time DESC".into()],
            ..RunSearch::default()
        })
        .try_collect()
        .await?;
    Ok(runs
        .into_iter()
        .filter(|r| r.tag(tags::KIND) != Some(kinds::INFERENCE))
        .collect())
}

/// [`model_runs`], or a not-found error when there is none.
pub async fn some_model_runs(services: &Services, config: &Config) -> Result<Vec<Run>> {
    let runs = model_runs(services, config).await?;
    if runs.is_empty() {
        return Err(PipelineError::NotFound(format!(
            "experiment {:?} has no FINISHED run with a model: train one first (cargo run -p train)",
            config.mlflow.experiment
        )));
    }
    Ok(runs)
}

/// Lists the runs with a model (number, run id, git commit, start, main params and metrics)
/// and reads the choice from stdin; an empty line picks the newest.
async fn pick_run(services: &Services, config: &Config) -> Result<Run> {
    let runs = some_model_runs(services, config).await?;
    let param = |r: &Run, k: &str| r.param(k).unwrap_or("-").to_string();
    let metric = |r: &Run, k: &str| r.metric(k).map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut table = Table::new(&[
        ("run id", 32),
        ("git", 10),
        ("start (UTC)", 19),
        ("epochs", -6),
        ("lr", -8),
        ("size", -5),
        ("backend", 7),
        ("loss", -7),
        ("iou", -7),
        ("dice", -7),
    ]);
    for r in &runs {
        table.row(vec![
            r.info.run_id.clone(),
            truncate_chars(r.tag(tags::GIT_COMMIT).unwrap_or("-"), 10),
            format_utc(r.info.start_time / 1000),
            param(r, params::EPOCHS),
            param(r, params::LEARNING_RATE),
            param(r, params::IMAGE_SIZE),
            truncate_chars(&param(r, params::DEVICE), 7),
            metric(r, "loss"),
            metric(r, "iou"),
            metric(r, "dice"),
        ]);
    }
    table.print();
    let n = read_choice(runs.len(), "predict with which run?", "--interactive", true)?;
    runs.into_iter()
        .nth(n)
        .ok_or_else(|| PipelineError::Usage("no such run".into()))
}

/// The files of `run`'s model folder with their sha256 (its `model_files_sha256` tag), checked
/// to hold the model file with the sha256 that lineage recorded (`model_sha256`).
pub fn folder_files(run: &Run, model_sha256: &str) -> Result<BTreeMap<String, String>> {
    let run_id = &run.info.run_id;
    let text = run.tag(tags::MODEL_FILES_SHA256).ok_or_else(|| {
        PipelineError::Lineage(format!(
            "run {run_id} has a model folder but no {} tag: its files cannot be checked",
            tags::MODEL_FILES_SHA256
        ))
    })?;
    let files: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
        PipelineError::Lineage(format!(
            "run {run_id}: tag {} is not a JSON object of file hashes: {e}",
            tags::MODEL_FILES_SHA256
        ))
    })?;
    match files.get(MODEL_FILE) {
        Some(sha) if sha.eq_ignore_ascii_case(model_sha256.trim()) => Ok(files),
        other => Err(PipelineError::Lineage(format!(
            "run {run_id}: the model folder's {MODEL_FILE} has sha256 {other:?} but {} is {model_sha256}; refusing it",
            tags::MODEL_SHA256
        ))),
    }
}

/// Downloads every file of the model folder `folder` (`lakefs://repo/<commit>/models/<run>/`),
/// each checked against its recorded sha256; returns the local model file.
pub async fn fetch_folder(
    services: &Services,
    config: &Config,
    folder: &LakeFsUri,
    files: &BTreeMap<String, String>,
    whose: &str,
) -> Result<PathBuf> {
    let mut model = None;
    for (name, sha) in files {
        let uri = LakeFsUri::new(
            &folder.repository,
            &folder.reference,
            &format!("{}{name}", folder.path),
        )?;
        let local = fetch_verified(services, config, &uri, sha, whose).await?;
        if name == MODEL_FILE {
            model = Some(local);
        }
    }
    model.ok_or_else(|| PipelineError::Lineage(format!("{folder} ({whose}) holds no {MODEL_FILE}")))
}

/// Downloads the object at `uri` (an immutable `lakefs://repo/<commit>/path`) into the cache
/// keyed by commit, and checks that its bytes hash to `expected` (sha256); a missing object or
/// another hash is refused, naming both values. `whose` says what the object is in messages.
pub async fn fetch_verified(
    services: &Services,
    config: &Config,
    uri: &LakeFsUri,
    expected: &str,
    whose: &str,
) -> Result<PathBuf> {
    let dest = config
        .paths
        .cache_dir
        .join(&uri.repository)
        .join(&uri.reference)
        .join(&uri.path);
    match services
        .lakefs
        .download_object_cached(&uri.repository, &uri.reference, &uri.path, &dest)
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {
            return Err(PipelineError::Lineage(format!(
                "{uri} ({whose}) does not exist in lakeFS: {e}"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let actual = seg_model::checkpoint::file_sha256(&dest)?;
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        return Err(PipelineError::Lineage(format!(
            "{uri} ({whose}) has sha256 {actual}, but {expected} was recorded: the object was replaced after training; refusing it"
        )));
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(n: &str) -> ModelVersion {
        serde_json::from_value(serde_json::json!({ "name": "m", "version": n }))
            .expect("a model version")
    }

    #[test]
    fn the_newest_version_is_the_highest_number_and_a_bad_number_is_refused() {
        let got = newest(["2", "10", "3"].into_iter().map(version), "m").expect("numbers");
        assert_eq!(got.map(|v| v.version).as_deref(), Some("10"));
        let err = newest(["2", "x"].into_iter().map(version), "m").expect_err("not a number");
        assert!(err.to_string().contains("\"x\""), "{err}");
        assert!(newest(std::iter::empty(), "m").expect("none").is_none());
    }

    #[test]
    fn missing_registry_entries_are_recognised_by_kind_not_text() {
        let config = crate::config::load_with_env(None, crate::config::Flags::new(), Vec::new())
            .expect("defaults")
            .config;
        let invalid = MlflowError::InvalidParameter {
            request: "GET /x".into(),
            code: "INVALID_PARAMETER_VALUE".into(),
            message: "no alias".into(),
        };
        assert!(matches!(
            registry_error(&config, invalid, "alias \"x\""),
            PipelineError::NotFound(_)
        ));
        let other = MlflowError::Config("bad".into());
        assert!(matches!(
            registry_error(&config, other, "alias"),
            PipelineError::Mlflow(_)
        ));
    }
}
