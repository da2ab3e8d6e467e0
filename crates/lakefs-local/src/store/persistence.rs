//! The store on disk: every record written atomically (temporary file, fsync, rename), refs as
//! one JSON file per repository, a branch's staging area as a log of JSON lines (a torn last
//! line, from a crash mid-append, is ignored on load), and loading it all back.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};

use atomic_write_file::AtomicWriteFile;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::records::{CommitRec, Entry, Repo, RepoRec, StagingLine, Tree};
use super::{Store, StoreError};

/// A repository's branches and tags as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Refs {
    pub branches: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// Writes `bytes` to `path` atomically (the `atomic-write-file` crate: a temporary file in the
/// same folder, fsync, rename, fsync of the folder), creating the folder first.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create", dir, e))?;
    }
    let mut file = AtomicWriteFile::open(path).map_err(|e| StoreError::io("create", path, e))?;
    file.write_all(bytes)
        .map_err(|e| StoreError::io("write", path, e))?;
    file.commit()
        .map_err(|e| StoreError::io("rename into", path, e))
}

/// `value` as JSON bytes.
pub(super) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Internal(e.to_string()))
}

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| StoreError::io("read", path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Internal(format!("{}: {e}", path.display())))
}

/// Hex sha256 of `bytes`.
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes the refs of the repository under `dir`.
pub(super) fn write_refs(dir: &Path, repo: &Repo) -> Result<(), StoreError> {
    let refs = Refs {
        branches: repo.branches.clone(),
        tags: repo.tags.clone(),
    };
    atomic_write(&dir.join("refs.json"), &to_json(&refs)?)
}

/// Stores `tree` (content-addressed, written once) in the repository under `dir`; its id.
pub(super) fn put_tree(dir: &Path, repo: &mut Repo, tree: Tree) -> Result<String, StoreError> {
    let bytes = serde_json::to_vec(&tree).map_err(|e| StoreError::Internal(e.to_string()))?;
    let id = sha256_hex(&bytes);
    if !repo.trees.contains_key(&id) {
        let path = dir.join("trees").join(format!("{id}.json"));
        atomic_write(&path, &bytes)?;
        repo.trees.insert(id.clone(), Arc::new(tree));
    }
    Ok(id)
}

/// Stores the commit `rec` (its id and generation derived here) in the repository under `dir`.
pub(super) fn put_commit(
    dir: &Path,
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
        let bytes = serde_json::to_vec(&rec).map_err(|e| StoreError::Internal(e.to_string()))?;
        atomic_write(
            &dir.join("commits").join(format!("{}.json", rec.id)),
            &bytes,
        )?;
        repo.commits.insert(rec.id.clone(), rec.clone());
    }
    Ok(rec)
}

fn staging_path(repo_dir: &Path, branch: &str) -> PathBuf {
    repo_dir
        .join("staging")
        .join(format!("{}.log", hex::encode(branch.as_bytes())))
}

impl Store {
    pub(super) fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join("repos").join(repo)
    }

    pub(super) fn save_refs(&self, repo: &Repo) -> Result<(), StoreError> {
        write_refs(&self.repo_dir(&repo.rec.id), repo)
    }

    /// Rewrites a branch's staging log with `staged`.
    pub(super) fn write_staging(
        &self,
        repo: &str,
        branch: &str,
        staged: &BTreeMap<String, Option<Entry>>,
    ) -> Result<(), StoreError> {
        let mut out = Vec::new();
        for (path, entry) in staged {
            let line = StagingLine {
                path: path.clone(),
                entry: entry.clone(),
            };
            out.extend(to_json(&line)?);
            out.push(b'\n');
        }
        atomic_write(&staging_path(&self.repo_dir(repo), branch), &out)
    }

    /// Appends one change to a branch's staging log (synced before returning).
    pub(super) fn append_staging(
        &self,
        repo: &str,
        branch: &str,
        line: &StagingLine,
    ) -> Result<(), StoreError> {
        let path = staging_path(&self.repo_dir(repo), branch);
        let mut bytes = to_json(line)?;
        bytes.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io("open", &path, e))?;
        f.write_all(&bytes)
            .map_err(|e| StoreError::io("append", &path, e))?;
        f.sync_data().map_err(|e| StoreError::io("sync", &path, e))
    }

    /// Removes a branch's staging log.
    pub(super) fn remove_staging(&self, repo: &str, branch: &str) -> Result<(), StoreError> {
        let path = staging_path(&self.repo_dir(repo), branch);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError::io("remove", &path, e))
            }
            _ => Ok(()),
        }
    }

    /// Loads every repository under the data folder.
    pub(super) fn load(&mut self) -> Result<(), StoreError> {
        let repos_dir = self.root.join("repos");
        let list = |d: &Path| std::fs::read_dir(d).map_err(|e| StoreError::io("list", d, e));
        for entry in list(&repos_dir)? {
            let dir = entry
                .map_err(|e| StoreError::io("list", &repos_dir, e))?
                .path();
            if !dir.join("repo.json").is_file() {
                continue; // a repository whose creation never completed
            }
            let repo = load_repo(&dir)?;
            self.repos.insert(repo.rec.id.clone(), repo);
        }
        Ok(())
    }
}

/// One repository: its record, refs, commits, trees and staging logs.
fn load_repo(dir: &Path) -> Result<Repo, StoreError> {
    let rec: RepoRec = read_json(&dir.join("repo.json"))?;
    let refs: Refs = read_json(&dir.join("refs.json"))?;
    let mut repo = Repo {
        rec,
        branches: refs.branches,
        tags: refs.tags,
        commits: HashMap::new(),
        trees: HashMap::new(),
        staging: HashMap::new(),
    };
    for (sub, is_commit) in [("commits", true), ("trees", false)] {
        let d = dir.join(sub);
        for f in std::fs::read_dir(&d).map_err(|e| StoreError::io("list", &d, e))? {
            let p = f.map_err(|e| StoreError::io("list", &d, e))?.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let id = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if is_commit {
                repo.commits.insert(id, read_json(&p)?);
            } else {
                repo.trees.insert(id, Arc::new(read_json(&p)?));
            }
        }
    }
    for branch in repo.branches.keys() {
        let mut staged = BTreeMap::new();
        if let Ok(file) = std::fs::File::open(staging_path(dir, branch)) {
            for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                // A torn last line (crash mid-append) does not parse and is skipped.
                if let Ok(l) = serde_json::from_str::<StagingLine>(&line) {
                    staged.insert(l.path, l.entry);
                }
            }
        }
        repo.staging.insert(branch.clone(), staged);
    }
    Ok(repo)
}
