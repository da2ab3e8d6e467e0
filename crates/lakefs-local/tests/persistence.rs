//! The store survives restarts, ignores a torn staging line (a crash mid-append), never lists a
//! repository whose creation did not complete, and answers 501 for unimplemented endpoints.

use std::collections::BTreeMap;

use lakefs_local::store::{CommitRequest, Entry, Store};

fn req(message: &str, date: i64) -> CommitRequest {
    CommitRequest {
        message: message.into(),
        committer: "admin".into(),
        date: Some(date),
        ..Default::default()
    }
}

fn entry(n: u8) -> Entry {
    Entry {
        blob: format!("{n:064x}"),
        checksum: format!("{n:032x}"),
        size: u64::from(n),
        mtime: 1,
        metadata: BTreeMap::new(),
        content_type: String::new(),
    }
}

#[test]
fn state_survives_restart_and_torn_writes() {
    let dir = tempfile::tempdir().expect("tmp");
    let head = {
        let mut s = Store::open(dir.path()).expect("open");
        s.create_repo("persist", "local://x", "main").expect("repo");
        s.stage("persist", "main", "a.txt", Some(entry(1)))
            .expect("stage");
        let c = s
            .commit("persist", "main", req("first", 10))
            .expect("commit");
        s.create_branch("persist", "dev", "main").expect("branch");
        s.stage("persist", "dev", "b.txt", Some(entry(2)))
            .expect("stage");
        s.create_tag("persist", "v1", &c.id).expect("tag");
        c.id
    };
    // A crash while appending leaves a partial line at the end of dev's staging log.
    let staging = std::fs::read_dir(dir.path().join("repos/persist/staging"))
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect::<Vec<_>>();
    for log in &staging {
        let mut bytes = std::fs::read(log).expect("read");
        if !bytes.is_empty() {
            bytes.extend_from_slice(br#"{"path":"torn.txt","entry":{"blob":"#);
            std::fs::write(log, bytes).expect("write");
        }
    }
    // A repository whose creation stopped before repo.json is not listed.
    std::fs::create_dir_all(dir.path().join("repos/half-made/commits")).expect("mkdir");

    let s = Store::open(dir.path()).expect("reopen");
    assert_eq!(s.repos.keys().collect::<Vec<_>>(), vec!["persist"]);
    assert_eq!(s.branch_commit("persist", "main").expect("main"), head);
    assert_eq!(s.resolve("persist", "v1").expect("tag").commit, head);
    let dev = s.view("persist", "dev").expect("dev view");
    assert_eq!(
        dev.keys().collect::<Vec<_>>(),
        vec!["a.txt", "b.txt"],
        "staged change kept, torn line ignored"
    );
    let committed = s.view("persist", &head).expect("commit view");
    assert_eq!(committed.keys().collect::<Vec<_>>(), vec!["a.txt"]);
}

#[test]
fn commit_ids_are_content_derived() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = Store::open(dir.path()).expect("open");
    s.create_repo("same", "local://x", "main").expect("repo");
    s.create_branch("same", "a", "main").expect("branch");
    s.create_branch("same", "b", "main").expect("branch");
    let mut ids = Vec::new();
    for branch in ["a", "b"] {
        s.stage("same", branch, "x.txt", Some(entry(3)))
            .expect("stage");
        ids.push(s.commit("same", branch, req("m", 5)).expect("commit").id);
    }
    // Same parent, tree, message, metadata, committer and date: the same id.
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0].len(), 64);
    s.stage("same", "a", "y.txt", Some(entry(4)))
        .expect("stage");
    let other = s.commit("same", "a", req("m", 5)).expect("commit").id;
    assert_ne!(other, ids[0], "another tree, another id");
}

#[tokio::test]
async fn unimplemented_endpoints_answer_501_json() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = lakefs_local::spawn(lakefs_local::ServerConfig::new(dir.path()), "127.0.0.1:0")
        .await
        .expect("spawn");
    let url = format!("{}/api/v1/repositories/x/gc/rules", server.endpoint());
    let resp = reqwest::Client::new()
        .get(&url)
        .basic_auth(
            lakefs_local::DEFAULT_ACCESS_KEY_ID,
            Some(lakefs_local::DEFAULT_SECRET_ACCESS_KEY),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 501);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("not implemented")),
        "{body}"
    );
    let unauth = reqwest::get(&url).await.expect("send");
    assert_eq!(unauth.status().as_u16(), 401);
    server.stop().await;
}
