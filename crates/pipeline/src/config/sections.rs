//! The typed sections of the configuration: every value deserialises straight into its owner's
//! type (seg-model's [`TrainConfig`] is the whole `[train]` table; its [`UpsampleMode`],
//! [`BackendKind`] and [`MaskEncodingKind`]; rest-transport's [`RetryPolicy`]), so serde
//! refuses unknown values and names what is allowed; unknown keys are refused too.

use std::path::PathBuf;

use lakefs_client::RetryPolicy;
use seg_model::data::MaskEncodingKind;
use seg_model::{BackendKind, SegError, TrainConfig, Tta, UpsampleMode};
use serde::{Deserialize, Serialize};

/// MLflow: where and which experiment. Credentials come from MLflow's own variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowSection {
    /// Tracking server URL.
    pub tracking_uri: String,
    /// Experiment name.
    pub experiment: String,
    /// Basic-auth user (`MLFLOW_TRACKING_USERNAME`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password (`MLFLOW_TRACKING_PASSWORD`; secret).
    #[serde(default)]
    pub password: Option<String>,
    /// Bearer token (`MLFLOW_TRACKING_TOKEN`; secret).
    #[serde(default)]
    pub token: Option<String>,
    /// Validation overlays (image, truth, prediction) a training run logs.
    pub overlay_samples: usize,
}

/// lakeFS: server, credentials, repository and the paths inside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeFsSection {
    /// Server URL (`LAKECTL_SERVER_ENDPOINT_URL`).
    pub endpoint: String,
    /// Access key id (`LAKECTL_CREDENTIALS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// Secret (`LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY`; secret).
    pub secret_access_key: String,
    /// Repository.
    pub repository: String,
    /// Branch that data and models are merged into.
    pub branch: String,
    /// Create `branch` (from the repository's default branch) when it does not exist; off, a
    /// missing branch is an error (a mistyped name is not created silently).
    pub create_branch: bool,
    /// Storage namespace for a new repository ("" = `local://<repository>`; ending in `/`: a
    /// prefix the repository's name is appended to).
    pub storage_namespace: String,
    /// Folder of the images in the repository.
    pub images_path: String,
    /// Folder of the masks in the repository.
    pub masks_path: String,
    /// Folder of the models in the repository.
    pub models_path: String,
    /// Folder of the held-back pairs (`images/`, `masks/`) when `data.holdout_fraction` > 0.
    pub holdout_path: String,
}

/// Local folders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsSection {
    /// Local data folder (`images/` + `masks/`).
    pub data_dir: PathBuf,
    /// Where checkpoints are written.
    pub models_dir: PathBuf,
    /// Download cache, keyed by lakeFS commit id.
    pub cache_dir: PathBuf,
}

/// The dataset: encoding, split, synthetic fallback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// binary | index | palette.
    pub mask_encoding: MaskEncodingKind,
    /// Binary: foreground strictly above this grey value.
    pub binary_threshold: u8,
    /// Index: number of classes.
    pub num_classes: usize,
    /// Palette: `"#RRGGBB name"` per class, in class order.
    pub palette: Vec<String>,
    /// Fraction of pairs held out for validation.
    pub valid_fraction: f64,
    /// Seed of the split.
    pub split_seed: u64,
    /// Fraction of pairs held back under `lakefs.holdout_path` (chosen by file name), never
    /// trained or validated on: an evaluation set for `register_model` (0 = none).
    pub holdout_fraction: f64,
    /// Synthetic data: pairs.
    pub synthetic_count: usize,
    /// Synthetic data: side in pixels.
    pub synthetic_size: u32,
    /// Synthetic data: classes (2 = binary).
    pub synthetic_classes: usize,
    /// Synthetic data: seed.
    pub synthetic_seed: u64,
    /// Largest image (width x height) decoded for training or inference; larger files are
    /// refused from their header, before any memory is spent on them.
    pub max_image_pixels: u64,
}

/// The U-Net architecture (input channels and classes come from the data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Channels of the first stage.
    pub base_channels: usize,
    /// Down-sampling steps.
    pub depth: usize,
    /// Batch normalisation.
    pub batch_norm: bool,
    /// transpose | bilinear.
    pub upsample: UpsampleMode,
}

