//! The vocabulary of a run, written once: the tags and commit-metadata keys that `train`,
//! `register_model` and `infer` write and read back, the file names of a stored model, the
//! run's address in the MLflow UI, the tags every run carries about its code, and ending a run
//! FAILED or KILLED with its error.

use mlflow_client::{ClientError as _, MlflowClient, RunGuard, RunStatus, Tag};

use crate::error::{Result, exit};
use crate::lineage::GitInfo;

/// The model file's name inside its run folder.
pub const MODEL_FILE: &str = "model.segm";
/// The metadata file beside it.
pub const MODEL_META_FILE: &str = "model.json";

/// The files of a model's MLflow model folder `models/<run id>/` (beside [`MODEL_FILE`] and
/// [`MODEL_META_FILE`]).
pub mod model_folder {
    /// The ONNX export.
    pub const ONNX: &str = "model.onnx";
    /// MLflow's model description.
    pub const MLMODEL: &str = "MLmodel";
    /// Pinned pip requirements of the python_function flavor.
    pub const REQUIREMENTS: &str = "requirements.txt";
    /// MLflow's virtualenv description.
    pub const PYTHON_ENV: &str = "python_env.yaml";
    /// MLflow's conda description.
    pub const CONDA: &str = "conda.yaml";
    /// Every file of the folder, each uploaded and checked by sha256.
    pub const FILES: [&str; 7] = [
        super::MODEL_FILE,
        super::MODEL_META_FILE,
        ONNX,
        MLMODEL,
        REQUIREMENTS,
        PYTHON_ENV,
        CONDA,
    ];
}

/// Tags of MLflow runs and model versions.
pub mod tags {
    /// What kind of run this is ([`super::kinds`]).
    pub const KIND: &str = "seg_mlops.kind";
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
    /// `lakefs://repo/D/<data folder>/`.
    pub const DATA_URI: &str = "lakefs_data_uri";
    /// `lakefs://repo/D/<holdout folder>/`: the pairs held back from training at D.
    pub const HOLDOUT_URI: &str = "lakefs_holdout_uri";
    /// Model commit M.
    pub const MODEL_COMMIT: &str = "lakefs_model_commit";
    /// `lakefs://repo/<branch>/models/...` (mutable: the tag of the Python pipeline this one mirrors).
    pub const MODEL_PATH: &str = "model_path";
    /// `lakefs://repo/<M>/models/...` (immutable).
    pub const MODEL_URI: &str = "model_uri";
    /// sha256 of the model file.
    pub const MODEL_SHA256: &str = "model_sha256";
    /// `lakefs://repo/<M>/models/<run>/`: the MLflow model folder (a version's source).
    pub const MODEL_FOLDER_URI: &str = "model_folder_uri";
    /// sha256 of every file of the model folder (JSON object, file name -> hex).
    pub const MODEL_FILES_SHA256: &str = "model_files_sha256";
    /// The MLflow 3 logged model of the run.
    pub const LOGGED_MODEL_ID: &str = "logged_model_id";
    /// On the logged model: its MLflow model folder in lakeFS at M.
    pub const LOGGED_MODEL_LAKEFS_URI: &str = "lakefs_uri";
    /// On the logged model: sha256 of its model file.
    pub const LOGGED_MODEL_SHA256: &str = "sha256";
    /// The run this one reproduces.
    pub const REPRODUCED_FROM: &str = "reproduced_from";
    /// Settings given beside `--reproduce` that replaced the reproduced run's (`key = value`,
    /// `; `-separated).
    pub const REPRODUCE_OVERRIDES: &str = "reproduce_overrides";
    /// Foreground pixels in the validation split's masks: 0 means its scores measure nothing.
    pub const VALIDATION_FOREGROUND: &str = "validation_foreground_pixels";
    /// Why the run failed.
    pub const ERROR: &str = "error";
    /// The host of the process that ran it.
    pub const HOST: &str = "seg_mlops.host";
    /// The process id that ran it.
    pub const PID: &str = "seg_mlops.pid";
    /// The registered model's name (inference runs).
    pub const MODEL_NAME: &str = "model_name";
    /// The model version used (absent when picked by run).
    pub const MODEL_VERSION: &str = "model_version";
    /// The training run of the model (inference runs).
    pub const TRAINING_RUN: &str = "training_run_id";
    /// What was predicted (lakeFS URI at a commit, local folder, file, or stdin).
    pub const INPUT_REF: &str = "input_ref";
    /// The lakeFS commit holding the predictions.
    pub const PREDICTIONS_COMMIT: &str = "lakefs_predictions_commit";
    /// `lakefs://repo/<commit>/<predictions folder>/`.
    pub const PREDICTIONS_URI: &str = "predictions_uri";
    /// A version registered although the criteria were not met.
    pub const FORCED: &str = "forced";
    /// The evaluation set's commit a version (or an evaluation run) was judged on.
    pub const EVALUATION_COMMIT: &str = "evaluation_commit";
    /// sha256 of the evaluation set's content (paths and checksums): what "changed" compares.
    pub const EVALUATION_DIGEST: &str = "evaluation_digest";
    /// The evaluation set at that commit (`lakefs://repo/<commit>/eval/`).
    pub const EVALUATION_URI: &str = "evaluation_uri";
    /// The champion version a challenger was compared with.
    pub const COMPARED_WITH: &str = "compared_with";
    /// The promotion decision: promoted, refused or forced.
    pub const DECISION: &str = "decision";
    /// The evaluation run that judged a version.
    pub const EVALUATION_RUN: &str = "evaluation_run_id";
    /// The version an evaluation run judged.
    pub const CHALLENGER_VERSION: &str = "challenger_version";
}

