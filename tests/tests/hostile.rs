//! What a hostile but realistic user tried beyond the catalogue's one-line refusals: a lakeFS
//! secret written into the endpoint URL never leaves the process, a synthetic set cut short by
//! SIGTERM leaves nothing behind, a validation split without foreground is named and its run
//! is not promoted, and `--reproduce` uses the run's own repository with the flags beside it
//! recorded.
#![allow(clippy::too_many_lines)] // end-to-end scenarios read best in one piece

use std::time::Duration;

use e2e::Stack;
use e2e::catalogue::pairs;
use mlflow_client::RunStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_the_lakefs_url_is_used_and_never_printed_logged_or_stored() {
    let mut stack = Stack::start("urlsecret").await;
    let model = format!("model-{}", stack.repo);
    stack
        .env
        .insert("SEG_REGISTER__MODEL_NAME".into(), model.clone());
    let (key, secret) = stack.lakefs_server.keys();
    let encoded: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let endpoint = stack.lakefs_server.endpoint();
    let (scheme, host) = endpoint.split_once("://").expect("a URL");
    stack.env.insert(
        "LAKECTL_SERVER_ENDPOINT_URL".into(),
        format!("{scheme}://{key}:{encoded}@{host}"),
    );
    stack.env.remove("LAKECTL_CREDENTIALS_ACCESS_KEY_ID");
    stack.env.remove("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY");
    let leaks = |what: &str, text: &str| {
        assert!(
            !text.contains(&secret) && !text.contains(&encoded),
            "{what} holds the secret:\n{text}"
        );
    };
    let shown = stack.run("train", &["--print-config"]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(
        shown.stdout.contains(&format!("endpoint = \"{endpoint}\"")),
        "{}",
        shown.stdout
    );
    leaks(
        "--print-config",
        &format!("{}{}", shown.stdout, shown.stderr),
    );

    let trained = stack.run("train", &["--epochs", "1", "--json"]).await;
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    leaks("train", &format!("{}{}", trained.stdout, trained.stderr));
    let summary = trained.json();
    let lenient = stack.dir().join("lenient.toml");
    std::fs::write(&lenient, "[register]\ncriteria = [\"iou >= 0.0\"]\n").expect("write");
    let reg = stack
        .run(
            "register_model",
            &["--json", "--config", lenient.to_str().expect("path")],
        )
        .await;
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    leaks("register_model", &format!("{}{}", reg.stdout, reg.stderr));
    let inferred = stack
        .run("infer", &["--commit", "--json", "--output", "out"])
        .await;
    assert_eq!(inferred.code, 0, "{}", inferred.stderr);
    leaks("infer", &format!("{}{}", inferred.stdout, inferred.stderr));
    let inference_id =
        serde_json::from_str::<serde_json::Value>(inferred.stdout.lines().last().expect("summary"))
            .expect("JSON")["inference_run_id"]
            .as_str()
            .expect("inference run")
            .to_string();

    // Everything MLflow holds about both runs and the version.
    for run_id in [summary["run_id"].as_str().expect("run"), &inference_id] {
        let run = stack.mlflow.get_run(run_id).await.expect("run");
        leaks(
            "the run's params, tags and metrics",
            &format!("{:?}", run.data),
        );
        let listed = stack
            .mlflow
            .list_artifacts(run_id, "")
            .await
            .expect("artifacts");
        for file in listed.iter().filter(|f| !f.is_dir) {
            let dest = stack.dir().join("artifact");
            stack
                .mlflow
                .download_artifact(&run.info.artifact_uri, &file.path, &dest)
                .await
                .expect("download");
            let bytes = std::fs::read(&dest).expect("read");
            leaks(&file.path, &String::from_utf8_lossy(&bytes));
        }
        if run_id != inference_id {
            assert!(
                listed.iter().any(|f| f.path == "config.toml"),
                "the training run stores its configuration: {listed:?}"
            );
        }
    }
    let version = stack
        .mlflow
        .get_model_version(&model, "1")
        .await
        .expect("version 1");
    leaks("the model version", &format!("{version:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_synthetic_set_is_written_stops_at_once_and_leaves_nothing() {
    let mut stack = Stack::start("synthstop").await;
    for (k, v) in [
        ("SEG_DATA__SYNTHETIC_COUNT", "100000"),
        ("SEG_DATA__SYNTHETIC_SIZE", "96"),
    ] {
        stack.env.insert(k.into(), v.into());
    }
    let train = stack.spawn("train", &["--epochs", "1"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = train.child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let (code, rest, _) = train.finish(Duration::from_secs(20)).await;
    assert_eq!(code, Some(130), "{}", rest.join("\n"));
    let errors: Vec<&String> = rest.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{}", rest.join("\n"));
    assert!(
        errors[0].contains("nothing was merged into lakeFS"),
        "{}",
        errors[0]
    );
    let synthetic = stack.dir().join(".seg-mlops/cache/synthetic");
    let left: Vec<_> = std::fs::read_dir(&synthetic)
        .map(|d| d.map(|e| e.expect("entry").file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no set, whole or partial: {left:?}");
}

/// Foreground in only the pairs a plain shuffle would train on: the split draws the pairs
/// with foreground and the empty ones each on their own, so validation still holds
/// foreground; a run recorded without (by a release that split otherwise) is not promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validation_split_always_holds_foreground_and_a_run_without_is_not_promoted() {
    let stack = Stack::start("nofg").await;
    // Ten pairs; foreground only in the pairs a plain split (seed 42) trains on.
    let data = stack.dir().join("data-nofg");
    pairs(&data, 10, 0);
    let split = seg_model::data::Split::new(10, 0.2, 42).expect("split");
    for i in &split.train {
        std::fs::write(
            data.join(format!("masks/s{i}.png")),
            e2e::catalogue::png(16, 16, 0, 255),
        )
        .expect("write");
    }
    let trained = stack
        .run(
            "train",
            &[
                "--data-dir",
                data.to_str().expect("path"),
                "--epochs",
                "1",
                "--json",
            ],
        )
        .await;
    assert_eq!(trained.code, 0, "{}", trained.stderr);
    assert!(
        !trained.stderr.contains("has no foreground pixel"),
        "{}",
        trained.stderr
    );
    let run_id = trained.json()["run_id"].as_str().expect("run").to_string();
    let run = stack.mlflow.get_run(&run_id).await.expect("run");
    // 8 pairs with foreground split 6 / 2, the 2 empty ones 1 / 1.
    assert_eq!(run.param("valid_size"), Some("3"));
    let pixels: u64 = run
        .tag("validation_foreground_pixels")
        .expect("tag")
        .parse()
        .expect("count");
    assert!(pixels > 0);
    assert!(run.metric("val_false_alarm_rate").is_some());

    stack
        .mlflow
        .set_tag(&run_id, "validation_foreground_pixels", "0")
        .await
        .expect("tag");
    let lenient = stack.dir().join("lenient.toml");
    std::fs::write(&lenient, "[register]\ncriteria = [\"iou >= 0.0\"]\n").expect("write");
    let config = lenient.to_str().expect("path");
    let refused = stack
        .run("register_model", &["--run-id", &run_id, "--config", config])
        .await;
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(
        refused.error_lines()[0].contains("validation split has no foreground pixel"),
        "{}",
        refused.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reproduce_reads_the_runs_repository_and_records_flags_given_beside_it() {
    let mut stack = Stack::start("reprorepo").await;
    let (trained, run) = stack.train_run(&["--epochs", "1", "--quiet"]).await;
    let run_id = trained["run_id"].as_str().expect("run").to_string();
    // The configured repository is another one now; the run's is where its data is.
    stack.env.insert(
        "SEG_LAKEFS__REPOSITORY".into(),
        format!("{}-other", stack.repo),
    );
    let (again, rerun) = stack
        .train_run(&["--reproduce", &run_id, "--epochs", "2", "--quiet"])
        .await;
    assert_eq!(rerun.info.status, RunStatus::Finished);
    assert_eq!(rerun.tag("lakefs_repo"), Some(stack.repo.as_str()));
    assert_eq!(again["data_commit"], trained["data_commit"]);
    assert_eq!(rerun.tag("reproduced_from"), Some(run_id.as_str()));
    assert_eq!(rerun.tag("reproduce_overrides"), Some("train.epochs = 2"));
    assert_eq!(rerun.param("epochs"), Some("2"));
    assert_eq!(run.param("epochs"), Some("1"));
}
