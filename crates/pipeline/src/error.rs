//! What can go wrong in a pipeline step, each with the exit code the binaries use and a message
//! that says what happened, where, and what to do.

use std::path::PathBuf;

/// Exit codes of the three binaries.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A failure (server, data, model, criteria).
    pub const ERROR: i32 = 1;
    /// Bad usage or configuration.
    pub const USAGE: i32 = 2;
    /// `register_model`: the promotion criteria are not met (absolute criteria, or a challenger
    /// not shown better than the champion); distinct from errors so that scripts can tell.
    pub const CRITERIA: i32 = 3;
    /// Interrupted (Ctrl-C / SIGINT).
    pub const INTERRUPTED: i32 = 130;
}

/// A failed pipeline step.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Bad usage that clap cannot see (e.g. a flag value that needs the server to check).
    #[error("{0}")]
    Usage(String),
    /// lakeFS failed.
    #[error("lakeFS: {0}")]
    LakeFs(#[from] lakefs_client::LakeFsError),
    /// MLflow failed.
    #[error("MLflow: {0}")]
    Mlflow(#[from] mlflow_client::MlflowError),
    /// The model library failed (data, training, checkpoint).
    #[error("{0}")]
    Model(#[from] seg_model::SegError),
    /// A server is not running or the URL is wrong.
    #[error("cannot reach {service} at {url}: {reason}. {hint}")]
    Unreachable {
        /// lakeFS or MLflow.
        service: &'static str,
        /// The URL tried.
        url: String,
        /// What failed.
        reason: String,
        /// How to start it.
        hint: String,
    },
    /// The data to train on is missing or unusable.
    #[error("data: {0}")]
    Data(String),
    /// A referenced run, model, version or object does not exist or does not fit.
    #[error("{0}")]
    NotFound(String),
    /// Lineage that does not check out (checksums, missing tags).
    #[error("lineage check failed: {0}")]
    Lineage(String),
    /// Promotion criteria not met.
    #[error("promotion criteria not met: {0}")]
    Criteria(String),
    /// Local file I/O.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A failure of this process itself (a worker thread that stopped, no async runtime).
    #[error("{0}")]
    Internal(String),
    /// The user interrupted (Ctrl-C) before anything was merged into lakeFS.
    #[error(
        "interrupted (Ctrl-C or SIGTERM): nothing was merged into lakeFS; a started MLflow run is marked KILLED"
    )]
    Interrupted,
    /// The user interrupted (Ctrl-C) after something was merged into lakeFS; what was.
    #[error(
        "interrupted (Ctrl-C or SIGTERM) after {0}; nothing after that was done; a started MLflow run is marked KILLED"
    )]
    InterruptedAfter(String),
    /// Training finished but storing the model failed; the checkpoint is still on disk.
    #[error("{source}; the trained model is saved locally at {}", checkpoint.display())]
    ModelNotStored {
        /// Why storing failed.
        source: Box<PipelineError>,
        /// The local checkpoint.
        checkpoint: PathBuf,
    },
}

impl PipelineError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) | Self::Usage(_) => exit::USAGE,
            Self::Criteria(_) => exit::CRITERIA,
            Self::Interrupted
            | Self::InterruptedAfter(_)
            | Self::Model(seg_model::SegError::Interrupted { .. }) => exit::INTERRUPTED,
            Self::ModelNotStored { source, .. } => source.exit_code(),
            _ => exit::ERROR,
        }
    }

    /// This error of storing a trained model, naming where its local checkpoint is.
    pub fn model_kept_at(self, checkpoint: PathBuf) -> Self {
        Self::ModelNotStored {
            source: Box::new(self),
            checkpoint,
        }
    }

    /// A closure building [`PipelineError::Io`] for `path`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// Result alias of the pipeline.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
