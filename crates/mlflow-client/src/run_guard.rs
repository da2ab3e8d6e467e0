//! A guard that always ends its MLflow run: FINISHED on success, FAILED on error, KILLED on
//! interrupt, and FAILED (with a warning) when dropped without being ended, e.g. after an
//! early `?` return or a panic.

use rest_transport::ClientBuilder;
use std::time::Duration;

use crate::client::MlflowClient;
use crate::error::Result;
use crate::types::{Run, RunStatus};
use rest_transport::RetryPolicy;

/// Owns a running MLflow run until it is ended.
#[derive(Debug)]
pub struct RunGuard {
    client: MlflowClient,
    run: Run,
    ended: bool,
}

impl RunGuard {
    /// Guards `run` (as returned by [`MlflowClient::create_run`]).
    pub fn new(client: MlflowClient, run: Run) -> Self {
        Self {
            client,
            run,
            ended: false,
        }
    }

    /// The run.
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run.info.run_id
    }

    /// The client.
    pub fn client(&self) -> &MlflowClient {
        &self.client
    }

    /// Ends the run with `status`.
    pub async fn end(mut self, status: RunStatus) -> Result<()> {
        self.ended = true;
        self.client
            .update_run(&self.run.info.run_id, status, None)
            .await
    }

    /// Ends the run FINISHED.
    pub async fn finish(self) -> Result<()> {
        self.end(RunStatus::Finished).await
    }

    /// Ends the run FAILED.
    pub async fn fail(self) -> Result<()> {
        self.end(RunStatus::Failed).await
    }

    /// Ends the run KILLED (interrupted by the user).
    pub async fn kill(self) -> Result<()> {
        self.end(RunStatus::Killed).await
    }

    /// Ends the run FINISHED if `outcome` is `Ok`, FAILED otherwise.
    pub async fn end_with<T, E>(self, outcome: &std::result::Result<T, E>) -> Result<()> {
        let status = if outcome.is_ok() {
            RunStatus::Finished
        } else {
            RunStatus::Failed
        };
        self.end(status).await
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let run_id = self.run.info.run_id.clone();
        tracing::warn!(
            "MLflow run {run_id} was dropped without being ended{}; marking it FAILED",
            if std::thread::panicking() {
                " (panic)"
            } else {
                ""
            }
        );
        // Drop cannot await, and the caller's runtime may be single-threaded or shutting down:
        // end the run from a fresh client on a short-lived runtime in its own thread.
        let config = self
            .client
            .config()
            .clone()
            .request_timeout(Duration::from_secs(10))
            .retry(RetryPolicy {
                max_retries: 2,
                min_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(1),
                max_total: Duration::from_secs(15),
                ..RetryPolicy::default()
            });
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let client = config.build();
            match (runtime, client) {
                (Ok(rt), Ok(client)) => {
                    rt.block_on(client.update_run(&run_id, RunStatus::Failed, None))
                }
                (Err(e), _) => Err(crate::error::MlflowError::Config(e.to_string())),
                (_, Err(e)) => Err(e),
            }
            .map_err(|e| tracing::warn!("could not mark MLflow run {run_id} FAILED: {e}"))
        });
        let _ = handle.join();
    }
}