/// What a training run recorded about its model, read once from its tags: the version's
/// source (the MLflow model folder when the run has one, else the model file), the model and
/// data commits, the model's sha256, the repository and the code. A tag a stored model always
/// has is required; its absence is an error naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLineage {
    /// The run.
    pub run_id: String,
    /// The immutable source: `lakefs://repo/M/models/<run>/` (or `.../model.segm`).
    pub source: String,
    /// Model commit M.
    pub model_commit: String,
    /// Data commit D.
    pub data_commit: String,
    /// sha256 of the model file.
    pub model_sha256: String,
    /// The lakeFS repository of D (runs older than the tag: the source's).
    pub repository: Option<String>,
    /// The git commit of the code, when the run knew it.
    pub git_commit: Option<String>,
}

impl TryFrom<&mlflow_client::Run> for ModelLineage {
    type Error = crate::error::PipelineError;

    fn try_from(run: &mlflow_client::Run) -> Result<Self, Self::Error> {
        let id = &run.info.run_id;
        let required = |key: &str| {
            run.tag(key)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| {
                    crate::error::PipelineError::Lineage(format!(
                        "run {id} has no {key} tag: it did not store a model through `train` (pick a FINISHED training run)"
                    ))
                })
        };
        let source = match run.tag(tags::MODEL_FOLDER_URI).filter(|v| !v.is_empty()) {
            Some(folder) => folder.to_string(),
            None => required(tags::MODEL_URI)?,
        };
        Ok(Self {
            run_id: id.clone(),
            source,
            model_commit: required(tags::MODEL_COMMIT)?,
            data_commit: required(tags::DATA_COMMIT)?,
            model_sha256: required(tags::MODEL_SHA256)?,
            repository: run.tag(tags::LAKEFS_REPO).map(str::to_string),
            git_commit: run
                .tag(tags::GIT_COMMIT)
                .filter(|c| !c.is_empty() && *c != "unknown")
                .map(str::to_string),
        })
    }
}

/// Values of [`tags::KIND`] on runs and of [`commit_meta::KIND`] on lakeFS commits.
pub mod kinds {
    /// A training run.
    pub const TRAINING: &str = "training";
    /// An inference run.
    pub const INFERENCE: &str = "inference";
    /// A comparison of a challenger with the champion (`register_model`).
    pub const EVALUATION: &str = "evaluation";
    /// A data commit.
    pub const DATA: &str = "data";
    /// A model commit.
    pub const MODEL: &str = "model";
    /// A predictions commit.
    pub const PREDICTIONS: &str = "predictions";
    /// A merge of a transaction's commit.
    pub const MERGE: &str = "merge";
}

/// Params of a training run read back by name (the settings are logged under their config
/// keys, `train.` keys without the prefix; see the train step's params).
pub mod params {
    /// `train.epochs`.
    pub const EPOCHS: &str = "epochs";
    /// `train.learning_rate`.
    pub const LEARNING_RATE: &str = "learning_rate";
    /// `train.image_size`.
    pub const IMAGE_SIZE: &str = "image_size";
    /// The backend the run trained on (a fact of the run, not a setting replayed).
    pub const DEVICE: &str = "device";
}

/// Metadata keys of lakeFS commits.
pub mod commit_meta {
    /// What the commit holds ([`super::kinds`]).
    pub const KIND: &str = "seg_mlops.kind";
    /// The MLflow run that made it.
    pub const MLFLOW_RUN_ID: &str = "mlflow_run_id";
    /// The data commit a model was trained on (or that a merge brought in).
    pub const DATA_COMMIT: &str = "data_commit";
    /// The model commit a merge brought in.
    pub const MODEL_COMMIT: &str = "model_commit";
    /// sha256 of a model file.
    pub const SHA256: &str = "sha256";
    /// The model's object path.
    pub const MODEL_PATH: &str = "model_path";
    /// A model's final metrics (JSON).
    pub const METRICS: &str = "metrics";
    /// sha256 of every file of a model folder (JSON object).
    pub const FILES_SHA256: &str = "files_sha256";
}

/// Tags of the experiment: MLflow 3's experiment kind, so that its UI shows the experiment as
/// model training (runs, metrics, logged models) rather than GenAI evaluation views.
pub fn experiment_tags() -> Vec<Tag> {
    vec![Tag::new(
        "mlflow.experimentKind",
        "custom_model_development",
    )]
}

