//! lakeFS's official Python clients (`lakefs-sdk`, the generated API client, and `lakefs`, the
//! high-level package; pinned, installed by scripts/lakefs-python.sh) against lakefs-local:
//! data scientists will point them at the quickstart's lakeFS, so they must work. With
//! `LAKEFS_TEST_ENDPOINT` set the same scripts run against lakeFS itself (the test command does
//! both), so what they assert is what lakeFS does.

/// Runs `script` (under tests/) with the pinned Python against a fresh lakefs-local, or
/// against lakeFS itself when `LAKEFS_TEST_ENDPOINT` names one (the same checks judge both);
/// returns its stdout, failing loudly with both streams when the script fails, or when
/// lakefs-local answered any request 501 (an endpoint it lacks).
async fn drive(script: &str) -> String {
    let tap: lakefs_local::state::Tap = Default::default();
    let (server, local) = match test_support::RealLakeFs::from_env() {
        Some(real) => (real, None),
        None => {
            let local = test_support::LocalLakeFs::start_with_tap(Some(tap.clone())).await;
            let server = test_support::RealLakeFs {
                endpoint: local.endpoint(),
                access_key_id: lakefs_local::DEFAULT_ACCESS_KEY_ID.into(),
                secret_access_key: lakefs_local::DEFAULT_SECRET_ACCESS_KEY.into(),
                namespace_root: format!("local://{}", local.dir.path().join("ns").display()),
            };
            (server, Some(local))
        }
    };
    let python = test_support::lakefs_python();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&server.endpoint)
        .arg(&server.access_key_id)
        .arg(&server.secret_access_key)
        .arg(&server.namespace_root)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{} failed against {}:\n{stdout}\n{stderr}",
        script.display(),
        server.endpoint
    );
    drop(local);
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
