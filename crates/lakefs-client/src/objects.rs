//! Objects: streaming upload from a file, stat, ranged get, verified streaming download to a
//! file (temporary file, size and MD5 check, atomic rename), listing, deletes and copy.

use std::collections::BTreeMap;
use std::path::Path;

use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::client::{Idempotent, LakeFsClient, seg};
use crate::error::{LakeFsError, Result};
use crate::types::{ObjectError, ObjectStats};

/// Options of an upload.
#[derive(Debug, Clone, Default)]
pub struct UploadOptions {
    /// User metadata, sent as `X-Lakefs-Meta-<key>` headers.
    pub metadata: BTreeMap<String, String>,
    /// Content type.
    pub content_type: Option<String>,
    /// Create only: fail with [`LakeFsError::PreconditionFailed`] if the path exists.
    pub if_absent: bool,
}

/// Whether `checksum` is a plain hex MD5 (single-part upload), which a download can verify.
pub fn is_md5(checksum: &str) -> bool {
    checksum.len() == 32 && checksum.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Streams a file through MD5; returns (hex digest, size).
pub async fn file_md5(path: &Path) -> Result<(String, u64)> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| LakeFsError::Io {
            action: "open",
            path: path.to_path_buf(),
            source: e,
        })?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).await.map_err(|e| LakeFsError::Io {
            action: "read",
            path: path.to_path_buf(),
            source: e,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

impl LakeFsClient {
    fn upload_request(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        opts: &UploadOptions,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .request(
                Method::POST,
                &format!(
                    "/repositories/{}/branches/{}/objects",
                    seg(repo),
                    seg(branch)
                ),
            )
            .timeout(self.transfer_timeout())
            .query(&[("path", path)])
            .header(
                reqwest::header::CONTENT_TYPE,
                opts.content_type
                    .as_deref()
                    .unwrap_or("application/octet-stream"),
            );
        for (k, v) in &opts.metadata {
            req = req.header(format!("X-Lakefs-Meta-{k}"), v);
        }
        if opts.if_absent {
            req = req.header(reqwest::header::IF_NONE_MATCH, "*");
        }
        req
    }

    /// Uploads a file to `path` on `branch`, streaming it (memory stays flat). Retried on
    /// transient errors (the file is re-read for each attempt).
    pub async fn upload_file(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        file: &Path,
        opts: &UploadOptions,
    ) -> Result<ObjectStats> {
        let label = format!("POST /repositories/{repo}/branches/{branch}/objects?path={path}");
        let attempt = || async {
            let f = tokio::fs::File::open(file)
                .await
                .map_err(|e| LakeFsError::Io {
                    action: "open",
                    path: file.to_path_buf(),
                    source: e,
                })?;
            let len = f
                .metadata()
                .await
                .map_err(|e| LakeFsError::Io {
                    action: "stat",
                    path: file.to_path_buf(),
                    source: e,
                })?
                .len();
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                f,
                256 * 1024,
            ));
            let resp = self
                .upload_request(repo, branch, path, opts)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(body)
                .send()
                .await
                .map_err(|e| self.transport_error(&label, e))?;
            if !resp.status().is_success() {
                return Err(self.status_error(&label, resp).await);
            }
            resp.json::<ObjectStats>()
                .await
                .map_err(|e| LakeFsError::Decode {
                    request: label.clone(),
                    reason: e.to_string(),
                })
        };
        self.retry_config().run(attempt).await
    }

    /// Uploads bytes to `path` on `branch`.
    pub async fn upload_bytes(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        data: bytes::Bytes,
        opts: &UploadOptions,
    ) -> Result<ObjectStats> {
        let label = format!("POST /repositories/{repo}/branches/{branch}/objects?path={path}");
        let resp = self
            .send(&label, Idempotent::Yes, || {
                self.upload_request(repo, branch, path, opts)
                    .body(data.clone())
            })
            .await?;
        resp.json::<ObjectStats>()
            .await
            .map_err(|e| LakeFsError::Decode {
                request: label,
                reason: e.to_string(),
            })
    }

    /// Metadata of the object at `path` in `reference`.
    pub async fn stat_object(
        &self,
        repo: &str,
        reference: &str,
        path: &str,
    ) -> Result<ObjectStats> {
        self.json(
            Method::GET,
            &format!(
                "/repositories/{}/refs/{}/objects/stat",
                seg(repo),
                seg(reference)
            ),
            &[("path", path.to_string()), ("user_metadata", "true".into())],
            None,
            Idempotent::Yes,
        )
        .await
    }

    /// The bytes of an object, or of `range` (`(start, Some(end_inclusive))`, or `(start, None)`
    /// to the end). Small objects only: use [`LakeFsClient::download_object`] for files.
    pub async fn get_object(
        &self,
        repo: &str,
        reference: &str,
        path: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<bytes::Bytes> {
        let route = format!(
            "/repositories/{}/refs/{}/objects",
            seg(repo),
            seg(reference)
        );
        let label = format!("GET {route}?path={path}");
        let resp = self
            .send(&label, Idempotent::Yes, || {
                let mut req = self
                    .request(Method::GET, &route)
                    .timeout(self.transfer_timeout())
                    .query(&[("path", path)]);
                if let Some((start, end)) = range {
                    let end = end.map_or(String::new(), |e| e.to_string());
                    req = req.header(reqwest::header::RANGE, format!("bytes={start}-{end}"));
                }
                req
            })
            .await?;
        resp.bytes()
            .await
            .map_err(|e| self.transport_error(&label, e))
    }

    /// Downloads an object to `dest`: streamed into a temporary file beside it, checked against
    /// the object's size and (for single-part uploads) MD5, then renamed into place. A
    /// connection lost mid-way is retried from the start. Returns the object's stats.
    pub async fn download_object(
        &self,
        repo: &str,
        reference: &str,
        path: &str,
        dest: &Path,
    ) -> Result<ObjectStats> {
        let stats = self.stat_object(repo, reference, path).await?;
        let route = format!(
            "/repositories/{}/refs/{}/objects",
            seg(repo),
            seg(reference)
        );
        let label = format!("GET {route}?path={path}");
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| LakeFsError::Io {
                action: "create",
                path: dir.clone(),
                source: e,
            })?;
        let uri = format!("lakefs://{repo}/{reference}/{path}");
        let attempt = || async {
            let resp = self
                .request(Method::GET, &route)
                .timeout(self.transfer_timeout())
                .query(&[("path", path)])
                .send()
                .await
                .map_err(|e| self.transport_error(&label, e))?;
            if !resp.status().is_success() {
                return Err(self.status_error(&label, resp).await);
            }
            let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| LakeFsError::Io {
                action: "create temp file in",
                path: dir.clone(),
                source: e,
            })?;
            let (file, tmp_path) = tmp.into_parts();
            let mut out = tokio::fs::File::from_std(file);
            let mut hasher = Md5::new();
            let mut written = 0u64;
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| self.transport_error(&label, e))?;
                hasher.update(&chunk);
                out.write_all(&chunk).await.map_err(|e| LakeFsError::Io {
                    action: "write",
                    path: dest.to_path_buf(),
                    source: e,
                })?;
                written += chunk.len() as u64;
            }
            out.flush().await.map_err(|e| LakeFsError::Io {
                action: "write",
                path: dest.to_path_buf(),
                source: e,
            })?;
            if let Some(size) = stats.size_bytes
                && size != written
            {
                // A short body is a transport failure (retried), not corruption.
                return Err(LakeFsError::Transport {
                    request: label.clone(),
                    endpoint: self.api_url().to_string(),
                    reason: format!("connection closed after {written} of {size} bytes"),
                });
            }
            let md5 = hex::encode(hasher.finalize());
            if is_md5(&stats.checksum) && !md5.eq_ignore_ascii_case(&stats.checksum) {
                return Err(LakeFsError::Integrity {
                    uri: uri.clone(),
                    reason: format!("MD5 {md5} != checksum {}", stats.checksum),
                });
            }
            out.sync_all().await.map_err(|e| LakeFsError::Io {
                action: "sync",
                path: dest.to_path_buf(),
                source: e,
            })?;
            tmp_path.persist(dest).map_err(|e| LakeFsError::Io {
                action: "rename into",
                path: dest.to_path_buf(),
                source: e.error,
            })?;
            Ok(())
        };
        self.retry_config().run(attempt).await?;
        Ok(stats)
    }

    /// Lists objects under `prefix`; with a `delimiter` ("/"), deeper paths collapse into
    /// `common_prefix` entries.
    pub fn list_objects(
        &self,
        repo: &str,
        reference: &str,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> impl Stream<Item = Result<ObjectStats>> + 'static {
        let mut query = vec![
            ("prefix", prefix.to_string()),
            ("user_metadata", "true".to_string()),
        ];
        if let Some(d) = delimiter {
            query.push(("delimiter", d.to_string()));
        }
        self.paged(
            format!(
                "/repositories/{}/refs/{}/objects/ls",
                seg(repo),
                seg(reference)
            ),
            query,
        )
    }

    /// Deletes one object from a branch (missing objects are not an error).
    pub async fn delete_object(&self, repo: &str, branch: &str, path: &str) -> Result<()> {
        self.text(
            Method::DELETE,
            &format!(
                "/repositories/{}/branches/{}/objects",
                seg(repo),
                seg(branch)
            ),
            &[("path", path.to_string())],
            None,
            Idempotent::Yes,
        )
        .await
        .map(|_| ())
    }

    /// Deletes many objects (1000 per call); returns the per-path errors lakeFS reported.
    pub async fn delete_objects(
        &self,
        repo: &str,
        branch: &str,
        paths: &[String],
    ) -> Result<Vec<ObjectError>> {
        #[derive(serde::Deserialize)]
        struct Errors {
            #[serde(default)]
            errors: Vec<ObjectError>,
        }
        let mut all = Vec::new();
        for chunk in paths.chunks(1000) {
            let body = json!({"paths": chunk});
            let e: Errors = self
                .json(
                    Method::POST,
                    &format!(
                        "/repositories/{}/branches/{}/objects/delete",
                        seg(repo),
                        seg(branch)
                    ),
                    &[],
                    Some(&body),
                    Idempotent::Yes,
                )
                .await?;
            all.extend(e.errors);
        }
        Ok(all)
    }

    /// Copies `src_path` at `src_ref` to `dest_path` on `branch`.
    pub async fn copy_object(
        &self,
        repo: &str,
        branch: &str,
        src_ref: &str,
        src_path: &str,
        dest_path: &str,
    ) -> Result<ObjectStats> {
        let body = json!({"src_path": src_path, "src_ref": src_ref});
        self.json(
            Method::POST,
            &format!(
                "/repositories/{}/branches/{}/objects/copy",
                seg(repo),
                seg(branch)
            ),
            &[("dest_path", dest_path.to_string())],
            Some(&body),
            Idempotent::Yes,
        )
        .await
    }
}
