//! The whole pipeline through a faulty network: a proxy in front of lakeFS and one in front
//! of MLflow inject 503/429 answers with Retry-After, stalls past the request timeout and
//! connections reset mid-body. At a moderate rate train -> register_model -> infer --commit
//! completes with its lineage intact; at a fatal rate (lakeFS gone for good after training)
//! train ends with one line, its run FAILED and the branch untouched.

use std::time::Duration;

use e2e::Stack;
use futures::TryStreamExt;
use mlflow_client::{RunSearch, RunStatus};
use test_support::FaultProxy;

/// A stack whose binaries reach lakeFS and MLflow through fault proxies.
async fn faulty_stack(label: &str, per_mille: u32) -> (Stack, FaultProxy, FaultProxy) {
    let mut stack = Stack::start(label).await;
    let stall = Duration::from_secs(4);
    let lakefs = FaultProxy::start(&stack.lakefs_server.endpoint(), per_mille, stall).await;
    let mlflow = FaultProxy::start(&stack.mlflow_uri, per_mille, stall).await;
    for (k, v) in [
        ("LAKECTL_SERVER_ENDPOINT_URL", lakefs.endpoint.clone()),
        ("MLFLOW_TRACKING_URI", mlflow.endpoint.clone()),
        ("SEG_HTTP__REQUEST_TIMEOUT", "3s".into()),
        ("SEG_RETRY__MAX_RETRIES", "8".into()),
        ("SEG_RETRY__MAX_DELAY", "1s".into()),
        ("SEG_RETRY__MAX_TOTAL", "60s".into()),
    ] {
        stack.env.insert(k.into(), v);
    }
    (stack, lakefs, mlflow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderately_faulty_network_keeps_the_lineage() {
    let (stack, lakefs, mlflow) = faulty_stack("faulty", 60).await;
    let (trained, run) = stack.train_run(&["--epochs", "1", "--quiet"]).await;
    assert_eq!(run.info.status, RunStatus::Finished);
    let lenient = stack.dir().join("lenient.toml");
    std::fs::write(&lenient, "[register]\ncriteria = [\"iou >= 0.0\"]\n").expect("write");
    let reg = stack
        .run(
            "register_model",
            &[
                "--json",
                "--quiet",
                "--config",
                lenient.to_str().expect("path"),
            ],
        )
        .await
        .json();
    assert_eq!(reg["source"], trained["model_folder_uri"]);
    assert_eq!(reg["data_commit"], trained["data_commit"]);
    let ran = stack
        .run(
            "infer",
            &["--commit", "--json", "--quiet", "--output", "out"],
        )
        .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(ran.stdout.lines().last().expect("summary")).expect("json");
    assert_eq!(summary["model"]["version"], reg["version"]);
    assert_eq!(summary["model"]["data_commit"], trained["data_commit"]);
    let commit = stack
        .lakefs
        .get_commit(
            &stack.repo,
            summary["predictions_commit"].as_str().expect("commit"),
        )
        .await
        .expect("predictions commit");
    let inference_run = summary["inference_run_id"].as_str().expect("run");
    assert_eq!(
        commit.metadata.get("mlflow_run_id").map(String::as_str),
        Some(inference_run)
    );
    let inference = stack.mlflow.get_run(inference_run).await.expect("run");
    assert_eq!(inference.info.status, RunStatus::Finished);
    let (lr, lf) = lakefs.counts();
    let (mr, mf) = mlflow.counts();
    assert!(
        lf > 0 && mf > 0,
        "faults were injected: lakeFS {lf}/{lr}, MLflow {mf}/{mr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lakefs_gone_for_good_after_training_fails_the_run_and_leaves_the_branch() {
    let (mut stack, lakefs, _mlflow) = faulty_stack("fatal", 0).await;
    stack.env.insert("SEG_RETRY__MAX_TOTAL".into(), "5s".into());
    stack
        .env
        .insert("SEG_TRAIN__TIME_BUDGET_SECS".into(), "5".into());
    assert_eq!(
        stack.run("train", &["--epochs", "1", "--quiet"]).await.code,
        0
    );
    let head = stack.head().await;
    let mut train = stack.spawn("train", &["--epochs", "1000"]);
    train
        .wait_for_line("epoch   1/", Duration::from_secs(120))
        .await;
    lakefs.set_rate(1000);
    let (code, rest, _) = train.finish(Duration::from_secs(180)).await;
    assert_eq!(code, Some(1), "{}", rest.join("\n"));
    let errors: Vec<&String> = rest.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{}", rest.join("\n"));
    assert!(
        errors[0].contains("the trained model is saved locally at")
            && errors[0].contains("model.segm"),
        "the line says where the checkpoint is: {}",
        errors[0]
    );
    assert_eq!(stack.head().await, head, "the branch is untouched");
    let experiment = stack
        .mlflow
        .get_experiment_by_name(&stack.experiment)
        .await
        .expect("experiment")
        .expect("exists");
    let runs: Vec<_> = stack
        .mlflow
        .search_runs(RunSearch {
            experiment_ids: vec![experiment.experiment_id],
            order_by: vec!["attributes.start_time DESC".into()],
            ..RunSearch::default()
        })
        .try_collect()
        .await
        .expect("runs");
    assert_eq!(runs[0].info.status, RunStatus::Failed, "{:?}", runs[0].info);
    assert!(runs[0].tag("error").is_some());
}
