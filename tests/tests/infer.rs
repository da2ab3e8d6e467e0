//! `infer` end to end, after a test training and registration on tiny synthetic data.
#![allow(clippy::too_many_lines)] // end-to-end scenarios read best in one piece

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use e2e::{Ran, Stack};
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;

/// Runs `infer` with `args` (and `stdin` when given).
async fn infer(stack: &Stack, args: &[&str], stdin: Option<&str>) -> Ran {
    let mut cmd = stack.command("infer", args);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn infer");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).await.expect("write stdin");
        drop(pipe);
    }
    Ran::from_output(child.wait_with_output().await.expect("infer ends"))
}

/// The `--json` lines: the image lines and the summary line.
fn json_lines(ran: &Ran) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut values: Vec<serde_json::Value> = ran
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let summary = values.pop().expect("a summary line");
    assert_eq!(summary["type"], "summary", "{}", ran.stdout);
    assert!(values.iter().all(|v| v["type"] == "image"));
    (values, summary)
}

/// Mask bytes (decoded pixels) by file name under `dir`.
fn masks(dir: &Path) -> BTreeMap<String, (u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "overlays") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "png") {
                let img = image::open(&p).expect("mask decodes").to_luma8();
                let rel = p.strip_prefix(dir).expect("under dir");
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    (img.width(), img.height(), img.into_raw()),
                );
            }
        }
    }
    out
}

fn write_rgb(path: &Path, src: &image::DynamicImage, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    src.resize_exact(w, h, image::imageops::FilterType::Triangle)
        .to_rgb8()
        .save(path)
        .expect("save");
}

