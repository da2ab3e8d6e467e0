//! The catalogue of bad inputs: each case runs one binary the way a hostile but realistic user
//! would and asserts the exit code, exactly one `error:` line saying what is wrong, and that
//! lakeFS's branch, MLflow (runs and registered versions) and the output folder hold exactly
//! what they held before.
#![allow(clippy::too_many_lines)] // the catalogue reads best as one table

use std::path::Path;

use e2e::{Ran, Stack};
use futures::TryStreamExt;
use mlflow_client::{NewRun, RunSearch, Tag};
use tokio::io::AsyncWriteExt;

/// One bad input.
struct Case {
    bin: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    stdin: Option<&'static str>,
    code: i32,
    needle: &'static str,
}

fn case(bin: &'static str, args: &[&str], code: i32, needle: &'static str) -> Case {
    Case {
        bin,
        args: args.iter().map(|s| (*s).to_string()).collect(),
        env: Vec::new(),
        stdin: None,
        code,
        needle,
    }
}

impl Case {
    fn env(mut self, var: &'static str, value: impl Into<String>) -> Self {
        self.env.push((var, value.into()));
        self
    }

    fn stdin(mut self, text: &'static str) -> Self {
        self.stdin = Some(text);
        self
    }
}

/// What must not change: the branch head, the experiment's runs, the registered versions,
/// and the files under the output folder.
#[derive(Debug, PartialEq)]
struct World {
    head: String,
    runs: usize,
    versions: usize,
    outputs: usize,
}

async fn world(stack: &Stack, experiment_id: &str, model: &str) -> World {
    let runs: Vec<_> = stack
        .mlflow
        .search_runs(RunSearch {
            experiment_ids: vec![experiment_id.to_string()],
            ..RunSearch::default()
        })
        .try_collect()
        .await
        .expect("runs");
    let versions: Vec<_> = stack
        .mlflow
        .search_model_versions(Some(format!("name='{model}'")), vec![])
        .try_collect()
        .await
        .expect("versions");
    let outputs = walkdir(&stack.dir().join("out"));
    World {
        head: stack.head().await,
        runs: runs.len(),
        versions: versions.len(),
        outputs,
    }
}

fn walkdir(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| {
            let p = e.expect("entry").path();
            if p.is_dir() { walkdir(&p) } else { 1 }
        })
        .sum()
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::GrayImage::new(w, h)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

/// A dataset folder of `n` 16x16 pairs under `dir`.
fn pairs(dir: &Path, n: usize) -> String {
    for sub in ["images", "masks"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        for i in 0..n {
            std::fs::write(dir.join(sub).join(format!("s{i}.png")), png(16, 16)).expect("write");
        }
    }
    dir.to_str().expect("path").to_string()
}

