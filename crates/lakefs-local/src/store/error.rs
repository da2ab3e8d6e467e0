//! What can go wrong in the store, by kind; the HTTP layer maps each kind to its status.

/// A store operation that failed, with a message naming what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A repository, branch, tag, commit, ref or object that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something that exists already, or a merge conflict.
    #[error("{0}")]
    Conflict(String),
    /// A request the store refuses: an invalid name or ref, a dirty branch, nothing to commit.
    #[error("{0}")]
    Invalid(String),
    /// An operation that is never allowed (deleting the default branch).
    #[error("{0}")]
    Forbidden(String),
    /// The data folder failed (I/O, a record that does not parse).
    #[error("{0}")]
    Internal(String),
}

impl StoreError {
    /// The message.
    pub fn message(&self) -> &str {
        match self {
            Self::NotFound(m)
            | Self::Conflict(m)
            | Self::Invalid(m)
            | Self::Forbidden(m)
            | Self::Internal(m) => m,
        }
    }

    /// An I/O failure on `path` while doing `what`.
    pub(crate) fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> Self {
        Self::Internal(format!("{what} {}: {e}", path.display()))
    }
}
