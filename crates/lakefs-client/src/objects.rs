//! Objects: streaming upload from a file, stat, ranged get, verified streaming download to a
//! file (temporary file, size and MD5 check, atomic rename), listing, deletes and copy.

use std::collections::BTreeMap;
use std::path::Path;

use futures::Stream;
use md5::{Digest, Md5};
use reqwest::Method;
use serde_json::json;

use rest_transport::Service as _;

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

/// Whether `dest` already holds the object's bytes (size and MD5 checksum).
pub(crate) async fn already_present(dest: &Path, stats: &ObjectStats) -> Result<bool> {
    let same_size = tokio::fs::metadata(dest)
        .await
        .is_ok_and(|m| m.is_file() && Some(m.len()) == stats.size_bytes);
    if !same_size || !is_md5(&stats.checksum) {
        return Ok(false);
    }
    let (md5, _) = file_md5(dest).await?;
    Ok(md5.eq_ignore_ascii_case(&stats.checksum))
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
            let (body, len) =
                rest_transport::file_body(file)
                    .await
                    .map_err(|e| LakeFsError::Io {
                        action: "open",
                        path: file.to_path_buf(),
                        source: e,
                    })?;
            let request = self
                .upload_request(repo, branch, path, opts)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(body);
            let resp = self
                .send_once(&label, request, self.transfer_timeout())
                .await?;
            rest_transport::exchange::read_json(self, &label, resp).await
        };
        self.with_retries(attempt).await
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
        rest_transport::exchange::read_json(self, &label, resp).await
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
            .map_err(|e| self.no_answer(&label, &e, self.transfer_timeout()))
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
        self.download_stated(repo, reference, &stats, dest).await?;
        Ok(stats)
    }

    /// Like [`LakeFsClient::download_object`], but transfers nothing when `dest` already holds
    /// the object's bytes (same size and MD5 checksum). Returns the stats and whether bytes
    /// were transferred.
    pub async fn download_object_cached(
        &self,
        repo: &str,
        reference: &str,
        path: &str,
        dest: &Path,
    ) -> Result<(ObjectStats, bool)> {
        let stats = self.stat_object(repo, reference, path).await?;
        if already_present(dest, &stats).await? {
            return Ok((stats, false));
        }
        self.download_stated(repo, reference, &stats, dest).await?;
        Ok((stats, true))
    }

    /// Downloads the object described by `stats` (from a stat or a listing) to `dest`.
    pub(crate) async fn download_stated(
        &self,
        repo: &str,
        reference: &str,
        stats: &ObjectStats,
        dest: &Path,
    ) -> Result<()> {
        let path = stats.path.as_str();
        let route = format!(
            "/repositories/{}/refs/{}/objects",
            seg(repo),
            seg(reference)
        );
        let label = format!("GET {route}?path={path}");
        let uri = format!("lakefs://{repo}/{reference}/{path}");
        let attempt = || async {
            let request = self
                .request(Method::GET, &route)
                .timeout(self.transfer_timeout())
                .query(&[("path", path)]);
            let resp = self
                .send_once(&label, request, self.transfer_timeout())
                .await?;
            let mut hasher = Md5::new();
            let staged =
                rest_transport::stream_to_temp(resp, dest, stats.size_bytes, |c| hasher.update(c))
                    .await
                    .map_err(|e| self.download_error(&label, &uri, e))?;
            let md5 = hex::encode(hasher.finalize());
            if is_md5(&stats.checksum) && !md5.eq_ignore_ascii_case(&stats.checksum) {
                return Err(LakeFsError::Integrity {
                    uri: uri.clone(),
                    reason: format!("MD5 {md5} != checksum {}", stats.checksum),
                });
            }
            staged
                .persist()
                .map_err(|e| self.download_error(&label, &uri, e))?;
            Ok(())
        };
        self.with_retries(attempt).await
    }

    fn download_error(
        &self,
        label: &str,
        uri: &str,
        e: rest_transport::DownloadError,
    ) -> LakeFsError {
        use rest_transport::DownloadError as D;
        match e {
            D::Body(e) => self.no_answer(label, &e, self.transfer_timeout()),
            D::Truncated { received, expected } => {
                <LakeFsError as rest_transport::ClientError>::truncated(label, received, expected)
            }
            D::Oversized { .. } => LakeFsError::Integrity {
                uri: uri.to_string(),
                reason: e.to_string(),
            },
            D::Io {
                action,
                path,
                source,
            } => LakeFsError::Io {
                action,
                path,
                source,
            },
        }
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
