//! Harness of the end-to-end tests: the workspace's binaries run as processes against a
//! lakefs-local server (in the test process, port 0), or lakeFS itself when
//! `LAKEFS_TEST_ENDPOINT` names one, and the MLflow test server, each test in its own working
//! folder, lakeFS repository and MLflow experiment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use lakefs_client::LakeFsClient;
use mlflow_client::MlflowClient;
use test_support::TestLakeFs;

pub mod catalogue;

/// The folder with the workspace's built binaries: `SEG_BIN_DIR` (the test command builds them
/// first), else they are built once per test process with `cargo build --bins`.
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Ok(dir) = std::env::var("SEG_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let root = test_support::workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--bins", "--quiet"])
            .status()
            .expect("run cargo build --bins");
        assert!(status.success(), "cargo build --bins failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        target.join("debug")
    })
    .clone()
}

/// The real datasets (`SEG_DATASETS_DIR`, default `../shared/datasets`).
pub fn datasets_dir() -> PathBuf {
    std::env::var("SEG_DATASETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| test_support::workspace_root().join("../shared/datasets"))
}

/// One test's world: a lakeFS (lakefs-local or lakeFS itself), the MLflow test server, a
/// working folder, and a repository and experiment of its own.
pub struct Stack {
    /// The lakeFS server.
    pub lakefs_server: TestLakeFs,
    /// A client of it.
    pub lakefs: LakeFsClient,
    /// A client of MLflow.
    pub mlflow: MlflowClient,
    /// MLflow's URL.
    pub mlflow_uri: String,
    /// The working folder of the binaries (data/, models/, .seg-mlops/ live here).
    pub work: tempfile::TempDir,
    /// The lakeFS repository of this test.
    pub repo: String,
    /// The MLflow experiment of this test.
    pub experiment: String,
    /// Extra environment for every command.
    pub env: BTreeMap<String, String>,
}

/// What a binary did.
#[derive(Debug)]
pub struct Ran {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Ran {
    /// What a finished process printed and returned.
    pub fn from_output(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The one JSON object of `--json` on stdout.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "exactly one line on stdout:\n{}",
            self.stdout
        );
        serde_json::from_str(lines[0]).expect("stdout is JSON")
    }

    /// The `error: ...` lines on stderr.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect()
    }
}

impl Stack {
    /// Starts lakefs-local (or finds lakeFS itself) and connects to MLflow; names a repository
    /// and an experiment.
    pub async fn start(label: &str) -> Self {
        let lakefs_server = TestLakeFs::start().await;
        let (access_key_id, secret_access_key) = lakefs_server.keys();
        let lakefs = lakefs_server.client(100).await;
        let mlflow = test_support::mlflow_client().await;
        let mlflow_uri = test_support::mlflow_tracking_uri();
        let repo = test_support::unique(label)
            .to_ascii_lowercase()
            .replace('_', "-");
        let experiment = test_support::unique(&format!("e2e-{label}"));
        let work = tempfile::tempdir().expect("work dir");
        let mut env = BTreeMap::new();
        for (k, v) in [
            ("MLFLOW_TRACKING_URI", mlflow_uri.clone()),
            ("LAKECTL_SERVER_ENDPOINT_URL", lakefs_server.endpoint()),
            ("LAKECTL_CREDENTIALS_ACCESS_KEY_ID", access_key_id),
            ("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", secret_access_key),
            ("SEG_LAKEFS__REPOSITORY", repo.clone()),
            (
                "SEG_LAKEFS__STORAGE_NAMESPACE",
                lakefs_server.namespace(&repo),
            ),
            ("SEG_MLFLOW__EXPERIMENT", experiment.clone()),
            // Tiny and fast: the tests check behaviour, not accuracy.
            ("SEG_MODEL__BASE_CHANNELS", "8".into()),
            ("SEG_MODEL__DEPTH", "2".into()),
            ("SEG_TRAIN__IMAGE_SIZE", "32".into()),
            ("SEG_TRAIN__BATCH_SIZE", "8".into()),
            ("SEG_MLFLOW__OVERLAY_SAMPLES", "2".into()),
            ("SEG_DATA__SYNTHETIC_COUNT", "24".into()),
            ("SEG_DATA__SYNTHETIC_SIZE", "32".into()),
            ("SEG_RETRY__MAX_TOTAL", "5s".into()),
            ("SEG_RETRY__MIN_DELAY", "100ms".into()),
            ("SEG_RETRY__MAX_DELAY", "1s".into()),
        ] {
            env.insert(k.to_string(), v);
        }
        Self {
            lakefs_server,
            lakefs,
            mlflow,
            mlflow_uri,
            work,
            repo,
            experiment,
            env,
        }
    }

