//! Downloads are size-checked even when the server sends no Content-Length: the expected size
//! then comes from the artifact proxy's listing. A fake MLflow on loopback answers with a
//! chunked body (no Content-Length) and a listing whose size is right or wrong.

use mlflow_client::{ClientBuilder as _, ClientError as _};
use std::time::Duration;

use mlflow_client::{MlflowClientBuilder, MlflowError, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY: &[u8] = b"0123456789";

/// Serves every connection: the file as a chunked body, the listing with `listed_size`.
async fn fake_mlflow(listed_size: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&seen[..end]).to_string();
                    seen.drain(..end + 4);
                    let line = head.lines().next().unwrap_or_default().to_string();
                    let response = if line.contains("/artifacts?path=") {
                        let json = format!(
                            r#"{{"files":[{{"path":"f.bin","is_dir":false,"file_size":{listed_size}}}]}}"#
                        );
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
                            json.len()
                        )
                        .into_bytes()
                    } else {
                        let mut r = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                        r.extend_from_slice(format!("{:x}\r\n", BODY.len()).as_bytes());
                        r.extend_from_slice(BODY);
                        r.extend_from_slice(b"\r\n0\r\n\r\n");
                        r
                    };
                    if sock.write_all(&response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_retries: 1,
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    }
}

#[tokio::test]
async fn a_download_without_content_length_is_checked_against_the_listing() {
    let dir = tempfile::tempdir().expect("tmp");
    let dest = dir.path().join("f.bin");
    let uri = "mlflow-artifacts:/1/r/artifacts";

    let right = MlflowClientBuilder::new(fake_mlflow(10).await)
        .retry(fast())
        .build()
        .expect("client");
    let n = right
        .download_artifact(uri, "f.bin", &dest)
        .await
        .expect("sizes agree");
    assert_eq!(n, 10);
    assert_eq!(std::fs::read(&dest).expect("read"), BODY);

    let short = MlflowClientBuilder::new(fake_mlflow(12).await)
        .retry(fast())
        .build()
        .expect("client");
    let dest2 = dir.path().join("g.bin");
    let err = short
        .download_artifact(uri, "f.bin", &dest2)
        .await
        .expect_err("2 bytes missing");
    assert!(
        matches!(
            err.cause(),
            MlflowError::Transport(rest_transport::TransportError::Truncated {
                received: 10,
                expected: 12,
                ..
            })
        ),
        "{err}"
    );
    assert!(!dest2.exists(), "nothing half-written");
    assert!(
        std::fs::read_dir(dir.path()).expect("ls").count() == 1,
        "no temporary file left"
    );
}
