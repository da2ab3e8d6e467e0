//! pipeline: what the `train`, `register_model` and `infer` binaries share, between them and the
//! libraries (bins -> pipeline -> seg-model, lakefs-client, mlflow-client).
//!
//! The three steps are siblings that never import each other ([`train`], [`register`],
//! [`infer`]); what they share has its own home:
//!
//! - [`config`]: layered configuration (defaults < file < environment < flags), typed and checked.
//! - [`services`]: lakeFS and MLflow clients, checked to answer.
//! - [`lineage`]: git facts for every run.
//! - [`run_record`]: the MLflow and lakeFS vocabulary of a run (tag, param and commit-metadata
//!   names, run URL) and ending a run FAILED or KILLED with its error.
//! - [`model_ref`]: a model reference (alias, version, run) resolved to a verified local file.
//! - [`data`]: training data in lakeFS: upload, data commit, cached download, verification.
//! - [`leftovers`]: temporary branches and RUNNING runs of processes that are gone.
//! - [`terminal`]: progress, prompts and run tables, logging, signals, the one error line.
//! - [`error`]: errors with exit codes.

pub mod config;
pub mod data;
pub mod error;
pub mod infer;
pub mod leftovers;
pub mod lineage;
pub mod model_ref;
pub mod register;
pub mod run_record;
pub mod services;
pub mod terminal;
pub mod train;

pub use config::{Config, Flags, Loaded};
pub use error::{PipelineError, Result, exit};
/// The allocator tuning of a training or predicting process: each binary calls it first in `main`.
pub use seg_model::tune_allocator;
