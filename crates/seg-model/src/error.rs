//! The one error type of seg-model: every variant names the file or value at fault.

use std::path::PathBuf;

/// Errors raised by seg-model. Each message says what went wrong, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SegError {
    /// A file or folder could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("read", "write", "list", ...).
        action: &'static str,
        /// The path at fault.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An image or mask file could not be decoded (corrupt, truncated or of an unknown format).
    #[error("cannot decode {path}: {reason} (is the file complete and a PNG/JPEG?)")]
    Decode {
        /// The file at fault.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// An image larger than the decoded-pixel limit (refused before decoding it).
    #[error(
        "{path} is {width}x{height} = {pixels} pixels, above the limit of {limit} decoded pixels per image (data.max_image_pixels): downscale it, or raise the limit if the memory is there"
    )]
    ImageTooLarge {
        /// The file.
        path: PathBuf,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// width x height.
        pixels: u64,
        /// The limit.
        limit: u64,
    },
    /// No mask of a dataset marks any pixel as a class other than background.
    #[error(
        "dataset {dir}: no mask has a foreground pixel under the {encoding} (the largest mask value is {max_value}); {hint}"
    )]
    NoForeground {
        /// The dataset root.
        dir: PathBuf,
        /// The encoding in words.
        encoding: String,
        /// The largest mask value found (luma).
        max_value: u8,
        /// What to set.
        hint: String,
    },
    /// A dataset folder lacks `images/` or `masks/`.
    #[error(
        "dataset {dir} has no {missing}/ folder: a dataset is images/ and masks/ with matching file stems"
    )]
    MissingFolder {
        /// The dataset root.
        dir: PathBuf,
        /// The missing sub-folder.
        missing: &'static str,
    },
    /// A dataset has no image/mask pairs.
    #[error("dataset {dir} is empty: no image/mask pairs found under images/ and masks/")]
    EmptyDataset {
        /// The dataset root.
        dir: PathBuf,
    },
    /// Images without masks or masks without images.
    #[error(
        "dataset {dir}: {count} file(s) without a partner (same stem in images/ and masks/): {stems}"
    )]
    MissingPartner {
        /// The dataset root.
        dir: PathBuf,
        /// How many stems are unmatched.
        count: usize,
        /// A list of the unmatched files (first few).
        stems: String,
    },
    /// A file name that cannot be kept exactly (not valid UTF-8): two such names could become
    /// one key and one image would be trained with another's mask.
    #[error(
        "file name {path:?} is not valid UTF-8: rename it (file names become lakeFS keys and MLflow names, which are text)"
    )]
    FileName {
        /// The file.
        path: PathBuf,
    },
    /// Two files share a stem in one folder (`a.png` and `a.jpg`).
    #[error("dataset {dir}: stem {stem:?} appears twice in {folder}/; keep one file per stem")]
    DuplicateStem {
        /// The dataset root.
        dir: PathBuf,
        /// The sub-folder.
        folder: &'static str,
        /// The duplicated stem.
        stem: String,
    },
    /// An image and its mask differ in size.
    #[error(
        "mask {mask} is {mask_w}x{mask_h} but its image {image} is {image_w}x{image_h}: masks must match their image's size"
    )]
    MaskSizeMismatch {
        /// The image file.
        image: PathBuf,
        /// The mask file.
        mask: PathBuf,
        /// Image width.
        image_w: u32,
        /// Image height.
        image_h: u32,
        /// Mask width.
        mask_w: u32,
        /// Mask height.
        mask_h: u32,
    },
    /// A mask holds a class id outside the configured classes.
    #[error(
        "mask {path} holds class id {value} but the task has {num_classes} classes (ids 0..{num_classes}); check the mask encoding"
    )]
    ClassOutOfRange {
        /// The mask file.
        path: PathBuf,
        /// The offending value.
        value: u8,
        /// Number of classes configured.
        num_classes: usize,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// One setting outside what is allowed: `field` is seg-model's name for it (a field of
    /// [`crate::TrainConfig`], [`crate::UNetConfig`], ...), so callers can name their own key.
    #[error("invalid configuration: {field} = {value}: {allowed}")]
    InvalidValue {
        /// seg-model's name of the setting (`epochs`, `depth`, `lr_schedule.min_factor`, ...).
        field: &'static str,
        /// The value as given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A checkpoint could not be used.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A pixel buffer whose length does not fit its stated size (a bug, never silently
    /// replaced by a blank image).
    #[error("{what}: buffer of {got} values does not fit {width}x{height}x{channels}")]
    BufferSize {
        /// Which buffer.
        what: &'static str,
        /// Values in the buffer.
        got: usize,
        /// Stated width.
        width: u32,
        /// Stated height.
        height: u32,
        /// Stated channels.
        channels: usize,
    },
    /// The training observer failed (e.g. the experiment tracker is gone for good).
    #[error("training stopped at epoch {epoch}: {reason}")]
    ObserverFailed {
        /// The epoch during which training stopped (1-based).
        epoch: usize,
        /// What the observer reported.
        reason: String,
    },
    /// A worker thread panicked (a bug); the message it panicked with.
    #[error("{what} panicked: {message}")]
    Panicked {
        /// Which worker.
        what: &'static str,
        /// Its panic message.
        message: String,
    },
    /// A backend failed (tensor read-back, device error).
    #[error("backend error: {0}")]
    Backend(String),
    /// A training-time augmentation failed on a sample (an in-memory codec error).
    #[error("augmentation failed: {0}")]
    Augment(String),
    /// The model could not be written as ONNX.
    #[error("cannot export the model as ONNX: {0}")]
    Export(String),
    /// Training was stopped by the caller (observer asked to stop).
    #[error("training interrupted at epoch {epoch}")]
    Interrupted {
        /// The epoch during which training stopped (1-based).
        epoch: usize,
    },
    /// A long step other than training was stopped by the caller (Ctrl-C).
    #[error("{what} was interrupted; nothing was kept")]
    Cancelled {
        /// What was stopped.
        what: String,
    },
    /// Training produced a non-finite loss.
    #[error(
        "training diverged: loss is {loss} at epoch {epoch}, batch {batch}; lower the learning rate"
    )]
    Diverged {
        /// Epoch (1-based).
        epoch: usize,
        /// Batch (1-based).
        batch: usize,
        /// The loss value.
        loss: f64,
    },
}

