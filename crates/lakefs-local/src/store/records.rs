//! The records of the store: objects (entries), trees and commits (content-addressed, written
//! once), repositories; and what changes them: staging an object, resetting staged changes,
//! committing, and reading a ref's view and a commit's history.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::persistence::{StagingLine, atomic_write, now_secs, sha256_hex};
use super::{Store, StoreError};

/// One object in a tree or a staging area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// sha256 of the content (the blob's name).
    pub blob: String,
    /// Hex MD5 of the content (lakeFS's checksum for single-part uploads).
    pub checksum: String,
    /// Size in bytes.
    pub size: u64,
    /// Seconds since epoch.
    pub mtime: i64,
    /// User metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Content type.
    #[serde(default)]
    pub content_type: String,
}

/// A snapshot: path -> entry.
pub type Tree = BTreeMap<String, Entry>;

/// A commit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRec {
    /// Content-derived id.
    pub id: String,
    /// Parents.
    pub parents: Vec<String>,
    /// Committer.
    pub committer: String,
    /// Message.
    pub message: String,
    /// Seconds since epoch.
    pub creation_date: i64,
    /// Tree id.
    pub meta_range_id: String,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Distance from the root commit (1-based).
    pub generation: u64,
}

/// A repository record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRec {
    /// Name.
    pub id: String,
    /// Seconds since epoch.
    pub creation_date: i64,
    /// Default branch.
    pub default_branch: String,
    /// Storage namespace (`local://...`).
    pub storage_namespace: String,
    /// Repository metadata (`GET/POST/DELETE /repositories/{repository}/metadata`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// What to commit with.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// Message.
    pub message: String,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Committer.
    pub committer: String,
    /// Creation date (seconds; default now).
    pub date: Option<i64>,
    /// Commit even without changes.
    pub allow_empty: bool,
}

/// A repository's state in memory.
#[derive(Debug)]
pub struct Repo {
    /// The record.
    pub rec: RepoRec,
    /// Branch -> commit id.
    pub branches: BTreeMap<String, String>,
    /// Tag -> commit id.
    pub tags: BTreeMap<String, String>,
    /// Commits by id.
    pub commits: HashMap<String, CommitRec>,
    /// Trees by id.
    pub trees: HashMap<String, Arc<Tree>>,
    /// Branch -> staged changes (`None` = deleted).
    pub staging: HashMap<String, BTreeMap<String, Option<Entry>>>,
}

impl Store {
    pub(super) fn put_tree(&self, repo: &mut Repo, tree: Tree) -> Result<String, StoreError> {
        let bytes = serde_json::to_vec(&tree).map_err(|e| StoreError::Internal(e.to_string()))?;
        let id = sha256_hex(&bytes);
        if !repo.trees.contains_key(&id) {
            let path = self
                .repo_dir(&repo.rec.id)
                .join("trees")
                .join(format!("{id}.json"));
            atomic_write(&path, &bytes)?;
            repo.trees.insert(id.clone(), Arc::new(tree));
        }
        Ok(id)
    }

    pub(super) fn put_commit(
        &self,
        repo: &mut Repo,
        mut rec: CommitRec,
    ) -> Result<CommitRec, StoreError> {
        rec.generation = rec
            .parents
            .iter()
            .filter_map(|p| repo.commits.get(p).map(|c| c.generation))
            .max()
            .unwrap_or(0)
            + 1;
        let identity = serde_json::json!({
            "parents": rec.parents, "meta_range_id": rec.meta_range_id, "message": rec.message,
            "metadata": rec.metadata, "committer": rec.committer, "creation_date": rec.creation_date,
        });
        rec.id = sha256_hex(identity.to_string().as_bytes());
        if !repo.commits.contains_key(&rec.id) {
            let bytes =
                serde_json::to_vec(&rec).map_err(|e| StoreError::Internal(e.to_string()))?;
            atomic_write(
                &self
                    .repo_dir(&repo.rec.id)
                    .join("commits")
                    .join(format!("{}.json", rec.id)),
                &bytes,
            )?;
            repo.commits.insert(rec.id.clone(), rec.clone());
        }
        Ok(rec)
    }

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
            creation_date: date.unwrap_or_else(now_secs),
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
        // The repository is taken out while its records are written (they need `&self`).
        let mut r = self
            .repos
            .remove(repo)
            .ok_or_else(|| StoreError::NotFound(format!("repository not found: {repo}")))?;
        let result = (|| {
            draft.meta_range_id = self.put_tree(&mut r, tree)?;
            let c = self.put_commit(&mut r, draft)?;
            r.branches.insert(branch.to_string(), c.id.clone());
            self.save_refs(&r)?;
            Ok(c)
        })();
        self.repos.insert(repo.to_string(), r);
        result
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
