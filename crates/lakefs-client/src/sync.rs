//! Folder-level transfers: `upload_dir` (bounded concurrency, skips files whose MD5 already
//! matches) and `download_prefix` (bounded concurrency into a cache keyed by commit id, so a
//! second download of the same commit transfers nothing).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use futures::{StreamExt, TryStreamExt};

use crate::client::LakeFsClient;
use crate::error::{LakeFsError, Result};
use crate::objects::{UploadOptions, already_present, file_md5, is_md5};

/// Default number of concurrent transfers.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// What `upload_dir` does with symbolic links under the folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SymlinkPolicy {
    /// Upload what a link points at (a linked folder is walked; a loop is walked once).
    #[default]
    Follow,
    /// Leave links out; they are listed in [`UploadReport::skipped_links`].
    Skip,
    /// Refuse the upload, naming the first link found.
    Refuse,
}

/// Options of [`LakeFsClient::upload_dir`].
#[derive(Debug, Clone)]
pub struct UploadDirOptions {
    /// Transfers at once (default [`DEFAULT_CONCURRENCY`]).
    pub concurrency: usize,
    /// Delete objects under the prefix that have no local file (default false).
    pub mirror: bool,
    /// Symbolic links (default: follow).
    pub symlinks: SymlinkPolicy,
}

impl Default for UploadDirOptions {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            mirror: false,
            symlinks: SymlinkPolicy::default(),
        }
    }
}

/// Options of [`LakeFsClient::download_prefix`].
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// The cache folder: downloads land in `<cache_root>/<repo>/<commit id>/<prefix>`.
    pub cache_root: PathBuf,
    /// Transfers at once (default [`DEFAULT_CONCURRENCY`]).
    pub concurrency: usize,
}

