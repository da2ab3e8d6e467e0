//! The lineage under misuse, faults and concurrency: infer
//! never writes over ground truth, bad data never reaches the branch, concurrent trains each
//! record exactly their own data, names that cannot be keys are refused, register_model only
//! takes training runs, MLflow gone at the end leaves no model on the branch, credentials in
//! the tracking URI appear nowhere, path keys cannot escape, and an interrupt says what
//! happened; plus what killed processes leave behind.
#![allow(clippy::too_many_lines)] // end-to-end scenarios read best in one piece

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::{Ran, Stack};
use futures::TryStreamExt;
use mlflow_client::{NewRun, RunStatus, Tag};

/// A dataset folder of `n` pairs (`p<seed>_<i>.png`, 32x32 colour images with a binary mask
/// of a square), different for each seed.
fn dataset(dir: &Path, n: usize, seed: u32) -> PathBuf {
    std::fs::create_dir_all(dir.join("images")).expect("mkdir");
    std::fs::create_dir_all(dir.join("masks")).expect("mkdir");
    for i in 0..n {
        let name = format!("p{seed}_{i}.png");
        let (x0, size) = ((i as u32 * 3 + seed) % 16, 8 + (i as u32 % 8));
        let inside = |x: u32, y: u32| x >= x0 && x < x0 + size && y >= x0 && y < x0 + size;
        let img = image::RgbImage::from_fn(32, 32, |x, y| {
            let v = if inside(x, y) { 200 } else { 40 };
            let g = (u32::from(v) / 2 + seed * 7) % 255;
            image::Rgb([v, g as u8, 255 - v])
        });
        img.save(dir.join("images").join(&name)).expect("image");
        let mask = image::GrayImage::from_fn(32, 32, |x, y| {
            image::Luma([if inside(x, y) { 255 } else { 0 }])
        });
        mask.save(dir.join("masks").join(&name)).expect("mask");
    }
    dir.to_path_buf()
}

/// Renames the `n` pairs that [`dataset`] wrote for `seed` to the names of seed 99, so that
/// folders share their file names but not their contents.
fn same_names(dir: &Path, n: usize, seed: u32) {
    for sub in ["images", "masks"] {
        for i in 0..n {
            std::fs::rename(
                dir.join(sub).join(format!("p{seed}_{i}.png")),
                dir.join(sub).join(format!("p99_{i}.png")),
            )
            .expect("rename");
        }
    }
}

