//! Shared fixture: the MLflow server the test command started. Its absence is a loud failure.
#![allow(dead_code)]

use mlflow_client::{MlflowClient, MlflowClientBuilder, RetryConfig};
use std::time::Duration;

/// The tracking URI of the test server.
pub fn tracking_uri() -> String {
    std::env::var("MLFLOW_TEST_TRACKING_URI").unwrap_or_else(|_| {
        panic!(
            "MLFLOW_TEST_TRACKING_URI is not set: these tests need a real MLflow server. Run them with \
             scripts/test.sh, or start one with `scripts/mlflow-server.sh start /tmp/mlflow 5000` and \
             export MLFLOW_TEST_TRACKING_URI=http://127.0.0.1:5000"
        )
    })
}

/// A client for the test server, checked to be reachable.
pub async fn client() -> MlflowClient {
    let uri = tracking_uri();
    let client = MlflowClientBuilder::new(&uri)
        .retry(RetryConfig {
            max_retries: 3,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        })
        .build()
        .expect("client");
    if let Err(e) = client.get_experiment("0").await {
        panic!(
            "MLflow at {uri} is not usable: {e}. Start it with `scripts/mlflow-server.sh start /tmp/mlflow 5000`"
        );
    }
    client
}

/// A name unique to this test run.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}
