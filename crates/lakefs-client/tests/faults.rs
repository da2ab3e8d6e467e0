//! Faults: transient 503/429 answers are retried to success (honouring Retry-After), a
//! connection lost mid-download is retried, a permanent 500 fails clearly within the bounded
//! time, wrong credentials are Unauthorized, listed paths that would escape the download
//! folder are refused, and a request whose connection was refused (a server restarting) is
//! sent again whatever its method.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lakefs_client::*;
use serde_json::json;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn client(endpoint: &str, retry: RetryPolicy) -> LakeFsClient {
    LakeFsClientBuilder::new(endpoint)
        .credentials("AKIA", "secret")
        .retry(retry)
        .build()
        .await
        .expect("client")
}

fn repo_body() -> serde_json::Value {
    json!({"id": "flaky", "creation_date": 1, "default_branch": "main", "storage_namespace": "local://x"})
}

#[tokio::test]
async fn transient_503_and_429_are_retried_to_success() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let app = Router::new().route(
        "/api/v1/repositories/{repository}",
        get(move || {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 | 1 => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::RETRY_AFTER, "0")],
                        axum::Json(json!({"message": "busy"})),
                    )
                        .into_response(),
                    2 => (
                        StatusCode::TOO_MANY_REQUESTS,
                        axum::Json(json!({"message": "slow down"})),
                    )
                        .into_response(),
                    _ => axum::Json(repo_body()).into_response(),
                }
            }
        }),
    );
    let endpoint = serve(app).await;
    let repo = client(&endpoint, test_support::fast_retry())
        .await
        .get_repository("flaky")
        .await
        .expect("retried to success");
    assert_eq!(repo.id, "flaky");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn connection_reset_mid_download_is_retried() {
    const SIZE: usize = 200_000;
    let content: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    let md5 = {
        use md5::{Digest, Md5};
        hex::encode(Md5::digest(&content))
    };
    let gets = Arc::new(AtomicUsize::new(0));
    let (seen, body) = (gets.clone(), content.clone());
    let stat = json!({"path": "big.bin", "path_type": "object", "physical_address": "local://x", "checksum": md5, "size_bytes": SIZE, "mtime": 1});
    let app = Router::new()
        .route(
            "/api/v1/repositories/{repository}/refs/{ref}/objects/stat",
            get(move || async move { axum::Json(stat) }),
        )
        .route(
            "/api/v1/repositories/{repository}/refs/{ref}/objects",
            get(move || {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                async move {
                    let stream: Body = if n == 0 {
                        // Half the bytes, then the connection breaks.
                        let half = bytes::Bytes::from(body[..SIZE / 2].to_vec());
                        Body::from_stream(futures::stream::iter(vec![
                            Ok::<_, std::io::Error>(half),
                            Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                "reset",
                            )),
                        ]))
                    } else {
                        Body::from(body)
                    };
                    Response::builder()
                        .header(header::CONTENT_LENGTH, SIZE)
                        .body(stream)
                        .expect("response")
                }
            }),
        );
    let endpoint = serve(app).await;
    let dir = tempfile::tempdir().expect("tmp");
    let dest = dir.path().join("big.bin");
    client(&endpoint, test_support::fast_retry())
        .await
        .download_object("repo", "main", "big.bin", &dest)
        .await
        .expect("second attempt succeeds");
    assert_eq!(std::fs::read(&dest).expect("read"), content);
    assert_eq!(gets.load(Ordering::SeqCst), 2);
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("ls").count(),
        1,
        "no temporary file left behind"
    );
}

#[tokio::test]
async fn permanent_500_fails_clearly_within_the_bounded_time() {
    let app = Router::new().route(
        "/api/v1/repositories/{repository}",
        get(|| async {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"message": "disk on fire"})),
            )
        }),
    );
    let endpoint = serve(app).await;
    let retry = RetryPolicy {
        max_total: Duration::from_secs(2),
        ..test_support::fast_retry()
    };
    let started = Instant::now();
    let err = client(&endpoint, retry)
        .await
        .get_repository("x")
        .await
        .expect_err("permanent 500");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(
        msg.contains("500")
            && msg.contains("disk on fire")
            && msg.contains("GET /repositories/x")
            && msg.contains("attempts"),
        "{msg}"
    );
}

