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
    /// The server could not be reached or the connection broke; the full cause.
    Unreachable(String),
}

/// Classifies a reqwest error (no status involved) as a timeout or an unreachable server.
pub fn classify(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Unreachable(error_chain(e))
    }
}
