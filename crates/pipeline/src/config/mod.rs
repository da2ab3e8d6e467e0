//! The layered configuration of the three binaries: `configs/default.toml` (built in) <
//! `--config FILE` < environment (`MLFLOW_TRACKING_*`, `LAKECTL_*`, `SEG_<SECTION>__<KEY>`) <
//! command-line flags. Values deserialise into their owners' types ([`sections`]); each value
//! is checked once, by the crate that owns it ([`checks`]); an invalid one is one line naming
//! the key, the value, where it came from (figment's metadata, [`sources`]) and what is
//! allowed. Secrets are never printed: [`Config::redacted`] is what `--print-config` and MLflow
//! see.

mod checks;
pub mod criteria;
pub mod renamed;
pub mod sections;
pub mod sources;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use figment::value::Value;

use seg_model::data::{MaskEncoding, SyntheticConfig};
use seg_model::{BackendKind, UNetConfig};

pub use criteria::Criterion;
pub use sections::*;
pub use sources::{DEFAULT_TOML, DEFAULTS};

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
    /// The `--config` file is missing, unreadable or not TOML.
    #[error("cannot read the config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why (with line and column for TOML errors).
        reason: String,
    },
}

/// Values given as command-line flags, as `(dotted key, value)`.
#[derive(Debug, Clone)]
pub struct Flags(sources::Values);

impl Default for Flags {
    fn default() -> Self {
        Self(sources::Values::new("command-line flag"))
    }
}

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

    /// The keys set in both `self` and `other` whose values differ, as `key = value` with
    /// `self`'s value.
    pub fn differences(&self, other: &Flags) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, value)| other.0.get(key).is_some_and(|o| o != *value))
            .map(|(key, value)| format!("{key} = {}", show_value(value)))
            .collect()
    }

    /// Sets `key` (dotted) when `value` is given.
    pub fn set<T: Into<Value>>(&mut self, key: &str, value: Option<T>) -> &mut Self {
        if let Some(v) = value {
            self.0.insert(key, v.into());
        }
        self
    }
}

/// A value as a config file would write it (JSON: numbers bare, strings quoted).
fn show_value(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| format!("{value:?}"))
}

/// A loaded, checked configuration with the source of each value.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The values.
    pub config: Config,
    /// One line for each old key that was read under its new name ([`renamed`]).
    pub warnings: Vec<String>,
    figment: Figment,
}

impl Loaded {
    /// Where `key` (dotted) got its value: the file, variable, flag or defaults.
    pub fn source_of(&self, key: &str) -> String {
        sources::describe(self.figment.find_metadata(key), key)
    }
}

/// Loads the configuration: defaults < `file` < the process environment < `flags`, then
/// checks it.
pub fn load(file: Option<&Path>, flags: Flags) -> Result<Loaded, ConfigError> {
    let loaded = load_with_env(file, flags, std::env::vars())?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    // The one process-wide setting: every image decoded from here on is held to it.
    seg_model::data::set_max_image_pixels(loaded.config.data.max_image_pixels);
    Ok(loaded)
}

/// [`load`] with the environment given as `(variable, value)` pairs.
pub fn load_with_env(
    file: Option<&Path>,
    flags: Flags,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let mut figment = Figment::from(sources::defaults());
    let build_default = BackendKind::default_kind();
    if build_default.to_string() != "flex" {
        // A build without flex trains on what it has unless told otherwise.
        let mut layer = sources::Values::new("this build's default backend (no flex compiled in)");
        layer.insert("train.backend", Value::from(build_default.to_string()));
        figment = figment.merge(layer);
    }
    let mut warnings = Vec::new();
    if let Some(path) = file {
        check_toml_file(path)?;
        let (layer, renamed) =
            sources::Translated::read(&Toml::file_exact(path)).map_err(|reason| {
                ConfigError::File {
                    path: path.to_path_buf(),
                    reason,
                }
            })?;
        warnings.extend(renamed);
        figment = figment.merge(layer);
    }
    let env = sources::EnvVars::from_vars(vars);
    warnings.extend_from_slice(env.warnings());
    let mut flags = flags.0;
    warnings.extend(flags.translate());
    figment = figment.merge(env).merge(flags);
    let config: Config = figment.extract().map_err(|e| {
        let lines: Vec<String> = e
            .into_iter()
            .map(|err| {
                let mut key = err.path.join(".");
                let mut metadata = err.metadata.as_ref();
                // A tagged table (train.schedule) names the table, not the field it refuses.
                if let figment::error::Kind::UnknownField(field, _) = &err.kind
                    && err.path.last() != Some(field)
                {
                    key = format!("{key}.{field}");
                    metadata = figment.find_metadata(&key).or(metadata);
                }
                let source = sources::describe(metadata, &key);
                let at = if key.is_empty() {
                    String::new()
                } else {
                    format!(" at {key}")
                };
                format!("{}{at} (from {source})", err.kind)
            })
            .collect();
        ConfigError::Parse(lines.join("; "))
    })?;
    let mut loaded = Loaded {
        config,
        warnings,
        figment,
    };
    loaded.config.mlflow.take_url_credentials();
    take_lakefs_url_credentials(&mut loaded)?;
    checks::check(&loaded)?;
    Ok(loaded)
}

/// The `--config` file exists and is TOML; a syntax error names its line and column.
fn check_toml_file(path: &Path) -> Result<(), ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    toml::from_str::<toml::Value>(&text).map_err(|e| {
        let at = e.span().map_or(String::new(), |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" at line {line}, column {column}")
        });
        file_error(format!("not valid TOML{at}: {}", e.message()))
    })?;
    Ok(())
}

