//! `train` end to end: lakefs-local + real MLflow, tiny synthetic data, 1-2 epochs.
#![allow(clippy::too_many_lines)] // end-to-end scenarios read best in one piece

use std::time::Duration;

use e2e::{Stack, sha256_hex};
use futures::TryStreamExt;
use mlflow_client::{RunSearch, RunStatus};

/// Everything one run records, read back with our client, MLflow's Python client and lakeFS;
/// a second run on the same data makes no data commit and downloads nothing; `--reproduce`
/// gives identical metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_records_the_full_lineage_and_reruns_reuse_the_data() {
    let stack = Stack::start("lineage").await;
    let first = stack
        .run("train", &["--epochs", "2", "--json", "--run-name", "first"])
        .await;
    let summary = first.json();
    let run_id = summary["run_id"].as_str().expect("run_id").to_string();
    let data_commit = summary["data_commit"].as_str().expect("data").to_string();
    let model_commit = summary["model_commit"].as_str().expect("model").to_string();
    let model_uri = summary["model_uri"].as_str().expect("uri").to_string();
    let sha = summary["model_sha256"].as_str().expect("sha").to_string();
    assert_eq!(summary["new_data_commit"], true);
    assert_eq!(summary["epochs_run"], 2);
    assert!(summary["run_url"].as_str().expect("url").contains(&run_id));
    assert_eq!(
        model_uri,
        format!(
            "lakefs://{}/{model_commit}/models/{run_id}/model.segm",
            stack.repo
        )
    );

    // MLflow, through our client.
    let run = stack.mlflow.get_run(&run_id).await.expect("run");
    assert_eq!(run.info.status, RunStatus::Finished);
    assert_eq!(run.info.run_name, "first");
    for (tag, want) in [
        ("lakefs_repo", stack.repo.as_str()),
        ("lakefs_data_commit", data_commit.as_str()),
        ("lakefs_model_commit", model_commit.as_str()),
        ("model_uri", model_uri.as_str()),
        ("model_sha256", sha.as_str()),
        ("mlflow.source.name", "train"),
    ] {
        assert_eq!(run.tag(tag), Some(want), "tag {tag}");
    }
    assert_eq!(
        run.tag("model_path"),
        Some(format!("lakefs://{}/main/models/{run_id}/model.segm", stack.repo).as_str())
    );
    assert!(run.tag("git_commit_hash").is_some() && run.tag("git_dirty").is_some());
    assert!(
        run.tag("logged_model_id")
            .is_some_and(|m| m.starts_with("m-"))
    );
    for (param, want) in [
        ("learning_rate", "0.001"),
        ("batch_size", "8"),
        ("epochs", "2"),
        ("image_size", "32"),
        ("backend", "flex"),
        ("seed", "42"),
        ("model.base_channels", "8"),
        ("data.mask_encoding", "binary"),
        ("data.split_seed", "42"),
        ("dataset_size", "24"),
        ("classes", "2"),
    ] {
        assert_eq!(run.param(param), Some(want), "param {param}");
    }
    assert!(
        run.param("unet_config")
            .is_some_and(|c| c.contains("base_channels"))
    );
    for metric in ["loss", "accuracy", "iou", "dice"] {
        let v = run
            .metric(metric)
            .unwrap_or_else(|| panic!("metric {metric}"));
        assert!(v.is_finite() && v >= 0.0, "{metric} = {v}");
    }
    assert_ne!(
        run.metric("accuracy"),
        Some(0.85),
        "a real accuracy, not the original's constant"
    );
    let history: Vec<_> = stack
        .mlflow
        .metric_history(&run_id, "val_iou", 100)
        .try_collect()
        .await
        .expect("history");
    assert_eq!(
        history.iter().map(|m| m.step).collect::<Vec<_>>(),
        vec![1, 2],
        "one val_iou per epoch"
    );
    for key in [
        "train_loss",
        "val_loss",
        "val_dice",
        "val_pixel_accuracy",
        "lr",
        "epoch_seconds",
        "images_per_sec",
        "val_iou_class1",
    ] {
        assert!(run.metric(key).is_some(), "per-epoch metric {key}");
    }
    let inputs = &run.inputs.dataset_inputs;
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    assert!(
        inputs
            .iter()
            .all(|i| data_commit.starts_with(&i.dataset.digest))
    );
    assert!(
        inputs[0]
            .dataset
            .source
            .contains(&format!("lakefs://{}/{data_commit}/data/", stack.repo))
    );
    let contexts: Vec<&str> = inputs
        .iter()
        .flat_map(|i| i.tags.iter().map(|t| t.value.as_str()))
        .collect();
    assert!(contexts.contains(&"training") && contexts.contains(&"validation"));
    let artifacts = stack
        .mlflow
        .list_artifacts(&run_id, "")
        .await
        .expect("artifacts");
    let names: Vec<&str> = artifacts.iter().map(|a| a.path.as_str()).collect();
    for want in ["training_curve.png", "config.toml", "overlays", "model"] {
        assert!(names.contains(&want), "artifact {want} in {names:?}");
    }
    let config_dest = stack.dir().join("config-artifact.toml");
    stack
        .mlflow
        .download_artifact(&run.info.artifact_uri, "config.toml", &config_dest)
        .await
        .expect("config artifact");
    let config_text = std::fs::read_to_string(&config_dest).expect("read");
    assert!(
        !config_text.contains(lakefs_local::DEFAULT_SECRET_ACCESS_KEY)
            && config_text.contains("***"),
        "secrets redacted in the logged config"
    );
    let logged = stack
        .mlflow
        .get_logged_model(run.tag("logged_model_id").expect("id"))
        .await
        .expect("logged model");
    assert_eq!(logged.info.source_run_id, run_id);
    assert_eq!(
        logged.tag("lakefs_uri"),
        summary["model_folder_uri"].as_str(),
        "the logged model points at the MLflow model folder"
    );
    assert_eq!(logged.tag("sha256"), Some(sha.as_str()));

    // MLflow's own Python client reads the same run.
    let script = format!(
        r#"
import json, mlflow
c = mlflow.MlflowClient("{uri}")
r = c.get_run("{run_id}")
print(json.dumps({{"status": r.info.status, "data_commit": r.data.tags["lakefs_data_commit"],
  "lr": r.data.params["learning_rate"], "iou": r.data.metrics["iou"],
  "digest": r.inputs.dataset_inputs[0].dataset.digest,
  "steps": [m.step for m in c.get_metric_history("{run_id}", "val_loss")],
  "artifacts": sorted(a.path for a in c.list_artifacts("{run_id}"))}}))
"#,
        uri = stack.mlflow_uri
    );
    let out = tokio::process::Command::new(test_support::mlflow_python())
        .arg("-c")
        .arg(&script)
        .output()
        .await
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(py["status"], "FINISHED");
    assert_eq!(py["data_commit"], data_commit.as_str());
    assert_eq!(py["lr"], "0.001");
    assert_eq!(py["steps"], serde_json::json!([1, 2]));
    assert!(data_commit.starts_with(py["digest"].as_str().expect("digest")));
    assert!((py["iou"].as_f64().expect("iou") - run.metric("iou").expect("iou")).abs() < 1e-12);

    // lakeFS: the data commit and the model commit with their metadata; the bytes match.
    let data = stack
        .lakefs
        .get_commit(&stack.repo, &data_commit)
        .await
        .expect("D");
    assert_eq!(
        data.metadata.get("seg_mlops.kind").map(String::as_str),
        Some("data")
    );
    assert_eq!(data.metadata.get("images").map(String::as_str), Some("24"));
    let model = stack
        .lakefs
        .get_commit(&stack.repo, &model_commit)
        .await
        .expect("M");
    assert_eq!(model.metadata.get("mlflow_run_id"), Some(&run_id));
    assert_eq!(model.metadata.get("sha256"), Some(&sha));
    assert_eq!(model.metadata.get("data_commit"), Some(&data_commit));
    assert!(
        model.metadata.contains_key("git_commit_hash") && model.metadata.contains_key("metrics")
    );
    let object = format!("models/{run_id}/model.segm");
    let bytes = stack
        .lakefs
        .get_object(&stack.repo, &model_commit, &object, None)
        .await
        .expect("model bytes");
    assert_eq!(sha256_hex(&bytes), sha, "model bytes hash to model_sha256");
    let stat = stack
        .lakefs
        .stat_object(&stack.repo, &model_commit, &object)
        .await
        .expect("stat");
    assert_eq!(stat.metadata_value("sha256"), Some(sha.as_str()));
    let branches: Vec<_> = stack
        .lakefs
        .list_branches(&stack.repo)
        .try_collect()
        .await
        .expect("branches");
    assert_eq!(branches.len(), 1, "no temporary branch left: {branches:?}");

    // Same data again: no new data commit, nothing uploaded or downloaded.
    let second = stack
        .run("train", &["--epochs", "1", "--json"])
        .await
        .json();
    assert_eq!(second["data_commit"], data_commit.as_str());
    assert_eq!(second["new_data_commit"], false);
    assert_eq!(second["data_files_uploaded"], 0);
    assert_eq!(second["data_files_downloaded"], 0);

    // --reproduce: same data commit, params and seed; identical metrics on flex.
    let again = stack
        .run(
            "train",
            &["--reproduce", &run_id, "--json", "--epochs", "2"],
        )
        .await
        .json();
    assert_eq!(again["data_commit"], data_commit.as_str());
    assert_eq!(again["metrics"], summary["metrics"], "identical metrics");
    let repro = stack
        .mlflow
        .get_run(again["run_id"].as_str().expect("id"))
        .await
        .expect("run");
    assert_eq!(repro.tag("reproduced_from"), Some(run_id.as_str()));
    assert_eq!(repro.param("epochs"), Some("2"));
    assert_eq!(
        repro.tag("reproduce_overrides"),
        None,
        "a flag equal to the run's value overrides nothing"
    );
}

