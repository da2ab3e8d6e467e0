//! The layers of the configuration as figment providers, each naming itself in its metadata so
//! that a value's source comes from figment (`Figment::find_metadata`), never from matching
//! provider names: the built-in defaults, this build's default backend, the `--config` file,
//! environment variables (each value names its variable) and command-line flags.

use std::collections::BTreeMap;
use std::sync::Arc;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider, Source};

use super::renamed::{self, Renamed};

/// The built-in defaults (the repository's `configs/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../../../configs/default.toml");

/// How the built-in defaults are named in messages.
pub const DEFAULTS: &str = "the built-in defaults (configs/default.toml)";

/// Where the value at `key` (dotted) came from, as messages say it: the file with its path,
/// the environment variable by name, the flag, or the defaults.
pub fn describe(metadata: Option<&Metadata>, key: &str) -> String {
    let Some(m) = metadata else {
        return DEFAULTS.into();
    };
    match &m.source {
        Some(Source::File(path)) => format!("{} {}", m.name, path.display()),
        _ => {
            let keys: Vec<&str> = key.split('.').collect();
            m.interpolate(&Profile::Default, &keys)
        }
    }
}

/// A provider under a name of our choosing (every value it gives is described by `name`).
pub struct Named<P> {
    name: &'static str,
    inner: P,
}

impl<P: Provider> Named<P> {
    /// `inner`, described as `name`.
    pub fn new(name: &'static str, inner: P) -> Self {
        Self { name, inner }
    }
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        let name = self.name;
        Metadata::named(name).interpolater(move |_: &Profile, _: &[&str]| name.to_string())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// The built-in defaults as a provider.
pub fn defaults() -> Named<figment::providers::Data<Toml>> {
    Named::new(DEFAULTS, Toml::string(DEFAULT_TOML))
}

/// `(dotted key, value)` pairs as a provider named `name`.
#[derive(Debug, Clone)]
pub struct Values {
    name: &'static str,
    values: BTreeMap<String, Value>,
}

impl Values {
    /// No values yet.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            values: BTreeMap::new(),
        }
    }

    /// Sets `key` (dotted).
    pub fn insert(&mut self, key: &str, value: Value) {
        self.values.insert(key.to_string(), value);
    }

    /// Adds `other`'s values, replacing the ones of the same keys.
    pub fn extend(&mut self, other: Values) {
        self.values.extend(other.values);
    }

    /// The value of `key` (dotted), when set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// The `(dotted key, value)` pairs, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.values.iter()
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Translates old keys to their new names ([`renamed::translate`]), with what was done
    /// as warnings naming this layer.
    pub fn translate(&mut self) -> Vec<String> {
        let name = self.name;
        renamed::translate(&mut self.values)
            .iter()
            .map(|r| r.warning(name))
            .collect()
    }
}

/// A layer read once, with its old keys translated ([`renamed::translate`]): the metadata of
/// the provider it was read from, the data under the new keys.
pub struct Translated {
    metadata: Metadata,
    data: Map<Profile, Dict>,
}

impl Translated {
    /// `inner`'s data, translated, and the warnings that name what was (and `inner`); the
    /// error is why `inner` could not be read.
    pub fn read<P: Provider>(inner: &P) -> Result<(Self, Vec<String>), String> {
        let metadata = inner.metadata();
        let mut data = inner.data().map_err(|e| e.to_string())?;
        let mut warnings = Vec::new();
        for dict in data.values_mut() {
            let mut flat = BTreeMap::new();
            flatten("", dict, &mut flat);
            let done = renamed::translate(&mut flat);
            if !done.is_empty() {
                *dict = nest(flat.iter());
                let key = |r: &Renamed| describe(Some(&metadata), &r.old);
                warnings.extend(done.iter().map(|r| r.warning(&key(r))));
            }
        }
        Ok((Self { metadata, data }, warnings))
    }
}

impl Provider for Translated {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(self.data.clone())
    }
}

/// The leaves of `dict` as dotted keys under `prefix`.
fn flatten(prefix: &str, dict: &Dict, into: &mut BTreeMap<String, Value>) {
    for (key, value) in dict {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Dict(_, inner) if !inner.is_empty() => flatten(&path, inner, into),
            other => {
                into.insert(path, other.clone());
            }
        }
    }
}