/// A user name and password written into a URL (`http://user:pass@host`), taken out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlCredentials {
    /// The URL without them (no trailing `/`).
    pub url: String,
    /// The user name, percent-decoded as a URL component (`+` stays `+`).
    pub username: Option<String>,
    /// The password, decoded the same way.
    pub password: Option<String>,
}

impl UrlCredentials {
    /// The credentials of `text`, or `None` when it carries none (or is not a URL).
    pub fn take(text: &str) -> Option<Self> {
        let mut url = url::Url::parse(text).ok()?;
        if url.username().is_empty() && url.password().is_none() {
            return None;
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let username = (!url.username().is_empty()).then(|| decode(url.username()));
        let password = url.password().map(decode);
        // Both setters only fail for URLs that cannot carry credentials at all.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Some(Self {
            url: url.to_string().trim_end_matches('/').to_string(),
            username,
            password,
        })
    }

    /// The URL as it was given, with the credentials shown as [`REDACTED`].
    pub fn redacted(&self) -> String {
        match self.url.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{REDACTED}@{rest}"),
            None => self.url.clone(),
        }
    }
}

impl MlflowSection {
    /// Moves a user name and password written into `tracking_uri` (`http://user:pass@host`)
    /// into `username` / `password` (unless those are set) and leaves the URI without them, so
    /// that no printed, logged or stored URI carries a secret.
    pub fn take_url_credentials(&mut self) {
        let Some(found) = UrlCredentials::take(&self.tracking_uri) else {
            return;
        };
        if self.username.is_none() {
            self.username = found.username;
        }
        if self.password.is_none() {
            self.password = found.password;
        }
        self.tracking_uri = found.url;
    }
}

/// Moves credentials written into `lakefs.endpoint` into `lakefs.access_key_id` /
/// `lakefs.secret_access_key` and leaves the endpoint without them, so that no printed, logged
/// or stored URL carries the secret. Credentials set elsewhere (a file, a variable, a flag) that
/// differ from the URL's are refused: one of them would be ignored silently.
fn take_lakefs_url_credentials(loaded: &mut Loaded) -> Result<(), ConfigError> {
    let Some(found) = UrlCredentials::take(&loaded.config.lakefs.endpoint) else {
        return Ok(());
    };
    let l = &loaded.config.lakefs;
    let pairs = [
        ("lakefs.access_key_id", &found.username, &l.access_key_id),
        (
            "lakefs.secret_access_key",
            &found.password,
            &l.secret_access_key,
        ),
    ];
    for (key, from_url, configured) in pairs {
        let source = loaded.source_of(key);
        if let Some(value) = from_url
            && value != configured
            && source != DEFAULTS
        {
            return Err(ConfigError::Invalid {
                key: "lakefs.endpoint".into(),
                value: found.redacted(),
                origin: loaded.source_of("lakefs.endpoint"),
                allowed: format!(
                    "the URL carries credentials that differ from {key} (from {source}); give them once, in LAKECTL_CREDENTIALS_ACCESS_KEY_ID and LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY, and an endpoint without user:password@"
                ),
            });
        }
    }
    let l = &mut loaded.config.lakefs;
    if let Some(user) = found.username {
        l.access_key_id = user;
    }
    if let Some(password) = found.password {
        l.secret_access_key = password;
    }
    l.endpoint = found.url;
    Ok(())
}

impl Config {
    /// The U-Net for `in_channels` inputs and `task_classes` classes (2 = binary sigmoid).
    pub fn model_config(&self, in_channels: usize, task_classes: usize) -> UNetConfig {
        let m = &self.model;
        UNetConfig::new()
            .with_in_channels(in_channels)
            .with_num_classes(if task_classes == 2 { 1 } else { task_classes })
            .with_base_channels(m.base_channels)
            .with_depth(m.depth)
            .with_batch_norm(m.batch_norm)
            .with_upsample(m.upsample)
    }

    /// The mask encoding of the data.
    pub fn mask_encoding(&self) -> Result<MaskEncoding, seg_model::SegError> {
        let d = &self.data;
        MaskEncoding::new(
            d.mask_encoding,
            d.binary_threshold,
            d.num_classes,
            &d.palette,
        )
    }

    /// The synthetic dataset used when no data exists anywhere.
    pub fn synthetic(&self) -> SyntheticConfig {
        let d = &self.data;
        SyntheticConfig::new()
            .with_count(d.synthetic_count)
            .with_width(d.synthetic_size)
            .with_height(d.synthetic_size)
            .with_num_classes(d.synthetic_classes)
            .with_seed(d.synthetic_seed)
    }

    /// The backend of inference: `infer.backend`, or `train.backend` when that is empty.
    pub fn infer_backend(&self) -> BackendKind {
        self.infer.backend.unwrap_or(self.train.backend)
    }

    /// The storage namespace of a new repository: `local://<repository>` when unset; a value
    /// ending in `/` is a prefix the repository's name is appended to (`s3://lakefs/` ->
    /// `s3://lakefs/<repository>`), so one setting serves every repository; any other value is
    /// the namespace itself.
    pub fn storage_namespace(&self) -> String {
        let ns = &self.lakefs.storage_namespace;
        if ns.is_empty() {
            format!("local://{}", self.lakefs.repository)
        } else if ns.ends_with('/') {
            format!("{ns}{}", self.lakefs.repository)
        } else {
            ns.clone()
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
    pub fn redacted_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(&self.redacted())
            .map_err(|e| ConfigError::Parse(format!("cannot render the configuration: {e}")))
    }
}

#[cfg(test)]
mod tests;
