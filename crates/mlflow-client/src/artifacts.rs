//! Run artifacts through MLflow's artifact proxy (`mlflow-artifacts:` URIs): streaming upload
//! and download (never the whole file in memory), delete, and listing.

use std::path::Path;
use std::time::Duration;

use backon::Retryable;
use futures::StreamExt;
use reqwest::Method;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

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

fn encode_path(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            url::form_urlencoded::byte_serialize(s.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        })
        .collect::<Vec<_>>()
        .join("/")
}

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
            let f = tokio::fs::File::open(file)
                .await
                .map_err(|e| MlflowError::Io {
                    action: "open",
                    path: file.to_path_buf(),
                    source: e,
                })?;
            let len = f
                .metadata()
                .await
                .map_err(|e| MlflowError::Io {
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
                .request(Method::PUT, &path)
                .timeout(self.transfer_timeout())
                .header(reqwest::header::CONTENT_LENGTH, len)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body)
                .send()
                .await
                .map_err(|e| self.transport_error(&label, e))?;
            let status = resp.status();
            if !status.is_success() {
                let bytes = resp.bytes().await.unwrap_or_default();
                return Err(self.status_error(&label, status, &bytes));
            }
            Ok(())
        };
        attempt
            .retry(self.retry_policy())
            .when(MlflowError::is_retryable)
            .notify(|e, d| tracing::warn!("{e}; retrying in {d:?}"))
            .await
    }

    /// Downloads artifact `rel` to `dest`: streamed into a temporary file beside `dest`, size
    /// checked against Content-Length, then renamed into place (never half-written).
    pub async fn download_artifact(
        &self,
        artifact_uri: &str,
        rel: &str,
        dest: &Path,
    ) -> Result<u64> {
        let path = self.artifact_url_path(artifact_uri, rel)?;
        let label = format!("GET {path}");
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| MlflowError::Io {
                action: "create",
                path: dir.clone(),
                source: e,
            })?;
        let attempt = || async {
            let resp = self
                .request(Method::GET, &path)
                .timeout(self.transfer_timeout())
                .send()
                .await
                .map_err(|e| self.transport_error(&label, e))?;
            let status = resp.status();
            if !status.is_success() {
                let bytes = resp.bytes().await.unwrap_or_default();
                return Err(self.status_error(&label, status, &bytes));
            }
            let expected = resp.content_length();
            let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| MlflowError::Io {
                action: "create temp file in",
                path: dir.clone(),
                source: e,
            })?;
            let (std_file, tmp_path) = tmp.into_parts();
            let mut out = tokio::fs::File::from_std(std_file);
            let mut stream = resp.bytes_stream();
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.transport_error(&label, e))?;
                out.write_all(&chunk).await.map_err(|e| MlflowError::Io {
                    action: "write",
                    path: dest.to_path_buf(),
                    source: e,
                })?;
                written += chunk.len() as u64;
            }
            out.flush().await.map_err(|e| MlflowError::Io {
                action: "write",
                path: dest.to_path_buf(),
                source: e,
            })?;
            if let Some(n) = expected
                && n != written
            {
                return Err(MlflowError::Unreachable {
                    request: label.clone(),
                    url: self.tracking_uri().to_string(),
                    reason: format!("connection closed after {written} of {n} bytes"),
                });
            }
            out.sync_all().await.map_err(|e| MlflowError::Io {
                action: "sync",
                path: dest.to_path_buf(),
                source: e,
            })?;
            tmp_path.persist(dest).map_err(|e| MlflowError::Io {
                action: "rename into",
                path: dest.to_path_buf(),
                source: e.error,
            })?;
            Ok(written)
        };
        attempt
            .retry(self.retry_policy())
            .when(MlflowError::is_retryable)
            .notify(|e, d| tracing::warn!("{e}; retrying in {d:?}"))
            .await
    }

    /// Deletes artifact `rel` under `artifact_uri`.
    pub async fn delete_artifact(&self, artifact_uri: &str, rel: &str) -> Result<()> {
        let path = self.artifact_url_path(artifact_uri, rel)?;
        let label = format!("DELETE {path}");
        let resp = self
            .request(Method::DELETE, &path)
            .send()
            .await
            .map_err(|e| self.transport_error(&label, e))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.unwrap_or_default();
            return Err(self.status_error(&label, status, &bytes));
        }
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