/// Ctrl-C during training: the run is KILLED, the exit code 130, and the branch gets no model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_training_kills_the_run_and_leaves_the_branch_alone() {
    let stack = Stack::start("sigint").await;
    let mut train = stack.spawn("train", &["--epochs", "500", "--run-name", "to-interrupt"]);
    train
        .wait_for_line("epoch   1/", Duration::from_secs(120))
        .await;
    let head_before = stack.head().await;
    let pid = train.child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let (code, rest, _) = train.finish(Duration::from_secs(60)).await;
    assert_eq!(code, Some(130), "stderr:\n{}", rest.join("\n"));
    assert!(
        rest.iter().any(|l| l.starts_with("error:")
            && l.contains("after the data commit")
            && l.contains("no model was")),
        "the line says the data was merged and the model was not: {}",
        rest.join("\n")
    );
    let runs: Vec<_> = stack
        .mlflow
        .search_runs(RunSearch {
            experiment_ids: vec![experiment_id(&stack).await],
            ..RunSearch::default()
        })
        .try_collect()
        .await
        .expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].info.status, RunStatus::Killed);
    assert_eq!(stack.head().await, head_before, "no model merged into main");
    let models: Vec<_> = stack
        .lakefs
        .list_objects(&stack.repo, "main", "models/", None)
        .try_collect()
        .await
        .expect("ls");
    assert!(models.is_empty(), "{models:?}");
    let branches: Vec<_> = stack
        .lakefs
        .list_branches(&stack.repo)
        .try_collect()
        .await
        .expect("branches");
    assert_eq!(branches.len(), 1, "{branches:?}");
}

