//! MLflow's own Python client (from the test server's venv) reads what the Rust client wrote:
//! params, metrics and their history, tags, dataset inputs, a model version by alias, and an
//! artifact.
#![allow(clippy::too_many_lines)] // end-to-end scenarios read best in one piece

use mlflow_client::*;

fn python() -> String {
    test_support::mlflow_python()
}

#[tokio::test]
async fn python_mlflow_reads_what_rust_wrote() {
    let client = test_support::mlflow_client().await;
    let exp = client
        .get_or_create_experiment(&test_support::unique("exp-compat"), &[])
        .await
        .expect("exp");
    let run = client
        .create_run(
            &exp.experiment_id,
            NewRun {
                run_name: Some("compat".into()),
                ..Default::default()
            },
        )
        .await
        .expect("run");
    let id = run.info.run_id.clone();
    let metrics: Vec<Metric> = (0..3)
        .map(|s| Metric::now("valid_iou", 0.5 + s as f64 / 10.0, s))
        .collect();
    client
        .log_batch(
            &id,
            &metrics,
            &[Tag::new("lr", "0.001"), Tag::new("depth", "4")],
            &[Tag::new("lakefs.data_commit", "d4t4")],
        )
        .await
        .expect("log");
    client
        .log_inputs(
            &id,
            &[DatasetInput {
                tags: vec![context_tag("training")],
                dataset: Dataset {
                    name: "kvasir".into(),
                    digest: "d4t4".into(),
                    source_type: "lakefs".into(),
                    source: "{}".into(),
                    schema: None,
                    profile: None,
                },
            }],
        )
        .await
        .expect("inputs");
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("summary.json");
    std::fs::write(&file, r#"{"dice": 0.8}"#).expect("write");
    client
        .upload_artifact(&run.info.artifact_uri, "reports/summary.json", &file)
        .await
        .expect("upload");
    let name = test_support::unique("compat-model");
    client
        .create_registered_model(&name, &[], None)
        .await
        .expect("model");
    let v = client
        .create_model_version(
            &name,
            NewModelVersion {
                source: "lakefs://seg/abcdef0123456789/models/model.segm".into(),
                run_id: Some(id.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("version");
    client
        .set_alias(&name, "champion", &v.version)
        .await
        .expect("alias");
    RunGuard::new(client.clone(), run)
        .finish()
        .await
        .expect("finish");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/read_with_mlflow.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .args([&id, &name, "champion", "reports/summary.json"])
        .env("MLFLOW_TRACKING_URI", test_support::mlflow_tracking_uri())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json from python");
    assert_eq!(
        seen["params"],
        serde_json::json!({"lr": "0.001", "depth": "4"})
    );
    assert_eq!(seen["metrics"]["valid_iou"], 0.7);
    assert_eq!(
        seen["history"],
        serde_json::json!([[0, 0.5], [1, 0.6], [2, 0.7]])
    );
    assert_eq!(
        seen["tags"],
        serde_json::json!({"lakefs.data_commit": "d4t4"})
    );
    assert_eq!(seen["status"], "FINISHED");
    assert_eq!(seen["version"], v.version);
    assert_eq!(
        seen["source"],
        "lakefs://seg/abcdef0123456789/models/model.segm"
    );
    assert_eq!(seen["artifact"], r#"{"dice": 0.8}"#);
    assert_eq!(seen["datasets"], serde_json::json!(["d4t4"]));
}
