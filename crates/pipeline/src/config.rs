//! The layered configuration of the three binaries: `configs/default.toml` (built in) <
//! `--config FILE` < environment (`MLFLOW_TRACKING_*`, `LAKECTL_*`, `SEG_<SECTION>__<KEY>`) <
//! command-line flags. Every value is checked before any network call; an invalid one is one
//! line naming the key, the value, where it came from and what is allowed. Secrets are never
//! printed: [`Config::redacted`] is what `--print-config` and MLflow see.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use lakefs_client::RetryPolicy;
use serde::{Deserialize, Serialize};

use seg_model::data::{ClassInfo, MaskEncoding};
use seg_model::{BackendKind, LrSchedule, SelectionMetric, UNetConfig, UpsampleMode};

/// The built-in defaults (the repository's `configs/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../../configs/default.toml");

/// Shown instead of a secret.
pub const REDACTED: &str = "***";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file, a variable or a flag does not parse, has the wrong type or an unknown key.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value of the right type outside what is allowed.
    #[error("invalid configuration: {key} = {value} (from {origin}): {allowed}")]
    Invalid {
        /// Dotted key (`train.batch_size`).
        key: String,
        /// The value as given.
        value: String,
        /// Where it came from (file, variable, flag, default).
        origin: String,
        /// What is allowed.
        allowed: String,
    },
    /// The `--config` file is missing or unreadable.
    #[error("cannot read the config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

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
    /// Storage namespace for a new repository ("" = `local://<repository>`).
    pub storage_namespace: String,
    /// Folder of the images in the repository.
    pub images_path: String,
    /// Folder of the masks in the repository.
    pub masks_path: String,
    /// Folder of the models in the repository.
    pub models_path: String,
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

/// How masks encode classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskEncodingKind {
    /// Foreground where the grey value is above the threshold.
    Binary,
    /// The pixel value is the class id.
    Index,
    /// RGB colour -> class.
    Palette,
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
    /// Synthetic data: pairs.
    pub synthetic_count: usize,
    /// Synthetic data: side in pixels.
    pub synthetic_size: u32,
    /// Synthetic data: classes (2 = binary).
    pub synthetic_classes: usize,
    /// Synthetic data: seed.
    pub synthetic_seed: u64,
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
    pub upsample: String,
}

/// Training hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Base learning rate (Adam).
    pub learning_rate: f64,
    /// Samples per batch.
    pub batch_size: usize,
    /// Epochs.
    pub epochs: usize,
    /// Training images are resized to this square side.
    pub image_size: usize,
    /// flex | tch | tch-cuda:N.
    pub backend: String,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// cosine | constant | step.
    pub lr_schedule: String,
    /// Cosine: final rate as a fraction of the base.
    pub lr_min_factor: f64,
    /// Step: epochs between decays.
    pub lr_step_every: usize,
    /// Step: decay factor.
    pub lr_step_gamma: f64,
    /// Epochs without improvement before stopping (0 = never).
    pub early_stopping_patience: usize,
    /// val_iou | val_dice | val_pixel_accuracy | val_loss.
    pub selection_metric: String,
    /// Training augmentations on or off.
    pub augment: bool,
    /// Wall-clock budget in seconds (0 = none).
    pub time_budget_secs: f64,
    /// Validation overlays logged to MLflow.
    pub overlay_samples: usize,
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
}

/// infer: where masks go, how they are computed, where `--commit` versions them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferSection {
    /// Where masks are written (the inputs' relative paths are kept).
    pub output_dir: PathBuf,
    /// Images per forward pass.
    pub batch_size: usize,
    /// flex | tch | tch-cuda:N; empty = train.backend.
    pub backend: String,
    /// Also write colour overlays under `<output_dir>/overlays/`.
    pub overlay: bool,
    /// lakeFS folder that `--commit` writes to (`<predictions_path>/<model>-v<version>/`).
    pub predictions_path: String,
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
    /// Training.
    pub train: TrainSection,
    /// Registration.
    pub register: RegisterSection,
    /// Inference.
    pub infer: InferSection,
    /// Retries of both HTTP clients.
    pub retry: RetryPolicy,
}