    /// The working folder.
    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    /// A command for binary `name` with this stack's environment, in its working folder.
    pub fn command(&self, name: &str, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(bin_dir().join(name));
        cmd.args(args)
            .current_dir(self.dir())
            .env_remove("RUST_LOG")
            .envs(&self.env)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// Runs binary `name` with `args` to its end.
    pub async fn run(&self, name: &str, args: &[&str]) -> Ran {
        let out = self
            .command(name, args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {name}: {e}"));
        Ran::from_output(out)
    }

    /// Runs `train --json` with `args`; returns its summary and its MLflow run.
    pub async fn train_run(&self, args: &[&str]) -> (serde_json::Value, mlflow_client::Run) {
        let mut all = args.to_vec();
        all.push("--json");
        let summary = self.run("train", &all).await.json();
        let run = self
            .mlflow
            .get_run(summary["run_id"].as_str().expect("run_id in the summary"))
            .await
            .expect("the run exists in MLflow");
        (summary, run)
    }

    /// Replaces the model object of a trained run (its `train --json` summary) on `main` with
    /// `bytes`, commits, and points the run's `model_uri` and `model_folder_uri` at that
    /// commit: a model replaced after training, at the URIs the run records.
    pub async fn replace_model(&self, trained: &serde_json::Value, bytes: &'static [u8]) {
        let uri = trained["model_uri"].as_str().expect("model_uri");
        let object = uri.splitn(5, '/').nth(4).expect("path").to_string();
        self.lakefs
            .upload_bytes(
                &self.repo,
                "main",
                &object,
                bytes.into(),
                &Default::default(),
            )
            .await
            .expect("replace");
        self.lakefs
            .commit(&self.repo, "main", "tamper", &Default::default(), false)
            .await
            .expect("commit");
        let head = self.head().await;
        let tampered = format!("lakefs://{}/{head}/{object}", self.repo);
        let run_id = trained["run_id"].as_str().expect("run_id");
        self.mlflow
            .set_tag(run_id, "model_uri", &tampered)
            .await
            .expect("retag");
        // The run's MLflow model folder, at the tampered commit too.
        let folder = object.rsplit_once('/').expect("a folder").0;
        self.mlflow
            .set_tag(
                run_id,
                "model_folder_uri",
                &format!("lakefs://{}/{head}/{folder}/", self.repo),
            )
            .await
            .expect("retag the folder");
    }

    /// The commit id the branch points at.
    pub async fn head(&self) -> String {
        self.lakefs
            .resolve_commit(&self.repo, "main")
            .await
            .expect("main branch")
    }
}

/// A running binary whose stderr is read line by line.
pub struct Running {
    /// The process (stdout piped).
    pub child: tokio::process::Child,
    /// The rest of its stderr.
    pub stderr: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
}

impl Running {
    /// Reads stderr until a line contains `needle` (within `within`); panics with what was
    /// read when the process ends first.
    pub async fn wait_for_line(&mut self, needle: &str, within: std::time::Duration) {
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout(within, self.stderr.next_line())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no line with {needle:?} within {within:?}:\n{}",
                        seen.join("\n")
                    )
                })
                .expect("read stderr")
                .unwrap_or_else(|| {
                    panic!("ended before a line with {needle:?}:\n{}", seen.join("\n"))
                });
            if line.contains(needle) {
                return;
            }
            seen.push(line);
        }
    }

    /// Waits for the end (within `within`); returns the exit code and the rest of stderr.
    pub async fn finish(
        mut self,
        within: std::time::Duration,
    ) -> (Option<i32>, Vec<String>, String) {
        let mut stderr = self.stderr;
        let rest = tokio::spawn(async move {
            let mut lines = Vec::new();
            while let Ok(Some(l)) = stderr.next_line().await {
                lines.push(l);
            }
            lines
        });
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            use tokio::io::AsyncReadExt;
            let _ = tokio::time::timeout(within, out.read_to_string(&mut stdout)).await;
        }
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the process ends in time")
            .expect("wait");
        (status.code(), rest.await.expect("stderr"), stdout)
    }
}

impl Stack {
    /// Starts binary `name` with `args`, stderr read line by line.
    pub fn spawn(&self, name: &str, args: &[&str]) -> Running {
        use tokio::io::AsyncBufReadExt;
        let mut child = self
            .command(name, args)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr piped");
        Running {
            child,
            stderr: tokio::io::BufReader::new(stderr).lines(),
        }
    }
}

/// Hex sha256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
