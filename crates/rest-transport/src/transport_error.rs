//! The failures of a request that got no whole answer, the same for every server a client talks
//! to: it could not be reached, it did not answer in time, or its body broke off. Each client's
//! error wraps this one (`#[from]`), so the three are written once.

/// The server a client talks to, as its messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    /// Its name (`lakeFS`, `MLflow`).
    pub name: &'static str,
    /// What to check when it cannot be reached (how to start it, which setting names it).
    pub unreachable_hint: &'static str,
}

/// A request without a whole answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The server could not be reached, or the connection broke before the answer.
    #[error("{request}: cannot reach {} at {url}: {reason}; {}", server.name, server.unreachable_hint)]
    Unreachable {
        /// Who.
        server: Server,
        /// `METHOD /path` of the request.
        request: String,
        /// The server's URL.
        url: String,
        /// The transport error, with its causes.
        reason: String,
        /// No connection was made: the server never saw the request.
        never_sent: bool,
    },
    /// The request ran past its timeout.
    #[error(
        "{request}: timed out after {seconds:.0}s; raise the client's timeout if the server is just slow"
    )]
    Timeout {
        /// `METHOD /path`.
        request: String,
        /// The timeout.
        seconds: f64,
    },
    /// A body that ended before its announced size (connection closed mid-transfer).
    #[error("{request}: {} closed the connection after {received} of {expected} bytes", server.name)]
    Truncated {
        /// Who.
        server: Server,
        /// `METHOD /path`.
        request: String,
        /// Bytes received.
        received: u64,
        /// Bytes expected.
        expected: u64,
    },
}