/// Values given as command-line flags, as `(dotted key, value)`.
#[derive(Debug, Clone, Default)]
pub struct Flags(BTreeMap<String, Value>);

impl Flags {
    /// No flags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `other`'s values, replacing the ones of the same keys.
    pub fn merge(&mut self, other: Flags) -> &mut Self {
        self.0.extend(other.0);
        self
    }

    /// Sets `key` (dotted) when `value` is given.
    pub fn set<T: Into<Value>>(&mut self, key: &str, value: Option<T>) -> &mut Self {
        if let Some(v) = value {
            self.0.insert(key.to_string(), v.into());
        }
        self
    }
}

impl Provider for Flags {
    fn metadata(&self) -> Metadata {
        Metadata::named("command-line flag")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, value) in &self.0 {
            let nested = figment::util::nest(key, value.clone());
            if let Value::Dict(_, d) = nested {
                merge_dict(&mut dict, d);
            }
        }
        Ok(Map::from([(Profile::Default, dict)]))
    }
}

fn merge_dict(into: &mut Dict, from: Dict) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Dict(_, a)), Value::Dict(_, b)) => merge_dict(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// The environment variables that clients of lakeFS and MLflow read themselves, and the config
/// keys they set.
const TOOL_ENV: &[(&str, &str)] = &[
    ("MLFLOW_TRACKING_URI", "mlflow.tracking_uri"),
    ("MLFLOW_TRACKING_USERNAME", "mlflow.username"),
    ("MLFLOW_TRACKING_PASSWORD", "mlflow.password"),
    ("MLFLOW_TRACKING_TOKEN", "mlflow.token"),
    ("LAKECTL_SERVER_ENDPOINT_URL", "lakefs.endpoint"),
    ("LAKECTL_CREDENTIALS_ACCESS_KEY_ID", "lakefs.access_key_id"),
    (
        "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY",
        "lakefs.secret_access_key",
    ),
];

/// Environment variables as a configuration layer: MLflow's and lakectl's own variables for
/// their keys, and `SEG_<SECTION>__<KEY>` for every key.
#[derive(Debug, Clone, Default)]
struct EnvVars {
    /// (dotted key, variable, value).
    entries: Vec<(String, String, String)>,
}

impl EnvVars {
    fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut entries = Vec::new();
        for (var, value) in vars {
            if let Some((_, key)) = TOOL_ENV.iter().find(|(v, _)| *v == var) {
                entries.push(((*key).to_string(), var, value));
            } else if let Some(rest) = var.strip_prefix("SEG_")
                && rest.contains("__")
            {
                let key = rest.to_ascii_lowercase().replace("__", ".");
                entries.push((key, var, value));
            }
        }
        Self { entries }
    }

    fn var_for(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| v.as_str())
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, _, value) in &self.entries {
            let parsed: Value = value.parse().unwrap_or_else(|_| Value::from(value.clone()));
            // Secrets and URLs stay text even when they look like numbers.
            let parsed = if key.ends_with("secret_access_key")
                || key.ends_with("password")
                || key.ends_with("token")
                || key.ends_with("access_key_id")
            {
                Value::from(value.clone())
            } else {
                parsed
            };
            if let Value::Dict(_, d) = figment::util::nest(key, parsed) {
                merge_dict(&mut dict, d);
            }
        }
        Ok(Map::from([(Profile::Default, dict)]))
    }
}

/// A loaded, checked configuration with the source of each value.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The values.
    pub config: Config,
    figment: Figment,
    env: EnvVars,
}

impl Loaded {
    /// Where `key` (dotted) got its value: the file, variable or flag.
    pub fn source_of(&self, key: &str) -> String {
        source_of(&self.figment, &self.env, key)
    }
}

