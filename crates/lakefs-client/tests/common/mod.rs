//! Shared fixtures: a lakefs-local server on port 0 (optionally recording its responses), and
//! the real lakeFS named by LAKEFS_TEST_ENDPOINT.
#![allow(dead_code)]

use std::time::Duration;

use lakefs_client::{LakeFsClient, LakeFsClientBuilder, RetryConfig};
use lakefs_local::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, RunningServer, ServerConfig, Tap,
};

/// A lakefs-local server in a temporary folder.
pub struct Local {
    /// The server.
    pub server: RunningServer,
    /// Its data folder.
    pub dir: tempfile::TempDir,
}

/// Starts lakefs-local on 127.0.0.1:0, recording responses into `tap` when given.
pub async fn local(tap: Option<Tap>) -> Local {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig::new(dir.path());
    config.tap = tap;
    let server = lakefs_local::spawn(config, "127.0.0.1:0")
        .await
        .expect("start lakefs-local");
    Local { server, dir }
}

/// Fast retries for tests.
pub fn fast_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 4,
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        jitter: 0.25,
        max_total: Duration::from_secs(10),
    }
}

/// A client for lakefs-local with its sample credentials.
pub async fn local_client(endpoint: &str, page_size: usize) -> LakeFsClient {
    LakeFsClientBuilder::new(endpoint)
        .credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY)
        .retry(fast_retry())
        .page_size(page_size)
        .build()
        .await
        .expect("client")
}

/// A name unique to this run.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}", nanos % 0xffff_ffff_ffff)
}