impl Provider for Values {
    fn metadata(&self) -> Metadata {
        let name = self.name;
        Metadata::named(name).interpolater(move |_: &Profile, _: &[&str]| name.to_string())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Map::from([(Profile::Default, nest(self.values.iter()))]))
    }
}

/// Nested dictionaries from dotted keys.
fn nest<'a>(values: impl Iterator<Item = (&'a String, &'a Value)>) -> Dict {
    let mut dict = Dict::new();
    for (key, value) in values {
        if let Value::Dict(_, d) = figment::util::nest(key, value.clone()) {
            merge_dict(&mut dict, d);
        }
    }
    dict
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
pub const TOOL_ENV: &[(&str, &str)] = &[
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

/// Keys whose values stay text even when they look like numbers (secrets, identifiers).
const TEXT_KEYS: &[&str] = &[
    "lakefs.secret_access_key",
    "lakefs.access_key_id",
    "mlflow.password",
    "mlflow.token",
    "mlflow.username",
];

/// Environment variables as a layer: MLflow's and lakectl's own variables for their keys, and
/// `SEG_<SECTION>__<KEY>` for every key; each value's metadata names its variable.
#[derive(Debug, Clone, Default)]
pub struct EnvVars {
    /// dotted key -> (variable, value); a later variable for the same key wins.
    entries: BTreeMap<String, (String, Value)>,
    /// What translating old keys did.
    warnings: Vec<String>,
}

impl EnvVars {
    /// The layer for `vars` (other variables are ignored).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut entries = BTreeMap::new();
        for (var, value) in vars {
            let key = if let Some((_, key)) = TOOL_ENV.iter().find(|(v, _)| *v == var) {
                (*key).to_string()
            } else if let Some(rest) = var.strip_prefix("SEG_")
                && rest.contains("__")
            {
                rest.to_ascii_lowercase().replace("__", ".")
            } else {
                continue;
            };
            let value = parse_env(&key, &value);
            entries.insert(key, (var, value));
        }
        Self {
            entries,
            warnings: Vec::new(),
        }
        .translated()
    }

    /// The entries under their new keys ([`renamed::translate`]); each new key keeps the
    /// variable of the old one.
    fn translated(mut self) -> Self {
        let mut values: BTreeMap<String, Value> = self
            .entries
            .iter()
            .map(|(key, (_, value))| (key.clone(), value.clone()))
            .collect();
        let done = renamed::translate(&mut values);
        if done.is_empty() {
            return self;
        }
        let mut entries = BTreeMap::new();
        for (key, value) in values {
            let var = match self.entries.get(&key) {
                Some((var, _)) => var.clone(),
                None => done
                    .iter()
                    .filter(|r| r.new.contains(&key))
                    .find_map(|r| self.entries.get(&r.old).map(|(var, _)| var.clone()))
                    .unwrap_or_default(),
            };
            entries.insert(key, (var, value));
        }
        for r in &done {
            let var = self.entries.get(&r.old).map_or("", |(var, _)| var.as_str());
            self.warnings
                .push(r.warning(&format!("environment variable {var}")));
        }
        self.entries = entries;
        self
    }

    /// What translating old keys did, one warning each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// A variable's text as a value: numbers and booleans parsed, text kept for [`TEXT_KEYS`].
fn parse_env(key: &str, text: &str) -> Value {
    if TEXT_KEYS.contains(&key) {
        Value::from(text.to_string())
    } else {
        text.parse()
            .unwrap_or_else(|_| Value::from(text.to_string()))
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        let vars: Arc<BTreeMap<String, String>> = Arc::new(
            self.entries
                .iter()
                .map(|(k, (var, _))| (k.clone(), var.clone()))
                .collect(),
        );
        Metadata::named("environment variable").interpolater(move |_: &Profile, keys: &[&str]| {
            match vars.get(&keys.join(".")) {
                Some(var) => format!("environment variable {var}"),
                None => "the environment".to_string(),
            }
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let values = self.entries.iter().map(|(key, (_, value))| (key, value));
        Ok(Map::from([(Profile::Default, nest(values))]))
    }
}
