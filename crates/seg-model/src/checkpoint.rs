//! One model file: a header with the metadata needed to rebuild and use the model
//! (architecture, classes, preprocessing, metrics, versions, sha256 of the weights) followed by
//! the burnpack weights. Loading checks all of it and refuses, with a clear error, any file
//! that does not fit; it never panics.
//!
//! Layout: `b"SEGMODL\0"`, format version (u32 LE), metadata length (u64 LE), metadata JSON,
//! burnpack weights.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use atomic_write_file::AtomicWriteFile;
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::{ClassInfo, MaskEncoding, Preprocess};
use crate::error::{Result, SegError};
use crate::model::{UNet, UNetConfig};

/// Version of the file layout and metadata schema this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The version of the burn that is linked (burn-store's own, which is burn's: they are released
/// together), recorded in every checkpoint.
pub fn burn_version() -> String {
    burn::store::BurnpackStore::default_metadata()
        .remove("version")
        .unwrap_or_else(|| "unknown".into())
}
const MAGIC: &[u8; 8] = b"SEGMODL\0";
const MAX_META_BYTES: u64 = 16 << 20;

/// Everything besides the weights that is needed to use a model exactly as it was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The architecture.
    pub model: UNetConfig,
    /// How the training masks encoded classes.
    pub mask_encoding: MaskEncoding,
    /// Class names and overlay colours, in id order.
    pub classes: Vec<ClassInfo>,
    /// Resize and normalisation applied before the model.
    pub preprocess: Preprocess,
    /// Probability threshold of the foreground for binary models.
    pub threshold: f32,
    /// Validation metrics of this checkpoint (name -> value).
    pub metrics: BTreeMap<String, f64>,
    /// Epoch (1-based) the weights come from.
    pub epoch: usize,
    /// burn version that wrote the weights.
    pub burn_version: String,
    /// seg-model version that wrote the file.
    pub seg_model_version: String,
    /// Hex sha256 of the weights section (filled in by [`save`]).
    pub weights_sha256: String,
}

impl CheckpointMeta {
    /// Metadata for a model about to be saved (weights hash filled in by [`save`]).
    pub fn new(
        model: UNetConfig,
        mask_encoding: MaskEncoding,
        preprocess: Preprocess,
        metrics: BTreeMap<String, f64>,
        epoch: usize,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            classes: mask_encoding.classes(),
            model,
            mask_encoding,
            preprocess,
            threshold: 0.5,
            metrics,
            epoch,
            burn_version: burn_version(),
            seg_model_version: env!("CARGO_PKG_VERSION").to_string(),
            weights_sha256: String::new(),
        }
    }
}

/// A loaded model with its metadata.
#[derive(Debug)]
pub struct Checkpoint {
    /// The model, in validation mode, on the device it was loaded to.
    pub model: UNet,
    /// Its metadata.
    pub meta: CheckpointMeta,
}

/// Where a checkpoint was written, and the identity of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCheckpoint {
    /// The file.
    pub path: PathBuf,
    /// Hex sha256 of the whole file: what lineage records and downloads verify.
    pub sha256: String,
    /// File size in bytes.
    pub bytes: u64,
}

fn ck_err(path: &Path, reason: impl Into<String>) -> SegError {
    SegError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Writes `model` and `meta` to `path` atomically (temporary file, fsync, rename).
pub fn save(path: &Path, model: UNet, mut meta: CheckpointMeta) -> Result<SavedCheckpoint> {
    let weights = model
        .into_record()
        .into_bytes()
        .map_err(|e| ck_err(path, format!("cannot serialise weights: {e}")))?;
    meta.format_version = FORMAT_VERSION;
    meta.weights_sha256 = hex::encode(Sha256::digest(&weights[..]));
    let meta_json = serde_json::to_vec(&meta).map_err(|e| ck_err(path, e.to_string()))?;
    let file = [
        &MAGIC[..],
        &FORMAT_VERSION.to_le_bytes(),
        &(meta_json.len() as u64).to_le_bytes(),
        &meta_json,
        &weights[..],
    ]
    .concat();
    write_atomically(path, &file)?;
    Ok(SavedCheckpoint {
        path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(&file)),
        bytes: file.len() as u64,
    })
}