fn source_of(figment: &Figment, env: &EnvVars, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(m) if m.name == "environment variable" => match env.var_for(key) {
            Some(var) => format!("environment variable {var}"),
            None => "the environment".into(),
        },
        Some(m) => provider_name(m),
        None => DEFAULTS.into(),
    }
}

/// How the built-in defaults are named in messages.
const DEFAULTS: &str = "the built-in defaults (configs/default.toml)";

/// A provider's name as messages show it: the file for files, the defaults for the built-in
/// TOML text.
fn provider_name(m: &Metadata) -> String {
    match &m.source {
        Some(figment::Source::File(p)) => format!("{} {}", m.name, p.display()),
        _ if m.name.contains("string") => DEFAULTS.into(),
        _ => m.name.to_string(),
    }
}

/// Loads the configuration: defaults < `file` < the process environment < `flags`, then
/// checks it.
pub fn load(file: Option<&Path>, flags: Flags) -> Result<Loaded, ConfigError> {
    load_with_env(file, flags, std::env::vars())
}

/// [`load`] with the environment given as `(variable, value)` pairs.
pub fn load_with_env(
    file: Option<&Path>,
    flags: Flags,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        toml::from_str::<toml::Value>(&text).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: format!("not valid TOML: {}", e.message()),
        })?;
        figment = figment.merge(Toml::file_exact(path));
    }
    let env = EnvVars::from_vars(vars);
    figment = figment.merge(env.clone()).merge(flags);
    let config: Config = figment.extract().map_err(|e| {
        let mut lines = Vec::new();
        for err in e {
            let key = err.path.join(".");
            let source = match &err.metadata {
                Some(m) if m.name == "environment variable" => {
                    env.var_for(&key).map_or("the environment".into(), |v| {
                        format!("environment variable {v}")
                    })
                }
                Some(m) => provider_name(m),
                None => "the configuration".into(),
            };
            let at = if key.is_empty() {
                String::new()
            } else {
                format!(" at {key}")
            };
            lines.push(format!("{}{at} (from {source})", err.kind));
        }
        ConfigError::Parse(lines.join("; "))
    })?;
    let loaded = Loaded {
        config,
        figment,
        env,
    };
    loaded.config.validate(&loaded.figment, &loaded.env)?;
    Ok(loaded)
}