/// The object paths under `prefix` at `reference`.
async fn objects(stack: &Stack, reference: &str, prefix: &str) -> BTreeSet<String> {
    stack
        .lakefs
        .list_objects(&stack.repo, reference, prefix, None)
        .map_ok(|o| o.path)
        .try_collect()
        .await
        .expect("list")
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// The single `error:` line of a run that must have failed with `code`, containing `needle`.
fn one_error(ran: &Ran, code: i32, needle: &str) {
    assert_eq!(ran.code, code, "stderr: {}", ran.stderr);
    let lines = ran.error_lines();
    assert_eq!(lines.len(), 1, "exactly one error line: {}", ran.stderr);
    assert!(
        lines[0].contains(needle),
        "{needle:?} not in {:?}",
        lines[0]
    );
}

/// 2: a folder with one bad pair never replaces the good data on the branch; the message
/// names the user's own file; a later plain train still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_never_reaches_the_branch() {
    let stack = Stack::start("bad-data").await;
    let good = dataset(&stack.dir().join("good"), 8, 1);
    let first = stack
        .run(
            "train",
            &[
                "--data-dir",
                good.to_str().expect("path"),
                "--epochs",
                "1",
                "--quiet",
            ],
        )
        .await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let head = stack.head().await;
    let before = objects(&stack, "main", "data/").await;
    assert_eq!(before.len(), 16, "{before:?}");
    let png = |w: u32, h: u32| {
        let mut out = Vec::new();
        image::GrayImage::new(w, h)
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("png");
        out
    };
    type Spoil = fn(&Path, &dyn Fn(u32, u32) -> Vec<u8>);
    let cases: Vec<(&str, Spoil, &str)> = vec![
        (
            "image without mask",
            |d, _| std::fs::remove_file(d.join("masks/p2_0.png")).expect("rm"),
            "p2_0.png (no mask)",
        ),
        (
            "mask without image",
            |d, _| std::fs::remove_file(d.join("images/p2_1.png")).expect("rm"),
            "p2_1.png (no image)",
        ),
        (
            "truncated JPEG",
            |d, _| {
                std::fs::remove_file(d.join("images/p2_2.png")).expect("rm");
                std::fs::write(d.join("images/p2_2.jpg"), b"\xff\xd8\xff\xe0\x00\x10JFIF")
                    .expect("write");
            },
            "p2_2.jpg",
        ),
        (
            "0-byte PNG",
            |d, _| std::fs::write(d.join("images/p2_3.png"), b"").expect("write"),
            "p2_3.png",
        ),
        (
            "text named .png",
            |d, _| std::fs::write(d.join("masks/p2_4.png"), b"hello, world\n").expect("write"),
            "p2_4.png",
        ),
        (
            "mask of another size",
            |d, png| std::fs::write(d.join("masks/p2_5.png"), png(16, 16)).expect("write"),
            "p2_5.png",
        ),
    ];
    for (what, spoil, needle) in cases {
        let bad = dataset(
            &stack.dir().join(format!("bad-{}", what.replace(' ', "-"))),
            8,
            2,
        );
        spoil(&bad, &png);
        let ran = stack
            .run(
                "train",
                &["--data-dir", bad.to_str().expect("path"), "--quiet"],
            )
            .await;
        one_error(&ran, 1, needle);
        assert!(
            ran.error_lines()[0].contains(bad.to_str().expect("path")),
            "{what}: names the user's folder, not a cache copy: {}",
            ran.stderr
        );
        assert_eq!(stack.head().await, head, "{what}: the branch is untouched");
    }
    // An index mask with a class out of range.
    let index = dataset(&stack.dir().join("bad-index"), 8, 3);
    let ids = image::GrayImage::from_fn(32, 32, |x, _| image::Luma([if x > 20 { 7 } else { 1 }]));
    ids.save(index.join("masks/p3_0.png")).expect("mask");
    let mut cmd = stack.command(
        "train",
        &["--data-dir", index.to_str().expect("path"), "--quiet"],
    );
    cmd.env("SEG_DATA__MASK_ENCODING", "index")
        .env("SEG_DATA__NUM_CLASSES", "3");
    let ran = Ran::from_output(cmd.output().await.expect("run"));
    one_error(&ran, 1, "p3_0.png");
    assert_eq!(stack.head().await, head);
    assert_eq!(objects(&stack, "main", "data/").await, before);
    // The branch still holds good data: a plain train (data from lakeFS) works.
    let again = stack.run("train", &["--epochs", "1", "--quiet"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
}

/// 3: concurrent trains with different folders each record the commit their own transaction
/// made (exactly their folder), and the branch ends with one folder, never a union.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_trains_each_record_exactly_their_own_data() {
    let stack = Stack::start("concurrent").await;
    // Two, then four folders of different names; then two whose files share their names but
    // not their contents (the merges conflict path by path).
    for (round, count) in [(0usize, 2usize), (1, 4), (2, 2)] {
        let folders: Vec<PathBuf> = (0..count)
            .map(|i| {
                let dir = stack.dir().join(format!("c{round}-{i}"));
                let folder = dataset(&dir, 6 + 2 * i, (10 * round + i) as u32);
                if round == 2 {
                    same_names(&folder, 6 + 2 * i, (10 * round + i) as u32);
                }
                folder
            })
            .collect();
        let runs: Vec<_> = folders
            .iter()
            .map(|f| {
                stack.spawn(
                    "train",
                    &[
                        "--data-dir",
                        f.to_str().expect("path"),
                        "--epochs",
                        "1",
                        "--json",
                        "--quiet",
                    ],
                )
            })
            .collect();
        let mut commits = Vec::new();
        for (run, folder) in runs.into_iter().zip(&folders) {
            let (code, rest, stdout) = run.finish(Duration::from_secs(300)).await;
            assert_eq!(code, Some(0), "{}", rest.join("\n"));
            let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
            let d = summary["data_commit"].as_str().expect("D").to_string();
            let want: BTreeSet<String> = names(&folder.join("images"))
                .into_iter()
                .map(|n| format!("data/images/{n}"))
                .collect();
            assert_eq!(
                objects(&stack, &d, "data/images/").await,
                want,
                "the data commit of {} holds exactly its folder",
                folder.display()
            );
            let run = stack
                .mlflow
                .get_run(summary["run_id"].as_str().expect("run"))
                .await
                .expect("run");
            assert_eq!(run.tag("lakefs_data_commit"), Some(d.as_str()));
            commits.push(d);
        }
        let distinct: BTreeSet<&String> = commits.iter().collect();
        assert_eq!(
            distinct.len(),
            count,
            "one data commit per run: {commits:?}"
        );
        let on_main = objects(&stack, "main", "data/images/").await;
        assert!(
            folders.iter().any(|f| {
                let want: BTreeSet<String> = names(&f.join("images"))
                    .into_iter()
                    .map(|n| format!("data/images/{n}"))
                    .collect();
                want == on_main
            }),
            "main holds one of the folders, not a union: {on_main:?}"
        );
    }
}

/// 4: file names that are not UTF-8 are refused, naming the file; nothing is uploaded.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_cannot_be_keys_are_refused() {
    use std::os::unix::ffi::OsStrExt;
    let stack = Stack::start("utf8").await;
    let dir = dataset(&stack.dir().join("odd"), 6, 4);
    for sub in ["images", "masks"] {
        for byte in [0xffu8, 0xfe] {
            let bytes = [b'x', byte, b'.', b'p', b'n', b'g'];
            let name = std::ffi::OsStr::from_bytes(&bytes);
            std::fs::copy(dir.join(sub).join("p4_0.png"), dir.join(sub).join(name)).expect("copy");
        }
    }
    let ran = stack
        .run("train", &["--data-dir", dir.to_str().expect("path")])
        .await;
    one_error(&ran, 1, "not valid UTF-8");
    assert!(
        stack.lakefs.get_repository(&stack.repo).await.is_err()
            || objects(&stack, "main", "data/").await.is_empty(),
        "nothing uploaded"
    );
}