/// register_model: the registered model and what a version must meet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterSection {
    /// Registered model name.
    pub model_name: String,
    /// Its description.
    pub description: String,
    /// Alias set on a new version.
    pub alias: String,
    /// Promotion criteria: `"<metric> <op> <value>"`.
    pub criteria: Vec<String>,
    /// The frozen evaluation set (`lakefs://repo/ref/folder/` with `images/` and `masks/`) the
    /// challenger and the champion are scored on; empty: absolute criteria only.
    pub evaluation_data: String,
    /// How the challenger must beat the champion on it.
    pub gate: GateSection,
}

/// The comparison of a challenger with the champion on the evaluation set: the alias moves
/// only when the lower bound of the paired bootstrap interval of the mean per-image difference
/// clears the required change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSection {
    /// The per-image metric compared (higher is better).
    pub metric: GateMetric,
    /// Smallest gain required, in the metric's units.
    pub min_absolute_change: f64,
    /// Smallest gain required, as a fraction of the champion's mean.
    pub min_relative_change: f64,
    /// Confidence of the interval (0.95: 95 %).
    pub confidence: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Seed of the resampling (equal inputs and seed: equal interval).
    pub seed: u64,
}

/// A per-image metric the gate compares; all are higher-is-better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateMetric {
    /// Dice (foreground for binary models, the class mean otherwise).
    Dice,
    /// IoU, likewise.
    Iou,
    /// Pixel accuracy.
    PixelAccuracy,
}

impl GateMetric {
    /// Its name in messages, tags and files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dice => "dice",
            Self::Iou => "iou",
            Self::PixelAccuracy => "pixel_accuracy",
        }
    }

    /// Its value in `m`.
    pub fn of(self, m: &seg_model::SegMetrics) -> f64 {
        match self {
            Self::Dice => m.dice,
            Self::Iou => m.iou,
            Self::PixelAccuracy => m.pixel_accuracy,
        }
    }
}

/// infer: where masks go, how they are computed, where `--commit` versions them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferSection {
    /// Where masks are written (the inputs' relative paths are kept).
    pub output_dir: PathBuf,
    /// Images per forward pass.
    pub batch_size: usize,
    /// flex | tch | tch-cuda:N; empty (none) = train.backend.
    #[serde(with = "empty_is_none")]
    pub backend: Option<BackendKind>,
    /// Also write colour overlays under `<output_dir>/overlays/`.
    pub overlay: bool,
    /// Test-time augmentation: average each prediction with those of symmetric views.
    pub tta: bool,
    /// Views of that augmentation: 2 (left-right mirror), 4 (both mirrors), 8 (and transposes).
    pub tta_views: usize,
    /// lakeFS folder that `--commit` writes to (`<predictions_path>/<model>-v<version>/`).
    pub predictions_path: String,
}

impl InferSection {
    /// The test-time augmentation `tta` and `tta_views` ask for; the count is checked even
    /// when `tta` is off, so that a bad value never waits to be used.
    pub fn tta(&self) -> Result<Tta, SegError> {
        let tta = Tta::from_views(self.tta_views)?;
        Ok(if self.tta { tta } else { Tta::Off })
    }
}

/// Timeouts of every request to lakeFS and MLflow (retries follow `[retry]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Time to open a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: std::time::Duration,
    /// Time for one call that is not a file transfer.
    #[serde(with = "humantime_serde")]
    pub request_timeout: std::time::Duration,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// MLflow.
    pub mlflow: MlflowSection,
    /// lakeFS.
    pub lakefs: LakeFsSection,
    /// Local folders.
    pub paths: PathsSection,
    /// Data.
    pub data: DataSection,
    /// Model.
    pub model: ModelSection,
    /// Training: seg-model's settings, key for key.
    pub train: TrainConfig,
    /// Registration.
    pub register: RegisterSection,
    /// Inference.
    pub infer: InferSection,
    /// Timeouts of both HTTP clients.
    pub http: HttpSection,
    /// Retries of both HTTP clients.
    pub retry: RetryPolicy,
}

/// `""` for none: `infer.backend = ""` means "as `train.backend`".
mod empty_is_none {
    use seg_model::BackendKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<BackendKind>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(kind) => serializer.collect_str(kind),
            None => serializer.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<BackendKind>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        BackendKind::parse(&text).map(Some).map_err(|e| match e {
            seg_model::SegError::InvalidValue { allowed, .. } => {
                serde::de::Error::custom(format!("empty (= train.backend) or {allowed}"))
            }
            other => serde::de::Error::custom(other),
        })
    }
}