impl DownloadOptions {
    /// Downloads into `cache_root` with the default concurrency.
    pub fn new(cache_root: impl Into<PathBuf>) -> Self {
        Self {
            cache_root: cache_root.into(),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// The same with at most `concurrency` transfers at once.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }
}

/// What `upload_dir` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Files uploaded.
    pub uploaded: usize,
    /// Files skipped because the branch already held identical content.
    pub skipped: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Remote objects deleted because they are not in the folder (mirror mode).
    pub deleted: usize,
    /// Symbolic links left out ([`SymlinkPolicy::Skip`]).
    pub skipped_links: Vec<PathBuf>,
}

/// What `download_prefix` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadReport {
    /// The local folder holding the prefix's files.
    pub dir: PathBuf,
    /// The commit downloaded.
    pub commit_id: String,
    /// Files in the folder.
    pub files: usize,
    /// Files transferred by this call (0 on a cache hit).
    pub transferred: usize,
    /// Bytes transferred by this call.
    pub bytes: u64,
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> LakeFsError + 'a {
    move |source| LakeFsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Every file under `dir` as (path on disk, path relative to `dir` with `/` separators),
/// sorted; symbolic links handled by `policy` (skipped ones are pushed to `skipped`).
fn walk(
    dir: &Path,
    policy: SymlinkPolicy,
    skipped: &mut Vec<PathBuf>,
) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut seen_dirs = std::collections::HashSet::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, rel_dir)) = stack.pop() {
        let canonical = std::fs::canonicalize(&d).map_err(io_err("resolve", &d))?;
        if !seen_dirs.insert(canonical) {
            continue;
        }
        for entry in std::fs::read_dir(&d).map_err(io_err("list", &d))? {
            let entry = entry.map_err(io_err("list", &d))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                return Err(LakeFsError::Io {
                    action: "refusing (its name is not valid UTF-8, and lakeFS keys are text; rename it)",
                    path,
                    source: std::io::Error::other("file name is not UTF-8"),
                });
            };
            let rel = format!("{rel_dir}{name}");
            let mut kind = entry.file_type().map_err(io_err("stat", &path))?;
            if kind.is_symlink() {
                match policy {
                    SymlinkPolicy::Skip => {
                        skipped.push(path);
                        continue;
                    }
                    SymlinkPolicy::Refuse => {
                        return Err(LakeFsError::Io {
                            action: "refusing symbolic link",
                            path,
                            source: std::io::Error::other("the upload's symlink policy is Refuse"),
                        });
                    }
                    SymlinkPolicy::Follow => {
                        kind = std::fs::metadata(&path)
                            .map_err(io_err("follow link", &path))?
                            .file_type();
                    }
                }
            }
            if kind.is_dir() {
                stack.push((path, format!("{rel}/")));
            } else if kind.is_file() {
                out.push((path, rel));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// `prefix` as a folder prefix: empty, or ending with exactly one `/` (`data` -> `data/`), so
/// that `data` never matches `data2/`.
pub fn folder_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

/// The local path of object `path` (relative to `prefix`) under `dest`, refusing any path that
/// would land outside `dest` (`..`, absolute paths, backslashes, drive prefixes).
pub fn safe_local_path(dest: &Path, prefix: &str, path: &str) -> Result<PathBuf> {
    let refuse = || LakeFsError::UnsafePath {
        path: path.to_string(),
        dest: dest.display().to_string(),
    };
    let rel = path
        .strip_prefix(prefix)
        .unwrap_or(path)
        .trim_start_matches('/');
    if rel.is_empty() || path.contains('\\') || path.contains('\0') || path.starts_with('/') {
        return Err(refuse());
    }
    let rel_path = Path::new(rel);
    if rel_path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(refuse());
    }
    Ok(dest.join(rel_path))
}

impl LakeFsClient {
    /// Uploads every file under `local` to `prefix` on `branch` with at most
    /// `opts.concurrency` transfers at once, skipping files whose MD5 equals the object already
    /// on the branch. With `opts.mirror`, objects under `prefix` that have no local file are
    /// deleted.
    pub async fn upload_dir(
        &self,
        local: &Path,
        repo: &str,
        branch: &str,
        prefix: &str,
        opts: &UploadDirOptions,
    ) -> Result<UploadReport> {
        let prefix = folder_prefix(prefix);
        let remote: HashMap<String, String> = self
            .list_objects(repo, branch, &prefix, None)
            .map_ok(|o| (o.path, o.checksum))
            .try_collect()
            .await?;
        let mut skipped_links = Vec::new();
        let files = walk(local, opts.symlinks, &mut skipped_links)?;
        let mut wanted = std::collections::HashSet::new();
        let jobs: Vec<(PathBuf, String)> = files
            .into_iter()
            .map(|(f, rel)| {
                let key = format!("{prefix}{rel}");
                wanted.insert(key.clone());
                (f, key)
            })
            .collect();
        let results: Vec<(bool, u64)> = futures::stream::iter(jobs)
            .map(|(file, key)| {
                let remote_sum = remote.get(&key).cloned();
                async move {
                    let (md5, size) = file_md5(&file).await?;
                    if remote_sum.is_some_and(|r| is_md5(&r) && r.eq_ignore_ascii_case(&md5)) {
                        return Ok((false, 0));
                    }
                    self.upload_file(repo, branch, &key, &file, &UploadOptions::default())
                        .await?;
                    Ok::<_, LakeFsError>((true, size))
                }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .try_collect()
            .await?;
        let mut report = UploadReport {
            skipped_links,
            ..UploadReport::default()
        };
        for (uploaded, bytes) in results {
            if uploaded {
                report.uploaded += 1;
                report.bytes += bytes;
            } else {
                report.skipped += 1;
            }
        }
        if opts.mirror {
            let extra: Vec<String> = remote.into_keys().filter(|k| !wanted.contains(k)).collect();
            if !extra.is_empty() {
                let errors = self.delete_objects(repo, branch, &extra).await?;
                if let Some(e) = errors.first() {
                    return Err(LakeFsError::Server {
                        request: format!(
                            "POST /repositories/{repo}/branches/{branch}/objects/delete"
                        ),
                        status: e.status_code,
                        message: e.message.clone(),
                        retry_after: None,
                    });
                }
                report.deleted = extra.len();
            }
        }
        Ok(report)
    }

    /// Downloads every object under the folder `prefix` at `reference` into
    /// `<cache_root>/<repo>/<commit id>/<prefix>` (resolving the ref to its commit first) with
    /// at most `concurrency` transfers ([`DownloadOptions`]). A folder already complete for that commit is reused as is;
    /// after an interrupted download, files already present with the right checksum are kept.
    pub async fn download_prefix(
        &self,
        repo: &str,
        reference: &str,
        prefix: &str,
        opts: &DownloadOptions,
    ) -> Result<DownloadReport> {
        let concurrency = opts.concurrency;
        let prefix = folder_prefix(prefix);
        let commit_id = self.resolve_commit(repo, reference).await?;
        let dir = opts
            .cache_root
            .join(repo)
            .join(&commit_id)
            .join(prefix.trim_end_matches('/'));
        let marker = dir.join(".lakefs-complete");
        if let Ok(text) = tokio::fs::read_to_string(&marker).await
            && let Ok(files) = text.trim().parse::<usize>()
        {
            return Ok(DownloadReport {
                dir,
                commit_id,
                files,
                transferred: 0,
                bytes: 0,
            });
        }
        let objects: Vec<crate::types::ObjectStats> = self
            .list_objects(repo, &commit_id, &prefix, None)
            .try_collect()
            .await?;
        let jobs: Vec<(crate::types::ObjectStats, PathBuf)> = objects
            .into_iter()
            .filter(|o| o.path_type == "object")
            .map(|o| {
                let dest = safe_local_path(&dir, &prefix, &o.path)?;
                Ok((o, dest))
            })
            .collect::<Result<_>>()?;
        let files = jobs.len();
        let commit = commit_id.as_str();
        let transfers: Vec<Option<u64>> = futures::stream::iter(jobs)
            .map(|(stats, dest)| async move {
                if already_present(&dest, &stats).await? {
                    return Ok(None);
                }
                self.download_stated(repo, commit, &stats, &dest).await?;
                Ok::<_, LakeFsError>(Some(stats.size_bytes.unwrap_or(0)))
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_err("create", &dir))?;
        tokio::fs::write(&marker, files.to_string())
            .await
            .map_err(io_err("write", &marker))?;
        Ok(DownloadReport {
            dir,
            commit_id,
            files,
            transferred: transfers.iter().flatten().count(),
            bytes: transfers.iter().flatten().sum(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        let dest = Path::new("/cache/x");
        assert_eq!(
            safe_local_path(dest, "data/", "data/a/b.png").expect("ok"),
            Path::new("/cache/x/a/b.png")
        );
        for bad in [
            "data/../../etc/passwd",
            "/etc/passwd",
            "data/..\\x",
            "data/./a",
            "data/",
        ] {
            assert!(safe_local_path(dest, "data/", bad).is_err(), "{bad}");
        }
    }
}
