//! pipeline: what the `train`, `register_model` and `infer` binaries share, between them and the
//! libraries (bins -> pipeline -> seg-model, lakefs-client, mlflow-client).
//!
//! - [`cli`]: logging, Ctrl-C and the error line of every binary.
//! - [`config`]: layered configuration (defaults < file < environment < flags), checked.
//! - [`services`]: lakeFS and MLflow clients, checked to answer.
//! - [`lineage`]: git facts for every run.
//! - [`data`]: training data in lakeFS: upload, data commit, cached download, verification.
//! - [`observer`]: metrics to MLflow without stalling training; progress; Ctrl-C.
//! - [`progress`]: progress bars on stderr.
//! - [`inference`]: `infer`: resolve and verify the model, predict, score, version the masks.
//! - [`registration`]: `register_model`: pick, verify, apply criteria, register.
//! - [`report`]: the training curve and validation overlays.
//! - [`training`]: `train` end to end.
//! - [`error`]: errors with exit codes.

pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod inference;
pub mod lineage;
pub mod observer;
pub mod progress;
pub mod registration;
pub mod report;
pub mod services;
pub mod training;

pub use config::{Config, Flags, Loaded};
pub use error::{PipelineError, Result, exit};
