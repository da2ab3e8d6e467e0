//! Folder-level transfers: `upload_dir` (bounded concurrency, skips files whose MD5 already
//! matches) and `download_prefix` (bounded concurrency into a cache keyed by commit id, so a
//! second download of the same commit transfers nothing).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use futures::{StreamExt, TryStreamExt};

use crate::client::LakeFsClient;
use crate::error::{LakeFsError, Result};
use crate::objects::{UploadOptions, file_md5, is_md5};

/// Default number of concurrent transfers.
pub const DEFAULT_CONCURRENCY: usize = 16;

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

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| LakeFsError::Io {
            action: "list",
            path: d.clone(),
            source: e,
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| LakeFsError::Io {
                action: "list",
                path: d.clone(),
                source: e,
            })?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| LakeFsError::Io {
                action: "stat",
                path: path.clone(),
                source: e,
            })?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
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
    /// Uploads every file under `local` to `prefix` on `branch` with at most `concurrency`
    /// transfers at once, skipping files whose MD5 equals the object already on the branch.
    /// With `mirror`, objects under `prefix` that have no local file are deleted.
    pub async fn upload_dir(
        &self,
        local: &Path,
        repo: &str,
        branch: &str,
        prefix: &str,
        concurrency: usize,
        mirror: bool,
    ) -> Result<UploadReport> {
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        let remote: HashMap<String, String> = self
            .list_objects(repo, branch, &prefix, None)
            .map_ok(|o| (o.path, o.checksum))
            .try_collect()
            .await?;
        let files = walk(local)?;
        let mut wanted = std::collections::HashSet::new();
        let jobs: Vec<(PathBuf, String)> = files
            .into_iter()
            .map(|f| {
                let rel = f
                    .strip_prefix(local)
                    .unwrap_or(&f)
                    .to_string_lossy()
                    .replace('\\', "/");
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
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        let mut report = UploadReport::default();
        for (uploaded, bytes) in results {
            if uploaded {
                report.uploaded += 1;
                report.bytes += bytes;
            } else {
                report.skipped += 1;
            }
        }
        if mirror {
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

    /// Downloads every object under `prefix` at `reference` into
    /// `cache_root/<repo>/<commit id>/<prefix>` (resolving the ref to its commit first) with at
    /// most `concurrency` transfers. A folder already complete for that commit is reused as is.
    pub async fn download_prefix(
        &self,
        repo: &str,
        reference: &str,
        prefix: &str,
        cache_root: &Path,
        concurrency: usize,
    ) -> Result<DownloadReport> {
        let commit_id = self.resolve_commit(repo, reference).await?;
        let dir = cache_root
            .join(repo)
            .join(&commit_id)
            .join(prefix.trim_matches('/'));
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
            .list_objects(repo, &commit_id, prefix, None)
            .try_collect()
            .await?;
        let jobs: Vec<(String, PathBuf, Option<u64>)> = objects
            .into_iter()
            .filter(|o| o.path_type == "object")
            .map(|o| {
                Ok((
                    o.path.clone(),
                    safe_local_path(&dir, prefix, &o.path)?,
                    o.size_bytes,
                ))
            })
            .collect::<Result<_>>()?;
        let files = jobs.len();
        let commit = commit_id.clone();
        let sizes: Vec<u64> = futures::stream::iter(jobs)
            .map(|(path, dest, _)| {
                let commit = commit.clone();
                async move {
                    let stats = self.download_object(repo, &commit, &path, &dest).await?;
                    Ok::<_, LakeFsError>(stats.size_bytes.unwrap_or(0))
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| LakeFsError::Io {
                action: "create",
                path: dir.clone(),
                source: e,
            })?;
        tokio::fs::write(&marker, files.to_string())
            .await
            .map_err(|e| LakeFsError::Io {
                action: "write",
                path: marker.clone(),
                source: e,
            })?;
        Ok(DownloadReport {
            dir,
            commit_id,
            files,
            transferred: files,
            bytes: sizes.iter().sum(),
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
