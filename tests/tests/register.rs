//! `register_model` end to end, after test trainings on tiny synthetic data.
#![allow(clippy::too_many_lines)] // end-to-end scenarios read best in one piece

use e2e::Stack;
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;

async fn train(stack: &Stack, seed: &str) -> serde_json::Value {
    stack
        .run(
            "train",
            &["--epochs", "1", "--seed", seed, "--json", "--quiet"],
        )
        .await
        .json()
}

/// Register, register again, the alias, the lakeFS tag, MLflow's Python client, criteria and
/// --force, --best-by, --manual from stdin, and a model replaced after training.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_verified_lakefs_commits() {
    let mut stack = Stack::start("register").await;
    let model = format!("model-{}", stack.repo);
    stack
        .env
        .insert("SEG_REGISTER__MODEL_NAME".into(), model.clone());
    let runs = [
        train(&stack, "1").await,
        train(&stack, "2").await,
        train(&stack, "3").await,
    ];
    let newest = &runs[2];
    // Tiny one-epoch models: a lenient bar unless a test brings its own config.
    let lenient = stack.dir().join("lenient.toml");
    std::fs::write(&lenient, "[register]\ncriteria = [\"iou >= 0.0\"]\n").expect("write");
    let lenient = lenient.to_string_lossy().into_owned();
    let with_model = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
        if !args.contains(&"--config") {
            v.extend(["--config".to_string(), lenient.clone()]);
        }
        v.push("--json".into());
        v
    };
    let run_with = |args: Vec<String>| {
        stack.command(
            "register_model",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };

    // Default: the newest FINISHED run; its immutable URI is the source.
    let out = run_with(with_model(&[])).output().await.expect("run");
    let reg = e2e::Ran::from_output(out).json();
    assert_eq!(reg["run_id"], newest["run_id"]);
    assert_eq!(reg["source"], newest["model_folder_uri"]);
    assert_eq!(reg["created"], true);
    assert_eq!(reg["alias"], "champion");
    let version = reg["version"].as_str().expect("version").to_string();
    let mv = stack
        .mlflow
        .get_model_version(&model, &version)
        .await
        .expect("version");
    assert_eq!(
        Some(mv.source.as_str()),
        newest["model_folder_uri"].as_str()
    );
    assert!(
        mv.source
            .contains(newest["model_commit"].as_str().expect("M"))
    );
    assert_eq!(mv.tag("model_sha256"), newest["model_sha256"].as_str());
    assert_eq!(mv.tag("forced"), Some("false"));
    let by_alias = stack
        .mlflow
        .get_version_by_alias(&model, "champion")
        .await
        .expect("alias")
        .expect("set");
    assert_eq!(by_alias.version, version);
    let tag = stack
        .lakefs
        .get_tag(&stack.repo, reg["lakefs_tag"].as_str().expect("tag"))
        .await
        .expect("lakeFS tag");
    assert_eq!(
        Some(tag.commit_id.as_str()),
        newest["model_commit"].as_str()
    );
    let script = format!(
        "import mlflow; c = mlflow.MlflowClient('{}'); v = c.get_model_version_by_alias('{model}', 'champion'); print(v.version, v.source, v.run_id)",
        stack.mlflow_uri
    );
    let py = tokio::process::Command::new(test_support::mlflow_python())
        .args(["-c", &script])
        .output()
        .await
        .expect("python");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let text = String::from_utf8_lossy(&py.stdout);
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        vec![
            version.as_str(),
            newest["model_folder_uri"].as_str().expect("uri"),
            newest["run_id"].as_str().expect("id")
        ]
    );

    // Registering the same run again returns the same version.
    let again =
        e2e::Ran::from_output(run_with(with_model(&[])).output().await.expect("run")).json();
    assert_eq!(again["version"], version.as_str());
    assert_eq!(again["created"], false);

    // Criteria not met: exit 3 naming metric, value and threshold; nothing registered.
    let strict = stack.dir().join("strict.toml");
    std::fs::write(&strict, "[register]\ncriteria = [\"iou >= 1.5\"]\n").expect("write");
    let strict_arg = strict.to_string_lossy().into_owned();
    let first_id = runs[0]["run_id"].as_str().expect("id");
    let out = run_with(with_model(&["--config", &strict_arg, "--run-id", first_id]))
        .output()
        .await
        .expect("run");
    let ran = e2e::Ran::from_output(out);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("iou = ") && ran.stderr.contains("iou >= 1.5"),
        "{}",
        ran.stderr
    );
    let versions: Vec<_> = stack
        .mlflow
        .search_model_versions(Some(format!("name='{model}'")), vec![])
        .try_collect()
        .await
        .expect("versions");
    assert_eq!(versions.len(), 1, "nothing registered");
    // --force registers anyway, tagged.
    let forced = e2e::Ran::from_output(
        run_with(with_model(&[
            "--config",
            &strict_arg,
            "--run-id",
            first_id,
            "--force",
        ]))
        .output()
        .await
        .expect("run"),
    )
    .json();
    assert_eq!(forced["forced"], true);
    let fv = stack
        .mlflow
        .get_model_version(&model, forced["version"].as_str().expect("v"))
        .await
        .expect("version");
    assert_eq!(fv.tag("forced"), Some("true"));
    assert_eq!(
        forced["alias_moved_from"],
        version.as_str(),
        "the alias moved"
    );

    // --best-by iou picks the run with the highest iou.
    let best = runs
        .iter()
        .max_by(|a, b| {
            a["metrics"]["iou"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b["metrics"]["iou"].as_f64().unwrap_or(0.0))
        })
        .expect("runs");
    let by = e2e::Ran::from_output(
        run_with(with_model(&["--best-by", "iou", "--alias", "best"]))
            .output()
            .await
            .expect("run"),
    )
    .json();
    let picked = runs
        .iter()
        .find(|r| r["run_id"] == by["run_id"])
        .expect("one of the trained runs");
    assert_eq!(
        picked["metrics"]["iou"], best["metrics"]["iou"],
        "the picked run has the highest iou"
    );
    assert_eq!(by["alias"], "best");

    // --manual: `echo 2 |` picks the second row (newest first); closed stdin is exit 2.
    let mut cmd = run_with(with_model(&["--manual", "--alias", "picked"]));
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"2\n").await.expect("write");
    drop(stdin);
    let picked = e2e::Ran::from_output(child.wait_with_output().await.expect("wait")).json();
    assert_eq!(
        picked["run_id"], runs[1]["run_id"],
        "row 2 is the second newest run"
    );
    let closed = e2e::Ran::from_output(
        run_with(with_model(&["--manual"]))
            .output()
            .await
            .expect("run"),
    );
    assert_eq!(closed.code, 2, "{}", closed.stderr);
    assert!(closed.stderr.contains("--manual"), "{}", closed.stderr);

    // A model object replaced in lakeFS after training is refused with both hashes.
    let victim = &runs[1];
    stack.replace_model(victim, b"not the model").await;
    let refused = e2e::Ran::from_output(
        run_with(with_model(&[
            "--run-id",
            victim["run_id"].as_str().expect("id"),
        ]))
        .output()
        .await
        .expect("run"),
    );
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains(victim["model_sha256"].as_str().expect("sha"))
            && refused.stderr.contains(&e2e::sha256_hex(b"not the model")),
        "both hashes named: {}",
        refused.stderr
    );

    // An unknown run is one line, exit 1.
    let unknown = e2e::Ran::from_output(
        run_with(with_model(&[
            "--run-id",
            "0123456789abcdef0123456789abcdef",
        ]))
        .output()
        .await
        .expect("run"),
    );
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert_eq!(unknown.error_lines().len(), 1, "{}", unknown.stderr);
}
