//! Run artifacts through MLflow's artifact proxy (`mlflow-artifacts:` URIs): streaming upload
//! and download (never the whole file in memory), delete, and listing.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use rest_transport::Service as _;

use crate::client::MlflowClient;
use crate::error::{MlflowError, Result};
use crate::types::FileInfo;

const PROXY: &str = "/api/2.0/mlflow-artifacts/artifacts";
/// Artifact transfers may take much longer than metadata calls.
const TRANSFER_TIMEOUT_FACTOR: u32 = 30;

/// The proxy path of an `mlflow-artifacts:` URI (`mlflow-artifacts:/1/<run>/artifacts` or
/// `mlflow-artifacts://host:port/1/<run>/artifacts` -> `1/<run>/artifacts`).
pub fn proxy_path(artifact_uri: &str) -> Result<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
        MlflowError::Config(format!(
            "artifact URI {artifact_uri:?} is not served by the MLflow artifact proxy; start the server with --artifacts-destination (proxied artifacts)"
        ))
    })?;
    let path = match rest.strip_prefix("//") {
        Some(with_authority) => with_authority.split_once('/').map_or("", |(_, p)| p),
        None => rest,
    };
    Ok(path.trim_matches('/').to_string())
}

use rest_transport::encode::path as encode_path;

fn check_relative(rel: &str) -> Result<()> {
    if rel.starts_with('/') || rel.split('/').any(|s| s == "..") || rel.contains('\\') {
        return Err(MlflowError::Config(format!(
            "artifact path {rel:?} must be relative, without '..' or backslashes"
        )));
    }
    Ok(())
}

impl MlflowClient {
    fn artifact_url_path(&self, artifact_uri: &str, rel: &str) -> Result<String> {
        check_relative(rel)?;
        let root = proxy_path(artifact_uri)?;
        let full = if rel.is_empty() {
            root
        } else {
            format!("{root}/{rel}")
        };
        Ok(format!("{PROXY}/{}", encode_path(&full)))
    }

    fn transfer_timeout(&self) -> Duration {
        self.request_timeout() * TRANSFER_TIMEOUT_FACTOR
    }

