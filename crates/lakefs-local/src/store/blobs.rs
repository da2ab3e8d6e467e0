//! Content-addressed blobs under `<data folder>/blobs/<sha256[..2]>/<sha256>`: written by
//! streaming into a temporary file (MD5 and sha256 computed on the way, fsynced), then renamed
//! into place, so a blob on disk is always complete.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::StoreError;

/// A written blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Hex sha256 (the blob's name).
    pub sha256: String,
    /// Hex MD5 (lakeFS's checksum of single-part uploads).
    pub md5: String,
    /// Size in bytes.
    pub size: u64,
}

/// The blob folder of a store (usable without the store's lock).
#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
}

impl Blobs {
    /// The blobs of the data folder `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// Where the blob with this sha256 lives.
    pub fn path(&self, sha: &str) -> PathBuf {
        self.root
            .join("blobs")
            .join(&sha[..2.min(sha.len())])
            .join(sha)
    }

    /// Streams bytes into a blob; a stream error is [`StoreError::Invalid`] (the upload broke
    /// off), a disk error [`StoreError::Internal`].
    pub async fn write<S>(&self, mut stream: S) -> Result<BlobInfo, StoreError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin,
    {
        let tmp_dir = self.root.join("tmp");
        let tmp = tempfile::NamedTempFile::new_in(&tmp_dir)
            .map_err(|e| StoreError::io("create a temporary file in", &tmp_dir, e))?;
        let (file, tmp_path) = tmp.into_parts();
        let mut out = tokio::fs::File::from_std(file);
        let (mut md5, mut sha) = (Md5::new(), Sha256::new());
        let mut size = 0u64;
        let disk = |e: std::io::Error| StoreError::io("write", &tmp_path, e);
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| StoreError::Invalid(format!("upload interrupted: {e}")))?;
            md5.update(&chunk);
            sha.update(&chunk);
            size += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(disk)?;
        }
        out.flush().await.map_err(disk)?;
        out.sync_all().await.map_err(disk)?;
        let sha256 = hex::encode(sha.finalize());
        let dest = self.path(&sha256);
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::io("create", dir, e))?;
        }
        tmp_path
            .persist(&dest)
            .map_err(|e| StoreError::io("rename into", &dest, e.error))?;
        Ok(BlobInfo {
            sha256,
            md5: hex::encode(md5.finalize()),
            size,
        })
    }
}