impl Config {
    /// Checks every value that has a range or a fixed set of choices.
    fn validate(&self, figment: &Figment, env: &EnvVars) -> Result<(), ConfigError> {
        let bad = |key: &str, value: String, allowed: &str| ConfigError::Invalid {
            key: key.to_string(),
            value,
            origin: source_of(figment, env, key),
            allowed: allowed.to_string(),
        };
        let t = &self.train;
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            return Err(bad(
                "train.learning_rate",
                t.learning_rate.to_string(),
                "must be a number > 0",
            ));
        }
        if t.batch_size == 0 {
            return Err(bad("train.batch_size", "0".into(), "must be >= 1"));
        }
        if t.epochs == 0 {
            return Err(bad("train.epochs", "0".into(), "must be >= 1"));
        }
        let stride = 1usize << self.model.depth.min(6);
        if t.image_size < stride || !t.image_size.is_multiple_of(stride) || t.image_size > 4096 {
            return Err(bad(
                "train.image_size",
                t.image_size.to_string(),
                &format!(
                    "must be a multiple of 2^model.depth = {stride}, at most 4096 (e.g. 64, 128, 256)"
                ),
            ));
        }
        // The built-in default (flex) falls back to what this build offers (a tch-only build
        // trains on tch); a backend the user chose must exist.
        if let Err(e) = BackendKind::parse(&t.backend)
            && source_of(figment, env, "train.backend") != DEFAULTS
        {
            return Err(bad(
                "train.backend",
                format!("{:?}", t.backend),
                &e.to_string(),
            ));
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return Err(bad(
                "train.weight_decay",
                t.weight_decay.to_string(),
                "must be >= 0",
            ));
        }
        self.lr_schedule()
            .map_err(|(key, value, allowed)| bad(key, value, allowed))?;
        self.selection_metric().map_err(|v| {
            bad(
                "train.selection_metric",
                format!("{v:?}"),
                "one of val_iou, val_dice, val_pixel_accuracy, val_loss",
            )
        })?;
        if !(t.time_budget_secs.is_finite() && t.time_budget_secs >= 0.0) {
            return Err(bad(
                "train.time_budget_secs",
                t.time_budget_secs.to_string(),
                "must be >= 0 (0 = no budget)",
            ));
        }
        let d = &self.data;
        if !(d.valid_fraction > 0.0 && d.valid_fraction < 1.0) {
            return Err(bad(
                "data.valid_fraction",
                d.valid_fraction.to_string(),
                "must be between 0 and 1 (e.g. 0.2)",
            ));
        }
        if let Err(e) = self.mask_encoding() {
            let key = match d.mask_encoding {
                MaskEncodingKind::Palette => "data.palette",
                _ => "data.num_classes",
            };
            let value = match d.mask_encoding {
                MaskEncodingKind::Palette => format!("{:?}", d.palette),
                _ => d.num_classes.to_string(),
            };
            return Err(bad(key, value, &e));
        }
        if d.synthetic_count < 4 {
            return Err(bad(
                "data.synthetic_count",
                d.synthetic_count.to_string(),
                "must be >= 4 (a train and a validation split)",
            ));
        }
        if !(2..=254).contains(&d.synthetic_classes) {
            return Err(bad(
                "data.synthetic_classes",
                d.synthetic_classes.to_string(),
                "must be 2..=254",
            ));
        }
        if self.model_config(3, 2).validate().is_err() {
            let m = &self.model;
            return Err(bad(
                "model",
                format!(
                    "base_channels {} depth {} upsample {:?}",
                    m.base_channels, m.depth, m.upsample
                ),
                "base_channels 1..=256, depth 1..=6, upsample transpose | bilinear",
            ));
        }
        for (i, c) in self.register.criteria.iter().enumerate() {
            if let Err(e) = Criterion::parse(c) {
                return Err(bad(
                    &format!("register.criteria[{i}]"),
                    format!("{c:?}"),
                    &e,
                ));
            }
        }
        if self.lakefs.repository.is_empty()
            || !self
                .lakefs
                .repository
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad(
                "lakefs.repository",
                format!("{:?}", self.lakefs.repository),
                "lower-case letters, digits and '-' (lakeFS repository names)",
            ));
        }
        for (key, url) in [
            ("mlflow.tracking_uri", &self.mlflow.tracking_uri),
            ("lakefs.endpoint", &self.lakefs.endpoint),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad(
                    key,
                    format!("{url:?}"),
                    "must be an http:// or https:// URL",
                ));
            }
        }
        let i = &self.infer;
        if i.batch_size == 0 {
            return Err(bad("infer.batch_size", "0".into(), "must be >= 1"));
        }
        if !i.backend.is_empty()
            && let Err(e) = BackendKind::parse(&i.backend)
        {
            return Err(bad(
                "infer.backend",
                format!("{:?}", i.backend),
                &format!("empty (= train.backend) or {e}"),
            ));
        }
        if i.predictions_path.trim_matches('/').is_empty() {
            return Err(bad(
                "infer.predictions_path",
                format!("{:?}", i.predictions_path),
                "a folder in the repository, e.g. \"predictions/\"",
            ));
        }
        self.retry
            .validate()
            .map_err(|e| bad("retry", format!("{:?}", self.retry), &e))?;
        Ok(())
    }

    /// The learning-rate schedule, or (key, value, allowed) when it is invalid.
    pub fn lr_schedule(&self) -> Result<LrSchedule, (&'static str, String, &'static str)> {
        let t = &self.train;
        match t.lr_schedule.as_str() {
            "constant" => Ok(LrSchedule::Constant),
            "cosine" if (0.0..=1.0).contains(&t.lr_min_factor) => Ok(LrSchedule::Cosine {
                min_factor: t.lr_min_factor,
            }),
            "cosine" => Err((
                "train.lr_min_factor",
                t.lr_min_factor.to_string(),
                "must be in 0..=1",
            )),
            "step" if t.lr_step_every >= 1 && t.lr_step_gamma > 0.0 && t.lr_step_gamma <= 1.0 => {
                Ok(LrSchedule::Step {
                    every: t.lr_step_every,
                    gamma: t.lr_step_gamma,
                })
            }
            "step" => Err((
                "train.lr_step_every",
                format!("{} (gamma {})", t.lr_step_every, t.lr_step_gamma),
                "every >= 1 and 0 < gamma <= 1",
            )),
            other => Err((
                "train.lr_schedule",
                format!("{other:?}"),
                "one of cosine, constant, step",
            )),
        }
    }

    /// The selection metric, or the invalid name.
    pub fn selection_metric(&self) -> Result<SelectionMetric, String> {
        Ok(match self.train.selection_metric.as_str() {
            "val_iou" => SelectionMetric::MeanIou,
            "val_dice" => SelectionMetric::MeanDice,
            "val_pixel_accuracy" => SelectionMetric::PixelAccuracy,
            "val_loss" => SelectionMetric::ValidLoss,
            other => return Err(other.to_string()),
        })
    }

    /// The mask encoding of the data, or why it is invalid.
    pub fn mask_encoding(&self) -> Result<MaskEncoding, String> {
        let d = &self.data;
        let encoding = match d.mask_encoding {
            MaskEncodingKind::Binary => MaskEncoding::Binary {
                threshold: d.binary_threshold,
            },
            MaskEncodingKind::Index => MaskEncoding::Index {
                num_classes: d.num_classes,
            },
            MaskEncodingKind::Palette => MaskEncoding::Palette {
                classes: d
                    .palette
                    .iter()
                    .map(|entry| parse_palette_entry(entry))
                    .collect::<Result<_, _>>()?,
            },
        };
        encoding.validate().map_err(|e| e.to_string())?;
        Ok(encoding)
    }

    /// The U-Net for `in_channels` inputs and `task_classes` classes (2 = binary sigmoid).
    pub fn model_config(&self, in_channels: usize, task_classes: usize) -> UNetConfig {
        let m = &self.model;
        UNetConfig::new()
            .with_in_channels(in_channels)
            .with_num_classes(if task_classes == 2 { 1 } else { task_classes })
            .with_base_channels(m.base_channels)
            .with_depth(m.depth)
            .with_batch_norm(m.batch_norm)
            .with_upsample(if m.upsample == "bilinear" {
                UpsampleMode::Bilinear
            } else {
                UpsampleMode::Transpose
            })
    }

    /// The backend (checked at load).
    pub fn backend(&self) -> BackendKind {
        BackendKind::parse(&self.train.backend).unwrap_or_else(|_| BackendKind::default_kind())
    }

    /// The backend of inference: `infer.backend`, or `train.backend` when that is empty.
    pub fn infer_backend(&self) -> BackendKind {
        if self.infer.backend.is_empty() {
            self.backend()
        } else {
            BackendKind::parse(&self.infer.backend).unwrap_or_else(|_| self.backend())
        }
    }

    /// The storage namespace of a new repository.
    pub fn storage_namespace(&self) -> String {
        if self.lakefs.storage_namespace.is_empty() {
            format!("local://{}", self.lakefs.repository)
        } else {
            self.lakefs.storage_namespace.clone()
        }
    }

    /// A copy with every secret replaced by [`REDACTED`].
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        c.lakefs.secret_access_key = REDACTED.into();
        if c.mlflow.password.is_some() {
            c.mlflow.password = Some(REDACTED.into());
        }
        if c.mlflow.token.is_some() {
            c.mlflow.token = Some(REDACTED.into());
        }
        c
    }

    /// The redacted configuration as TOML.
    pub fn redacted_toml(&self) -> String {
        toml::to_string_pretty(&self.redacted())
            .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }
}