/// Two folders, one of negatives (empty masks), train as one dataset in one data commit: the
/// split validates negatives apart from the pairs with objects, each epoch draws its share of
/// negatives, and the run logs the false-alarm rate on them; the threshold chosen on
/// validation is the checkpoint's; a file stem in both folders is refused before anything is
/// uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_folders_train_as_one_dataset_with_negatives_and_a_chosen_threshold() {
    let stack = Stack::start("union").await;
    let with_objects = dataset(&stack.dir().join("objects"), 10, 3);
    let healthy = dataset(&stack.dir().join("healthy"), 10, 4);
    for name in names(&healthy.join("masks")) {
        image::GrayImage::new(32, 32)
            .save(healthy.join("masks").join(name))
            .expect("empty mask");
    }
    let config = stack.dir().join("negatives.toml");
    std::fs::write(
        &config,
        "[train]\nnegative_fraction = 0.2\nchoose_threshold = true\n",
    )
    .expect("write");
    let (summary, run) = stack
        .train_run(&[
            "--config",
            config.to_str().expect("path"),
            "--data-dir",
            with_objects.to_str().expect("path"),
            "--data-dir",
            healthy.to_str().expect("path"),
            "--epochs",
            "1",
            "--quiet",
        ])
        .await;
    let commit = summary["data_commit"].as_str().expect("data commit");
    let stored = objects(&stack, commit, "data/").await;
    for (folder, n) in [(&with_objects, 10), (&healthy, 10)] {
        for sub in ["images", "masks"] {
            let files = names(&folder.join(sub));
            assert_eq!(files.len(), n);
            for file in files {
                assert!(
                    stored.contains(&format!("data/{sub}/{file}")),
                    "{sub}/{file} of {} is in the data commit: {stored:?}",
                    folder.display()
                );
            }
        }
    }
    assert_eq!(stored.len(), 40, "nothing else: {stored:?}");
    assert_eq!(run.param("negative_fraction"), Some("0.2"));
    // 8 + 8 pairs train, 2 + 2 validate (each side split on its own at 0.2).
    assert_eq!(run.param("train_size"), Some("16"));
    for key in [
        "val_false_alarm_rate",
        "val_positive_dice",
        "false_alarm_rate",
        "positive_dice",
    ] {
        let value = run.metric(key).unwrap_or_else(|| panic!("metric {key}"));
        assert!((0.0..=1.0).contains(&value), "{key} = {value}");
    }
    // The threshold chosen on validation is the checkpoint's, which infer and ONNX apply.
    let threshold = run.metric("threshold").expect("threshold");
    assert!((0.1..=0.9).contains(&threshold), "{threshold}");
    let model_commit = summary["model_commit"].as_str().expect("model commit");
    let run_id = summary["run_id"].as_str().expect("run id");
    let meta: serde_json::Value = serde_json::from_slice(
        &stack
            .lakefs
            .get_object(
                &stack.repo,
                model_commit,
                &format!("models/{run_id}/model.json"),
                None,
            )
            .await
            .expect("model.json in the model commit"),
    )
    .expect("json");
    let stored = meta["threshold"].as_f64().expect("threshold in model.json");
    assert!(
        (stored - threshold).abs() < 1e-6,
        "{stored} against {threshold}"
    );

    // Refused before anything is uploaded: a file stem in both folders, and one pair with
    // objects beside the negatives (too few to split).
    let twice = dataset(&stack.dir().join("twice"), 2, 3);
    let lone = dataset(&stack.dir().join("lone"), 1, 5);
    let before = stack.head().await;
    for (folders, needles) in [
        ([&with_objects, &twice], &["is in both"][..]),
        (
            [&lone, &healthy],
            &["1 of the 11 pairs have foreground", "nothing was uploaded"][..],
        ),
    ] {
        let [first, second] = folders.map(|f| f.to_str().expect("path"));
        let ran = stack
            .run(
                "train",
                &["--data-dir", first, "--data-dir", second, "--quiet"],
            )
            .await;
        one_error(&ran, 1, needles[0]);
        for needle in needles {
            assert!(ran.stderr.contains(needle), "{needle}: {}", ran.stderr);
        }
        assert_eq!(stack.head().await, before, "nothing uploaded");
    }
}

