//! Transactions: work on a temporary branch made from the target, commit it with metadata,
//! merge it back, delete the branch. Until the merge the target is untouched.
//!
//! [`LakeFsClient::transaction`] does it all in one call. [`LakeFsClient::begin`] gives the
//! steps to a caller that must do something between them (record the commit elsewhere before
//! merging, check that the target did not change, keep the branch when a step fails).
//! Temporary branches are named `tx-<target>-<owner>-<unix seconds>`, so that one left behind
//! (a process killed mid-way) says whose it was and since when ([`TxBranch::parse`]).

use std::collections::BTreeMap;
use std::future::Future;

use crate::types::MergeOptions;
use futures::TryStreamExt;
use rest_transport::ClientError as _;

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
    /// The commit the temporary branch started from.
    pub base_commit_id: String,
    /// The commit made on the temporary branch.
    pub commit: Commit,
    /// The commit the target branch points at after the merge.
    pub merged_commit_id: String,
    /// What the work returned.
    pub value: T,
}

/// The parts of a temporary branch's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxBranch {
    /// The branch name.
    pub name: String,
    /// The branch it merges into (letters, digits and `_`; others written as `_`).
    pub target: String,
    /// Who made it (as the caller named itself: host, process, run).
    pub owner: String,
    /// When it was made, seconds since the epoch.
    pub created: u64,
}

impl TxBranch {
    /// The parts of `name` when it is a temporary branch this client made.
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("tx-")?;
        let (head, created) = rest.rsplit_once('-')?;
        let created = created.parse().ok()?;
        let (target, owner) = head.split_once('-')?;
        Some(Self {
            name: name.to_string(),
            target: target.to_string(),
            owner: owner.to_string(),
            created,
        })
    }
}

/// Letters, digits and `_` of `text`, the rest as `_` (a part of a branch name).
fn branch_part(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A transaction in progress: its temporary branch, made from the target at `base`.
#[derive(Debug)]
pub struct Transaction<'a> {
    client: &'a LakeFsClient,
    repo: String,
    target: String,
    branch: String,
    base: String,
}

impl LakeFsClient {
    /// Starts a transaction on `target`: a temporary branch named for `owner` (any text; it
    /// is reduced to letters, digits and `_`).
    pub async fn begin(&self, repo: &str, target: &str, owner: &str) -> Result<Transaction<'_>> {
        let now = time::OffsetDateTime::now_utc();
        let nanos = now.nanosecond();
        let now = now.unix_timestamp();
        // The nanoseconds keep two transactions of one owner in one second apart.
        let owner = format!("{}_{nanos:x}", branch_part(owner));
        let branch = format!("tx-{}-{owner}-{now}", branch_part(target));
        let base = self.create_branch(repo, &branch, target).await?;
        Ok(Transaction {
            client: self,
            repo: repo.to_string(),
            target: target.to_string(),
            branch,
            base,
        })
    }

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
        let tx = self.begin(repo, target, "client").await?;
        let result = async {
            let value = work(tx.branch().to_string()).await?;
            let made = tx.commit(commit).await?;
            let merged_commit_id = tx.merge(commit).await?;
            Ok(TransactionOutcome {
                base_commit_id: tx.base().to_string(),
                commit: made,
                merged_commit_id,
                value,
            })
        }
        .await;
        tx.discard().await;
        result
    }
}

impl Transaction<'_> {
    /// The temporary branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The commit the temporary branch started from.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Commits the temporary branch; nothing changed (without `allow_empty`) is
    /// [`crate::LakeFsError::NothingToCommit`].
    pub async fn commit(&self, commit: &CommitOptions) -> Result<Commit> {
        self.client
            .commit(
                &self.repo,
                &self.branch,
                &commit.message,
                &commit.metadata,
                commit.allow_empty,
            )
            .await
    }

    /// The target's head when objects under any of `prefixes` changed there since the base
    /// (another writer merged meanwhile); none when they did not.
    pub async fn target_changed(&self, prefixes: &[String]) -> Result<Option<String>> {
        let head = self.client.resolve_commit(&self.repo, &self.target).await?;
        if head == self.base {
            return Ok(None);
        }
        let changed = self
            .client
            .diff_refs(&self.repo, &self.base, &head)
            .try_any(|d| {
                let hit = prefixes.iter().any(|p| d.path.starts_with(p.as_str()));
                async move { hit }
            })
            .await?;
        Ok(changed.then_some(head))
    }

    /// Merges the temporary branch into the target; the target's new commit.
    pub async fn merge(&self, commit: &CommitOptions) -> Result<String> {
        self.client
            .merge(
                &self.repo,
                &self.branch,
                &self.target,
                &MergeOptions {
                    message: Some(commit.message.clone()),
                    metadata: commit.metadata.clone(),
                    strategy: None,
                    // lakeFS refuses a merge that changes nothing unless asked (it never
                    // fast-forwards): an allowed empty commit must merge too.
                    allow_empty: commit.allow_empty,
                },
            )
            .await
    }

    /// Deletes the temporary branch (a failure is logged: the target is not affected).
    pub async fn discard(self) {
        match self.client.delete_branch(&self.repo, &self.branch).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!(
                "could not delete temporary branch {} of {}: {e}",
                self.branch,
                self.repo
            ),
        }
    }

    /// Leaves the temporary branch in place (its name is returned), e.g. to keep a commit
    /// that could not be merged.
    pub fn keep(self) -> String {
        self.branch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_branch_names_say_whose_and_since_when() {
        let t = TxBranch::parse("tx-main-host1_p42_run_abc_1f-1764329400").expect("parse");
        assert_eq!(t.target, "main");
        assert_eq!(t.owner, "host1_p42_run_abc_1f");
        assert_eq!(t.created, 1_764_329_400);
        assert_eq!(TxBranch::parse("feature-x"), None);
        assert_eq!(TxBranch::parse("tx-main-owner-notanumber"), None);
        assert_eq!(branch_part("a.b-c/d"), "a_b_c_d");
    }
}
