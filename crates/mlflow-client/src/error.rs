//! Typed errors: MLflow's `{error_code, message}` mapped to variants a caller can match, each
//! naming the request that failed. Secrets never appear here.

/// Errors of the MLflow client.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// RESOURCE_DOES_NOT_EXIST (or HTTP 404).
    #[error("{request}: not found: {message}")]
    NotFound {
        /// `METHOD /path` of the failed request.
        request: String,
        /// The server's message.
        message: String,
    },
    /// RESOURCE_ALREADY_EXISTS.
    #[error("{request}: already exists: {message}")]
    AlreadyExists {
        /// `METHOD /path`.
        request: String,
        /// The server's message.
        message: String,
    },
    /// INVALID_PARAMETER_VALUE (or another 400).
    #[error("{request}: invalid parameter: {message}")]
    InvalidParameter {
        /// `METHOD /path`.
        request: String,
        /// MLflow's error code (`INVALID_PARAMETER_VALUE`, `BAD_REQUEST`, `INVALID_STATE`).
        code: String,
        /// The server's message.
        message: String,
    },
    /// PERMISSION_DENIED, 401 or 403.
    #[error(
        "{request}: permission denied ({status}): {message}; check MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN"
    )]
    PermissionDenied {
        /// `METHOD /path`.
        request: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server refused the Host header (MLflow's DNS-rebinding protection).
    #[error(
        "{request}: MLflow refused the Host header {host:?} (403): start the server with --allowed-hosts including {host:?}, or reach it as localhost"
    )]
    HostNotAllowed {
        /// `METHOD /path`.
        request: String,
        /// The host name the client used.
        host: String,
    },
    /// Any other error status.
    #[error("{request}: MLflow answered {status} {code}: {message}")]
    Api {
        /// `METHOD /path`.
        request: String,
        /// HTTP status.
        status: u16,
        /// MLflow error code (may be empty).
        code: String,
        /// The server's message.
        message: String,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<std::time::Duration>,
    },
    /// No (whole) answer: unreachable, timed out, or a body cut short.
    #[error(transparent)]
    Transport(#[from] rest_transport::TransportError),
    /// Retries of a transient failure ran out.
    #[error("{last} (gave up after {attempts} attempts in {seconds:.1}s)")]
    RetriesExhausted {
        /// The last error.
        last: Box<MlflowError>,
        /// Attempts made.
        attempts: usize,
        /// Time spent.
        seconds: f64,
    },
    /// A response that does not parse.
    #[error("{request}: unexpected response: {reason}")]
    Decode {
        /// `METHOD /path`.
        request: String,
        /// What did not parse.
        reason: String,
    },
    /// Local file I/O (artifacts).
    #[error("{action} {path}: {source}")]
    Io {
        /// What was done.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A client configuration error (bad URI, bad header value).
    #[error("invalid MLflow client configuration: {0}")]
    Config(String),
}

/// MLflow, as messages name it.
pub const MLFLOW: rest_transport::Server = rest_transport::Server {
    name: "MLflow",
    unreachable_hint: "is the server running (e.g. `mlflow server --host 127.0.0.1 --port 5000`) and MLFLOW_TRACKING_URI right?",
};

rest_transport::client_error!(MlflowError {
    server: MLFLOW,
    transport: Transport,
    not_found: NotFound,
    status: Api,
    exhausted: RetriesExhausted,
});

/// Result alias of the MLflow client.
pub type Result<T, E = MlflowError> = std::result::Result<T, E>;
