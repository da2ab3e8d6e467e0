//! The versioned store: repositories, branches (each with a staging area), tags, immutable
//! commits with content-derived ids, immutable trees, and content-addressed blobs, persisted
//! under the data folder. Split by job:
//!
//! - [`records`]: entries, trees, commits, repositories, staging lines (data only).
//! - [`history`]: staging, resetting, committing, views and history.
//! - [`refs`]: resolving refs, branches and tags, naming rules.
//! - [`merge`]: fast-forward and three-way merges.
//! - [`persistence`]: atomic writes, refs and staging logs on disk, loading.
//! - [`blobs`]: content-addressed blob files.
//! - [`error`]: [`StoreError`] by kind (the HTTP layer picks the status).

mod apply;
mod blobs;
mod error;
mod history;
mod merge;
mod persistence;
mod records;
mod refs;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub use apply::{Change, Overrides};
pub use blobs::{BlobInfo, Blobs};
pub use error::StoreError;
pub use merge::MergeRequest;
pub use persistence::atomic_write;
pub use records::{CommitRec, CommitRequest, Entry, Repo, RepoRec, Tree};
pub use refs::{RefModifier, Resolved, parse_ref_expression, validate_name};

use lakefs_client::NameKind;
use persistence::{put_commit, put_tree, to_json};
use time::OffsetDateTime;

/// All repositories, persisted under `root`.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// Repositories by name.
    pub repos: BTreeMap<String, Repo>,
}

impl Store {
    /// Opens (or creates) the store under `root`, loading everything.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for sub in ["blobs", "tmp", "repos"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| StoreError::io("create", &d, e))?;
        }
        let mut store = Self {
            root: root.to_path_buf(),
            repos: BTreeMap::new(),
        };
        store.load()?;
        Ok(store)
    }

    /// The store's blobs (usable without holding the store).
    pub fn blobs(&self) -> Blobs {
        Blobs::new(&self.root)
    }

    /// A repository, or not found.
    pub fn repo(&self, name: &str) -> Result<&Repo, StoreError> {
        self.repos
            .get(name)
            .ok_or_else(|| StoreError::NotFound(format!("repository not found: {name}")))
    }

    pub(crate) fn repo_mut(&mut self, name: &str) -> Result<&mut Repo, StoreError> {
        self.repos
            .get_mut(name)
            .ok_or_else(|| StoreError::NotFound(format!("repository not found: {name}")))
    }

    /// Creates a repository with an initial empty commit on its default branch.
    pub fn create_repo(
        &mut self,
        name: &str,
        namespace: &str,
        default_branch: &str,
    ) -> Result<RepoRec, StoreError> {
        validate_name(name, NameKind::Repository)?;
        validate_name(default_branch, NameKind::Branch)?;
        if !namespace.starts_with("local://") {
            return Err(StoreError::Invalid(format!(
                "storage namespace {namespace:?}: this server's blockstore is local; use local://<path>"
            )));
        }
        if self.repos.contains_key(name) {
            return Err(StoreError::Conflict(format!(
                "repository {name} already exists"
            )));
        }
        let dir = self.repo_dir(name);
        for sub in ["commits", "trees", "staging"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| StoreError::io("create", &dir, e))?;
        }
        let rec = RepoRec {
            id: name.to_string(),
            creation_date: OffsetDateTime::now_utc().unix_timestamp(),
            default_branch: default_branch.to_string(),
            storage_namespace: namespace.to_string(),
            metadata: BTreeMap::new(),
        };
        let mut repo = Repo {
            rec: rec.clone(),
            branches: BTreeMap::new(),
            tags: BTreeMap::new(),
            commits: HashMap::new(),
            trees: HashMap::new(),
            staging: HashMap::new(),
        };
        let tree = put_tree(&dir, &mut repo, Tree::new())?;
        let commit = put_commit(
            &dir,
            &mut repo,
            CommitRec {
                id: String::new(),
                parents: vec![],
                committer: String::new(),
                message: "Repository created".into(),
                creation_date: rec.creation_date,
                meta_range_id: tree,
                metadata: BTreeMap::new(),
                generation: 0,
            },
        )?;
        repo.branches.insert(default_branch.to_string(), commit.id);
        repo.staging
            .insert(default_branch.to_string(), BTreeMap::new());
        self.save_refs(&repo)?;
        // repo.json last: a repository without it is ignored on load (creation not completed).
        atomic_write(&dir.join("repo.json"), &to_json(&rec)?)?;
        self.repos.insert(name.to_string(), repo);
        Ok(rec)
    }

    /// Adds or updates keys of a repository's metadata.
    pub fn set_repo_metadata(
        &mut self,
        name: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut rec = self.repo(name)?.rec.clone();
        rec.metadata.extend(metadata);
        self.save_repo_rec(rec)
    }

    /// Removes keys of a repository's metadata (missing keys are not an error).
    pub fn delete_repo_metadata(&mut self, name: &str, keys: &[String]) -> Result<(), StoreError> {
        let mut rec = self.repo(name)?.rec.clone();
        for k in keys {
            rec.metadata.remove(k);
        }
        self.save_repo_rec(rec)
    }

    /// Writes `rec` to its `repo.json` (atomically), then keeps it in memory.
    fn save_repo_rec(&mut self, rec: RepoRec) -> Result<(), StoreError> {
        let path = self.repo_dir(&rec.id).join("repo.json");
        atomic_write(&path, &to_json(&rec)?)?;
        let id = rec.id.clone();
        self.repo_mut(&id)?.rec = rec;
        Ok(())
    }

    /// Deletes a repository.
    pub fn delete_repo(&mut self, name: &str) -> Result<(), StoreError> {
        self.repo(name)?;
        let dir = self.repo_dir(name);
        std::fs::remove_file(dir.join("repo.json"))
            .map_err(|e| StoreError::io("remove", &dir, e))?;
        // Without repo.json the folder is ignored on load; what is left of it is only space.
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(
                "repository {name} deleted, but {} stays: {e}",
                dir.display()
            );
        }
        self.repos.remove(name);
        Ok(())
    }
}