/// The folders and files the data cases use.
fn bad_folders(root: &Path) -> Vec<(&'static str, String)> {
    let d = |name: &str| root.join(name);
    let empty = d("empty");
    std::fs::create_dir_all(empty.join("images")).expect("mkdir");
    std::fs::create_dir_all(empty.join("masks")).expect("mkdir");
    let unmatched = pairs(&d("unmatched"), 4);
    std::fs::remove_file(d("unmatched").join("masks/s0.png")).expect("rm");
    let truncated = pairs(&d("truncated"), 4);
    std::fs::remove_file(d("truncated").join("images/s1.png")).expect("rm");
    std::fs::write(
        d("truncated").join("images/s1.jpg"),
        b"\xff\xd8\xff\xe0\x00\x10JFIF",
    )
    .expect("write");
    let zero = pairs(&d("zero"), 4);
    std::fs::write(d("zero").join("images/s2.png"), b"").expect("write");
    let sized = pairs(&d("sized"), 4);
    std::fs::write(d("sized").join("masks/s3.png"), png(8, 8)).expect("write");
    let linked = pairs(&d("linked"), 4);
    std::fs::create_dir_all(d("elsewhere")).expect("mkdir");
    #[cfg(unix)]
    std::os::unix::fs::symlink(d("elsewhere"), d("linked").join("masks/more")).expect("link");
    vec![
        ("empty", empty.to_str().expect("path").to_string()),
        ("unmatched", unmatched),
        ("truncated", truncated),
        ("zero", zero),
        ("sized", sized),
        ("linked", linked),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_one_line_the_documented_code_and_changes_nothing() {
    let mut stack = Stack::start("catalogue").await;
    let model = format!("model-{}", stack.repo);
    stack
        .env
        .insert("SEG_REGISTER__MODEL_NAME".into(), model.clone());
    let (trained, _) = stack.train_run(&["--epochs", "1", "--quiet"]).await;
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
        .await;
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    let experiment = stack
        .mlflow
        .get_experiment_by_name(&stack.experiment)
        .await
        .expect("experiment")
        .expect("exists");
    let inference_run = stack
        .mlflow
        .create_run(
            &experiment.experiment_id,
            NewRun {
                run_name: Some("an inference run".into()),
                tags: vec![Tag::new("seg_mlops.kind", "inference")],
                ..NewRun::default()
            },
        )
        .await
        .expect("run");
    stack
        .mlflow
        .update_run(
            &inference_run.info.run_id,
            mlflow_client::RunStatus::Finished,
            None,
        )
        .await
        .expect("end");
    let inference_id = inference_run.info.run_id.clone();
    let root = stack.dir().join("cases");
    let folders = bad_folders(&root);
    let folder = |name: &str| {
        folders
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.clone())
            .expect("folder")
    };
    let config = |name: &str, text: &str| {
        let path = root.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("path").to_string()
    };
    let not_toml = config("not.toml", "[train\nepochs = 3\n");
    let unknown_key = config("unknown.toml", "[train]\nepochz = 3\n");
    let strict = config("strict.toml", "[register]\ncriteria = [\"iou >= 1.5\"]\n");
    let missing_toml = root
        .join("missing.toml")
        .to_str()
        .expect("path")
        .to_string();
    let dataset = pairs(&root.join("dataset"), 3);
    let lakefs_url = stack.lakefs_server.endpoint();
    let mlflow_url = stack.mlflow_uri.clone();
    let run_id = trained["run_id"].as_str().expect("run").to_string();

    let cases: Vec<Case> = vec![
        // train: flags and configuration values.
        case(
            "train",
            &["--learning-rate", "-0.1"],
            2,
            "train.learning_rate = -0.1",
        ),
        case("train", &["--batch-size", "0"], 2, "train.batch_size = 0"),
        case("train", &["--backend", "quantum"], 2, "train.backend"),
        case("train", &["--image-size", "30"], 2, "train.image_size"),
        case("train", &["--epochs", "many"], 2, "invalid value"),
        case("train", &["--no-such-flag"], 2, "unexpected argument"),
        case("train", &[], 2, "model.upsample").env("SEG_MODEL__UPSAMPLE", "bilinar"),
        case("train", &[], 2, "train.lr_schedule").env("SEG_TRAIN__LR_SCHEDULE", "cosin"),
        case("train", &[], 2, "train.selection_metric").env("SEG_TRAIN__SELECTION_METRIC", "iou"),
        case("train", &[], 2, "data.valid_fraction").env("SEG_DATA__VALID_FRACTION", "1.5"),
        case("train", &[], 2, "lakefs.images_path").env("SEG_LAKEFS__IMAGES_PATH", "../../x"),
        case("train", &[], 2, "lakefs.branch").env("SEG_LAKEFS__BRANCH", "a/b"),
        case("train", &[], 2, "lakefs.repository").env("SEG_LAKEFS__REPOSITORY", "Bad_Repo"),
        case("train", &[], 2, "mlflow.tracking_uri").env("MLFLOW_TRACKING_URI", "ftp://x"),
        case("train", &["--config", &missing_toml], 2, "missing.toml"),
        case("train", &["--config", &not_toml], 2, "at line 1"),
        case("train", &["--config", &unknown_key], 2, "epochz"),
        case(
            "train",
            &["--status", "--reproduce", &run_id],
            2,
            "cannot be used with",
        ),
        // train: data.
        case(
            "train",
            &["--data-dir", "no/such/folder"],
            1,
            "does not exist",
        ),
        case(
            "train",
            &["--data-dir", &folder("empty")],
            1,
            "has no images",
        ),
        case(
            "train",
            &["--data-dir", &folder("unmatched")],
            1,
            "(no mask)",
        ),
        case(
            "train",
            &["--data-dir", &folder("truncated")],
            1,
            "truncated",
        ),
        case("train", &["--data-dir", &folder("zero")], 1, "empty"),
        case(
            "train",
            &["--data-dir", &folder("sized")],
            1,
            "masks must match",
        ),
        case(
            "train",
            &["--data-dir", &folder("linked")],
            1,
            "outside the dataset",
        ),
        // train: servers and lineage.
        case("train", &[], 1, "cannot reach MLflow at http://127.0.0.1:9")
            .env("MLFLOW_TRACKING_URI", "http://127.0.0.1:9"),
        case("train", &[], 1, "cannot reach lakeFS at http://127.0.0.1:9")
            .env("LAKECTL_SERVER_ENDPOINT_URL", "http://127.0.0.1:9"),
        case("train", &[], 1, "unauthorized")
            .env("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", "wrong-secret"),
        case("train", &[], 1, "is not MLflow").env("MLFLOW_TRACKING_URI", lakefs_url.clone()),
        case("train", &[], 1, "is not lakeFS")
            .env("LAKECTL_SERVER_ENDPOINT_URL", mlflow_url.clone()),
        case("train", &[], 1, "does not exist").env("SEG_LAKEFS__BRANCH", "mian"),
        case(
            "train",
            &["--reproduce", "0123456789abcdef0123456789abcdef"],
            1,
            "no such MLflow run",
        ),
        case(
            "train",
            &["--reproduce", &inference_id],
            1,
            "not a training run",
        ),
        // register_model.
        case(
            "register_model",
            &["--run-id", "0123456789abcdef0123456789abcdef"],
            1,
            "no MLflow run",
        ),
        case(
            "register_model",
            &["--run-id", &inference_id],
            1,
            "inference run",
        ),
        case(
            "register_model",
            &["--best-by", "no_such_metric"],
            1,
            "has the metric",
        ),
        case("register_model", &["--manual"], 2, "is not a number").stdin("x\n"),
        case("register_model", &["--manual"], 2, "no choice on stdin"),
        case(
            "register_model",
            &["--run-id", &run_id, "--manual"],
            2,
            "cannot be used with",
        ),
        case(
            "register_model",
            &["--config", &strict],
            1,
            "promotion criteria not met",
        ),
        // infer.
        case("infer", &["--version", "abc"], 2, "invalid value"),
        case("infer", &["--version", "0"], 2, "invalid value"),
        case(
            "infer",
            &["--alias", "nope", "--output", "out/a"],
            1,
            "no alias",
        ),
        case(
            "infer",
            &["--input", "no/such/file.png", "--output", "out/b"],
            1,
            "no/such/file.png",
        ),
        case(
            "infer",
            &["--interactive", "--input", "-"],
            2,
            "reads the choice from stdin",
        ),
        case(
            "infer",
            &[
                "--input",
                &dataset,
                "--output",
                &format!("{dataset}/images"),
            ],
            2,
            "is the input folder",
        ),
        case(
            "infer",
            &["--input", &dataset, "--output", &format!("{dataset}/masks")],
            2,
            "ground truth",
        ),
        case("infer", &["--batch-size", "0"], 2, "infer.batch_size"),
        case("infer", &["--backend", "quantum"], 2, "infer.backend"),
        case(
            "infer",
            &[
                "--input",
                "lakefs://no-such-repo/main/x/",
                "--output",
                "out/c",
            ],
            1,
            "no repository",
        ),
        case(
            "infer",
            &["--input", "lakefs://Bad/main/x", "--output", "out/d"],
            1,
            "invalid lakeFS URI",
        ),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let before = world(&stack, &experiment.experiment_id, &model).await;
    for c in &cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let mut cmd = stack.command(c.bin, &args);
        for (var, value) in &c.env {
            cmd.env(var, value);
        }
        let ran = match c.stdin {
            None => Ran::from_output(cmd.output().await.expect("run")),
            Some(text) => {
                let mut child = cmd
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn");
                let mut input = child.stdin.take().expect("stdin");
                input.write_all(text.as_bytes()).await.expect("write");
                drop(input);
                Ran::from_output(child.wait_with_output().await.expect("wait"))
            }
        };
        let what = format!("{} {:?} {:?}", c.bin, c.args, c.env);
        assert_eq!(ran.code, c.code, "{what}: {}", ran.stderr);
        let lines = ran.error_lines();
        assert_eq!(lines.len(), 1, "{what}: one error line: {}", ran.stderr);
        assert!(
            lines[0].contains(c.needle),
            "{what}: {:?} not in {:?}",
            c.needle,
            lines[0]
        );
        assert!(
            !ran.stderr.contains("wrong-secret"),
            "{what}: secret printed"
        );
        let after = world(&stack, &experiment.experiment_id, &model).await;
        assert_eq!(
            after, before,
            "{what}: lakeFS, MLflow or the outputs changed"
        );
        // The catalogue as a table (shown with --nocapture).
        let env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "| {} {} {} | {} | {} |",
            env.join(" "),
            c.bin,
            c.args.join(" "),
            ran.code,
            lines[0]
        );
    }
}
