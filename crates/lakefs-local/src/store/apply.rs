//! Applying one commit's change to a branch as lakeFS does: `revert` (a new commit that undoes
//! it) and `cherry_pick` (a new commit that redoes it, with its message and metadata). Both are
//! three-way merges onto the branch head, refused on uncommitted changes and on conflicts.

use std::collections::BTreeMap;

use super::merge::three_way;
use super::records::CommitRec;
use super::{Store, StoreError};
use time::OffsetDateTime;

/// A new commit's message and metadata instead of the defaults (lakeFS's `commit_overrides`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The message.
    pub message: Option<String>,
    /// The metadata.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// The change to apply: that of `reference` against its parent `parent_number` (1-based; 0
/// for "the only parent"), or its inverse (`undo`, a revert).
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// The commit (any ref expression).
    pub reference: &'a str,
    /// Which parent the change is taken against.
    pub parent_number: usize,
    /// Revert instead of cherry-pick.
    pub undo: bool,
}

impl Store {
    /// The parent of `commit` numbered `parent_number` (1-based; 0 means "the only parent").
    fn parent_of(commit: &CommitRec, parent_number: usize) -> Result<String, StoreError> {
        let n = commit.parents.len();
        let index = match (parent_number, n) {
            (0 | 1, 1) => 0,
            (0, _) if n > 1 => {
                return Err(StoreError::Invalid(format!(
                    "commit {} is a merge commit with {n} parents: give parent_number",
                    commit.id
                )));
            }
            (p, _) if p >= 1 && p <= n => p - 1,
            _ => {
                return Err(StoreError::Invalid(format!(
                    "commit {} has {n} parents, not a parent number {parent_number}",
                    commit.id
                )));
            }
        };
        Ok(commit.parents[index].clone())
    }

    /// The branch head, checked to have no uncommitted changes.
    pub(super) fn clean_head(
        &self,
        repo: &str,
        branch: &str,
        what: &str,
    ) -> Result<String, StoreError> {
        let head = self.branch_commit(repo, branch)?;
        if self
            .repo(repo)?
            .staging
            .get(branch)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(StoreError::Invalid(format!(
                "branch {branch} has uncommitted changes; commit or reset them before {what}"
            )));
        }
        Ok(head)
    }

    /// Commits on `branch` the change of a commit against one of its parents (cherry-pick: its
    /// message and metadata) or its inverse (revert: "Revert <ref as given>", no metadata, as lakeFS), unless
    /// overridden; a three-way merge onto the head. Returns the new commit.
    pub fn apply_change(
        &mut self,
        repo: &str,
        branch: &str,
        change: &Change<'_>,
        committer: &str,
        overrides: Overrides,
    ) -> Result<CommitRec, StoreError> {
        let what = if change.undo {
            "reverting"
        } else {
            "cherry-picking"
        };
        let head = self.clean_head(repo, branch, what)?;
        let id = self.resolve(repo, change.reference)?.commit;
        let commit = self.repo(repo)?.commits.get(&id).cloned().ok_or_else(|| {
            StoreError::NotFound(format!("commit not found: {}", change.reference))
        })?;
        let parent = Self::parent_of(&commit, change.parent_number)?;
        let (from, to) = if change.undo {
            (&commit.id, &parent)
        } else {
            (&parent, &commit.id)
        };
        let (b, s, d) = (
            self.commit_tree(repo, from)?,
            self.commit_tree(repo, to)?,
            self.commit_tree(repo, &head)?,
        );
        let tree = three_way(&b, &s, &d, None)?;
        let (message, metadata) = if change.undo {
            (format!("Revert {}", change.reference), BTreeMap::new())
        } else {
            (commit.message.clone(), commit.metadata.clone())
        };
        let mut metadata = overrides.metadata.unwrap_or(metadata);
        if !change.undo {
            // As lakeFS: the origin is recorded after any override.
            metadata.insert("cherry-pick-origin".into(), commit.id.clone());
            metadata.insert("cherry-pick-committer".into(), commit.committer.clone());
        }
        let draft = CommitRec {
            id: String::new(),
            parents: vec![head],
            committer: committer.to_string(),
            message: overrides.message.unwrap_or(message),
            creation_date: OffsetDateTime::now_utc().unix_timestamp(),
            meta_range_id: String::new(),
            metadata,
            generation: 0,
        };
        self.write_commit(repo, branch, draft, tree)
    }
}
