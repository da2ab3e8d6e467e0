//! MLflow's REST entities. Ids and versions are strings; absent lists default to empty
//! (MLflow answers `{}` for empty results).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A key/value tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

impl Tag {
    /// A tag.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A run parameter.
pub type Param = Tag;

/// A metric value at a step and time. Non-finite values travel as `"NaN"`, `"Infinity"`,
/// `"-Infinity"` (a bare NaN would be stored as 0). MLflow's SQL store keeps infinities as
/// `±f64::MAX`; reading maps those back to `±inf`, so values round-trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Name.
    pub key: String,
    /// Value.
    #[serde(serialize_with = "ser_f64", deserialize_with = "de_f64")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[serde(default, with = "int_string")]
    pub timestamp: i64,
    /// Step.
    #[serde(default, with = "int_string")]
    pub step: i64,
    /// The MLflow 3 logged model the value belongs to (shown on the model's page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
}

impl Metric {
    /// A metric stamped with the current time.
    pub fn now(key: impl Into<String>, value: f64, step: i64) -> Self {
        Self {
            key: key.into(),
            value,
            timestamp: now_millis(),
            step,
            model_id: None,
        }
    }

    /// The same value, attributed to logged model `model_id` as well as to its run.
    pub fn for_model(mut self, model_id: impl Into<String>) -> Self {
        self.model_id = Some(model_id.into());
        self
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ser_f64<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_str("NaN")
    } else if *v == f64::INFINITY {
        s.serialize_str("Infinity")
    } else if *v == f64::NEG_INFINITY {
        s.serialize_str("-Infinity")
    } else {
        s.serialize_f64(*v)
    }
}

fn de_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        F(f64),
        S(String),
    }
    match Num::deserialize(d)? {
        Num::F(v) if v == f64::MAX => Ok(f64::INFINITY),
        Num::F(v) if v == f64::MIN => Ok(f64::NEG_INFINITY),
        Num::F(v) => Ok(v),
        Num::S(s) => match s.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(serde::de::Error::custom),
        },
    }
}

/// int64 fields come as JSON numbers or strings depending on the endpoint.
mod int_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(*v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Int {
            I(i64),
            S(String),
        }
        match Option::<Int>::deserialize(d)? {
            None => Ok(0),
            Some(Int::I(v)) => Ok(v),
            Some(Int::S(s)) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// An experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Id.
    pub experiment_id: String,
    /// Name.
    pub name: String,
    /// Where its runs' artifacts go.
    #[serde(default)]
    pub artifact_location: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// Status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Running.
    Running,
    /// Scheduled.
    Scheduled,
    /// Finished successfully.
    Finished,
    /// Failed.
    Failed,
    /// Killed.
    Killed,
}

/// Which runs a search sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ViewType {
    /// Active runs only.
    #[default]
    ActiveOnly,
    /// Deleted runs only.
    DeletedOnly,
    /// Both.
    All,
}

/// Metadata of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Id.
    pub run_id: String,
    /// Name.
    #[serde(default)]
    pub run_name: String,
    /// Experiment id.
    pub experiment_id: String,
    /// User.
    #[serde(default)]
    pub user_id: String,
    /// Status.
    pub status: RunStatus,
    /// Start, ms since epoch.
    #[serde(default, with = "int_string")]
    pub start_time: i64,
    /// End, ms since epoch (0 while running).
    #[serde(default, with = "int_string")]
    pub end_time: i64,
    /// Artifact root (`mlflow-artifacts:/...` with the artifact proxy).
    #[serde(default)]
    pub artifact_uri: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
}

/// Logged values of a run (latest metric values only).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunData {
    /// Latest value of each metric.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Parameters.
    #[serde(default)]
    pub params: Vec<Param>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// A dataset as MLflow records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    /// Name.
    pub name: String,
    /// Content digest (e.g. the lakeFS commit id).
    pub digest: String,
    /// Source type (`lakefs`, `local`, ...).
    pub source_type: String,
    /// Source (JSON text by MLflow convention, e.g. `{"uri": "lakefs://repo/<commit>/data/"}`).
    pub source: String,
    /// Schema (JSON text), optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Profile (JSON text), optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A dataset used by a run, with its tags (`mlflow.data.context`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInput {
    /// Tags of the input.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The dataset.
    pub dataset: Dataset,
}