/// The MLflow UI address of a run (credentials in the tracking URI are left out), in the UI's
/// "Model training" view (MLflow 3's UI opens in its GenAI view unless told otherwise).
pub fn run_url(tracking_uri: &str, experiment_id: &str, run_id: &str) -> String {
    format!(
        "{}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning",
        without_credentials(tracking_uri).trim_end_matches('/')
    )
}

/// `url` without a user name or password (what may be printed, logged or stored).
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            // Both setters only fail on URLs that cannot have credentials at all.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// The tags every run carries about its code: git commit (and MLflow's own source tags),
/// whether the work tree was dirty, the branch; `source` is the binary's name.
pub fn code_tags(git: &GitInfo, source: &str) -> Vec<Tag> {
    let mut t = vec![
        Tag::new(tags::GIT_COMMIT, &git.commit),
        Tag::new(tags::GIT_DIRTY, git.dirty.to_string()),
        Tag::new("mlflow.source.git.commit", &git.commit),
        Tag::new("mlflow.source.name", source),
        Tag::new("mlflow.source.type", "LOCAL"),
    ];
    if let Some(branch) = &git.branch {
        t.push(Tag::new(tags::GIT_BRANCH, branch));
        t.push(Tag::new("mlflow.source.git.branch", branch));
    }
    t
}

/// Longest error text kept in the run's `error` tag.
const MAX_ERROR_TAG: usize = 4000;

/// Ends the run of `guard` after `result`: FINISHED on success; otherwise tagged with the
/// error and ended KILLED (interrupted) or FAILED, with a warning naming anything that could
/// not be recorded. Gives `result` back (or the failure to finish the run).
pub async fn end_run<T>(mlflow: &MlflowClient, guard: RunGuard, result: Result<T>) -> Result<T> {
    let e = match result {
        Ok(value) => {
            guard.finish().await?;
            return Ok(value);
        }
        Err(e) => e,
    };
    let run_id = guard.run_id().to_string();
    let status = if e.exit_code() == exit::INTERRUPTED {
        RunStatus::Killed
    } else {
        RunStatus::Failed
    };
    let text = e.to_string();
    let tag = if text.len() > MAX_ERROR_TAG {
        let mut end = MAX_ERROR_TAG;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        tracing::warn!("the error tag of run {run_id} keeps the first {end} bytes of the error");
        format!("{}...", &text[..end])
    } else {
        text
    };
    if let Err(tag_err) = mlflow.set_tag(&run_id, tags::ERROR, &tag).await {
        tracing::warn!("could not tag MLflow run {run_id} with its error: {tag_err}");
    }
    if let Err(end_err) = guard.end(status).await {
        let why = if end_err.is_unreachable() {
            "MLflow is unreachable".to_string()
        } else {
            end_err.to_string()
        };
        tracing::warn!("could not end MLflow run {run_id} as {status:?}: {why}");
    }
    Err(e)
}

/// Ends the run of `guard` FAILED with `why` as its error tag although its work was done
/// (something it committed around failed); a failure to record that is a warning.
pub async fn end_failed_after(mlflow: &MlflowClient, guard: RunGuard, why: &str) {
    let run_id = guard.run_id().to_string();
    if let Err(e) = mlflow.set_tag(&run_id, tags::ERROR, why).await {
        tracing::warn!("could not tag MLflow run {run_id} with its error: {e}");
    }
    if let Err(e) = guard.end(RunStatus::Failed).await {
        tracing::warn!("could not end MLflow run {run_id} as FAILED: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            run_url("http://user:s3cret@host:5000/", "1", "r"),
            "http://host:5000/#/experiments/1/runs/r?workflowType=machine_learning"
        );
        assert_eq!(without_credentials("http://host:5000"), "http://host:5000");
    }
}

#[cfg(test)]
mod lineage_tests {
    use super::{ModelLineage, tags};

    fn run(tag_pairs: &[(&str, &str)]) -> mlflow_client::Run {
        let tag_list: Vec<serde_json::Value> = tag_pairs
            .iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "info": {"run_id": "r1", "experiment_id": "0", "status": "FINISHED"},
            "data": {"tags": tag_list},
        }))
        .expect("a run")
    }

    #[test]
    fn a_runs_lineage_is_read_once_and_a_missing_tag_is_named() {
        let full = [
            (tags::MODEL_URI, "lakefs://r/m/models/r1/model.segm"),
            (tags::MODEL_FOLDER_URI, "lakefs://r/m/models/r1/"),
            (tags::MODEL_COMMIT, "m"),
            (tags::DATA_COMMIT, "d"),
            (tags::MODEL_SHA256, "abc"),
            (tags::GIT_COMMIT, "unknown"),
        ];
        let l = ModelLineage::try_from(&run(&full)).expect("lineage");
        assert_eq!(
            l.source, "lakefs://r/m/models/r1/",
            "the folder when there is one"
        );
        assert_eq!((l.git_commit, l.repository), (None, None));
        let err = ModelLineage::try_from(&run(&full[..3])).expect_err("no data commit");
        assert!(
            err.to_string().contains("has no lakefs_data_commit tag"),
            "{err}"
        );
    }
}
