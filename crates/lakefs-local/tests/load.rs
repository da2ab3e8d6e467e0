//! lakefs-local under load: eight clients upload, commit and merge into one branch for a
//! bounded time; afterwards no object is lost, every commit is reachable and the branch holds
//! exactly what was merged; the server is then killed (SIGKILL) and restarted on the same
//! folder, and finds the same state.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use lakefs_client::{ClientBuilder as _, LakeFsClient, LakeFsClientBuilder, UploadOptions};

const CLIENTS: usize = 8;
const FOR: Duration = Duration::from_secs(6);

/// The lakefs-local binary on a free port over `dir`.
struct Server {
    child: std::process::Child,
    endpoint: String,
}

impl Server {
    fn start(dir: &std::path::Path) -> Self {
        Self::start_with(dir, &[])
    }

    fn start_with(dir: &std::path::Path, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_lakefs-local"))
            .args(["--data-dir", &dir.to_string_lossy(), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env_remove("LAKEFS_LOCAL_SECRET_ACCESS_KEY")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start lakefs-local");
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, endpoint }
    }

    async fn client(&self) -> LakeFsClient {
        self.client_with(lakefs_local::DEFAULT_SECRET_ACCESS_KEY)
            .await
    }

    async fn client_with(&self, secret: &str) -> LakeFsClient {
        LakeFsClientBuilder::new(&self.endpoint)
            .credentials(lakefs_local::DEFAULT_ACCESS_KEY_ID, secret)
            .retry(test_support::fast_retry())
            .build()
            .await
            .expect("client")
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

/// One client's work until `deadline`: branch, three objects, commit, merge into main. Returns
/// what it merged (path -> content) and the commits it made.
async fn work(
    client: LakeFsClient,
    id: usize,
    deadline: Instant,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut merged = BTreeMap::new();
    let mut commits = Vec::new();
    let mut round = 0;
    while Instant::now() < deadline {
        let branch = format!("w{id}-{round}");
        client
            .create_branch("load", &branch, "main")
            .await
            .expect("branch");
        let mut objects = BTreeMap::new();
        for k in 0..3 {
            let path = format!("c{id}/r{round}/o{k}.txt");
            let content = format!("client {id} round {round} object {k}");
            client
                .upload_bytes(
                    "load",
                    &branch,
                    &path,
                    content.clone().into(),
                    &UploadOptions::default(),
                )
                .await
                .expect("upload");
            objects.insert(path, content);
        }
        let commit = client
            .commit(
                "load",
                &branch,
                &format!("{id}/{round}"),
                &BTreeMap::new(),
                false,
            )
            .await
            .expect("commit");
        commits.push(commit.id);
        let into_main = client
            .merge("load", &branch, "main", &Default::default())
            .await
            .expect("merge");
        commits.push(into_main);
        client.delete_branch("load", &branch).await.expect("delete");
        merged.extend(objects);
        round += 1;
    }
    (merged, commits)
}

/// The branch's objects with their contents, and whether every commit resolves.
async fn state(client: &LakeFsClient, commits: &[String]) -> (String, BTreeMap<String, String>) {
    for c in commits {
        client
            .get_commit("load", c)
            .await
            .expect("every commit is reachable");
    }
    let head = client.resolve_commit("load", "main").await.expect("head");
    let paths: Vec<String> = client
        .list_objects("load", &head, "", None)
        .map_ok(|o| o.path)
        .try_collect()
        .await
        .expect("list");
    let mut out = BTreeMap::new();
    for p in paths {
        let bytes = client
            .get_object("load", &head, &p, None)
            .await
            .expect("read");
        out.insert(p, String::from_utf8(bytes.to_vec()).expect("text"));
    }
    (head, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_lose_nothing_and_a_killed_server_restarts_with_the_same_state() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(dir.path());
    let client = server.client().await;
    let ns = format!("local://{}", dir.path().join("ns").display());
    client
        .create_repository("load", &ns, "main")
        .await
        .expect("repo");
    let deadline = Instant::now() + FOR;
    let mut tasks = Vec::new();
    for id in 0..CLIENTS {
        let c = server.client().await;
        tasks.push(tokio::spawn(work(c, id, deadline)));
    }
    let mut expected = BTreeMap::new();
    let mut commits = Vec::new();
    for t in tasks {
        let (merged, made) = t.await.expect("client task");
        expected.extend(merged);
        commits.extend(made);
    }
    assert!(
        expected.len() >= CLIENTS * 3,
        "every client merged at least once"
    );
    let (head, objects) = state(&client, &commits).await;
    assert_eq!(
        objects, expected,
        "the branch holds exactly what was merged"
    );
    let log: Vec<String> = client
        .log("load", &head)
        .map_ok(|c| c.id)
        .try_collect()
        .await
        .expect("log");
    for c in &commits {
        assert!(log.contains(c), "commit {c} is in main's history");
    }
    server.kill();
    let again = Server::start(dir.path());
    let client = again.client().await;
    let (head_after, objects_after) = state(&client, &commits).await;
    assert_eq!(
        head_after, head,
        "the same branch head after SIGKILL and restart"
    );
    assert_eq!(objects_after, objects);
    again.kill();
}

/// The secret can come from a file (a flag's value shows in `ps`): clients with it get in,
/// clients with the default secret do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_can_come_from_a_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("secret");
    std::fs::write(&file, "s3cr3t-from-a-file\n").expect("write");
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--secret-access-key-file", &file.to_string_lossy()],
    );
    let good = server.client_with("s3cr3t-from-a-file").await;
    good.current_user()
        .await
        .expect("the file's secret is accepted");
    let bad = server.client().await;
    assert!(
        bad.current_user().await.is_err(),
        "the default secret is refused"
    );
    server.kill();
}
