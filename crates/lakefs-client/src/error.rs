//! Errors that map HTTP statuses to kinds a caller can match, each naming the request.

/// Errors of the lakeFS client.
#[derive(Debug, thiserror::Error)]
pub enum LakeFsError {
    /// 404.
    #[error("{request}: not found: {message}")]
    NotFound {
        /// `METHOD /path` of the failed request.
        request: String,
        /// The server's message.
        message: String,
    },
    /// 409 (exists already, merge conflict).
    #[error("{request}: conflict: {message}")]
    Conflict {
        /// `METHOD /path`.
        request: String,
        /// The server's message.
        message: String,
    },
    /// 412 (e.g. `If-None-Match: *` on an existing path).
    #[error("{request}: precondition failed: {message}")]
    PreconditionFailed {
        /// `METHOD /path`.
        request: String,
        /// The server's message.
        message: String,
    },
    /// 401.
    #[error(
        "{request}: unauthorized: {message}; check the access key id and secret (LAKECTL_CREDENTIALS_ACCESS_KEY_ID / LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY)"
    )]
    Unauthorized {
        /// `METHOD /path`.
        request: String,
        /// The server's message.
        message: String,
    },
    /// 403.
    #[error("{request}: forbidden: {message}")]
    Forbidden {
        /// `METHOD /path`.
        request: String,
        /// The server's message.
        message: String,
    },
    /// 400 "no changes": a commit with nothing staged (retry with `allow_empty`, or treat the
    /// branch head as the result).
    #[error("{request}: nothing to commit: {message}")]
    NothingToCommit {
        /// `METHOD /path`.
        request: String,
        /// The server's message.
        message: String,
    },
    /// 400 (validation, dirty branch, invalid ref).
    #[error("{request}: bad request: {message}")]
    BadRequest {
        /// `METHOD /path`.
        request: String,
        /// The server's message.
        message: String,
    },
    /// Any other status (429, 5xx, 501, ...).
    #[error("{request}: lakeFS answered {status}: {message}")]
    Server {
        /// `METHOD /path`.
        request: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<std::time::Duration>,
    },
    /// No (whole) answer: unreachable, timed out, or a body cut short.
    #[error(transparent)]
    Transport(#[from] rest_transport::TransportError),
    /// A response that does not parse or does not match what was expected.
    #[error("{request}: unexpected response: {reason}")]
    Decode {
        /// `METHOD /path`.
        request: String,
        /// What is wrong.
        reason: String,
    },
    /// Downloaded bytes that do not match the object's size or checksum.
    #[error("{uri}: integrity check failed: {reason}")]
    Integrity {
        /// The object.
        uri: String,
        /// What differs.
        reason: String,
    },
    /// A malformed `lakefs://` URI.
    #[error("invalid lakeFS URI {uri:?}: {reason}")]
    InvalidUri {
        /// The text.
        uri: String,
        /// Why.
        reason: String,
    },
    /// A listed path that would escape the destination folder.
    #[error("refusing object path {path:?}: it would be written outside {dest}")]
    UnsafePath {
        /// The object path.
        path: String,
        /// The destination folder.
        dest: String,
    },
    /// Local file I/O.
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
    /// Invalid client configuration.
    #[error("invalid lakeFS client configuration: {0}")]
    Config(String),
    /// The retry budget ran out.
    #[error("{last} (gave up after {attempts} attempts in {seconds:.1}s)")]
    RetriesExhausted {
        /// The last error.
        last: Box<LakeFsError>,
        /// Attempts made.
        attempts: usize,
        /// Time spent.
        seconds: f64,
    },
}

/// lakeFS, as messages name it.
pub const LAKEFS: rest_transport::Server = rest_transport::Server {
    name: "lakeFS",
    unreachable_hint: "is it running (docker compose --profile local-lakefs up, or `lakefs-local --data-dir DIR`) and is the endpoint right?",
};

rest_transport::client_error!(LakeFsError {
    server: LAKEFS,
    transport: Transport,
    not_found: NotFound,
    status: Server,
    exhausted: RetriesExhausted,
});

impl LakeFsError {
    /// Whether this is a commit that had nothing to commit.
    pub fn is_nothing_to_commit(&self) -> bool {
        matches!(self, Self::NothingToCommit { .. })
    }
}

/// Result alias of the lakeFS client.
pub type Result<T, E = LakeFsError> = std::result::Result<T, E>;
