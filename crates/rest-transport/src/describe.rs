//! What a failed request was, in words a user can act on.

/// The error and every cause below it, joined with `": "`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    text
}

/// A request that got no complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The timeout set on the request ran out.
    Timeout,
    /// The connection broke or the answer could not be read; the full cause.
    Unreachable(String),
    /// No connection could be made (refused, no route, name not resolved): the server never
    /// saw the request; the full cause.
    NotConnected(String),
}

/// Classifies a reqwest error (no status involved) as a timeout or an unreachable server.
pub fn classify(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else if e.is_connect() {
        Failure::NotConnected(error_chain(e))
    } else {
        Failure::Unreachable(error_chain(e))
    }
}