#[tokio::test]
async fn other_4xx_are_not_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let app = Router::new().route(
        "/api/v1/repositories/{repository}",
        get(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async { (StatusCode::FORBIDDEN, axum::Json(json!({"message": "no"}))) }
        }),
    );
    let endpoint = serve(app).await;
    let err = client(&endpoint, test_support::fast_retry())
        .await
        .get_repository("x")
        .await
        .expect_err("403");
    assert!(matches!(err, LakeFsError::Forbidden { .. }), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized_and_dead_endpoints_named() {
    let local = test_support::LocalLakeFs::start().await;
    let bad = LakeFsClientBuilder::new(local.server.endpoint())
        .credentials("AKIA-WRONG", "nope")
        .build()
        .await
        .expect("client");
    let err = bad.list_repositories().next_item().await.expect_err("401");
    assert!(matches!(err, LakeFsError::Unauthorized { .. }), "{err}");
    bad.health().await.expect("health needs no credentials");
    let err = LakeFsClientBuilder::new(local.server.endpoint())
        .credentials("AKIA-WRONG", "nope")
        .token_login(true)
        .build()
        .await
        .expect_err("login refused");
    assert!(matches!(err, LakeFsError::Unauthorized { .. }), "{err}");

    let dead = client(
        "http://127.0.0.1:9",
        RetryPolicy {
            max_retries: 1,
            ..test_support::fast_retry()
        },
    )
    .await;
    let err = dead.get_repository("x").await.expect_err("nothing listens");
    let msg = err.to_string();
    assert!(
        msg.contains("http://127.0.0.1:9/api/v1") && msg.contains("lakefs-local"),
        "{msg}"
    );
}

#[tokio::test]
async fn listed_paths_escaping_the_destination_are_refused() {
    let listing = json!({
        "pagination": {"has_more": false, "next_offset": "", "results": 2, "max_per_page": 1000},
        "results": [
            {"path": "ds/ok.txt", "path_type": "object", "physical_address": "x", "checksum": "", "size_bytes": 1, "mtime": 1},
            {"path": "ds/../../escape.txt", "path_type": "object", "physical_address": "x", "checksum": "", "size_bytes": 1, "mtime": 1}
        ]
    });
    let commit = "c".repeat(64);
    let branch = json!({"id": "main", "commit_id": commit});
    let app = Router::new()
        .route(
            "/api/v1/repositories/{repository}/branches/{branch}",
            get(move || async move { axum::Json(branch) }),
        )
        .route(
            "/api/v1/repositories/{repository}/refs/{ref}/objects/ls",
            get(move |_: HeaderMap| async move { axum::Json(listing) }),
        );
    let endpoint = serve(app).await;
    let dir = tempfile::tempdir().expect("tmp");
    let err = client(&endpoint, test_support::fast_retry())
        .await
        .download_prefix(
            "repo",
            "main",
            "ds/",
            &DownloadOptions::new(dir.path().join("cache")).concurrency(4),
        )
        .await
        .expect_err("traversal");
    assert!(matches!(err, LakeFsError::UnsafePath { .. }), "{err}");
    assert!(!dir.path().join("escape.txt").exists());
}

/// First item of a stream.
trait NextItem<T> {
    async fn next_item(self) -> Result<T>;
}

impl<T, S: futures::Stream<Item = Result<T>>> NextItem<T> for S {
    async fn next_item(self) -> Result<T> {
        use futures::StreamExt;
        let mut s = std::pin::pin!(self);
        match s.next().await {
            Some(r) => r,
            None => Err(LakeFsError::Config("empty listing".into())),
        }
    }
}

#[tokio::test]
async fn a_refused_connection_is_retried_even_for_a_post() {
    // A port nothing listens on yet: lakefs-local starts there 600 ms after the first try.
    let port = test_support::free_port();
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().to_path_buf();
    let started = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        lakefs_local::spawn(
            lakefs_local::ServerConfig::new(&data),
            &format!("127.0.0.1:{port}"),
        )
        .await
        .expect("spawn")
    });
    let restarting = LakeFsClientBuilder::new(format!("http://127.0.0.1:{port}"))
        .credentials(
            lakefs_local::DEFAULT_ACCESS_KEY_ID,
            lakefs_local::DEFAULT_SECRET_ACCESS_KEY,
        )
        .retry(RetryPolicy {
            max_retries: 20,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(200),
            ..test_support::fast_retry()
        })
        .build()
        .await
        .expect("client");
    let repo = restarting
        .create_repository("restarted", "local://restarted", "main")
        .await
        .expect("POST sent again once the server listens");
    assert_eq!(repo.id, "restarted");
    let branch = restarting.create_branch("restarted", "dev", "main").await;
    assert!(branch.is_ok(), "{branch:?}");
    started.await.expect("server task").stop().await;
}