async fn experiment_id(stack: &Stack) -> String {
    stack
        .mlflow
        .get_experiment_by_name(&stack.experiment)
        .await
        .expect("lookup")
        .expect("experiment exists")
        .experiment_id
}

/// lakeFS stopping mid-run: the run ends FAILED with one clear line, exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lakefs_stopping_mid_run_fails_the_run_clearly() {
    let mut stack = Stack::start("lakefs-down").await;
    let mut train = stack.spawn("train", &["--epochs", "3"]);
    train
        .wait_for_line("epoch   1/", Duration::from_secs(120))
        .await;
    // Stop serving (the data stays); the model upload then cannot reach lakeFS.
    stack.lakefs_server.local().server.halt().await;
    let (code, rest, _) = train.finish(Duration::from_secs(120)).await;
    assert_eq!(code, Some(1), "{}", rest.join("\n"));
    let errors: Vec<&String> = rest.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {rest:?}");
    assert!(
        errors[0].contains("lakeFS") && errors[0].contains(&stack.lakefs_server.endpoint()),
        "{}",
        errors[0]
    );
    let runs: Vec<_> = stack
        .mlflow
        .search_runs(RunSearch {
            experiment_ids: vec![experiment_id(&stack).await],
            ..RunSearch::default()
        })
        .try_collect()
        .await
        .expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].info.status, RunStatus::Failed);
    assert!(
        runs[0].tag("error").is_some_and(|e| e.contains("lakeFS")),
        "{:?}",
        runs[0].tag("error")
    );
}