fn parse_palette_entry(entry: &str) -> Result<ClassInfo, String> {
    let (hex, name) = entry.trim().split_once(' ').unwrap_or((entry.trim(), ""));
    let hex = hex.trim_start_matches('#');
    let ok = hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0);
    if !ok {
        return Err(format!(
            "palette entry {entry:?}: write \"#RRGGBB name\" (e.g. \"#8429F6 land\")"
        ));
    }
    let name = name.trim();
    Ok(ClassInfo {
        name: if name.is_empty() {
            format!("#{hex}")
        } else {
            name.to_string()
        },
        color: [byte(0), byte(2), byte(4)],
    })
}

/// One promotion criterion: `<metric> <op> <threshold>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// Metric name as logged in MLflow (`val_iou`, `loss`, ...).
    pub metric: String,
    /// `>=`, `>`, `<=` or `<`.
    pub op: String,
    /// The threshold.
    pub threshold: f64,
}

impl Criterion {
    /// Parses `"val_iou >= 0.5"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [metric, op, value] = parts[..] else {
            return Err("write \"<metric> <op> <value>\", e.g. \"val_iou >= 0.5\"".into());
        };
        if !matches!(op, ">=" | ">" | "<=" | "<") {
            return Err(format!("operator {op:?}: use >=, >, <= or <"));
        }
        let threshold: f64 = value
            .parse()
            .map_err(|_| format!("threshold {value:?} is not a number"))?;
        Ok(Self {
            metric: metric.to_string(),
            op: op.to_string(),
            threshold,
        })
    }

    /// Whether `value` meets the criterion.
    pub fn holds(&self, value: f64) -> bool {
        match self.op.as_str() {
            ">=" => value >= self.threshold,
            ">" => value > self.threshold,
            "<=" => value <= self.threshold,
            _ => value < self.threshold,
        }
    }
}

