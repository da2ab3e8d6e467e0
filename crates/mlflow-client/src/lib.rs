//! mlflow-client: an async client for the MLflow REST API (tested against MLflow 3.17.2).
//!
//! - [`MlflowClient`] / [`MlflowClientBuilder`]: tracking URI, auth, timeouts, retries.
//! - Tracking ([`tracking`]): experiments, runs, batched logging within server limits, search
//!   and metric history as streams, dataset inputs; [`logged_models`]: MLflow 3 logged models.
//! - Registry ([`registry`]): registered models, versions, tags, aliases.
//! - Artifacts ([`artifacts`]): streaming upload/download through the artifact proxy.
//! - [`RunGuard`]: ends a run FINISHED, FAILED or KILLED on every path.

pub mod artifacts;
pub mod client;
pub mod error;
pub mod logged_models;
pub mod registry;
pub mod run_guard;
pub mod tracking;
pub mod types;

pub use client::{Auth, MlflowClient, MlflowClientBuilder};
pub use error::{MlflowError, Result};
pub use registry::NewModelVersion;
pub use rest_transport::{ClientBuilder, ClientError, ClientOptions, RetryPolicy};
pub use run_guard::RunGuard;
pub use tracking::{NewRun, RunSearch, context_tag, os_user};
pub use types::*;
