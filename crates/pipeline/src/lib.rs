//! pipeline: what the `train`, `register_model` and `infer` binaries share, between them and the
//! libraries (bins -> pipeline -> seg-model, lakefs-client, mlflow-client).
//!
//! - [`config`]: layered configuration (defaults < file < environment < flags), checked.
//! - [`services`]: lakeFS and MLflow clients, checked to answer.
//! - [`lineage`]: git facts for every run.
//! - [`data`]: training data in lakeFS: upload, data commit, cached download, verification.
//! - [`observer`]: metrics to MLflow without stalling training; progress; Ctrl-C.
//! - [`progress`]: progress bars on stderr.
//! - [`error`]: errors with exit codes.

pub mod config;
pub mod data;
pub mod error;
pub mod lineage;
pub mod observer;
pub mod progress;
pub mod services;

pub use config::{Config, Flags, Loaded};
pub use error::{PipelineError, Result, exit};
