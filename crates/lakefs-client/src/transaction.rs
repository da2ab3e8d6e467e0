//! Transactions: work on a temporary branch made from the target, commit it with metadata,
//! merge it back, delete it. If anything fails, the target branch is untouched and the
//! temporary branch is removed.

use std::collections::BTreeMap;
use std::future::Future;

use crate::client::LakeFsClient;
use crate::error::Result;
use crate::types::Commit;

/// The commit a transaction makes.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Commit message (also the merge message).
    pub message: String,
    /// Commit metadata (also put on the merge).
    pub metadata: BTreeMap<String, String>,
    /// Commit even when the work changed nothing; otherwise that is
    /// [`crate::LakeFsError::NothingToCommit`] and the target is left as it was.
    pub allow_empty: bool,
}

impl CommitOptions {
    /// A commit with `message` and no metadata.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }
}

/// What a finished transaction produced.
#[derive(Debug, Clone)]
pub struct TransactionOutcome<T> {
    /// The commit made on the temporary branch.
    pub commit: Commit,
    /// The commit the target branch points at after the merge: the id to record in lineage.
    pub merged_commit_id: String,
    /// What the work returned.
    pub value: T,
}

impl LakeFsClient {
    /// Runs `work(temporary branch name)` on a branch made from `target`, then commits its
    /// changes as `commit` says and merges them into `target`. On any error the temporary
    /// branch is deleted and `target` is untouched. (A transaction whose future is dropped
    /// mid-way leaves its `tx-*` branch behind; the target is still untouched.)
    pub async fn transaction<T, F, Fut>(
        &self,
        repo: &str,
        target: &str,
        commit: &CommitOptions,
        work: F,
    ) -> Result<TransactionOutcome<T>>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let branch = format!("tx-{target}-{nanos:x}");
        self.create_branch(repo, &branch, target).await?;
        let result = async {
            let value = work(branch.clone()).await?;
            let made = self
                .commit(
                    repo,
                    &branch,
                    &commit.message,
                    &commit.metadata,
                    commit.allow_empty,
                )
                .await?;
            let merged_commit_id = self
                .merge(
                    repo,
                    &branch,
                    target,
                    Some(&commit.message),
                    &commit.metadata,
                    None,
                )
                .await?;
            Ok(TransactionOutcome {
                commit: made,
                merged_commit_id,
                value,
            })
        }
        .await;
        if let Err(e) = self.delete_branch(repo, &branch).await {
            tracing::warn!("could not delete temporary branch {branch} of {repo}: {e}");
        }
        result
    }
}
