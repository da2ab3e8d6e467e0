//! What changes a repository's history: staging an object, resetting staged changes,
//! committing, and reading a ref's view and a commit's history.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use time::OffsetDateTime;

use super::persistence::{put_commit, put_tree, write_refs};
use super::records::{CommitRec, CommitRequest, Entry, StagingLine, Tree};
use super::{Store, StoreError};

impl Store {
    /// The committed tree of a commit.
    pub fn commit_tree(&self, repo: &str, commit: &str) -> Result<Arc<Tree>, StoreError> {
        let r = self.repo(repo)?;
        let c = r
            .commits
            .get(commit)
            .ok_or_else(|| StoreError::NotFound(format!("commit not found: {commit}")))?;
        r.trees
            .get(&c.meta_range_id)
            .cloned()
            .ok_or_else(|| StoreError::Internal(format!("tree {} missing", c.meta_range_id)))
    }

    /// What a ref shows: the commit's tree, plus staged changes when the ref is a branch.
    pub fn view(&self, repo: &str, reference: &str) -> Result<Arc<Tree>, StoreError> {
        let resolved = self.resolve(repo, reference)?;
        let tree = self.commit_tree(repo, &resolved.commit)?;
        let Some(branch) = resolved.branch else {
            return Ok(tree);
        };
        let staged = &self.repo(repo)?.staging[&branch];
        if staged.is_empty() {
            return Ok(tree);
        }
        let mut t = (*tree).clone();
        for (path, entry) in staged {
            match entry {
                Some(e) => t.insert(path.clone(), e.clone()),
                None => t.remove(path),
            };
        }
        Ok(Arc::new(t))
    }

    /// Stages `entry` (or a deletion) at `path` on `branch`.
    pub fn stage(
        &mut self,
        repo: &str,
        branch: &str,
        path: &str,
        entry: Option<Entry>,
    ) -> Result<(), StoreError> {
        let commit = self.branch_commit(repo, branch)?;
        let in_tree = self.commit_tree(repo, &commit)?.contains_key(path);
        let r = self.repo_mut(repo)?;
        let staged = r.staging.entry(branch.to_string()).or_default();
        match &entry {
            Some(e) => {
                staged.insert(path.to_string(), Some(e.clone()));
            }
            None if in_tree => {
                staged.insert(path.to_string(), None);
            }
            None => {
                // Only staged (or nowhere): deleting it just drops the staged entry.
                if staged.remove(path).is_none() {
                    return Ok(());
                }
            }
        }
        self.append_staging(
            repo,
            branch,
            &StagingLine {
                path: path.to_string(),
                entry,
            },
        )
    }

    /// Drops staged changes: all (`None`), one path (`(path, false)`) or a prefix (`(prefix, true)`).
    pub fn reset(
        &mut self,
        repo: &str,
        branch: &str,
        filter: Option<(&str, bool)>,
    ) -> Result<(), StoreError> {
        self.branch_commit(repo, branch)?;
        let r = self.repo_mut(repo)?;
        let staged = r.staging.entry(branch.to_string()).or_default();
        match filter {
            None => staged.clear(),
            Some((path, false)) => {
                staged.remove(path);
            }
            Some((prefix, true)) => staged.retain(|p, _| !p.starts_with(prefix)),
        }
        let staged = staged.clone();
        self.write_staging(repo, branch, &staged)
    }

    /// Commits a branch's staged changes.
    pub fn commit(
        &mut self,
        repo: &str,
        branch: &str,
        request: CommitRequest,
    ) -> Result<CommitRec, StoreError> {
        let CommitRequest {
            message,
            metadata,
            committer,
            date,
            allow_empty,
        } = request;
        let head = self.branch_commit(repo, branch)?;
        let staged = self
            .repo(repo)?
            .staging
            .get(branch)
            .cloned()
            .unwrap_or_default();
        let base = self.commit_tree(repo, &head)?;
        let mut tree = (*base).clone();
        for (path, entry) in &staged {
            match entry {
                Some(e) => tree.insert(path.clone(), e.clone()),
                None => tree.remove(path),
            };
        }
        if tree == *base && !allow_empty {
            return Err(StoreError::Invalid("commit: no changes".into()));
        }
        let draft = CommitRec {
            id: String::new(),
            parents: vec![head],
            committer,
            message,
            creation_date: date.unwrap_or_else(|| OffsetDateTime::now_utc().unix_timestamp()),
            meta_range_id: String::new(),
            metadata,
            generation: 0,
        };
        let c = self.write_commit(repo, branch, draft, tree)?;
        let r = self.repo_mut(repo)?;
        r.staging.insert(branch.to_string(), BTreeMap::new());
        self.write_staging(repo, branch, &BTreeMap::new())?;
        Ok(c)
    }

    /// Stores `tree` and the commit `draft` (its id, tree id and generation filled in) and
    /// moves `branch` to it.
    pub(super) fn write_commit(
        &mut self,
        repo: &str,
        branch: &str,
        mut draft: CommitRec,
        tree: Tree,
    ) -> Result<CommitRec, StoreError> {
        let dir = self.repo_dir(repo);
        let r = self.repo_mut(repo)?;
        draft.meta_range_id = put_tree(&dir, r, tree)?;
        let c = put_commit(&dir, r, draft)?;
        r.branches.insert(branch.to_string(), c.id.clone());
        write_refs(&dir, r)?;
        Ok(c)
    }

    /// Ancestors of `commit` (itself included), newest generation first.
    pub fn log(&self, repo: &str, commit: &str) -> Result<Vec<CommitRec>, StoreError> {
        let r = self.repo(repo)?;
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([commit.to_string()]);
        let mut out = Vec::new();
        while let Some(id) = queue.pop_front() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let c = r
                .commits
                .get(&id)
                .ok_or_else(|| StoreError::NotFound(format!("commit not found: {id}")))?;
            queue.extend(c.parents.iter().cloned());
            out.push(c.clone());
        }
        out.sort_by(|a, b| {
            b.generation
                .cmp(&a.generation)
                .then(b.creation_date.cmp(&a.creation_date))
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    pub(super) fn ancestors(
        &self,
        repo: &str,
        commit: &str,
    ) -> Result<HashSet<String>, StoreError> {
        Ok(self.log(repo, commit)?.into_iter().map(|c| c.id).collect())
    }
}