impl SegError {
    /// Builds a [`SegError::InvalidValue`].
    pub fn invalid(field: &'static str, value: impl ToString, allowed: impl Into<String>) -> Self {
        Self::InvalidValue {
            field,
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    /// Builds a [`SegError::BufferSize`].
    pub fn buffer(
        what: &'static str,
        got: usize,
        width: u32,
        height: u32,
        channels: usize,
    ) -> Self {
        Self::BufferSize {
            what,
            got,
            width,
            height,
            channels,
        }
    }

    /// Builds an [`SegError::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result alias of seg-model.
pub type Result<T, E = SegError> = std::result::Result<T, E>;

/// The text a panic carried (`panic!("...")` payloads), for errors that report it.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs backend work, turning a panic inside it into [`SegError::Backend`]: burn's backend ops
/// cannot return errors, and libtorch's failures (a CUDA out-of-memory, a shape its kernels
/// refuse) reach Rust as panics in tch. The model being trained is not usable after such an
/// error; the caller reports it and stops.
pub(crate) fn backend_call<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(SegError::Backend(format!(
            "{what}: {}",
            panic_message(payload.as_ref())
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_panic_becomes_a_backend_error() {
        let r: Result<()> = backend_call("training step", || panic!("CUDA out of memory"));
        match r {
            Err(SegError::Backend(m)) => {
                assert_eq!(m, "training step: CUDA out of memory");
            }
            other => panic!("expected a backend error, got {other:?}"),
        }
        assert_eq!(backend_call("ok", || Ok(3)).expect("no panic"), 3);
    }
}
