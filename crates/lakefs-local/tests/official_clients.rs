//! lakeFS's official Python clients (`lakefs-sdk`, the generated API client, and `lakefs`, the
//! high-level package; pinned, installed by scripts/lakefs-python.sh) against lakefs-local:
//! data scientists will point them at the quickstart's lakeFS, so they must work.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lakefs_official_python_clients_work_against_lakefs_local() {
    let local = test_support::LocalLakeFs::start().await;
    let python = test_support::lakefs_python();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/official_clients.py");
    let ns_root = format!("local://{}", local.dir.path().join("ns").display());
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(local.endpoint())
        .arg(lakefs_local::DEFAULT_ACCESS_KEY_ID)
        .arg(lakefs_local::DEFAULT_SECRET_ACCESS_KEY)
        .arg(&ns_root)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the official clients failed against lakefs-local:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("lakefs-sdk:") && stdout.contains("lakefs: Repository"),
        "{stdout}"
    );
}