/// 1 and 5: infer refuses to write over ground truth (a dataset with PNG masks), and
/// register_model takes only training runs, by default and by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ground_truth_is_never_overwritten_and_inference_runs_are_not_registered() {
    let stack = Stack::start("truth").await;
    let lenient = stack.dir().join("lenient.toml");
    std::fs::write(&lenient, "[register]\ncriteria = [\"iou >= 0.0\"]\n").expect("write");
    let lenient = lenient.to_str().expect("path").to_string();
    let ds = dataset(&stack.dir().join("ds"), 8, 5);
    let (trained, _) = stack
        .train_run(&[
            "--data-dir",
            ds.to_str().expect("path"),
            "--epochs",
            "1",
            "--quiet",
        ])
        .await;
    let reg = stack
        .run(
            "register_model",
            &["--json", "--quiet", "--config", &lenient],
        )
        .await
        .json();
    assert_eq!(reg["run_id"], trained["run_id"]);
    let masks_before: Vec<(String, Vec<u8>)> = names(&ds.join("masks"))
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(ds.join("masks").join(&n)).expect("read");
            (n, bytes)
        })
        .collect();
    let ran = stack
        .run(
            "infer",
            &[
                "--input",
                ds.to_str().expect("path"),
                "--output",
                ds.join("masks").to_str().expect("path"),
            ],
        )
        .await;
    one_error(&ran, 2, "would overwrite the ground truth");
    for (n, bytes) in &masks_before {
        assert_eq!(
            &std::fs::read(ds.join("masks").join(n)).expect("read"),
            bytes,
            "{n} untouched"
        );
    }
    // A folder with a file infer did not write is refused too; a fresh folder works, and
    // writing there again needs --overwrite.
    let out = stack.dir().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("p5_0.png"), b"mine").expect("write");
    let args = [
        "--input",
        ds.to_str().expect("path"),
        "--output",
        out.to_str().expect("path"),
    ];
    one_error(&stack.run("infer", &args).await, 2, "did not write");
    assert_eq!(std::fs::read(out.join("p5_0.png")).expect("read"), b"mine");
    std::fs::remove_file(out.join("p5_0.png")).expect("rm");
    assert_eq!(stack.run("infer", &args).await.code, 0);
    one_error(&stack.run("infer", &args).await, 2, "--overwrite");
    let mut again = args.to_vec();
    again.push("--overwrite");
    assert_eq!(stack.run("infer", &again).await.code, 0);
    // --output equal to the input folder: said as such.
    let same = stack
        .run(
            "infer",
            &[
                "--input",
                out.to_str().expect("path"),
                "--output",
                out.to_str().expect("path"),
            ],
        )
        .await;
    one_error(&same, 2, "is the input folder");

    // After infer --commit, a plain register_model still takes the training run.
    let committed = stack
        .run(
            "infer",
            &["--commit", "--json", "--quiet", "--output", "out2"],
        )
        .await;
    assert_eq!(committed.code, 0, "{}", committed.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(committed.stdout.lines().last().expect("summary line")).expect("json");
    let inference_run = summary["inference_run_id"]
        .as_str()
        .expect("run")
        .to_string();
    let again = stack
        .run(
            "register_model",
            &["--json", "--quiet", "--config", &lenient],
        )
        .await
        .json();
    assert_eq!(
        again["run_id"], trained["run_id"],
        "the training run, not the inference run"
    );
    assert_eq!(again["created"], false, "no new version");
    let by_id = stack
        .run("register_model", &["--run-id", &inference_run])
        .await;
    one_error(&by_id, 1, "inference run");
}

