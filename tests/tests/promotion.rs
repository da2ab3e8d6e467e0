//! Promotion that compares like with like: with `register.evaluation_data` set, the first
//! version is judged on the absolute criteria alone; a clearly better challenger is promoted;
//! a worse one and one with the champion's very weights are refused (exit 3), the alias
//! staying; a changed evaluation commit is named; the comparison run, its artifacts and the
//! version tags read back with MLflow's Python client.
#![allow(clippy::too_many_lines)] // one story, told in order

use e2e::{Ran, Stack};
use seg_model::data::SyntheticConfig;

/// Uploads `count` synthetic pairs (seed `seed`) under `eval/` on main and commits.
async fn put_evaluation_set(stack: &Stack, count: usize, seed: u64) {
    let dir = stack.dir().join(format!("eval-{seed}"));
    SyntheticConfig::new()
        .with_count(count)
        .with_width(32)
        .with_height(32)
        .with_seed(seed)
        .write(&dir, &std::sync::atomic::AtomicBool::new(false))
        .expect("write the evaluation set");
    for sub in ["images", "masks"] {
        for entry in std::fs::read_dir(dir.join(sub)).expect("list") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            stack
                .lakefs
                .upload_bytes(
                    &stack.repo,
                    "main",
                    &format!("eval/{sub}/{seed}-{name}"),
                    std::fs::read(&path).expect("read").into(),
                    &Default::default(),
                )
                .await
                .expect("upload");
        }
    }
    stack
        .lakefs
        .commit(
            &stack.repo,
            "main",
            "evaluation set",
            &Default::default(),
            false,
        )
        .await
        .expect("commit");
}