/// Bad configuration, bad data and unreachable servers: one line and the documented exit code,
/// before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_line_and_the_documented_exit_code() {
    let stack = Stack::start("bad-input").await;
    for (args, code, needle) in [
        (
            vec!["--learning-rate", "-0.1"],
            2,
            "train.learning_rate = -0.1",
        ),
        (vec!["--batch-size", "0"], 2, "train.batch_size = 0"),
        (vec!["--backend", "quantum"], 2, "train.backend"),
        (vec!["--image-size", "30"], 2, "train.image_size"),
        (vec!["--epochs", "many"], 2, "invalid value"),
        (vec!["--no-such-flag"], 2, "unexpected argument"),
    ] {
        let ran = stack.run("train", &args).await;
        assert_eq!(ran.code, code, "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(needle), "{args:?}: {}", ran.stderr);
    }
    let bad_toml = stack.dir().join("bad.toml");
    std::fs::write(&bad_toml, "[train]\nepochz = 3\n").expect("write");
    let ran = stack
        .run("train", &["--config", bad_toml.to_str().expect("path")])
        .await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert_eq!(ran.error_lines().len(), 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("epochz") && ran.stderr.contains("bad.toml"),
        "{}",
        ran.stderr
    );

    let empty = stack.dir().join("empty");
    std::fs::create_dir_all(empty.join("images")).expect("mkdir");
    let ran = stack
        .run("train", &["--data-dir", empty.to_str().expect("path")])
        .await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("has no images"), "{}", ran.stderr);

    let unmatched = stack.dir().join("unmatched");
    std::fs::create_dir_all(unmatched.join("images")).expect("mkdir");
    std::fs::create_dir_all(unmatched.join("masks")).expect("mkdir");
    let img = image_png(4);
    std::fs::write(unmatched.join("images/a.png"), &img).expect("write");
    std::fs::write(unmatched.join("images/b.png"), &img).expect("write");
    std::fs::write(unmatched.join("masks/a.png"), &img).expect("write");
    let ran = stack
        .run("train", &["--data-dir", unmatched.to_str().expect("path")])
        .await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert_eq!(ran.error_lines().len(), 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("b.png"),
        "names the file without a partner: {}",
        ran.stderr
    );
    assert!(
        stack.lakefs.get_repository(&stack.repo).await.is_err() || stack.head().await.len() == 64,
        "nothing half-written"
    );

    for (var, value, needles) in [
        (
            "MLFLOW_TRACKING_URI",
            "http://127.0.0.1:9",
            [
                "cannot reach MLflow at http://127.0.0.1:9",
                "mlflow-server.sh",
            ],
        ),
        (
            "LAKECTL_SERVER_ENDPOINT_URL",
            "http://127.0.0.1:9",
            ["cannot reach lakeFS at http://127.0.0.1:9", "lakefs-local"],
        ),
        (
            "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY",
            "wrong-secret",
            ["unauthorized", "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY"],
        ),
    ] {
        let mut cmd = stack.command("train", &[]);
        cmd.env(var, value);
        let ran = cmd.output().await.expect("run");
        let stderr = String::from_utf8_lossy(&ran.stderr);
        assert_eq!(ran.status.code(), Some(1), "{var}: {stderr}");
        assert!(
            needles.iter().all(|n| stderr.contains(n)),
            "{var}: {stderr}"
        );
        assert!(
            !stderr.contains("wrong-secret"),
            "secrets never printed: {stderr}"
        );
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{stderr}"
        );
    }

    let printed = stack.run("train", &["--print-config"]).await;
    assert_eq!(printed.code, 0);
    assert!(printed.stdout.contains("[train]") && printed.stdout.contains("***"));
    assert!(
        !printed
            .stdout
            .contains(lakefs_local::DEFAULT_SECRET_ACCESS_KEY)
    );
}

