//! Fixtures shared by the workspace's tests, in one place:
//! - [`LocalLakeFs`]: a lakefs-local server on 127.0.0.1:0 in a temporary folder, with clients;
//! - [`TestLakeFs`] / [`RealLakeFs`]: lakeFS itself when `LAKEFS_TEST_ENDPOINT` names one, else
//!   a lakefs-local server;
//! - [`mlflow_tracking_uri`] / [`mlflow_client`]: the MLflow test server, found through
//!   `MLFLOW_TEST_TRACKING_URI` or started once per test process (pinned, cached venv);
//! - [`unique`]: names that never collide between tests, runs and processes.
//!
//! A missing service is a loud failure naming the command that starts it, never a skip.

pub mod fault_proxy;
pub mod real_lakefs;
pub use fault_proxy::FaultProxy;
pub use real_lakefs::{RealLakeFs, TestLakeFs};

use lakefs_client::ClientBuilder as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use lakefs_client::{LakeFsClient, LakeFsClientBuilder, RetryPolicy};
use lakefs_local::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, RunningServer, ServerConfig, Tap,
};
use mlflow_client::{MlflowClient, MlflowClientBuilder};

/// A name unique to this process and moment: `<prefix>-<pid>-<counter>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 0xffff_ffff
    )
}

/// Fast retries for tests (20-200 ms, 10 s in all).
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        jitter: 0.25,
        max_total: Duration::from_secs(10),
    }
}

/// The workspace root (where `scripts/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A lakefs-local server in a temporary folder; dropping it stops the server.
pub struct LocalLakeFs {
    /// The server.
    pub server: RunningServer,
    /// Its data folder.
    pub dir: tempfile::TempDir,
}

impl LocalLakeFs {
    /// Starts lakefs-local on 127.0.0.1:0.
    pub async fn start() -> Self {
        Self::start_with_tap(None).await
    }

    /// Starts lakefs-local on 127.0.0.1:0, recording every response into `tap` when given.
    pub async fn start_with_tap(tap: Option<Tap>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir for lakefs-local");
        let mut config = ServerConfig::new(dir.path());
        config.tap = tap;
        let server = lakefs_local::spawn(config, "127.0.0.1:0")
            .await
            .expect("start lakefs-local on 127.0.0.1:0");
        Self { server, dir }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// A storage namespace inside the server's folder.
    pub fn namespace(&self, repo: &str) -> String {
        format!(
            "local://{}",
            self.dir.path().join("ns").join(repo).display()
        )
    }

    /// A client with the sample credentials, fast retries and `page_size` items per page.
    pub async fn client(&self, page_size: usize) -> LakeFsClient {
        LakeFsClientBuilder::new(self.endpoint())
            .credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY)
            .retry(fast_retry())
            .page_size(page_size)
            .build()
            .await
            .expect("lakeFS client")
    }
}

/// The tracking URI of the MLflow test server: `MLFLOW_TEST_TRACKING_URI` when set (the test
/// command sets it), otherwise a server started once for this test process with
/// `scripts/mlflow-server.sh` on a free port, stopped when the process ends.
pub fn mlflow_tracking_uri() -> String {
    static URI: OnceLock<String> = OnceLock::new();
    URI.get_or_init(|| {
        if let Ok(uri) = std::env::var("MLFLOW_TEST_TRACKING_URI") {
            return uri;
        }
        start_mlflow()
    })
    .clone()
}

/// A loopback TCP port that was free a moment ago (for a server a child process starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn start_mlflow() -> String {
    let script = workspace_root().join("scripts/mlflow-server.sh");
    let dir = std::env::temp_dir().join(unique("seg-mlops-mlflow"));
    let port = free_port().to_string();
    let status = std::process::Command::new(&script)
        .arg("start")
        .arg(&dir)
        .arg(&port)
        .env("MLFLOW_SERVER_OWNER_PID", std::process::id().to_string())
        .status();
    match status {
        Ok(s) if s.success() => format!("http://127.0.0.1:{port}"),
        other => panic!(
            "MLFLOW_TEST_TRACKING_URI is not set and starting MLflow with `{} start {} {port}` failed ({other:?}). \
             Run the tests with scripts/test.sh, or start MLflow yourself and export MLFLOW_TEST_TRACKING_URI",
            script.display(),
            dir.display()
        ),
    }
}