/// 7: a password in MLFLOW_TRACKING_URI appears in no output of a whole pipeline, nor in
/// what MLflow stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_tracking_uri_appear_nowhere() {
    let mut stack = Stack::start("secret-uri").await;
    let secret = "pa55-w0rd-in-uri";
    let with_secret = stack
        .mlflow_uri
        .replacen("http://", &format!("http://alice:{secret}@"), 1);
    stack.env.insert("MLFLOW_TRACKING_URI".into(), with_secret);
    let lenient = stack.dir().join("lenient.toml");
    std::fs::write(&lenient, "[register]\ncriteria = [\"iou >= 0.0\"]\n").expect("write");
    let lenient = lenient.to_str().expect("path").to_string();
    let mut outputs = Vec::new();
    for (name, args) in [
        ("train", vec!["--epochs", "1", "--json"]),
        ("train", vec!["--print-config"]),
        ("register_model", vec!["--json", "--config", &lenient]),
        ("infer", vec!["--commit", "--json", "--output", "out"]),
        ("train", vec!["--status"]),
    ] {
        let ran = stack.run(name, &args).await;
        assert_eq!(ran.code, 0, "{name} {args:?}: {}", ran.stderr);
        outputs.push(format!("{}\n{}", ran.stdout, ran.stderr));
    }
    let trained: serde_json::Value =
        serde_json::from_str(outputs[0].lines().next().expect("json")).expect("json");
    let run_id = trained["run_id"].as_str().expect("run");
    let run = stack.mlflow.get_run(run_id).await.expect("run");
    outputs.push(format!("{:?}", run.data));
    let config = stack.dir().join("config-artifact.toml");
    stack
        .mlflow
        .download_artifact(&run.info.artifact_uri, "config.toml", &config)
        .await
        .expect("artifact");
    outputs.push(std::fs::read_to_string(&config).expect("read"));
    for (i, text) in outputs.iter().enumerate() {
        assert!(
            !text.contains(secret),
            "output {i} holds the secret: {text}"
        );
    }
    assert!(
        trained["run_url"]
            .as_str()
            .is_some_and(|u| !u.contains("alice"))
    );
}