/// A tiny greyscale PNG.
fn image_png(side: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let img = image::GrayImage::new(side, side);
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

/// The real datasets through the binary: greyscale 512x512 (isbi2012-em) and a multi-class
/// colour palette with images of many sizes (dubai-aerial), one epoch at a small size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_greyscale_and_palette_datasets_train_through_the_binary() {
    let stack = Stack::start("real-data").await;
    let isbi = e2e::datasets_dir().join("isbi2012-em");
    let (_, run) = stack
        .train_run(&["--data-dir", isbi.to_str().expect("path"), "--epochs", "1"])
        .await;
    assert_eq!(run.param("in_channels"), Some("1"), "greyscale input");
    assert_eq!(run.param("dataset_size"), Some("30"));

    let palette = stack.dir().join("dubai.toml");
    std::fs::write(
        &palette,
        r##"[data]
mask_encoding = "palette"
palette = ["#8429F6 land", "#E2A929 water", "#3C1098 building", "#FEDD3A vegetation", "#6EC1E4 road", "#9B9B9B unlabelled"]
"##,
    )
    .expect("write");
    let dubai = e2e::datasets_dir().join("dubai-aerial");
    let (_, run) = stack
        .train_run(&[
            "--config",
            palette.to_str().expect("path"),
            "--data-dir",
            dubai.to_str().expect("path"),
            "--epochs",
            "1",
        ])
        .await;
    assert_eq!(run.param("classes"), Some("6"));
    assert_eq!(run.param("in_channels"), Some("3"));
    assert_eq!(run.param("dataset_size"), Some("72"));
    assert!(run.metric("val_iou_class0").is_some());
}

/// MLflow restarted in the middle of training: the run still completes, with every epoch's
/// metrics (the logger keeps them and retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_restarting_mid_training_loses_no_metric() {
    let own = tokio::task::spawn_blocking(test_support::OwnMlflow::start)
        .await
        .expect("start MLflow");
    let mut stack = Stack::start("mlflow-restart").await;
    stack.env.insert("MLFLOW_TRACKING_URI".into(), own.uri());
    stack
        .env
        .insert("SEG_TRAIN__TIME_BUDGET_SECS".into(), "30".into());
    let mut train = stack.spawn("train", &["--epochs", "1000", "--json"]);
    train
        .wait_for_line("epoch   1/", Duration::from_secs(120))
        .await;
    let restarted = tokio::task::spawn_blocking(move || {
        own.stop();
        std::thread::sleep(Duration::from_secs(3));
        own.up();
        own
    });
    let (code, rest, stdout) = train.finish(Duration::from_secs(180)).await;
    let own = restarted.await.expect("restart MLflow");
    assert_eq!(code, Some(0), "{}", rest.join("\n"));
    let summary: serde_json::Value =
        serde_json::from_str(stdout.trim()).expect("one JSON object on stdout");
    let epochs = summary["epochs_run"].as_u64().expect("epochs");
    assert!(epochs >= 2, "{summary}");
    let client = mlflow_client::MlflowClient::new(&own.uri()).expect("client");
    let run_id = summary["run_id"].as_str().expect("id");
    let run = client.get_run(run_id).await.expect("run");
    assert_eq!(run.info.status, RunStatus::Finished);
    let steps: Vec<i64> = client
        .metric_history(run_id, "val_iou", 1000)
        .try_collect::<Vec<_>>()
        .await
        .expect("history")
        .iter()
        .map(|m| m.step)
        .collect();
    let want: Vec<i64> = (1..=epochs as i64).collect();
    assert_eq!(steps, want, "every epoch's val_iou reached MLflow");
    drop(own);
}
