//! The versioned store: repositories, branches (each with a staging area), tags, immutable
//! commits with content-derived ids, immutable trees, and content-addressed blobs. Persisted
//! under the data folder with atomic writes (temporary file, fsync, rename); a staging change is
//! one appended JSON line, and a torn last line (a crash mid-append) is ignored on load.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Refs {
    branches: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StagingLine {
    path: String,
    entry: Option<Entry>,
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

/// How to merge.
#[derive(Debug, Clone, Default)]
pub struct MergeRequest {
    /// Merge-commit message (default "Merge 'src' into 'dest'").
    pub message: Option<String>,
    /// Merge-commit metadata.
    pub metadata: BTreeMap<String, String>,
    /// `source-wins` or `dest-wins` for conflicting paths.
    pub strategy: Option<String>,
    /// Committer.
    pub committer: String,
    /// Create a merge commit even when nothing changes.
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

/// Errors with an HTTP status, turned into `{message}` answers by the API layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// HTTP status.
    pub status: u16,
    /// Message.
    pub message: String,
}

impl StoreError {
    /// An error with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::new(500, format!("{what} {}: {e}", path.display()))
}

/// Writes `bytes` to `path` atomically: temporary file in the same folder, fsync, rename.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| io_err("create temp in", dir, e))?;
    tmp.write_all(bytes).map_err(|e| io_err("write", path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| io_err("sync", path, e))?;
    tmp.persist(path)
        .map_err(|e| io_err("rename into", path, e.error))?;
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// All repositories, persisted under `root`.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// Repositories by name.
    pub repos: BTreeMap<String, Repo>,
}

/// What a ref names.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The commit.
    pub commit: String,
    /// The branch, when the ref is one (reads then include staged changes).
    pub branch: Option<String>,
}