/// 8 and the branch: a path key that leaves the repository's folders, and a mistyped branch,
/// fail before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaping_paths_and_missing_branches_are_refused_up_front() {
    let stack = Stack::start("paths").await;
    let mut cmd = stack.command("train", &["--epochs", "1"]);
    cmd.env("SEG_LAKEFS__IMAGES_PATH", "../../../../tmp/escape");
    let ran = Ran::from_output(cmd.output().await.expect("run"));
    one_error(&ran, 2, "lakefs.images_path");
    assert!(
        stack.lakefs.get_repository(&stack.repo).await.is_err(),
        "no repository made"
    );
    assert!(!stack.dir().join(".seg-mlops").exists(), "nothing cached");
    // Make the repository, then mistype the branch.
    assert_eq!(
        stack.run("train", &["--epochs", "1", "--quiet"]).await.code,
        0
    );
    let mut cmd = stack.command("train", &["--epochs", "1"]);
    cmd.env("SEG_LAKEFS__BRANCH", "mian");
    let ran = Ran::from_output(cmd.output().await.expect("run"));
    one_error(&ran, 1, "branch \"mian\" does not exist");
    assert!(stack.lakefs.get_branch(&stack.repo, "mian").await.is_err());
    let mut cmd = stack.command("train", &["--epochs", "1", "--quiet", "--create-branch"]);
    cmd.env("SEG_LAKEFS__BRANCH", "mian");
    assert_eq!(cmd.status().await.expect("run").code(), Some(0));
    assert!(stack.lakefs.get_branch(&stack.repo, "mian").await.is_ok());
}

/// Left behind: a stale temporary branch of a process that is gone is removed by the next
/// run (a young one, or a live one, stays); a RUNNING run of a process that is gone is ended
/// FAILED; `train --status` lists what remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_run_cleans_up_after_killed_processes() {
    let stack = Stack::start("leftovers").await;
    assert_eq!(
        stack.run("train", &["--epochs", "1", "--quiet"]).await.code,
        0
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host_part: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    // A process id that is not running: the largest pid the kernel would give, plus one.
    let dead: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(4_194_304)
        + 1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let stale = format!("tx-main-{host_part}_p{dead}_0-{}", now - 3600);
    let young = format!("tx-main-{host_part}_p{dead}_1-{now}");
    let alive = format!(
        "tx-main-{host_part}_p{}_2-{}",
        std::process::id(),
        now - 3600
    );
    for b in [&stale, &young, &alive] {
        stack
            .lakefs
            .create_branch(&stack.repo, b, "main")
            .await
            .expect("branch");
    }
    let experiment = stack
        .mlflow
        .get_experiment_by_name(&stack.experiment)
        .await
        .expect("experiment")
        .expect("exists");
    let orphan = stack
        .mlflow
        .create_run(
            &experiment.experiment_id,
            NewRun {
                run_name: Some("killed".into()),
                tags: vec![
                    Tag::new("seg_mlops.host", &host),
                    Tag::new("seg_mlops.pid", dead.to_string()),
                ],
                ..NewRun::default()
            },
        )
        .await
        .expect("run");
    let status = stack.run("train", &["--status"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains(&stale) && status.stdout.contains(&orphan.info.run_id),
        "{}",
        status.stdout
    );
    let next = stack.run("train", &["--epochs", "1"]).await;
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert!(
        next.stderr.contains(&stale),
        "the deletion is logged: {}",
        next.stderr
    );
    let branches: BTreeSet<String> = stack
        .lakefs
        .list_branches(&stack.repo)
        .map_ok(|b| b.id)
        .try_collect()
        .await
        .expect("branches");
    assert!(!branches.contains(&stale), "{branches:?}");
    assert!(
        branches.contains(&young) && branches.contains(&alive),
        "{branches:?}"
    );
    let ended = stack
        .mlflow
        .get_run(&orphan.info.run_id)
        .await
        .expect("run");
    assert_eq!(ended.info.status, RunStatus::Failed);
    assert!(ended.tag("error").is_some_and(|e| e.contains("is gone")));
}

/// 6: MLflow gone for good at the end of a training: the model never reaches the branch, it
/// is kept locally and the line says where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_gone_at_the_end_leaves_no_model_on_the_branch() {
    let own = tokio::task::spawn_blocking(test_support::OwnMlflow::start)
        .await
        .expect("start MLflow");
    let mut stack = Stack::start("mlflow-gone").await;
    stack.env.insert("MLFLOW_TRACKING_URI".into(), own.uri());
    stack
        .env
        .insert("SEG_TRAIN__TIME_BUDGET_SECS".into(), "8".into());
    let mut train = stack.spawn("train", &["--epochs", "1000"]);
    train
        .wait_for_line("epoch   1/", Duration::from_secs(120))
        .await;
    let own = tokio::task::spawn_blocking(move || {
        own.stop();
        own
    })
    .await
    .expect("stop MLflow");
    let (code, rest, _) = train.finish(Duration::from_secs(180)).await;
    assert_eq!(code, Some(1), "{}", rest.join("\n"));
    let errors: Vec<&String> = rest.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{}", rest.join("\n"));
    assert!(
        errors[0].contains("kept at") && errors[0].contains("model.segm"),
        "says where the model is: {}",
        errors[0]
    );
    assert!(
        objects(&stack, "main", "models/").await.is_empty(),
        "no model on the branch"
    );
    drop(own);
}