/// The `--json` object of a run that may have exited 3 (refused).
fn decision(ran: &Ran) -> serde_json::Value {
    let line = ran.stdout.lines().last().expect("a JSON line on stdout");
    serde_json::from_str(line).expect("stdout is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alias_moves_only_to_a_challenger_that_is_really_better() {
    let mut stack = Stack::start("promote").await;
    let model = format!("model-{}", stack.repo);
    stack
        .env
        .insert("SEG_REGISTER__MODEL_NAME".into(), model.clone());
    // The training data first (the synthetic set), then the evaluation set beside it.
    let (weak, _) = stack
        .train_run(&["--epochs", "1", "--learning-rate", "0.0005", "--quiet"])
        .await;
    put_evaluation_set(&stack, 24, 99).await;
    let config = stack.dir().join("promote.toml");
    std::fs::write(
        &config,
        format!(
            "[register]\ncriteria = [\"iou >= 0.0\"]\nevaluation_data = \"lakefs://{}/main/eval/\"\n\n[register.gate]\nresamples = 2000\nseed = 3\n",
            stack.repo
        ),
    )
    .expect("write");
    let config = config.to_str().expect("path").to_string();
    let register = |run: String| {
        let args: Vec<String> = ["--run-id", &run, "--config", &config, "--json", "--quiet"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        let stack = &stack;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            stack.run("register_model", &args).await
        }
    };

    // 1. The first version: absolute criteria alone, said so.
    let first = register(weak["run_id"].as_str().expect("run").to_string()).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let first = decision(&first);
    assert_eq!(first["decision"], "promoted");
    assert_eq!(first["version"], "1");
    let line = first["evaluation"]["line"].as_str().expect("line");
    assert!(
        line.contains("the first version: judged on the absolute criteria alone"),
        "{line}"
    );
    assert_eq!(
        first["evaluation"]["per_image"]
            .as_array()
            .expect("images")
            .len(),
        24
    );

    // 2. A clearly better challenger is promoted, with a positive interval.
    let (strong, _) = stack
        .train_run(&["--epochs", "12", "--learning-rate", "0.01", "--quiet"])
        .await;
    let better = register(strong["run_id"].as_str().expect("run").to_string()).await;
    assert_eq!(better.code, 0, "{}", better.stderr);
    let better = decision(&better);
    assert_eq!(better["decision"], "promoted", "{better}");
    assert_eq!(better["alias_moved_from"], "1");
    let verdict = &better["evaluation"]["verdict"];
    assert!(
        verdict["difference"]["low"].as_f64().expect("low") > 0.0,
        "{verdict}"
    );
    let line = better["evaluation"]["line"].as_str().expect("line");
    assert!(
        line.starts_with("challenger v2 +")
            && line.contains("over champion v1 on eval@")
            && line.ends_with("(24 images): promoted"),
        "{line}"
    );

    // The champion registered again: nothing to compare, nothing moves.
    let same = register(strong["run_id"].as_str().expect("run").to_string()).await;
    assert_eq!(same.code, 0, "{}", same.stderr);
    let same = decision(&same);
    assert_eq!(
        (same["version"].clone(), same["evaluation"].clone()),
        (better["version"].clone(), serde_json::Value::Null)
    );

    // infer on the evaluation commit gives the same per-image numbers (one scoring rule).
    let at = better["evaluation"]["evaluation_uri"]
        .as_str()
        .expect("uri")
        .to_string();
    let version = better["version"].as_str().expect("version").to_string();
    let inferred = stack
        .run(
            "infer",
            &[
                "--version",
                &version,
                "--input",
                &at,
                "--output",
                "out/eval",
                "--json",
                "--quiet",
            ],
        )
        .await;
    assert_eq!(inferred.code, 0, "{}", inferred.stderr);
    let mut by_infer = std::collections::BTreeMap::new();
    for line in inferred.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        if let Some(dice) = v["truth"]["dice"].as_f64() {
            let name = v["input"]
                .as_str()
                .expect("input")
                .rsplit('/')
                .next()
                .expect("name");
            by_infer.insert(name.to_string(), dice);
        }
    }
    let per_image = better["evaluation"]["per_image"]
        .as_array()
        .expect("images");
    assert_eq!(by_infer.len(), per_image.len());
    for image in per_image {
        let name = image["image"].as_str().expect("name");
        assert_eq!(
            by_infer.get(name).copied(),
            image["challenger_dice"].as_f64(),
            "{name}: infer and the evaluation agree"
        );
    }

    // 3. A worse challenger is registered but refused: exit 3, the alias stays on v2.
    // The old weak version judged again against the new champion: refused.
    let again_weak = register(weak["run_id"].as_str().expect("run").to_string()).await;
    assert_eq!(again_weak.code, 3, "{}", again_weak.stderr);
    // The same comparison again: the seeded bootstrap gives the same interval.
    let once_more = register(weak["run_id"].as_str().expect("run").to_string()).await;
    assert_eq!(
        decision(&once_more)["evaluation"]["verdict"],
        decision(&again_weak)["evaluation"]["verdict"],
        "deterministic for a seed"
    );
    let (weak2, _) = stack
        .train_run(&[
            "--epochs",
            "1",
            "--learning-rate",
            "0.0005",
            "--seed",
            "7",
            "--quiet",
        ])
        .await;
    let refused = register(weak2["run_id"].as_str().expect("run").to_string()).await;
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    let lines = refused.error_lines();
    assert_eq!(lines.len(), 1, "{}", refused.stderr);
    assert!(
        lines[0].contains("promotion criteria not met: challenger v")
            && lines[0].contains("over champion v")
            && lines[0].contains(": refused")
            && lines[0].contains("the alias champion stays"),
        "{}",
        lines[0]
    );
    let refused = decision(&refused);
    assert_eq!(refused["decision"], "refused");
    let champion = stack
        .mlflow
        .get_version_by_alias(&model, "champion")
        .await
        .expect("alias")
        .expect("set");
    let strong_version = better["version"].as_str().expect("version").to_string();
    assert_eq!(champion.version, strong_version);

    // 4. The champion's very weights (a reproduction on flex): the interval is [0, 0].
    let (again, _) = stack
        .train_run(&[
            "--reproduce",
            strong["run_id"].as_str().expect("run"),
            "--quiet",
        ])
        .await;
    assert_eq!(again["metrics"], strong["metrics"], "the same weights");
    let equal = register(again["run_id"].as_str().expect("run").to_string()).await;
    assert_eq!(equal.code, 3, "{}", equal.stderr);
    let equal = decision(&equal);
    let d = &equal["evaluation"]["verdict"]["difference"];
    assert_eq!(
        (d["low"].as_f64(), d["high"].as_f64()),
        (Some(0.0), Some(0.0)),
        "{d}"
    );

    // 5. A changed evaluation commit is named in the next comparison.
    let old_commit = better["evaluation"]["evaluation_commit"]
        .as_str()
        .expect("commit")
        .to_string();
    put_evaluation_set(&stack, 4, 123).await;
    let changed = register(again["run_id"].as_str().expect("run").to_string()).await;
    assert_eq!(changed.code, 3, "{}", changed.stderr);
    let changed = decision(&changed);
    assert_eq!(
        changed["evaluation"]["evaluation_changed_from"],
        old_commit.as_str()
    );
    assert_eq!(
        changed["evaluation"]["per_image"]
            .as_array()
            .expect("images")
            .len(),
        28
    );
    assert!(
        changed["evaluation"]["line"]
            .as_str()
            .expect("line")
            .contains("the evaluation set changed since the champion was judged"),
        "{changed}"
    );

    // 6. MLflow's own client reads the comparison run, its artifacts and the version tags.
    let run_id = better["evaluation"]["evaluation_run_id"]
        .as_str()
        .expect("run");
    let script = test_support::workspace_root().join("tests/python/promotion_readback.py");
    let out = tokio::process::Command::new(test_support::mlflow_python())
        .arg(&script)
        .args([model.as_str(), strong_version.as_str(), run_id])
        .env("MLFLOW_TRACKING_URI", &stack.mlflow_uri)
        .output()
        .await
        .expect("run the readback");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a JSON line")).expect("JSON");
    assert_eq!(back["status"], "FINISHED");
    assert_eq!(back["tags"]["seg_mlops.kind"], "evaluation");
    assert_eq!(back["tags"]["decision"], "promoted");
    assert_eq!(back["tags"]["compared_with"], "1");
    assert_eq!(back["tags"]["challenger_version"], strong_version.as_str());
    assert_eq!(back["tags"]["evaluation_commit"], old_commit.as_str());
    assert_eq!(back["params"]["resamples"], "2000");
    for key in [
        "challenger_dice",
        "champion_dice",
        "difference_low",
        "difference_high",
    ] {
        assert!(back["metrics"][key].is_number(), "{key}: {back}");
    }
    let files: Vec<&str> = back["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        files.contains(&"per_image.csv") && files.contains(&"comparison.png"),
        "{files:?}"
    );
    assert_eq!(
        files
            .iter()
            .filter(|f| f.starts_with("disagreements/"))
            .count(),
        4,
        "{files:?}"
    );
    assert_eq!(back["csv_rows"], 24);
    assert!(
        back["csv_header"]
            .as_str()
            .expect("header")
            .starts_with("image,challenger_dice")
    );
    let version_tags = &back["version_tags"];
    assert_eq!(version_tags["decision"], "promoted");
    assert_eq!(version_tags["compared_with"], "1");
    assert_eq!(version_tags["evaluation_run_id"], run_id);
    // The latest judgement of the reproduction is on its version.
    assert_eq!(back["aliases"]["champion"], strong_version.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_back_part_is_committed_beside_the_data_and_judges_versions() {
    let mut stack = Stack::start("holdout").await;
    let model = format!("model-{}", stack.repo);
    for (k, v) in [
        ("SEG_REGISTER__MODEL_NAME", model.as_str()),
        ("SEG_DATA__HOLDOUT_FRACTION", "0.25"),
    ] {
        stack.env.insert(k.into(), v.into());
    }
    let (trained, run) = stack.train_run(&["--epochs", "1", "--quiet"]).await;
    let d = trained["data_commit"].as_str().expect("D");
    assert_eq!(
        run.tag("lakefs_holdout_uri"),
        Some(format!("lakefs://{}/{d}/holdout/", stack.repo).as_str())
    );
    let names = |prefix: &'static str| {
        let stack = &stack;
        async move {
            use futures::TryStreamExt;
            let listed: Vec<String> = stack
                .lakefs
                .list_objects(&stack.repo, d, prefix, None)
                .map_ok(|o| o.path.rsplit('/').next().expect("name").to_string())
                .try_collect()
                .await
                .expect("list");
            listed
        }
    };
    let held = names("holdout/images/").await;
    let trained_on = names("data/images/").await;
    assert!(!held.is_empty() && held.len() < 12, "{held:?}");
    assert_eq!(held.len() + trained_on.len(), 24);
    assert!(held.iter().all(|n| !trained_on.contains(n)), "disjoint");
    assert_eq!(names("holdout/masks/").await, held);
    assert_eq!(
        run.param("dataset_size"),
        Some(trained_on.len().to_string().as_str())
    );
    // The held-back pairs judge a version.
    let config = stack.dir().join("holdout.toml");
    std::fs::write(
        &config,
        format!(
            "[register]\ncriteria = [\"iou >= 0.0\"]\nevaluation_data = \"lakefs://{}/main/holdout/\"\n",
            stack.repo
        ),
    )
    .expect("write");
    let reg = stack
        .run(
            "register_model",
            &[
                "--config",
                config.to_str().expect("path"),
                "--json",
                "--quiet",
            ],
        )
        .await;
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    let reg = decision(&reg);
    assert_eq!(
        reg["evaluation"]["per_image"]
            .as_array()
            .expect("images")
            .len(),
        held.len()
    );
}