/// Writes `bytes` to `path` atomically (the `atomic-write-file` crate: a temporary file in the
/// same folder, fsync, rename, fsync of the folder): a reader sees the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| SegError::io("create", dir, e))?;
    }
    let mut file = AtomicWriteFile::open(path).map_err(|e| SegError::io("create", path, e))?;
    file.write_all(bytes)
        .map_err(|e| SegError::io("write", path, e))?;
    file.commit()
        .map_err(|e| SegError::io("rename into", path, e))
}

/// Hex sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| SegError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| SegError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn split_file<'a>(path: &Path, bytes: &'a [u8]) -> Result<(CheckpointMeta, &'a [u8])> {
    if bytes.len() < 20 || &bytes[..8] != MAGIC {
        return Err(ck_err(path, "not a seg-model checkpoint (bad magic bytes)"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != FORMAT_VERSION {
        return Err(ck_err(
            path,
            format!(
                "format version {version}, this build reads version {FORMAT_VERSION}; use a matching seg-model release"
            ),
        ));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[12..20]);
    let meta_len = u64::from_le_bytes(len);
    if meta_len > MAX_META_BYTES || 20 + meta_len as usize > bytes.len() {
        return Err(ck_err(path, "metadata length is corrupt (file truncated?)"));
    }
    let end = 20 + meta_len as usize;
    let meta: CheckpointMeta = serde_json::from_slice(&bytes[20..end])
        .map_err(|e| ck_err(path, format!("metadata does not parse: {e}")))?;
    if meta.format_version != FORMAT_VERSION {
        return Err(ck_err(
            path,
            format!(
                "metadata format version {} does not match header version {FORMAT_VERSION}",
                meta.format_version
            ),
        ));
    }
    Ok((meta, &bytes[end..]))
}

/// Reads only the metadata of a checkpoint (cheap: no weights are decoded).
pub fn read_meta(path: &Path) -> Result<CheckpointMeta> {
    let bytes = std::fs::read(path).map_err(|e| SegError::io("read", path, e))?;
    split_file(path, &bytes).map(|(meta, _)| meta)
}

/// Loads a checkpoint onto `device` (a non-autodiff device for inference). Refuses a file whose
/// weights do not match their recorded sha256 or do not fit the recorded architecture.
pub fn load(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| SegError::io("read", path, e))?;
    let (meta, weights) = split_file(path, &bytes)?;
    let actual = hex::encode(Sha256::digest(weights));
    if actual != meta.weights_sha256 {
        return Err(ck_err(
            path,
            format!(
                "weights sha256 {actual} does not match the recorded {}: the file is corrupt or was modified",
                meta.weights_sha256
            ),
        ));
    }
    meta.model
        .validate()
        .map_err(|e| ck_err(path, format!("recorded architecture is invalid: {e}")))?;
    meta.preprocess
        .validate()
        .map_err(|e| ck_err(path, format!("recorded preprocessing is invalid: {e}")))?;
    if meta.model.in_channels != meta.preprocess.channels {
        return Err(ck_err(
            path,
            "model in_channels differ from the preprocessing channels",
        ));
    }
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(weights.to_vec()))
        .map_err(|e| ck_err(path, format!("weights do not decode: {e}")))?;
    let model = meta.model.init(device)?;
    let model = model.try_load_record(record).map_err(|e| {
        ck_err(
            path,
            format!("weights do not fit the recorded architecture: {e}"),
        )
    })?;
    Ok(Checkpoint {
        model: model.valid(),
        meta,
    })
}

/// Like [`load`], but first checks the whole file's sha256 against `expected` (the value
/// recorded in lineage), refusing a mismatch.
pub fn load_verified(path: &Path, expected_sha256: &str, device: &Device) -> Result<Checkpoint> {
    let actual = file_sha256(path)?;
    if !actual.eq_ignore_ascii_case(expected_sha256.trim()) {
        return Err(ck_err(
            path,
            format!(
                "file sha256 {actual} does not match the expected {expected_sha256}; refusing to load it"
            ),
        ));
    }
    load(path, device)
}