/// An MLflow server of a test's own (for fault tests that stop and restart it), started with
/// `scripts/mlflow-server.sh` on a free port; stopped when dropped.
pub struct OwnMlflow {
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnMlflow {
    /// Starts a fresh server (sqlite store and artifacts in a temporary folder).
    pub fn start() -> Self {
        let own = Self {
            dir: tempfile::tempdir().expect("tempdir for MLflow"),
            port: free_port(),
        };
        own.up();
        own
    }

    /// `http://127.0.0.1:<port>`.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port and store (after [`OwnMlflow::stop`]).
    pub fn up(&self) {
        let port = self.port.to_string();
        let dir = self.dir.path().to_string_lossy().into_owned();
        script_output("scripts/mlflow-server.sh", &["start", &dir, &port]);
    }

    /// Stops it (by its PID file).
    pub fn stop(&self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        script_output("scripts/mlflow-server.sh", &["stop", &dir]);
        // The port is free once the process is gone.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("MLflow on port {} did not stop", self.port);
    }
}

impl Drop for OwnMlflow {
    fn drop(&mut self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let _ = std::process::Command::new(workspace_root().join("scripts/mlflow-server.sh"))
            .args(["stop", &dir])
            .status();
    }
}

/// A client for the MLflow test server, checked to answer.
pub async fn mlflow_client() -> MlflowClient {
    let uri = mlflow_tracking_uri();
    let client = MlflowClientBuilder::new(&uri)
        .retry(RetryPolicy {
            max_retries: 3,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            ..RetryPolicy::default()
        })
        .build()
        .expect("MLflow client");
    if let Err(e) = client.get_experiment("0").await {
        panic!(
            "MLflow at {uri} is not usable: {e}. Start it with `scripts/mlflow-server.sh start /tmp/mlflow 5000` \
             and export MLFLOW_TEST_TRACKING_URI=http://127.0.0.1:5000"
        );
    }
    client
}

/// The Python of the MLflow venv (`MLFLOW_TEST_PYTHON`, or asked of `scripts/mlflow-server.sh`),
/// for checks with MLflow's own client.
pub fn mlflow_python() -> String {
    if let Ok(p) = std::env::var("MLFLOW_TEST_PYTHON") {
        return p;
    }
    script_output("scripts/mlflow-server.sh", &["python"])
}

/// Runs a workspace script and returns its trimmed stdout; a failure is a loud panic.
fn script_output(script: &str, args: &[&str]) -> String {
    let script = workspace_root().join(script);
    let out = std::process::Command::new(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} {} failed: {}",
        script.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A loopback TCP proxy in front of a server that counts how often `needle` (e.g. a request
/// line `POST /api/2.0/mlflow/runs/search`) appears in what clients send: proof that a client
/// really made N requests. Dropping it stops accepting connections.
pub struct CountingProxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Starts a proxy to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, needle: &'static [u8]) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let (mut client_rd, mut client_wr) = client.into_split();
                    let (mut server_rd, mut server_wr) = server.into_split();
                    let upstream = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut tail: Vec<u8> = Vec::new();
                        loop {
                            let n = match client_rd.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            // Count across chunk boundaries: keep the last needle-1 bytes.
                            let mut window = std::mem::take(&mut tail);
                            window.extend_from_slice(&buf[..n]);
                            let hits = window
                                .windows(needle.len())
                                .filter(|w| *w == needle)
                                .count();
                            counter.fetch_add(hits, Ordering::SeqCst);
                            let keep = window.len().saturating_sub(needle.len() - 1);
                            tail = window[keep..].to_vec();
                            if server_wr.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = server_wr.shutdown().await;
                    };
                    let downstream = async move {
                        let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
                        let _ = client_wr.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        });
        Self {
            endpoint,
            count,
            task,
        }
    }

    /// How often the needle has been seen so far.
    pub fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A memory figure of this process from `/proc/self/status` in KiB (`VmHWM`: peak RSS,
/// `VmRSS`: current). Panics when it cannot be read, so a memory check can never pass vacuously.
pub fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("read /proc/self/status (memory checks need Linux's procfs)")
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} figure in /proc/self/status"))
}

/// The Python with lakeFS's official clients (`lakefs`, `lakefs-sdk`), pinned:
/// `LAKEFS_TEST_PYTHON`, or installed once by `scripts/lakefs-python.sh`.
pub fn lakefs_python() -> String {
    if let Ok(p) = std::env::var("LAKEFS_TEST_PYTHON") {
        return p;
    }
    script_output("scripts/lakefs-python.sh", &[])
}

/// The Python that uses registered models with MLflow's own tools (mlflow, onnxruntime, lakefs
/// and this repository's lakefs:// plugin), pinned: `MODEL_TEST_PYTHON`, or installed once by
/// `scripts/model-python.sh`.
pub fn model_python() -> String {
    if let Ok(p) = std::env::var("MODEL_TEST_PYTHON") {
        return p;
    }
    script_output("scripts/model-python.sh", &[])
}
