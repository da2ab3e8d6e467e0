//! Streaming bodies: a file as a request body without reading it into memory, and a response
//! body streamed into a temporary file beside its destination, size-checked, and only then
//! renamed into place (never a half-written destination).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

/// Why a streamed download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The body broke off (connection reset, timeout).
    #[error("reading the body: {0}")]
    Body(#[source] reqwest::Error),
    /// The body ended before the expected size: the connection was closed early.
    #[error("connection closed after {received} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        received: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// More bytes arrived than expected.
    #[error("received {received} bytes, expected {expected}")]
    Oversized {
        /// Bytes received.
        received: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// Local file I/O.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> DownloadError + 'a {
    move |source| DownloadError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Opens `path` as a streamed request body; returns it with its length (for Content-Length).
pub async fn file_body(path: &Path) -> std::io::Result<(reqwest::Body, u64)> {
    let f = tokio::fs::File::open(path).await?;
    let len = f.metadata().await?.len();
    let body =
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024));
    Ok((body, len))
}

/// A downloaded body in a temporary file beside its destination. [`StagedDownload::persist`]
/// renames it into place; dropping it removes the temporary file.
#[derive(Debug)]
pub struct StagedDownload {
    tmp: tempfile::TempPath,
    dest: PathBuf,
    /// Bytes written.
    pub bytes: u64,
}

impl StagedDownload {
    /// Renames the temporary file to the destination (atomic on one file system).
    pub fn persist(self) -> Result<u64, DownloadError> {
        let bytes = self.bytes;
        self.tmp
            .persist(&self.dest)
            .map_err(|e| DownloadError::Io {
                action: "rename into",
                path: self.dest.clone(),
                source: e.error,
            })?;
        Ok(bytes)
    }
}

/// The folder a destination file lives in (`.` for a bare file name), created if missing.
pub async fn parent_dir(dest: &Path) -> Result<PathBuf, DownloadError> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(io("create", &dir))?;
    Ok(dir)
}

/// Streams `resp`'s body into a temporary file beside `dest`, passing every chunk to `inspect`
/// (e.g. a hasher), and checks the byte count against `expected` (or, when `None`, the
/// response's Content-Length). Returns the staged file, synced, not yet renamed into place.
pub async fn stream_to_temp(
    resp: reqwest::Response,
    dest: &Path,
    expected: Option<u64>,
    mut inspect: impl FnMut(&[u8]),
) -> Result<StagedDownload, DownloadError> {
    let expected = expected.or(resp.content_length());
    let dir = parent_dir(dest).await?;
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io("create temp file in", &dir))?;
    let (file, tmp) = tmp.into_parts();
    let mut out = tokio::fs::File::from_std(file);
    let mut written = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(DownloadError::Body)?;
        inspect(&chunk);
        out.write_all(&chunk).await.map_err(io("write", dest))?;
        written += chunk.len() as u64;
    }
    out.flush().await.map_err(io("write", dest))?;
    match expected {
        Some(n) if written < n => {
            return Err(DownloadError::Truncated {
                received: written,
                expected: n,
            });
        }
        Some(n) if written > n => {
            return Err(DownloadError::Oversized {
                received: written,
                expected: n,
            });
        }
        _ => {}
    }
    out.sync_all().await.map_err(io("sync", dest))?;
    Ok(StagedDownload {
        tmp,
        dest: dest.to_path_buf(),
        bytes: written,
    })
}
