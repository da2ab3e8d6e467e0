//! The registered model outside our binaries: its version's source is an MLflow model folder
//! at the model commit M, every file checked by sha256, and MLflow's own tools use it through
//! this repository's lakefs:// artifact plugin: `mlflow.pyfunc.load_model("models:/...@champion")`
//! and `mlflow models serve` predict exactly the masks `infer` writes.
#![allow(clippy::too_many_lines)] // end-to-end scenarios read best in one piece

use std::collections::BTreeMap;

use e2e::Stack;
use futures::TryStreamExt;

const FOLDER_FILES: [&str; 7] = [
    "MLmodel",
    "conda.yaml",
    "model.json",
    "model.onnx",
    "model.segm",
    "python_env.yaml",
    "requirements.txt",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_loads_and_serves_the_registered_model_from_lakefs() {
    let mut stack = Stack::start("pymodel").await;
    let model = format!("model-{}", stack.repo);
    stack
        .env
        .insert("SEG_REGISTER__MODEL_NAME".into(), model.clone());
    let (trained, run) = stack
        .train_run(&["--epochs", "3", "--learning-rate", "0.01", "--quiet"])
        .await;
    let run_id = trained["run_id"].as_str().expect("run id").to_string();
    let commit = run.tag("lakefs_model_commit").expect("model commit M");
    let folder = run.tag("model_folder_uri").expect("model_folder_uri tag");
    assert_eq!(
        folder,
        format!("lakefs://{}/{commit}/models/{run_id}/", stack.repo),
        "the folder at M"
    );

    // Every file of the folder is in lakeFS at M with the sha256 the run records.
    let files: BTreeMap<String, String> =
        serde_json::from_str(run.tag("model_files_sha256").expect("file hashes")).expect("JSON");
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        FOLDER_FILES
    );
    let listed: Vec<String> = stack
        .lakefs
        .list_objects(&stack.repo, commit, &format!("models/{run_id}/"), None)
        .map_ok(|o| o.path)
        .try_collect()
        .await
        .expect("list the folder");
    assert_eq!(listed.len(), FOLDER_FILES.len(), "{listed:?}");
    for (name, sha) in &files {
        let bytes = stack
            .lakefs
            .get_object(
                &stack.repo,
                commit,
                &format!("models/{run_id}/{name}"),
                None,
            )
            .await
            .expect("object");
        assert_eq!(&e2e::sha256_hex(&bytes), sha, "{name}");
    }
    let mlmodel = stack
        .lakefs
        .get_object(
            &stack.repo,
            commit,
            &format!("models/{run_id}/MLmodel"),
            None,
        )
        .await
        .expect("MLmodel");
    let mlmodel = String::from_utf8_lossy(&mlmodel).into_owned();
    let logged_model = run.tag("logged_model_id").expect("logged model id");
    for needle in [
        "loader_module: mlflow.onnx",
        "data: model.onnx",
        &format!("run_id: {run_id}"),
        &format!("model_id: {logged_model}"),
        "mlflow_version: 3.17.2",
        r#""dtype":"uint8""#,
    ] {
        assert!(mlmodel.contains(needle), "{needle} in MLmodel:\n{mlmodel}");
    }

    // The version's source is the folder; the logged model is READY and the run's output.
    let lenient = stack.dir().join("lenient.toml");
    std::fs::write(&lenient, "[register]\ncriteria = [\"iou >= 0.0\"]\n").expect("write");
    let reg = stack
        .run(
            "register_model",
            &["--config", &lenient.to_string_lossy(), "--json", "--quiet"],
        )
        .await
        .json();
    assert_eq!(reg["source"], folder);
    let version = stack
        .mlflow
        .get_model_version(&model, "1")
        .await
        .expect("version 1");
    assert_eq!(version.source, folder);
    let logged = stack
        .mlflow
        .get_logged_model(logged_model)
        .await
        .expect("logged model");
    assert_eq!(logged.info.status, "LOGGED_MODEL_READY");
    assert!(
        logged
            .info
            .tags
            .iter()
            .any(|t| t.key == "lakefs_uri" && t.value == folder),
        "{:?}",
        logged.info.tags
    );

    // infer, then MLflow's own tools on the same images.
    let ran = stack
        .run("infer", &["--json", "--quiet", "--output", "out/alias"])
        .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let data_commit = trained["data_commit"].as_str().expect("D");
    let images = stack
        .dir()
        .join(".seg-mlops/cache")
        .join(&stack.repo)
        .join(data_commit)
        .join("data/images");
    let masks = stack.dir().join("out/alias");
    let script = test_support::workspace_root().join("tests/python/mlflow_model_check.py");
    let out = tokio::process::Command::new(test_support::model_python())
        .arg(&script)
        .arg(format!("models:/{model}@champion"))
        .arg(&images)
        .arg(&masks)
        .arg(test_support::free_port().to_string())
        .envs(&stack.env)
        .current_dir(stack.dir())
        .output()
        .await
        .expect("run the Python check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "MLflow's tools disagree with infer:\n{stdout}\n{stderr}"
    );
    let facts: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("one JSON line from the check"))
            .expect("JSON facts");
    assert_eq!(facts["images"], 24, "{facts}");
    assert_eq!(facts["run_id"], run_id.as_str(), "{facts}");
    assert_eq!(facts["model_id"], logged_model, "{facts}");
    assert_eq!(
        facts["flavors"],
        serde_json::json!(["onnx", "python_function"])
    );
    assert_eq!(
        facts["served_keys"],
        serde_json::json!(["mask", "probabilities"])
    );

    // The plugin refuses '..' in a URI and names the variables to check on wrong credentials.
    let script = test_support::workspace_root().join("tests/python/plugin_refusals.py");
    let out = tokio::process::Command::new(test_support::model_python())
        .arg(&script)
        .arg(folder)
        .envs(&stack.env)
        .current_dir(stack.dir())
        .output()
        .await
        .expect("run the plugin check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refusals: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("one JSON line")).expect("JSON");
    for key in ["dots", "below"] {
        let text = refusals[key].as_str().expect("message");
        assert!(text.contains("'..' segment"), "{key}: {text}");
    }
    let denied = refusals["denied"].as_str().expect("message");
    assert!(
        denied.contains(folder.trim_end_matches('/'))
            && denied.contains("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY")
            && !denied.contains("not-the-secret"),
        "{denied}"
    );

    // A file of the folder replaced after training is refused by name and hash.
    let onnx = format!("models/{run_id}/model.onnx");
    stack
        .lakefs
        .upload_bytes(
            &stack.repo,
            "main",
            &onnx,
            b"not an onnx model".to_vec().into(),
            &Default::default(),
        )
        .await
        .expect("replace model.onnx");
    stack
        .lakefs
        .commit(&stack.repo, "main", "tamper", &Default::default(), false)
        .await
        .expect("commit");
    let head = stack.head().await;
    stack
        .mlflow
        .set_tag(
            &run_id,
            "model_folder_uri",
            &format!("lakefs://{}/{head}/models/{run_id}/", stack.repo),
        )
        .await
        .expect("retag");
    let refused = stack
        .run("infer", &["--run-id", &run_id, "--output", "out/refused"])
        .await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("model.onnx")
            && refused.stderr.contains(&files["model.onnx"])
            && refused
                .stderr
                .contains(&e2e::sha256_hex(b"not an onnx model")),
        "the file and both hashes named: {}",
        refused.stderr
    );
}
