//! Artifacts through the proxy of a real MLflow server: a 50 MB round trip with flat memory
//! (this file is its own test binary, so the process's peak RSS is this test's alone),
//! listing and deletion.
#![allow(clippy::too_many_lines)] // end-to-end scenarios read best in one piece

use std::io::{Read, Write};
use std::path::Path;

use mlflow_client::*;
use sha2::{Digest, Sha256};

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

#[tokio::test]
async fn fifty_megabytes_round_trip_with_flat_memory() {
    let client = test_support::mlflow_client().await;
    let exp = client
        .get_or_create_experiment(&test_support::unique("exp-artifacts"), &[])
        .await
        .expect("exp");
    let run = client
        .create_run(&exp.experiment_id, NewRun::default())
        .await
        .expect("run");
    let (id, root) = (run.info.run_id.clone(), run.info.artifact_uri.clone());
    assert!(root.starts_with("mlflow-artifacts:"), "{root}");

    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).expect("create"));
        let mut block = vec![0u8; 1 << 20];
        for i in 0..50u32 {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (j as u32).wrapping_mul(31).wrapping_add(i) as u8;
            }
            f.write_all(&block).expect("write");
        }
    }
    let expected = sha256_file(&src);
    let baseline = test_support::proc_status_kib("VmRSS");

    client
        .upload_artifact(&root, "models/big file.bin", &src)
        .await
        .expect("upload");
    let dest = dir.path().join("out/big.bin");
    let n = client
        .download_artifact(&root, "models/big file.bin", &dest)
        .await
        .expect("download");
    assert_eq!(n, 50 << 20);
    assert_eq!(sha256_file(&dest), expected);
    let peak_growth_mib = (test_support::proc_status_kib("VmHWM").saturating_sub(baseline)) / 1024;
    assert!(
        peak_growth_mib < 30,
        "peak RSS grew {peak_growth_mib} MiB for a 50 MiB round trip"
    );

    let top = client.list_artifacts(&id, "").await.expect("list");
    assert!(
        top.iter().any(|f| f.path == "models" && f.is_dir),
        "{top:?}"
    );
    let files = client.list_artifacts(&id, "models").await.expect("list");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].file_size, 50 << 20);

    client
        .delete_artifact(&root, "models/big file.bin")
        .await
        .expect("delete");
    assert!(
        client
            .list_artifacts(&id, "models")
            .await
            .expect("list")
            .is_empty()
    );
    let err = client
        .download_artifact(&root, "models/big file.bin", &dest)
        .await
        .expect_err("deleted");
    assert!(err.is_not_found(), "a deleted artifact is not found: {err}");
    // A folder upload keeps relative paths.
    let folder = dir.path().join("report");
    std::fs::create_dir_all(folder.join("plots")).expect("mkdir");
    std::fs::write(folder.join("config.toml"), "a = 1").expect("write");
    std::fs::write(folder.join("plots/curve.png"), "png").expect("write");
    let sent = client
        .upload_artifact_dir(&root, "run-report", &folder)
        .await
        .expect("upload folder");
    assert_eq!(sent, 2);
    let listed = client
        .list_artifacts(&id, "run-report")
        .await
        .expect("list");
    let mut names: Vec<(&str, bool)> = listed.iter().map(|f| (f.path.as_str(), f.is_dir)).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("run-report/config.toml", false),
            ("run-report/plots", true)
        ]
    );
    let plots = client
        .list_artifacts(&id, "run-report/plots")
        .await
        .expect("list");
    assert_eq!(plots[0].path, "run-report/plots/curve.png");
    assert_eq!(plots[0].file_size, 3);
    assert!(
        client
            .upload_artifact(&root, "../escape", &src)
            .await
            .is_err()
    );
    RunGuard::new(client, run).finish().await.expect("finish");
}