/// Alias, version, run id and --interactive agree; folder, file, stdin and lakeFS inputs
/// agree; masks keep the original sizes; metrics match seg-model's evaluation; a corrupt input
/// is named and skipped; --commit versions the masks with an inference run linked both ways;
/// unknown models and a replaced model object are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masks_follow_the_lineage_and_every_way_in_agrees() {
    let mut stack = Stack::start("infer").await;
    let model = format!("model-{}", stack.repo);
    stack
        .env
        .insert("SEG_REGISTER__MODEL_NAME".into(), model.clone());
    let (trained, _) = stack
        .train_run(&["--epochs", "4", "--learning-rate", "0.01", "--quiet"])
        .await;
    let run_id = trained["run_id"].as_str().expect("run id").to_string();
    // A tiny model: a lenient bar (the criteria are register_model's test).
    let lenient = stack.dir().join("lenient.toml");
    std::fs::write(&lenient, "[register]\ncriteria = [\"iou >= 0.0\"]\n").expect("write");
    let lenient = lenient.to_string_lossy().into_owned();
    let reg = stack
        .run(
            "register_model",
            &["--config", &lenient, "--json", "--quiet"],
        )
        .await
        .json();
    assert_eq!(reg["version"], "1");

    // Default: the alias, on the images of the training data commit D, scored against its masks.
    let ran = infer(
        &stack,
        &["--json", "--quiet", "--output", "out/alias"],
        None,
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let (images, summary) = json_lines(&ran);
    assert_eq!(summary["model"]["version"], "1");
    assert_eq!(summary["model"]["alias"], "champion");
    assert_eq!(summary["model"]["run_id"], run_id.as_str());
    assert_eq!(summary["model"]["model_sha256"], trained["model_sha256"]);
    let data_commit = trained["data_commit"].as_str().expect("D");
    assert_eq!(
        summary["input_ref"],
        format!("lakefs://{}/{data_commit}/data/images/", stack.repo)
    );
    assert_eq!(images.len(), 24, "every image of D");
    assert_eq!(summary["images"], 24);
    assert!(images.iter().all(|i| i["width"] == 32 && i["height"] == 32));
    let alias_masks = masks(&stack.dir().join("out/alias"));
    assert_eq!(alias_masks.len(), 24);
    let values: std::collections::BTreeSet<u8> = alias_masks
        .values()
        .flat_map(|(_, _, px)| px.iter().copied())
        .collect();
    assert_eq!(
        values,
        [0u8, 255].into(),
        "binary masks in the training encoding (0/255), not all one value"
    );

    // The metrics are seg-model's evaluation of the same model on the same pairs.
    let metrics = &summary["metrics"];
    assert_eq!(metrics["images"], 24);
    let local = stack.dir().join(
        summary["model"]["local"]
            .as_str()
            .expect("local model file"),
    );
    let cache = stack
        .dir()
        .join(".seg-mlops/cache")
        .join(&stack.repo)
        .join(data_commit)
        .join("data");
    let (iou, accuracy) = tokio::task::spawn_blocking(move || {
        let device = seg_model::BackendKind::Flex.device();
        let checkpoint = seg_model::checkpoint::load(&local, &device).expect("checkpoint");
        let dataset = seg_model::data::SegmentationDataset::open(
            &cache,
            checkpoint.meta.mask_encoding.clone(),
        )
        .expect("dataset");
        let all: Vec<usize> = (0..dataset.len()).collect();
        let evaluation = seg_model::Evaluation {
            dataset: Arc::new(dataset),
            preprocess: Arc::new(checkpoint.meta.preprocess.clone()),
            loader: seg_model::data::LoaderConfig {
                batch_size: 8,
                shuffle: false,
                augment: None,
                seed: 0,
                prefetch: 2,
            },
            loss: seg_model::loss::LossConfig::default(),
            num_classes: checkpoint.meta.model.num_classes,
            device,
            tta: seg_model::Tta::Off,
        };
        let m = evaluation
            .run(&checkpoint.model, &all)
            .expect("evaluation")
            .metrics;
        ((m.iou, m.mean_iou), m.pixel_accuracy)
    })
    .await
    .expect("evaluation thread");
    let (iou, mean_iou) = iou;
    let close = |a: &serde_json::Value, b: f64| (a.as_f64().expect("number") - b).abs() < 2e-3;
    assert!(close(&metrics["iou"], iou), "{metrics} vs iou {iou}");
    assert!(
        close(&metrics["mean_iou_with_background"], mean_iou),
        "{metrics} vs the background-inclusive mean {mean_iou}"
    );
    assert!(
        close(&metrics["pixel_accuracy"], accuracy),
        "{metrics} vs accuracy {accuracy}"
    );
    let text = infer(&stack, &["--quiet", "--output", "out/text"], None).await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("metrics: iou"),
        "metrics printed: {}",
        text.stdout
    );

    // Images whose ground truth has no foreground (healthy tissue): the image-level false
    // alarms are counted from the very masks the alias predicted for those images.
    let images_dir = stack
        .dir()
        .join(".seg-mlops/cache")
        .join(&stack.repo)
        .join(data_commit)
        .join("data/images");
    let healthy = stack.dir().join("healthy");
    std::fs::create_dir_all(healthy.join("images")).expect("mkdir");
    std::fs::create_dir_all(healthy.join("masks")).expect("mkdir");
    for e in std::fs::read_dir(&images_dir).expect("images").flatten() {
        let name = e.file_name();
        std::fs::copy(e.path(), healthy.join("images").join(&name)).expect("copy");
        let stem = e.path().file_stem().expect("stem").to_owned();
        image::GrayImage::new(32, 32)
            .save(healthy.join("masks").join(stem).with_extension("png"))
            .expect("empty mask");
    }
    let (mut any, mut alarms) = (0, 0);
    for (_, _, px) in alias_masks.values() {
        let foreground = px.iter().filter(|&&v| v > 0).count();
        any += usize::from(foreground > 0);
        alarms += usize::from(foreground as f64 > 0.01 * px.len() as f64);
    }
    let ran = infer(
        &stack,
        &[
            "--input",
            "healthy",
            "--output",
            "out/healthy",
            "--json",
            "--quiet",
        ],
        None,
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let (_, hsum) = json_lines(&ran);
    let h = &hsum["metrics"];
    assert_eq!(h["images"], 24);
    assert_eq!(h["empty_truth_images"], 24, "{h}");
    assert_eq!(h["any_foreground_images"], any, "{h}");
    assert_eq!(h["false_alarm_images"], alarms, "{h}");
    assert!(
        (h["false_alarm_rate"].as_f64().expect("rate") - alarms as f64 / 24.0).abs() < 1e-9,
        "{h}"
    );
    assert_eq!(
        metrics["false_alarm_rate"].is_null(),
        metrics["empty_truth_images"] == 0,
        "a rate exactly when some truth is empty: {metrics}"
    );
    let text = infer(
        &stack,
        &["--input", "healthy", "--quiet", "--output", "out/h"],
        None,
    )
    .await;
    assert!(
        text.stdout
            .contains(&format!("false alarms: {alarms} of 24 images")),
        "{}",
        text.stdout
    );

    // By version, by run id and --interactive (empty line = newest): identical masks.
    for (args, stdin, out) in [
        (vec!["--version", "1"], None, "out/version"),
        (vec!["--run-id", run_id.as_str()], None, "out/run"),
        (vec!["--interactive"], Some("\n"), "out/interactive"),
    ] {
        let mut all = args.clone();
        all.extend(["--quiet", "--output", out]);
        let ran = infer(&stack, &all, stdin).await;
        assert_eq!(ran.code, 0, "{args:?}: {}", ran.stderr);
        assert_eq!(
            masks(&stack.dir().join(out)),
            alias_masks,
            "{args:?} gives the alias's masks"
        );
    }

    // Folder, file, stdin and lakeFS inputs of mixed sizes and colour types agree.
    let source = image::open(
        stack
            .dir()
            .join(".seg-mlops/cache")
            .join(&stack.repo)
            .join(data_commit)
            .join("data/images")
            .join(
                images[0]["input"]
                    .as_str()
                    .expect("input")
                    .rsplit('/')
                    .next()
                    .expect("name"),
            ),
    )
    .expect("a training image");
    let mixed = stack.dir().join("mixed");
    write_rgb(&mixed.join("wide.png"), &source, 48, 40);
    write_rgb(&mixed.join("small.jpg"), &source, 20, 30);
    source
        .to_luma8()
        .save(mixed.join("grey.png"))
        .expect("save grey");
    write_rgb(&mixed.join("sub/deep.png"), &source, 33, 17);
    std::fs::write(mixed.join("notes.txt"), "not an image").expect("write");
    let sizes = BTreeMap::from([
        ("wide.png", (48, 40)),
        ("small.png", (20, 30)),
        ("grey.png", (32, 32)),
        ("sub/deep.png", (33, 17)),
    ]);
    let folder = infer(
        &stack,
        &[
            "--input",
            "mixed",
            "--output",
            "out/folder",
            "--json",
            "--quiet",
        ],
        None,
    )
    .await;
    assert_eq!(folder.code, 0, "{}", folder.stderr);
    let (lines, fsum) = json_lines(&folder);
    assert_eq!(lines.len(), 4, "image files only, recursively");
    assert!(fsum["metrics"].is_null(), "no ground truth here");
    let folder_masks = masks(&stack.dir().join("out/folder"));
    let got: BTreeMap<&str, (u32, u32)> = folder_masks
        .iter()
        .map(|(k, (w, h, _))| (k.as_str(), (*w, *h)))
        .collect();
    assert_eq!(
        got, sizes,
        "masks at the inputs' own sizes and relative paths"
    );
    let file = infer(
        &stack,
        &[
            "--input",
            "mixed/wide.png",
            "--output",
            "out/file",
            "--quiet",
        ],
        None,
    )
    .await;
    assert_eq!(file.code, 0, "{}", file.stderr);
    assert_eq!(
        masks(&stack.dir().join("out/file"))["wide.png"],
        folder_masks["wide.png"]
    );
    let paths = ["mixed/wide.png", "mixed/small.jpg", "mixed/grey.png"].join("\n");
    let piped = infer(
        &stack,
        &["--input", "-", "--output", "out/stdin", "--quiet"],
        Some(&paths),
    )
    .await;
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    let stdin_masks = masks(&stack.dir().join("out/stdin"));
    for name in ["wide.png", "small.png", "grey.png"] {
        assert_eq!(
            stdin_masks[&format!("mixed/{name}")],
            folder_masks[name],
            "{name}"
        );
    }
    let report = stack
        .lakefs
        .upload_dir(
            &mixed,
            &stack.repo,
            "main",
            "incoming/",
            &Default::default(),
        )
        .await
        .expect("upload");
    assert_eq!(report.uploaded, 5);
    stack
        .lakefs
        .commit(&stack.repo, "main", "incoming", &Default::default(), false)
        .await
        .expect("commit");
    let uri = format!("lakefs://{}/main/incoming/", stack.repo);
    let remote = infer(
        &stack,
        &[
            "--input",
            &uri,
            "--output",
            "out/lakefs",
            "--json",
            "--quiet",
        ],
        None,
    )
    .await;
    assert_eq!(remote.code, 0, "{}", remote.stderr);
    let (_, rsum) = json_lines(&remote);
    let head = stack.head().await;
    assert_eq!(
        rsum["input_ref"],
        format!("lakefs://{}/{head}/incoming/", stack.repo),
        "the input is recorded at its commit"
    );
    assert_eq!(masks(&stack.dir().join("out/lakefs")), folder_masks);

    // Ground truth that cannot be downloaded is an error naming it, not scores silently
    // left out: a file stands where the cache wants the masks folder.
    stack
        .lakefs
        .upload_dir(
            &mixed,
            &stack.repo,
            "main",
            "gt/images/",
            &Default::default(),
        )
        .await
        .expect("upload images");
    stack
        .lakefs
        .upload_dir(
            &mixed,
            &stack.repo,
            "main",
            "gt/masks/",
            &Default::default(),
        )
        .await
        .expect("upload masks");
    stack
        .lakefs
        .commit(&stack.repo, "main", "gt", &Default::default(), false)
        .await
        .expect("commit");
    let head = stack.head().await;
    let blocked = stack
        .dir()
        .join(".seg-mlops/cache")
        .join(&stack.repo)
        .join(&head)
        .join("gt");
    std::fs::create_dir_all(&blocked).expect("mkdir");
    std::fs::write(blocked.join("masks"), b"not a folder").expect("block");
    let gt_uri = format!("lakefs://{}/main/gt/images/", stack.repo);
    let no_truth = infer(
        &stack,
        &["--input", &gt_uri, "--output", "out/gt", "--quiet"],
        None,
    )
    .await;
    assert_eq!(no_truth.code, 1, "{}", no_truth.stderr);
    assert!(
        no_truth
            .error_lines()
            .iter()
            .any(|l| l.contains("gt/masks")),
        "the error names the ground truth it could not fetch: {}",
        no_truth.stderr
    );

    // A corrupt image among valid ones: the others are written, it is named once, exit 1.
    let broken = stack.dir().join("broken");
    write_rgb(&broken.join("a.png"), &source, 32, 32);
    write_rgb(&broken.join("b.png"), &source, 24, 24);
    std::fs::write(broken.join("c.jpg"), b"\xff\xd8\xff\xe0 not really a jpeg").expect("write");
    let ran = infer(
        &stack,
        &[
            "--input",
            "broken",
            "--output",
            "out/broken",
            "--json",
            "--quiet",
        ],
        None,
    )
    .await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let (lines, bsum) = json_lines(&ran);
    assert_eq!(lines.len(), 2);
    assert_eq!(bsum["failed"], 1);
    assert_eq!(
        ran.stderr.lines().filter(|l| l.contains("c.jpg")).count(),
        1,
        "one line names the corrupt file: {}",
        ran.stderr
    );
    assert_eq!(masks(&stack.dir().join("out/broken")).len(), 2);

    // --commit: the masks in lakeFS under predictions/<model>-v1/ and an inference run, linked
    // both ways.
    let committed = infer(
        &stack,
        &["--commit", "--json", "--quiet", "--output", "out/commit"],
        None,
    )
    .await;
    assert_eq!(committed.code, 0, "{}", committed.stderr);
    let (_, csum) = json_lines(&committed);
    let commit_id = csum["predictions_commit"].as_str().expect("commit");
    let inference_run = csum["inference_run_id"].as_str().expect("run");
    let commit = stack
        .lakefs
        .get_commit(&stack.repo, commit_id)
        .await
        .expect("commit exists");
    assert_eq!(
        commit.metadata.get("mlflow_run_id").map(String::as_str),
        Some(inference_run)
    );
    assert_eq!(
        commit.metadata.get("model_version").map(String::as_str),
        Some("1")
    );
    let prefix = format!("predictions/{}-v1/", model.replace('_', "-"));
    let objects: Vec<_> = stack
        .lakefs
        .list_objects(&stack.repo, commit_id, &prefix, None)
        .try_collect()
        .await
        .expect("list");
    assert_eq!(objects.len(), 25, "24 masks and the manifest");
    let run = stack.mlflow.get_run(inference_run).await.expect("run");
    assert!(
        run.info.run_name.starts_with("inference-"),
        "{}",
        run.info.run_name
    );
    assert_eq!(run.tag("lakefs_predictions_commit"), Some(commit_id));
    assert_eq!(run.tag("model_version"), Some("1"));
    assert_eq!(run.tag("training_run_id"), Some(run_id.as_str()));
    assert_eq!(run.tag("lakefs_data_commit"), Some(data_commit));
    assert!(run.metric("iou").is_some(), "metrics logged");
    assert_eq!(
        run.info.status,
        mlflow_client::RunStatus::Finished,
        "the inference run finished"
    );

    // Unknown alias / version / run: one line, exit 1.
    for args in [
        ["--alias", "nope"],
        ["--version", "99"],
        ["--run-id", "0123456789abcdef0123456789abcdef"],
    ] {
        let ran = infer(&stack, &args, None).await;
        assert_eq!(ran.code, 1, "{args:?}: {}", ran.stderr);
        assert_eq!(ran.error_lines().len(), 1, "{args:?}: {}", ran.stderr);
    }

    // A model object replaced in lakeFS after training is refused with both hashes.
    stack.replace_model(&trained, b"not the model").await;
    let refused = infer(
        &stack,
        &["--run-id", &run_id, "--output", "out/refused"],
        None,
    )
    .await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains(trained["model_sha256"].as_str().expect("sha"))
            && refused.stderr.contains(&e2e::sha256_hex(b"not the model")),
        "both hashes named: {}",
        refused.stderr
    );
    assert!(
        !stack.dir().join("out/refused").exists(),
        "nothing predicted with a refused model"
    );
}