/// What a run used (datasets).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunInputs {
    /// Dataset inputs.
    #[serde(default)]
    pub dataset_inputs: Vec<DatasetInput>,
}

/// A run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Metadata.
    pub info: RunInfo,
    /// Logged values.
    #[serde(default)]
    pub data: RunData,
    /// Inputs.
    #[serde(default)]
    pub inputs: RunInputs,
}

impl Run {
    /// Value of parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.data
            .params
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    /// Value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data
            .tags
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    /// Latest value of metric `key`.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.data
            .metrics
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.value)
    }
}

/// A registered model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredModel {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Created, ms since epoch.
    #[serde(default, with = "int_string")]
    pub creation_timestamp: i64,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Aliases.
    #[serde(default)]
    pub aliases: Vec<ModelAlias>,
    /// Latest version per stage (legacy).
    #[serde(default)]
    pub latest_versions: Vec<ModelVersion>,
}

/// An alias pointing at a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelAlias {
    /// Alias.
    pub alias: String,
    /// Version.
    pub version: String,
}

/// A model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Registered model name.
    pub name: String,
    /// Version (a number, as a string).
    pub version: String,
    /// Where the model files are (e.g. `lakefs://repo/<commit>/models/model.segm`).
    #[serde(default)]
    pub source: String,
    /// Run that produced it.
    #[serde(default)]
    pub run_id: String,
    /// `READY`, `PENDING_REGISTRATION`, `FAILED_REGISTRATION`.
    #[serde(default)]
    pub status: String,
    /// Legacy stage.
    #[serde(default)]
    pub current_stage: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Created, ms since epoch.
    #[serde(default, with = "int_string")]
    pub creation_timestamp: i64,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Aliases pointing here.
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl LoggedModel {
    /// Value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.info
            .tags
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }
}

impl ModelVersion {
    /// Value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }
}

/// An MLflow 3 logged model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedModel {
    /// Metadata.
    pub info: LoggedModelInfo,
}

/// Metadata of a logged model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedModelInfo {
    /// Id (`m-...`).
    pub model_id: String,
    /// Experiment.
    pub experiment_id: String,
    /// Name.
    pub name: String,
    /// Run that produced it.
    #[serde(default)]
    pub source_run_id: String,
    /// `LOGGED_MODEL_PENDING`, `LOGGED_MODEL_READY`, ...
    #[serde(default)]
    pub status: String,
    /// Artifact location.
    #[serde(default)]
    pub artifact_uri: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Params.
    #[serde(default)]
    pub params: Vec<Param>,
}

/// A file in a run's artifact store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Path relative to the artifact root.
    pub path: String,
    /// Whether it is a folder.
    #[serde(default)]
    pub is_dir: bool,
    /// Size in bytes (files only).
    #[serde(default, with = "int_string")]
    pub file_size: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_metrics_serialise_as_strings_and_read_back() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.25] {
            let m = Metric {
                key: "k".into(),
                value: v,
                timestamp: 1,
                step: 2,
                model_id: None,
            };
            let json = serde_json::to_string(&m).expect("ser");
            let back: Metric = serde_json::from_str(&json).expect("de");
            assert!(
                back.value == v || (v.is_nan() && back.value.is_nan()),
                "{json}"
            );
        }
        let json = serde_json::to_string(&Metric {
            key: "k".into(),
            value: f64::NAN,
            timestamp: 0,
            step: 0,
            model_id: None,
        })
        .expect("ser");
        assert!(json.contains(r#""value":"NaN""#), "{json}");
        let m: Metric =
            serde_json::from_str(r#"{"key":"a","value":1.5,"timestamp":"17","step":"3"}"#)
                .expect("de");
        assert_eq!((m.timestamp, m.step), (17, 3));
    }
}
