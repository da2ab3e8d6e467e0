//! The MLflow model folder of a trained model, written beside the checkpoint and uploaded with
//! it in model commit M: `model.segm` (burn), `model.json` (its metadata), `model.onnx` (the
//! ONNX export), `MLmodel` (onnx and python_function flavors, a tensor signature, run, logged
//! model, creation time, MLflow version) and the pinned Python environment (`requirements.txt`,
//! `python_env.yaml`, `conda.yaml`). MLflow's own loaders read the folder through the
//! `lakefs://` artifact plugin in `python/mlflow-lakefs`.

use std::collections::BTreeMap;
use std::path::Path;

use seg_model::Checkpoint;
use serde::Serialize;

use crate::error::{PipelineError, Result};
use crate::run_record::{MODEL_FILE, MODEL_META_FILE, model_folder};

/// The MLflow release whose model format the folder follows (the tests' pinned MLflow).
pub const MLFLOW_VERSION: &str = "3.17.2";
/// The Python release the environment files name (that of the tests' pinned venvs).
pub const PYTHON_VERSION: &str = "3.11";
/// What the python_function flavor needs, pinned as `scripts/model-python.sh` installs it.
pub const PYTHON_REQUIREMENTS: &[&str] = &["mlflow==3.17.2", "onnxruntime==1.31.1"];
/// The minimum `onnx` package release that reads the export's IR version and opset.
const ONNX_PACKAGE_VERSION: &str = "1.13.0";

/// The `MLmodel` file (MLflow's `Model` as YAML).
#[derive(Serialize)]
struct MlModel {
    artifact_path: &'static str,
    flavors: BTreeMap<&'static str, serde_json::Value>,
    mlflow_version: &'static str,
    model_id: String,
    model_size_bytes: u64,
    model_uuid: String,
    run_id: String,
    signature: Signature,
    utc_time_created: String,
}

/// A tensor signature: MLflow stores each side as a JSON string inside the YAML.
#[derive(Serialize)]
struct Signature {
    inputs: String,
    outputs: String,
    params: Option<String>,
}

/// What identifies the folder's model in MLflow.
pub(super) struct Identity<'a> {
    /// The training run.
    pub run_id: &'a str,
    /// The MLflow 3 logged model.
    pub model_id: &'a str,
    /// Creation time, Unix seconds.
    pub created_secs: i64,
}

/// Writes `model.onnx`, `MLmodel` and the environment files into `dir` (which already holds
/// `model.segm` and `model.json`); returns every file of the folder with its sha256.
pub(super) fn write(
    dir: &Path,
    checkpoint: &Checkpoint,
    id: &Identity<'_>,
) -> Result<BTreeMap<String, String>> {
    seg_model::onnx::export_file(checkpoint, &dir.join(model_folder::ONNX))?;
    let requirements = PYTHON_REQUIREMENTS.join("\n") + "\n";
    put(dir, model_folder::REQUIREMENTS, &requirements)?;
    put(dir, model_folder::PYTHON_ENV, &python_env())?;
    put(dir, model_folder::CONDA, &conda())?;
    let size = [MODEL_FILE, MODEL_META_FILE, model_folder::ONNX]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len()))
        .sum();
    let ml_model = ml_model(checkpoint, id, size)?;
    let yaml = serde_norway::to_string(&ml_model)
        .map_err(|e| PipelineError::Internal(format!("cannot write MLmodel as YAML: {e}")))?;
    put(dir, model_folder::MLMODEL, &yaml)?;
    let mut files = BTreeMap::new();
    for name in model_folder::FILES {
        let sha = seg_model::checkpoint::file_sha256(&dir.join(name))?;
        files.insert(name.to_string(), sha);
    }
    Ok(files)
}

fn put(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(PipelineError::io("write", &path))
}

fn ml_model(checkpoint: &Checkpoint, id: &Identity<'_>, size: u64) -> Result<MlModel> {
    let onnx = serde_json::json!({
        "code": null,
        "data": model_folder::ONNX,
        "onnx_version": ONNX_PACKAGE_VERSION,
        "providers": ["CPUExecutionProvider"],
    });
    let pyfunc = serde_json::json!({
        "data": model_folder::ONNX,
        "env": { "conda": model_folder::CONDA, "virtualenv": model_folder::PYTHON_ENV },
        "loader_module": "mlflow.onnx",
        "python_version": PYTHON_VERSION,
    });
    Ok(MlModel {
        artifact_path: "model",
        flavors: BTreeMap::from([("onnx", onnx), ("python_function", pyfunc)]),
        mlflow_version: MLFLOW_VERSION,
        model_id: id.model_id.to_string(),
        model_size_bytes: size,
        model_uuid: id.model_id.trim_start_matches("m-").to_string(),
        run_id: id.run_id.to_string(),
        signature: signature(checkpoint)?,
        utc_time_created: format!("{}.000000", crate::terminal::format_utc(id.created_secs)),
    })
}

/// uint8 NHWC images in; float32 NCHW probabilities and uint8 NHW class ids out.
fn signature(checkpoint: &Checkpoint) -> Result<Signature> {
    let model = &checkpoint.meta.model;
    let tensor = |name: &str, dtype: &str, shape: serde_json::Value| serde_json::json!({ "type": "tensor", "tensor-spec": { "dtype": dtype, "shape": shape }, "name": name });
    let inputs = serde_json::json!([tensor(
        seg_model::onnx::INPUT,
        "uint8",
        serde_json::json!([-1, -1, -1, model.in_channels])
    )]);
    let outputs = serde_json::json!([
        tensor(
            seg_model::onnx::PROBABILITIES,
            "float32",
            serde_json::json!([-1, model.task_classes(), -1, -1])
        ),
        tensor(
            seg_model::onnx::MASK,
            "uint8",
            serde_json::json!([-1, -1, -1])
        ),
    ]);
    Ok(Signature {
        inputs: inputs.to_string(),
        outputs: outputs.to_string(),
        params: None,
    })
}

fn python_env() -> String {
    format!(
        "python: {PYTHON_VERSION}\nbuild_dependencies:\n- pip\n- setuptools\n- wheel\ndependencies:\n- -r {}\n",
        model_folder::REQUIREMENTS
    )
}

fn conda() -> String {
    let pins: String = PYTHON_REQUIREMENTS
        .iter()
        .map(|r| format!("  - {r}\n"))
        .collect();
    format!(
        "channels:\n- conda-forge\ndependencies:\n- python={PYTHON_VERSION}\n- pip\n- pip:\n{pins}name: mlflow-env\n"
    )
}
