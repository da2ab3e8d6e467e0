//! lakeFS's official Python clients (`lakefs-sdk`, the generated API client, and `lakefs`, the
//! high-level package; pinned, installed by scripts/lakefs-python.sh) against lakefs-local:
//! data scientists will point them at the quickstart's lakeFS, so they must work.

/// Runs `script` (under tests/) with the pinned Python against a fresh lakefs-local; returns
/// its stdout, failing loudly with both streams when the script fails, or when any request
/// was answered 501 (an endpoint lakefs-local lacks).
async fn drive(script: &str) -> String {
    let tap: lakefs_local::state::Tap = Default::default();
    let local = test_support::LocalLakeFs::start_with_tap(Some(tap.clone())).await;
    let python = test_support::lakefs_python();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
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
        "{} failed against lakefs-local:\n{stdout}\n{stderr}",
        script.display()
    );
    let missing: Vec<String> = tap
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|r| r.status == 501)
        .map(|r| format!("{} {}", r.method, r.route))
        .collect();
    assert!(
        missing.is_empty(),
        "{} called endpoints lakefs-local answers 501: {missing:?}",
        script.display()
    );
    stdout.into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lakefs_official_python_clients_work_against_lakefs_local() {
    let stdout = drive("official_clients.py").await;
    assert!(
        stdout.contains("lakefs-sdk:") && stdout.contains("lakefs: Repository"),
        "{stdout}"
    );
}

/// lakefs-spec, lakeFS's fsspec filesystem: files, listings, copies and transactions (which
/// read the repository's metadata, a 501 before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lakefs_spec_fsspec_filesystem_works_against_lakefs_local() {
    let stdout = drive("fsspec_client.py").await;
    assert!(
        stdout.contains("lakefs-spec:") && stdout.contains("aborted transaction: ok"),
        "{stdout}"
    );
}
