//! The catalogue of bad inputs: each case runs one binary the way a hostile but realistic user
//! would and asserts the exit code, exactly one `error:` line saying what is wrong, and that
//! lakeFS's branch, MLflow (runs and registered versions) and the output folder hold exactly
//! what they held before.
#![allow(clippy::too_many_lines)] // the catalogue reads best as one table

use std::path::Path;

use e2e::Stack;
use e2e::catalogue::{Case, World, case, pairs, png};
use mlflow_client::{NewRun, RunStatus, Tag};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The folders and files the data cases use.
fn bad_folders(root: &Path) -> Vec<(&'static str, String)> {
    let d = |name: &str| root.join(name);
    let empty = d("empty");
    std::fs::create_dir_all(empty.join("images")).expect("mkdir");
    std::fs::create_dir_all(empty.join("masks")).expect("mkdir");
    let unmatched = pairs(&d("unmatched"), 4, 255);
    std::fs::remove_file(d("unmatched").join("masks/s0.png")).expect("rm");
    let truncated = pairs(&d("truncated"), 4, 255);
    std::fs::remove_file(d("truncated").join("images/s1.png")).expect("rm");
    std::fs::write(
        d("truncated").join("images/s1.jpg"),
        b"\xff\xd8\xff\xe0\x00\x10JFIF",
    )
    .expect("write");
    let zero = pairs(&d("zero"), 4, 255);
    std::fs::write(d("zero").join("images/s2.png"), b"").expect("write");
    let sized = pairs(&d("sized"), 4, 255);
    std::fs::write(d("sized").join("masks/s3.png"), png(8, 8, 0, 255)).expect("write");
    let linked = pairs(&d("linked"), 4, 255);
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
    let dataset = pairs(&root.join("dataset"), 3, 255);
    let lakefs_url = stack.lakefs_server.endpoint();
    let mlflow_url = stack.mlflow_uri.clone();
    let run_id = trained["run_id"].as_str().expect("run").to_string();
    let lenient_arg = lenient.to_str().expect("path").to_string();
    // A training run killed during its model upload: it has a model_uri, but is not FINISHED.
    let killed = stack
        .mlflow
        .create_run(
            &experiment.experiment_id,
            NewRun {
                run_name: Some("killed during its model upload".into()),
                tags: vec![
                    Tag::new("seg_mlops.kind", "training"),
                    Tag::new(
                        "model_uri",
                        trained["model_uri"].as_str().expect("model_uri"),
                    ),
                ],
                ..NewRun::default()
            },
        )
        .await
        .expect("run");
    let killed = killed.info.run_id;
    stack
        .mlflow
        .update_run(&killed, RunStatus::Killed, None)
        .await
        .expect("kill");
    let zero_one = pairs(&root.join("zero-one"), 4, 1);
    let single = pairs(&root.join("single"), 1, 255);
    let no_images = root.join("no-images");
    std::fs::create_dir_all(&no_images).expect("mkdir");
    let no_images = no_images.to_str().expect("path").to_string();
    let a_file = config("a-file", "not a folder");
    let web_page = web_page_server().await;
    let (key, _) = stack.lakefs_server.keys();
    let lakefs_host = lakefs_url.split_once("://").expect("a URL").1.to_string();
    let long_line = "9".repeat(1_000_000);

    let cases: Vec<Case> = vec![
        // Hostile but realistic: secrets, data that scores perfectly for nothing, limits.
        case("train", &[], 2, "differ from lakefs.secret_access_key").env(
            "LAKECTL_SERVER_ENDPOINT_URL",
            format!("http://{key}:url-secret@{lakefs_host}"),
        ),
        case(
            "train",
            &["--data-dir", &zero_one],
            1,
            "no mask has a foreground pixel under the binary encoding (foreground: values above 127) (the largest mask value is 1); for masks stored as 0..1 set data.binary_threshold = 0",
        ),
        case("train", &[], 2, "data.synthetic_count = 1000000000")
            .env("SEG_DATA__SYNTHETIC_COUNT", "1000000000"),
        case(
            "train",
            &["--data-dir", &dataset],
            1,
            ".png is 16x16 = 256 pixels, above the limit of 100 decoded pixels per image (data.max_image_pixels)",
        )
        .env("SEG_DATA__MAX_IMAGE_PIXELS", "100"),
        case(
            "infer",
            &["--input", &format!("{dataset}/images/s1.png"), "--output", "out/big"],
            1,
            "none of the 1 inputs could be read, so no mask was written; the first: ",
        )
        .env("SEG_DATA__MAX_IMAGE_PIXELS", "100"),
        case("train", &["--experiment", ""], 2, "mlflow.experiment = \"\""),
        case("register_model", &[], 2, "register.model_name = \"it's\"")
            .env("SEG_REGISTER__MODEL_NAME", "it's"),
        case("train", &["--data-dir", &single], 1, "has 1 pair(s): too few to split"),
        case(
            "register_model",
            &["--run-id", &killed],
            1,
            "is KILLED, not FINISHED",
        ),
        case(
            "register_model",
            &["--run-id", &killed, "--force"],
            1,
            "is KILLED, not FINISHED",
        ),
        case(
            "infer",
            &["--run-id", &killed, "--output", "out/killed"],
            1,
            "is KILLED, not FINISHED",
        ),
        case(
            "infer",
            &["--input", &dataset, "--output", &format!("{dataset}/images/pred")],
            2,
            "is inside the input folder",
        ),
        case(
            "infer",
            &["--input", &dataset, "--output", &a_file],
            2,
            "is a file: give a folder",
        ),
        case(
            "infer",
            &["--input", &no_images, "--output", "out/none"],
            1,
            "nothing was written",
        ),
        case("train", &[], 1, "the server there is not lakeFS")
            .env("LAKECTL_SERVER_ENDPOINT_URL", web_page.clone()),
        case("register_model", &["--manual"], 2, "(4096 bytes)").stdin(long_line),

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
        case("train", &[], 2, "train.schedule.kind").env("SEG_TRAIN__SCHEDULE__KIND", "cosin"),
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
            3,
            "promotion criteria not met",
        ),
        case("register_model", &[], 2, "register.gate.confidence = 1.5")
            .env("SEG_REGISTER__GATE__CONFIDENCE", "1.5"),
        case("register_model", &[], 2, "register.evaluation_data")
            .env("SEG_REGISTER__EVALUATION_DATA", "lakefs://Bad/main/eval/"),
        case("register_model", &["--config", &lenient_arg], 1, "no repository \"no-such-repo\"")
            .env("SEG_REGISTER__EVALUATION_DATA", "lakefs://no-such-repo/main/eval/"),
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
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let before = World::of(&stack, &experiment.experiment_id, &model).await;
    for c in &cases {
        let ran = c.run(&stack).await;
        let what = c.what();
        assert_eq!(ran.code, c.code, "{what}: {}", ran.stderr);
        let lines = ran.error_lines();
        assert_eq!(lines.len(), 1, "{what}: one error line: {}", ran.stderr);
        assert!(
            lines[0].contains(&c.needle),
            "{what}: {:?} not in {:?}",
            c.needle,
            lines[0]
        );
        assert!(
            lines[0].len() < 1000,
            "{what}: the line is short: {} bytes",
            lines[0].len()
        );
        for secret in ["wrong-secret", "url-secret"] {
            assert!(!ran.stderr.contains(secret), "{what}: secret printed");
        }
        let after = World::of(&stack, &experiment.experiment_id, &model).await;
        assert_eq!(
            after, before,
            "{what}: lakeFS, MLflow or the outputs changed"
        );
        // The catalogue as a table (shown with --nocapture).
        let env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let args: Vec<String> = c
            .args
            .iter()
            .map(|a| a.chars().take(60).collect())
            .collect();
        println!(
            "| {} {} {} | {} | {} |",
            env.join(" "),
            c.bin,
            args.join(" "),
            ran.code,
            lines[0]
        );
    }
}

/// A web server that answers every request with a page (a proxy's or a default site's).
async fn web_page_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 16 << 10];
                let _ = socket.read(&mut request).await;
                let body = "<html><body><h1>Welcome to nginx!</h1></body></html>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}