impl std::fmt::Display for Criterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op, self.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn defaults_mirror_the_original_config() {
        let c = load_with_env(None, Flags::new(), vars(&[]))
            .expect("defaults load")
            .config;
        assert_eq!(c.mlflow.tracking_uri, "http://localhost:5000");
        assert_eq!(c.mlflow.experiment, "Image Segmentation");
        assert_eq!(c.lakefs.endpoint, "http://localhost:8003");
        assert_eq!(c.lakefs.access_key_id, "AKIAIOSFOLKFSSAMPLES");
        assert_eq!(c.lakefs.repository, "image-segmentation-local-repo");
        assert_eq!(c.lakefs.images_path, "data/images");
        assert_eq!(c.train.learning_rate, 0.001);
        assert_eq!(c.train.batch_size, 16);
        assert_eq!(c.train.epochs, 10);
        assert_eq!(c.train.image_size, 64);
        assert_eq!(c.register.model_name, "image_segmentation_model");
        assert_eq!(c.retry.max_total, std::time::Duration::from_secs(120));
    }

    #[test]
    fn layers_apply_in_order_and_errors_name_key_value_and_source() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("run.toml");
        std::fs::write(&file, "[train]\nepochs = 3\nbatch_size = 4\n").expect("write");
        let mut flags = Flags::new();
        flags.set("train.image_size", Some(32));
        let loaded = load_with_env(Some(&file), flags, vars(&[("SEG_TRAIN__BATCH_SIZE", "8")]))
            .expect("load");
        assert_eq!(loaded.config.train.epochs, 3, "file over defaults");
        assert_eq!(loaded.config.train.batch_size, 8, "environment over file");
        assert_eq!(loaded.config.train.image_size, 32, "flags over everything");
        assert!(loaded.source_of("train.epochs").contains("run.toml"));
        assert_eq!(
            loaded.source_of("train.batch_size"),
            "environment variable SEG_TRAIN__BATCH_SIZE"
        );
        assert_eq!(loaded.source_of("train.image_size"), "command-line flag");

        let text = load_with_env(
            Some(&file),
            Flags::new(),
            vars(&[("SEG_TRAIN__BATCH_SIZE", "0")]),
        )
        .expect_err("zero batch")
        .to_string();
        assert!(
            text.contains("train.batch_size = 0")
                && text.contains("SEG_TRAIN__BATCH_SIZE")
                && text.contains(">= 1"),
            "{text}"
        );
        let text = load_with_env(None, Flags::new(), vars(&[("SEG_TRAIN__EPOCHS", "many")]))
            .expect_err("not a number")
            .to_string();
        assert!(
            text.contains("many") && text.contains("SEG_TRAIN__EPOCHS"),
            "{text}"
        );

        let mut flags = Flags::new();
        flags.set("train.learning_rate", Some(-1.0));
        let text = load_with_env(None, flags, vars(&[]))
            .expect_err("negative rate")
            .to_string();
        assert!(
            text.contains("train.learning_rate = -1") && text.contains("command-line flag"),
            "{text}"
        );
        let mut flags = Flags::new();
        flags.set("train.backend", Some("cuda-magic"));
        let text = load_with_env(None, flags, vars(&[]))
            .expect_err("backend")
            .to_string();
        assert!(
            text.contains("train.backend") && text.contains("flex"),
            "{text}"
        );

        std::fs::write(&file, "[train]\nepoch = 3\n").expect("write");
        let text = load_with_env(Some(&file), Flags::new(), vars(&[]))
            .expect_err("unknown key")
            .to_string();
        assert!(
            text.contains("epoch") && text.contains("run.toml"),
            "{text}"
        );
        std::fs::write(&file, "[data]\nmask_encoding = \"rle\"\n").expect("write");
        let text = load_with_env(Some(&file), Flags::new(), vars(&[]))
            .expect_err("encoding")
            .to_string();
        assert!(text.contains("rle") && text.contains("binary"), "{text}");
        std::fs::write(&file, "this is not toml [").expect("write");
        let text = load_with_env(Some(&file), Flags::new(), vars(&[]))
            .expect_err("not toml")
            .to_string();
        assert!(text.contains("not valid TOML"), "{text}");
        let text = load_with_env(
            Some(&dir.path().join("missing.toml")),
            Flags::new(),
            vars(&[]),
        )
        .expect_err("missing")
        .to_string();
        assert!(text.contains("missing.toml"), "{text}");
    }

    #[test]
    fn tool_variables_set_their_keys_and_secrets_are_redacted() {
        let loaded = load_with_env(
            None,
            Flags::new(),
            vars(&[
                ("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", "s3cr3t-from-env"),
                ("MLFLOW_TRACKING_TOKEN", "12345"),
                ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999"),
            ]),
        )
        .expect("load");
        let c = &loaded.config;
        assert_eq!(c.lakefs.secret_access_key, "s3cr3t-from-env");
        assert_eq!(
            c.mlflow.token.as_deref(),
            Some("12345"),
            "a numeric token stays text"
        );
        assert_eq!(c.mlflow.tracking_uri, "http://127.0.0.1:5999");
        assert_eq!(
            loaded.source_of("mlflow.tracking_uri"),
            "environment variable MLFLOW_TRACKING_URI"
        );
        let shown = c.redacted_toml();
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("12345"),
            "{shown}"
        );
        assert!(shown.contains(REDACTED));
    }

    #[test]
    fn criteria_and_palettes_parse() {
        let c = Criterion::parse("val_iou >= 0.5").expect("criterion");
        assert!(c.holds(0.5) && !c.holds(0.49));
        assert!(Criterion::parse("loss < 0.3").expect("lt").holds(0.2));
        assert!(Criterion::parse("val_iou => 0.5").is_err());
        assert!(Criterion::parse("val_iou >= high").is_err());
        let p = parse_palette_entry("#8429F6 land").expect("entry");
        assert_eq!((p.name.as_str(), p.color), ("land", [0x84, 0x29, 0xF6]));
        assert!(parse_palette_entry("#84 land").is_err());
    }
}