    /// Uploads `file` to `rel` under the artifact root `artifact_uri` (a run's
    /// `info.artifact_uri`), streaming it from disk. Retried on transient errors.
    pub async fn upload_artifact(&self, artifact_uri: &str, rel: &str, file: &Path) -> Result<()> {
        let path = self.artifact_url_path(artifact_uri, rel)?;
        let label = format!("PUT {path}");
        let attempt = || async {
            let (body, len) =
                rest_transport::file_body(file)
                    .await
                    .map_err(|e| MlflowError::Io {
                        action: "open",
                        path: file.to_path_buf(),
                        source: e,
                    })?;
            let request = self
                .request(Method::PUT, &path)
                .timeout(self.transfer_timeout())
                .header(reqwest::header::CONTENT_LENGTH, len)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body);
            self.send_once(&label, request, self.transfer_timeout())
                .await?;
            Ok(())
        };
        self.with_retries(attempt).await
    }

    /// Uploads every file under the folder `dir` to `rel` under the artifact root, keeping
    /// relative paths (`rel` = "" puts them at the root). Returns the number of files.
    pub async fn upload_artifact_dir(
        &self,
        artifact_uri: &str,
        rel: &str,
        dir: &Path,
    ) -> Result<usize> {
        let mut stack = vec![(dir.to_path_buf(), rel.trim_matches('/').to_string())];
        let mut files = Vec::new();
        while let Some((d, prefix)) = stack.pop() {
            let entries = std::fs::read_dir(&d).map_err(|e| MlflowError::Io {
                action: "list",
                path: d.clone(),
                source: e,
            })?;
            for entry in entries {
                let entry = entry.map_err(|e| MlflowError::Io {
                    action: "list",
                    path: d.clone(),
                    source: e,
                })?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let target = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let p = entry.path();
                // Follows symbolic links, like MLflow's own log_artifacts.
                let meta = std::fs::metadata(&p).map_err(|e| MlflowError::Io {
                    action: "stat",
                    path: p.clone(),
                    source: e,
                })?;
                if meta.is_dir() {
                    stack.push((p, target));
                } else if meta.is_file() {
                    files.push((p, target));
                }
            }
        }
        files.sort();
        for (file, target) in &files {
            self.upload_artifact(artifact_uri, target, file).await?;
        }
        Ok(files.len())
    }

    /// Downloads artifact `rel` to `dest`: streamed into a temporary file beside `dest`, its
    /// size checked (against Content-Length, or the proxy's listing when the server sends
    /// none), then renamed into place (never half-written). Returns the byte count.
    pub async fn download_artifact(
        &self,
        artifact_uri: &str,
        rel: &str,
        dest: &Path,
    ) -> Result<u64> {
        let path = self.artifact_url_path(artifact_uri, rel)?;
        let label = format!("GET {path}");
        let attempt = || async {
            let request = self
                .request(Method::GET, &path)
                .timeout(self.transfer_timeout());
            let resp = self
                .send_once(&label, request, self.transfer_timeout())
                .await?;
            let expected = match resp.content_length() {
                Some(n) => n,
                None => self.listed_size(artifact_uri, rel).await?,
            };
            let staged = rest_transport::stream_to_temp(resp, dest, Some(expected), |_| {})
                .await
                .map_err(|e| self.download_error(&label, e))?;
            staged.persist().map_err(|e| self.download_error(&label, e))
        };
        self.with_retries(attempt).await
    }

    /// The size of artifact `rel` as the proxy's listing of its folder gives it.
    async fn listed_size(&self, artifact_uri: &str, rel: &str) -> Result<u64> {
        #[derive(Deserialize)]
        struct Listing {
            #[serde(default)]
            files: Vec<FileInfo>,
        }
        let (folder, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        check_relative(folder)?;
        let root = proxy_path(artifact_uri)?;
        let full = if folder.is_empty() {
            root
        } else {
            format!("{root}/{folder}")
        };
        let listing: Listing = self
            .call::<(), _>(
                Method::GET,
                PROXY,
                &[("path", full)],
                None,
                crate::client::Idempotent::Yes,
            )
            .await?;
        listing
            .files
            .iter()
            .find(|f| f.path.rsplit('/').next() == Some(name) && !f.is_dir)
            .and_then(|f| u64::try_from(f.file_size).ok())
            .ok_or_else(|| MlflowError::Decode {
                request: format!("GET {PROXY}?path={rel}"),
                reason: format!(
                    "the server sent no Content-Length and its listing has no size for {rel:?}, so the download cannot be checked"
                ),
            })
    }

    fn download_error(&self, label: &str, e: rest_transport::DownloadError) -> MlflowError {
        use rest_transport::DownloadError as D;
        match e {
            D::Body(e) => self.no_answer(label, &e, self.transfer_timeout()),
            D::Truncated { received, expected } => {
                <MlflowError as rest_transport::ClientError>::truncated(label, received, expected)
            }
            D::Oversized { .. } => MlflowError::Decode {
                request: label.to_string(),
                reason: e.to_string(),
            },
            D::Io {
                action,
                path,
                source,
            } => MlflowError::Io {
                action,
                path,
                source,
            },
        }
    }

    /// Deletes artifact `rel` under `artifact_uri`.
    pub async fn delete_artifact(&self, artifact_uri: &str, rel: &str) -> Result<()> {
        let path = self.artifact_url_path(artifact_uri, rel)?;
        let label = format!("DELETE {path}");
        let request = self.request(Method::DELETE, &path);
        self.send_once(&label, request, self.request_timeout())
            .await?;
        Ok(())
    }

    /// Lists the artifacts of `run_id` directly under `path` ("" = the root).
    pub async fn list_artifacts(&self, run_id: &str, path: &str) -> Result<Vec<FileInfo>> {
        #[derive(Deserialize)]
        struct Listing {
            #[serde(default)]
            files: Vec<FileInfo>,
        }
        let mut query = vec![("run_id", run_id.to_string())];
        if !path.is_empty() {
            query.push(("path", path.to_string()));
        }
        let r: Listing = self
            .call::<(), _>(
                Method::GET,
                "/api/2.0/mlflow/artifacts/list",
                &query,
                None,
                crate::client::Idempotent::Yes,
            )
            .await?;
        Ok(r.files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_come_from_the_uri() {
        assert_eq!(
            proxy_path("mlflow-artifacts:/1/abc/artifacts").expect("uri"),
            "1/abc/artifacts"
        );
        assert_eq!(
            proxy_path("mlflow-artifacts://host:5000/1/abc/artifacts").expect("uri"),
            "1/abc/artifacts"
        );
        assert!(proxy_path("s3://bucket/x").is_err());
        assert!(check_relative("../etc/passwd").is_err());
        assert!(check_relative("/abs").is_err());
        assert_eq!(encode_path("a b/c#d"), "a%20b/c%23d");
    }
}
