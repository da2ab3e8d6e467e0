//! Request bodies the server refuses instead of dropping what it cannot read.

use serde_json::json;

/// lakefs-local on a free port over a new folder (kept as long as the guard lives).
async fn start() -> (tempfile::TempDir, lakefs_local::RunningServer) {
    let dir = tempfile::tempdir().expect("tmp");
    let server = lakefs_local::spawn(lakefs_local::ServerConfig::new(dir.path()), "127.0.0.1:0")
        .await
        .expect("spawn");
    (dir, server)
}

#[tokio::test]
async fn malformed_commit_and_merge_metadata_is_refused() {
    let (_dir, server) = start().await;
    let api = format!("{}/api/v1", server.endpoint());
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        http.request(method, format!("{api}{path}"))
            .basic_auth(
                lakefs_local::DEFAULT_ACCESS_KEY_ID,
                Some(lakefs_local::DEFAULT_SECRET_ACCESS_KEY),
            )
            .json(&body)
            .send()
    };
    let created = call(
        reqwest::Method::POST,
        "/repositories",
        json!({ "name": "meta", "storage_namespace": "local://meta", "default_branch": "main" }),
    )
    .await
    .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    let branch = call(
        reqwest::Method::POST,
        "/repositories/meta/branches",
        json!({ "name": "dev", "source": "main" }),
    )
    .await
    .expect("branch");
    assert_eq!(branch.status().as_u16(), 201);
    for (path, body) in [
        (
            "/repositories/meta/branches/dev/commits",
            json!({ "message": "m", "metadata": { "n": 1 }, "allow_empty": true }),
        ),
        (
            "/repositories/meta/refs/dev/merge/main",
            json!({ "metadata": ["not", "a", "map"], "allow_empty": true }),
        ),
    ] {
        let resp = call(reqwest::Method::POST, path, body).await.expect("send");
        assert_eq!(resp.status().as_u16(), 400, "{path}");
        let body: serde_json::Value = resp.json().await.expect("json");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("metadata")),
            "{path}: {body}"
        );
    }
    // Nothing was committed on dev by the refused call.
    let log: serde_json::Value = http
        .get(format!("{api}/repositories/meta/refs/dev/commits"))
        .basic_auth(
            lakefs_local::DEFAULT_ACCESS_KEY_ID,
            Some(lakefs_local::DEFAULT_SECRET_ACCESS_KEY),
        )
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    assert_eq!(log["results"].as_array().map(Vec::len), Some(1), "{log}");
    server.stop().await;
}

#[tokio::test]
async fn a_json_body_over_the_limit_is_413_and_objects_are_not_held_to_it() {
    let (_dir, server) = start().await;
    let api = format!("{}/api/v1", server.endpoint());
    let http = reqwest::Client::new();
    let auth = |r: reqwest::RequestBuilder| {
        r.basic_auth(
            lakefs_local::DEFAULT_ACCESS_KEY_ID,
            Some(lakefs_local::DEFAULT_SECRET_ACCESS_KEY),
        )
    };
    let created = auth(http.post(format!("{api}/repositories")))
        .json(
            &json!({ "name": "big", "storage_namespace": "local://big", "default_branch": "main" }),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    let huge = "x".repeat(lakefs_local::JSON_BODY_LIMIT + 1);
    let commit = auth(http.post(format!("{api}/repositories/big/branches/main/commits")))
        .json(&json!({ "message": huge }))
        .send()
        .await
        .expect("commit");
    assert_eq!(commit.status().as_u16(), 413);
    let body: serde_json::Value = commit.json().await.expect("a JSON error");
    assert!(body["message"].is_string(), "{body}");
    let object = vec![7u8; lakefs_local::JSON_BODY_LIMIT + 1];
    let uploaded = auth(http.post(format!(
        "{api}/repositories/big/branches/main/objects?path=big.bin"
    )))
    .header("Content-Type", "application/octet-stream")
    .body(object)
    .send()
    .await
    .expect("upload");
    assert_eq!(
        uploaded.status().as_u16(),
        201,
        "{:?}",
        uploaded.text().await
    );
}