/// Sends SIGINT to a running binary.
fn interrupt(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
}

/// 9: Ctrl-C during the upload says what happened (nothing merged and the branch without the
/// data, or the data commit that was merged); a second Ctrl-C stops at once with a last line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_during_upload_says_what_was_merged() {
    let stack = Stack::start("interrupt").await;
    let datasets = e2e::datasets_dir();
    let kvasir = datasets.join("kvasir-seg");
    assert!(kvasir.is_dir(), "{} has no kvasir-seg", datasets.display());
    let args = [
        "--data-dir",
        kvasir.to_str().expect("path"),
        "--epochs",
        "1",
    ];
    let mut train = stack.spawn("train", &args);
    train
        .wait_for_line("uploading", Duration::from_secs(300))
        .await;
    interrupt(train.child.id().expect("pid"));
    let (code, rest, _) = train.finish(Duration::from_secs(300)).await;
    assert_eq!(code, Some(130), "{}", rest.join("\n"));
    let errors: Vec<&String> = rest.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{}", rest.join("\n"));
    let on_main = objects(&stack, "main", "data/images/").await;
    if errors[0].contains("nothing was merged") {
        assert!(on_main.is_empty(), "said nothing was merged: {on_main:?}");
    } else {
        let said = errors[0]
            .split("the data commit ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .expect("names the data commit");
        assert_eq!(objects(&stack, said, "data/images/").await, on_main);
        assert_eq!(on_main.len(), names(&kvasir.join("images")).len());
    }
    // Twice: stopped at once, with a last line.
    let mut cmd_env = stack.spawn("train", &args);
    cmd_env
        .wait_for_line("uploading", Duration::from_secs(300))
        .await;
    let pid = cmd_env.child.id().expect("pid");
    interrupt(pid);
    tokio::time::sleep(Duration::from_millis(100)).await;
    interrupt(pid);
    let (code, rest, _) = cmd_env.finish(Duration::from_secs(60)).await;
    assert_eq!(code, Some(130), "{}", rest.join("\n"));
    assert!(
        rest.iter()
            .any(|l| l.starts_with("error: interrupted twice")),
        "{}",
        rest.join("\n")
    );
}

/// Left behind: infer --commit with an unreadable input commits the other masks and ends its
/// run FAILED naming the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_around_unreadable_inputs_fails_its_run() {
    let stack = Stack::start("commit-failed").await;
    let lenient = stack.dir().join("lenient.toml");
    std::fs::write(&lenient, "[register]\ncriteria = [\"iou >= 0.0\"]\n").expect("write");
    stack.train_run(&["--epochs", "1", "--quiet"]).await;
    let reg = stack
        .run(
            "register_model",
            &["--quiet", "--config", lenient.to_str().expect("path")],
        )
        .await;
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    let input = dataset(&stack.dir().join("in"), 3, 6).join("images");
    std::fs::write(input.join("broken.png"), b"not a png").expect("write");
    let ran = stack
        .run(
            "infer",
            &[
                "--input",
                input.to_str().expect("path"),
                "--commit",
                "--json",
                "--output",
                "out",
            ],
        )
        .await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(ran.stdout.lines().last().expect("summary")).expect("json");
    assert_eq!(summary["images"], 3);
    let run = stack
        .mlflow
        .get_run(summary["inference_run_id"].as_str().expect("run"))
        .await
        .expect("run");
    assert_eq!(run.info.status, RunStatus::Failed);
    assert!(
        run.tag("error").is_some_and(|e| e.contains("broken.png")),
        "{:?}",
        run.tag("error")
    );
    assert!(
        summary["predictions_commit"].as_str().is_some(),
        "the masks were committed"
    );
}
