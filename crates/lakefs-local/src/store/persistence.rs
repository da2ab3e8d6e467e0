//! The store on disk: every record written atomically (temporary file, fsync, rename), refs as
//! one JSON file per repository, a branch's staging area as a log of JSON lines (a torn last
//! line, from a crash mid-append, is ignored on load), and loading it all back.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::records::{Entry, Repo, RepoRec};
use super::{Store, StoreError};

/// A repository's branches and tags as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Refs {
    pub branches: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// One staged change as a line of the staging log.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StagingLine {
    pub path: String,
    pub entry: Option<Entry>,
}

/// Writes `bytes` to `path` atomically: temporary file in the same folder, fsync, rename.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create", dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| StoreError::io("create temp in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| StoreError::io("write", path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| StoreError::io("sync", path, e))?;
    tmp.persist(path)
        .map_err(|e| StoreError::io("rename into", path, e.error))?;
    Ok(())
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

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
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
        let refs = Refs {
            branches: repo.branches.clone(),
            tags: repo.tags.clone(),
        };
        atomic_write(
            &self.repo_dir(&repo.rec.id).join("refs.json"),
            &to_json(&refs)?,
        )
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