impl Store {
    /// Opens (or creates) the store under `root`, loading everything.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for sub in ["blobs", "tmp", "repos"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| io_err("create", &d, e))?;
        }
        let mut store = Self {
            root: root.to_path_buf(),
            repos: BTreeMap::new(),
        };
        let repos_dir = root.join("repos");
        for entry in std::fs::read_dir(&repos_dir).map_err(|e| io_err("list", &repos_dir, e))? {
            let dir = entry.map_err(|e| io_err("list", &repos_dir, e))?.path();
            let rec_path = dir.join("repo.json");
            if !rec_path.is_file() {
                continue; // a repository whose creation never completed
            }
            let rec: RepoRec = read_json(&rec_path)?;
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
                for f in std::fs::read_dir(&d).map_err(|e| io_err("list", &d, e))? {
                    let p = f.map_err(|e| io_err("list", &d, e))?.path();
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
                let log = staging_path(&dir, branch);
                let mut staged = BTreeMap::new();
                if let Ok(file) = std::fs::File::open(&log) {
                    for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                        // A torn last line (crash mid-append) does not parse and is skipped.
                        if let Ok(l) = serde_json::from_str::<StagingLine>(&line) {
                            staged.insert(l.path, l.entry);
                        }
                    }
                }
                repo.staging.insert(branch.clone(), staged);
            }
            store.repos.insert(repo.rec.id.clone(), repo);
        }
        Ok(store)
    }

    /// The folder of content-addressed blobs.
    pub fn blob_path(&self, sha: &str) -> PathBuf {
        self.root
            .join("blobs")
            .join(&sha[..2.min(sha.len())])
            .join(sha)
    }

    /// The folder for temporary uploads.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join("repos").join(repo)
    }

    /// A repository, or 404.
    pub fn repo(&self, name: &str) -> Result<&Repo, StoreError> {
        self.repos
            .get(name)
            .ok_or_else(|| StoreError::new(404, format!("repository not found: {name}")))
    }

    fn repo_mut(&mut self, name: &str) -> Result<&mut Repo, StoreError> {
        self.repos
            .get_mut(name)
            .ok_or_else(|| StoreError::new(404, format!("repository not found: {name}")))
    }

    fn save_refs(&self, repo: &Repo) -> Result<(), StoreError> {
        let refs = Refs {
            branches: repo.branches.clone(),
            tags: repo.tags.clone(),
        };
        let bytes = serde_json::to_vec(&refs).map_err(|e| StoreError::new(500, e.to_string()))?;
        atomic_write(&self.repo_dir(&repo.rec.id).join("refs.json"), &bytes)
    }

    fn put_tree(&self, repo: &mut Repo, tree: Tree) -> Result<String, StoreError> {
        let bytes = serde_json::to_vec(&tree).map_err(|e| StoreError::new(500, e.to_string()))?;
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

    fn put_commit(&self, repo: &mut Repo, mut rec: CommitRec) -> Result<CommitRec, StoreError> {
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
                serde_json::to_vec(&rec).map_err(|e| StoreError::new(500, e.to_string()))?;
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

    fn write_staging(
        &self,
        repo: &str,
        branch: &str,
        staged: &BTreeMap<String, Option<Entry>>,
    ) -> Result<(), StoreError> {
        let mut out = Vec::new();
        for (path, entry) in staged {
            serde_json::to_writer(
                &mut out,
                &StagingLine {
                    path: path.clone(),
                    entry: entry.clone(),
                },
            )
            .map_err(|e| StoreError::new(500, e.to_string()))?;
            out.push(b'\n');
        }
        atomic_write(&staging_path(&self.repo_dir(repo), branch), &out)
    }

    fn append_staging(
        &self,
        repo: &str,
        branch: &str,
        line: &StagingLine,
    ) -> Result<(), StoreError> {
        let path = staging_path(&self.repo_dir(repo), branch);
        let mut bytes =
            serde_json::to_vec(line).map_err(|e| StoreError::new(500, e.to_string()))?;
        bytes.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        f.write_all(&bytes)
            .map_err(|e| io_err("append", &path, e))?;
        f.sync_data().map_err(|e| io_err("sync", &path, e))
    }

    /// Creates a repository with an initial empty commit on its default branch.
    pub fn create_repo(
        &mut self,
        name: &str,
        namespace: &str,
        default_branch: &str,
    ) -> Result<RepoRec, StoreError> {
        validate_name(name, "repository", true)?;
        validate_name(default_branch, "branch", false)?;
        if !namespace.starts_with("local://") {
            return Err(StoreError::new(
                400,
                format!(
                    "storage namespace {namespace:?}: this server's blockstore is local; use local://<path>"
                ),
            ));
        }
        if self.repos.contains_key(name) {
            return Err(StoreError::new(
                409,
                format!("repository {name} already exists"),
            ));
        }
        let dir = self.repo_dir(name);
        for sub in ["commits", "trees", "staging"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| io_err("create", &dir, e))?;
        }
        let rec = RepoRec {
            id: name.to_string(),
            creation_date: now_secs(),
            default_branch: default_branch.to_string(),
            storage_namespace: namespace.to_string(),
        };
        let mut repo = Repo {
            rec: rec.clone(),
            branches: BTreeMap::new(),
            tags: BTreeMap::new(),
            commits: HashMap::new(),
            trees: HashMap::new(),
            staging: HashMap::new(),
        };
        let tree = self.put_tree(&mut repo, Tree::new())?;
        let commit = self.put_commit(
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
        let bytes = serde_json::to_vec(&rec).map_err(|e| StoreError::new(500, e.to_string()))?;
        atomic_write(&dir.join("repo.json"), &bytes)?;
        self.repos.insert(name.to_string(), repo);
        Ok(rec)
    }

    /// Deletes a repository.
    pub fn delete_repo(&mut self, name: &str) -> Result<(), StoreError> {
        self.repo(name)?;
        let dir = self.repo_dir(name);
        std::fs::remove_file(dir.join("repo.json")).map_err(|e| io_err("remove", &dir, e))?;
        let _ = std::fs::remove_dir_all(&dir);
        self.repos.remove(name);
        Ok(())
    }

    /// Resolves a branch, tag, commit id or unique commit-id prefix (>= 6 characters).
    pub fn resolve(&self, repo: &str, reference: &str) -> Result<Resolved, StoreError> {
        let (base, modifiers) = parse_ref_expression(reference)?;
        let r = self.repo(repo)?;
        let not_found = || StoreError::new(404, format!("ref not found: {reference}"));
        let invalid = || StoreError::new(400, format!("invalid ref: {reference}"));
        let mut resolved = self.resolve_base(r, base).ok_or_else(not_found)?;
        for (i, (kind, amount)) in modifiers.iter().enumerate() {
            match kind {
                // `@` (committed data of a branch) and `$` (its staging area) stand alone.
                '@' | '$' => {
                    if resolved.branch.is_none() || modifiers.len() != 1 || i != 0 {
                        return Err(invalid());
                    }
                    if *kind == '@' {
                        resolved.branch = None;
                    }
                }
                '~' => {
                    resolved.branch = None;
                    for _ in 0..*amount {
                        let c = r.commits.get(&resolved.commit).ok_or_else(not_found)?;
                        resolved.commit = c.parents.first().ok_or_else(not_found)?.clone();
                    }
                }
                _ => {
                    resolved.branch = None;
                    if *amount == 0 {
                        continue;
                    }
                    let c = r.commits.get(&resolved.commit).ok_or_else(not_found)?;
                    resolved.commit = c.parents.get(amount - 1).ok_or_else(invalid)?.clone();
                }
            }
        }
        Ok(resolved)
    }

    /// A plain ref as lakeFS resolves it: a full commit id first, then a branch, a tag, and a
    /// unique commit-id prefix.
    fn resolve_base(&self, r: &Repo, base: &str) -> Option<Resolved> {
        if r.commits.contains_key(base) {
            return Some(Resolved {
                commit: base.to_string(),
                branch: None,
            });
        }
        if let Some(c) = r.branches.get(base) {
            return Some(Resolved {
                commit: c.clone(),
                branch: Some(base.to_string()),
            });
        }
        if let Some(c) = r.tags.get(base) {
            return Some(Resolved {
                commit: c.clone(),
                branch: None,
            });
        }
        if base.len() >= 6 && base.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut matches = r.commits.keys().filter(|k| k.starts_with(base));
            if let (Some(only), None) = (matches.next(), matches.next()) {
                return Some(Resolved {
                    commit: only.clone(),
                    branch: None,
                });
            }
        }
        None
    }

    /// The committed tree of a commit.
    pub fn commit_tree(&self, repo: &str, commit: &str) -> Result<Arc<Tree>, StoreError> {
        let r = self.repo(repo)?;
        let c = r
            .commits
            .get(commit)
            .ok_or_else(|| StoreError::new(404, format!("commit not found: {commit}")))?;
        r.trees
            .get(&c.meta_range_id)
            .cloned()
            .ok_or_else(|| StoreError::new(500, format!("tree {} missing", c.meta_range_id)))
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

    /// A branch's commit id, or 404.
    pub fn branch_commit(&self, repo: &str, branch: &str) -> Result<String, StoreError> {
        self.repo(repo)?
            .branches
            .get(branch)
            .cloned()
            .ok_or_else(|| StoreError::new(404, format!("branch not found: {branch}")))
    }

    /// Creates a branch from a ref; returns its commit id.
    pub fn create_branch(
        &mut self,
        repo: &str,
        name: &str,
        source: &str,
    ) -> Result<String, StoreError> {
        validate_name(name, "branch", false)?;
        let commit = self.resolve(repo, source)?.commit;
        let r = self.repo_mut(repo)?;
        if r.branches.contains_key(name) {
            return Err(StoreError::new(
                409,
                format!("branch {name} already exists"),
            ));
        }
        r.branches.insert(name.to_string(), commit.clone());
        r.staging.insert(name.to_string(), BTreeMap::new());
        let r = self.repo(repo)?;
        self.write_staging(repo, name, &BTreeMap::new())?;
        self.save_refs(r)?;
        Ok(commit)
    }

    /// Deletes a branch (not the default one).
    pub fn delete_branch(&mut self, repo: &str, name: &str) -> Result<(), StoreError> {
        self.branch_commit(repo, name)?;
        let r = self.repo_mut(repo)?;
        if r.rec.default_branch == name {
            return Err(StoreError::new(
                403,
                format!("cannot delete the default branch {name}"),
            ));
        }
        r.branches.remove(name);
        r.staging.remove(name);
        let r = self.repo(repo)?;
        self.save_refs(r)?;
        let _ = std::fs::remove_file(staging_path(&self.repo_dir(repo), name));
        Ok(())
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
            return Err(StoreError::new(400, "commit: no changes"));
        }
        let mut r = self
            .repos
            .remove(repo)
            .ok_or_else(|| StoreError::new(404, "repository vanished"))?;
        let result = (|| {
            let meta_range_id = self.put_tree(&mut r, tree)?;
            let c = self.put_commit(
                &mut r,
                CommitRec {
                    id: String::new(),
                    parents: vec![head],
                    committer: committer.to_string(),
                    message: message.to_string(),
                    creation_date: date.unwrap_or_else(now_secs),
                    meta_range_id,
                    metadata,
                    generation: 0,
                },
            )?;
            r.branches.insert(branch.to_string(), c.id.clone());
            self.save_refs(&r)?;
            r.staging.insert(branch.to_string(), BTreeMap::new());
            self.write_staging(repo, branch, &BTreeMap::new())?;
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
                .ok_or_else(|| StoreError::new(404, format!("commit not found: {id}")))?;
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

    fn ancestors(&self, repo: &str, commit: &str) -> Result<HashSet<String>, StoreError> {
        Ok(self.log(repo, commit)?.into_iter().map(|c| c.id).collect())
    }

    /// Merges `source` into branch `dest`: fast-forward when `dest` is an ancestor of the
    /// source, else a three-way merge (409 on conflicts unless a strategy picks a side).
    pub fn merge(
        &mut self,
        repo: &str,
        source: &str,
        dest: &str,
        request: MergeRequest,
    ) -> Result<String, StoreError> {
        let MergeRequest {
            message,
            metadata,
            strategy,
            committer,
            allow_empty,
        } = request;
        let src = self.resolve(repo, source)?.commit;
        let dst = self.branch_commit(repo, dest)?;
        if self
            .repo(repo)?
            .staging
            .get(dest)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(StoreError::new(
                400,
                format!(
                    "branch {dest} has uncommitted changes; commit or reset them before merging"
                ),
            ));
        }
        let dst_ancestors = self.ancestors(repo, &dst)?;
        if dst_ancestors.contains(&src) && !allow_empty {
            return Err(StoreError::new(
                400,
                "no changes: the source is already merged into the destination",
            ));
        }
        let src_ancestors = self.ancestors(repo, &src)?;
        if src_ancestors.contains(&dst) {
            let r = self.repo_mut(repo)?;
            r.branches.insert(dest.to_string(), src.clone());
            let r = self.repo(repo)?;
            self.save_refs(r)?;
            return Ok(src);
        }
        // Merge base: the common ancestor of highest generation.
        let r = self.repo(repo)?;
        let base = src_ancestors
            .intersection(&dst_ancestors)
            .filter_map(|id| r.commits.get(id))
            .max_by_key(|c| c.generation)
            .map(|c| c.id.clone())
            .ok_or_else(|| StoreError::new(400, "no common ancestor"))?;
        let (b, s, d) = (
            self.commit_tree(repo, &base)?,
            self.commit_tree(repo, &src)?,
            self.commit_tree(repo, &dst)?,
        );
        let mut merged = (*d).clone();
        let mut conflicts = Vec::new();
        let paths: HashSet<&String> = b.keys().chain(s.keys()).chain(d.keys()).collect();
        for path in paths {
            let (bv, sv, dv) = (b.get(path), s.get(path), d.get(path));
            let same =
                |x: Option<&Entry>, y: Option<&Entry>| x.map(|e| &e.blob) == y.map(|e| &e.blob);
            let pick = if same(sv, bv) || same(sv, dv) {
                dv
            } else if same(dv, bv) {
                sv
            } else {
                match strategy.as_deref() {
                    Some("source-wins") => sv,
                    Some("dest-wins") => dv,
                    _ => {
                        conflicts.push(path.clone());
                        continue;
                    }
                }
            };
            match pick {
                Some(e) => merged.insert(path.clone(), e.clone()),
                None => merged.remove(path),
            };
        }
        if !conflicts.is_empty() {
            conflicts.sort();
            return Err(StoreError::new(
                409,
                format!("merge conflict: {}", conflicts.join(", ")),
            ));
        }
        let mut r = self
            .repos
            .remove(repo)
            .ok_or_else(|| StoreError::new(404, "repository vanished"))?;
        let result = (|| {
            let meta_range_id = self.put_tree(&mut r, merged)?;
            let c = self.put_commit(
                &mut r,
                CommitRec {
                    id: String::new(),
                    parents: vec![dst.clone(), src.clone()],
                    committer: committer.to_string(),
                    message: message.unwrap_or_else(|| format!("Merge '{source}' into '{dest}'")),
                    creation_date: now_secs(),
                    meta_range_id,
                    metadata,
                    generation: 0,
                },
            )?;
            r.branches.insert(dest.to_string(), c.id.clone());
            self.save_refs(&r)?;
            Ok(c.id)
        })();
        self.repos.insert(repo.to_string(), r);
        result
    }

    /// Creates a tag.
    pub fn create_tag(
        &mut self,
        repo: &str,
        id: &str,
        reference: &str,
    ) -> Result<String, StoreError> {
        validate_name(id, "tag", false)?;
        let commit = self.resolve(repo, reference)?.commit;
        let r = self.repo_mut(repo)?;
        if r.tags.contains_key(id) {
            return Err(StoreError::new(409, format!("tag {id} already exists")));
        }
        r.tags.insert(id.to_string(), commit.clone());
        let r = self.repo(repo)?;
        self.save_refs(r)?;
        Ok(commit)
    }

    /// Deletes a tag.
    pub fn delete_tag(&mut self, repo: &str, id: &str) -> Result<(), StoreError> {
        let r = self.repo_mut(repo)?;
        if r.tags.remove(id).is_none() {
            return Err(StoreError::new(404, format!("tag not found: {id}")));
        }
        let r = self.repo(repo)?;
        self.save_refs(r)
    }
}

/// Where the blob with this sha256 lives under the data folder `root`.
pub fn blob_path(root: &Path, sha: &str) -> PathBuf {
    root.join("blobs").join(&sha[..2.min(sha.len())]).join(sha)
}

fn staging_path(repo_dir: &Path, branch: &str) -> PathBuf {
    repo_dir
        .join("staging")
        .join(format!("{}.log", hex::encode(branch.as_bytes())))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| io_err("read", path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::new(500, format!("{}: {e}", path.display())))
}

/// lakeFS naming rules: repositories `^[a-z0-9][a-z0-9-]{2,62}$`, branches and tags `^\w[-\w]*$`.
pub fn validate_name(name: &str, what: &str, repository: bool) -> Result<(), StoreError> {
    let ok = if repository {
        (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
    } else {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !name.starts_with('-')
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::new(
            400,
            format!("invalid {what} name {name:?}"),
        ))
    }
}

/// A ref modifier: its kind (`~`, `^`, `@`, `$`) and amount.
pub type RefModifier = (char, usize);

/// Splits a ref expression as lakeFS does (`main~2^1`, `main@`, `abc123$`) into its base and
/// its modifiers `(kind, amount)`; a bare `~` or `^` means 1.
pub fn parse_ref_expression(reference: &str) -> Result<(&str, Vec<RefModifier>), StoreError> {
    let invalid = || StoreError::new(400, format!("invalid ref: {reference}"));
    let is_mod = |c: char| matches!(c, '~' | '^' | '@' | '$');
    let base_end = reference.find(is_mod).unwrap_or(reference.len());
    let base = &reference[..base_end];
    if base.is_empty() {
        return Err(invalid());
    }
    let mut modifiers = Vec::new();
    let mut rest = &reference[base_end..];
    while let Some(kind) = rest.chars().next() {
        let tail = &rest[1..];
        let end = tail.find(is_mod).unwrap_or(tail.len());
        let digits = &tail[..end];
        let amount = if digits.is_empty() {
            1
        } else if matches!(kind, '@' | '$') {
            return Err(invalid());
        } else {
            digits.parse::<usize>().map_err(|_| invalid())?
        };
        modifiers.push((kind, amount));
        rest = &tail[end..];
    }
    Ok((base, modifiers))
}
