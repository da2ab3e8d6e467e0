//! Data: datasets on disk, mask encodings, preprocessing, augmentation, the parallel batch
//! loader and a synthetic generator.

pub mod augment;
pub mod dataset;
pub mod loader;
pub mod mask;
pub mod photometric;
pub mod preprocess;
pub mod synthetic;

pub use augment::AugmentConfig;
pub use dataset::{
    DEFAULT_MAX_IMAGE_PIXELS, DatasetStats, IMAGE_EXTENSIONS, RawSample, SamplePaths,
    SegmentationDataset, decode_image, max_image_pixels, set_max_image_pixels,
};
pub use loader::{Batch, BatchLoader, LoaderConfig, Split};
pub use mask::{ClassInfo, IGNORE_INDEX, MaskEncoding, MaskEncodingKind};
pub use preprocess::Preprocess;
pub use synthetic::SyntheticConfig;
