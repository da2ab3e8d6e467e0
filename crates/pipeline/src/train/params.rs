//! What a training run records before it trains: its tags (code, data), its params (every
//! training, model and data setting, and facts about the data), its dataset inputs; and the
//! flags that replay a run's params (`--reproduce`).

use mlflow_client::{Dataset, DatasetInput, Param, Run, Tag, context_tag};
use seg_model::UNetConfig;
use seg_model::data::Split;

use crate::config::{Config, Flags};
use crate::data::{self, PreparedData};
use crate::error::{PipelineError, Result};
use crate::lineage::GitInfo;
use crate::run_record::{self, kinds, params, tags};

/// The tags a training run starts with: its kind, its code and its data.
pub(super) fn run_tags(
    config: &Config,
    git: &GitInfo,
    data: &PreparedData,
    reproduced: Option<&Run>,
) -> Result<Vec<Tag>> {
    let mut t = run_record::code_tags(git, "train");
    t.extend([
        Tag::new(tags::KIND, kinds::TRAINING),
        Tag::new(tags::LAKEFS_REPO, &config.lakefs.repository),
        Tag::new(tags::DATA_COMMIT, &data.commit),
        Tag::new(tags::DATA_URI, data.uri(config)?.to_string()),
    ]);
    if let Some(run) = reproduced {
        t.push(Tag::new(tags::REPRODUCED_FROM, &run.info.run_id));
    }
    if config.data.holdout_fraction > 0.0 {
        let folder = format!("{}/", config.lakefs.holdout_path.trim_matches('/'));
        let held = lakefs_client::LakeFsUri::new(&config.lakefs.repository, &data.commit, &folder)?
            .to_string();
        t.push(Tag::new(tags::HOLDOUT_URI, held));
    }
    Ok(t)
}

/// Params: every training, model and data setting (names as in the config; `train.` keys
/// without their prefix: `learning_rate`, `batch_size`, `optimizer.kind`, ..., the names of the
/// Python pipeline this one mirrors).
pub(super) fn config_params(config: &Config) -> Result<Vec<Param>> {
    let value = serde_json::to_value(config).map_err(|e| {
        PipelineError::Internal(format!(
            "cannot turn the configuration into MLflow params: {e}"
        ))
    })?;
    let mut out = Vec::new();
    for section in ["train", "model", "data"] {
        let Some(table) = value.get(section).filter(|v| v.is_object()) else {
            return Err(PipelineError::Internal(format!(
                "the configuration has no [{section}] table to log"
            )));
        };
        let prefix = if section == "train" { "" } else { section };
        leaf_params(prefix, table, &mut out);
    }
    Ok(out)
}

/// One param per leaf of `value`, named by its dotted path under `prefix`.
fn leaf_params(prefix: &str, value: &serde_json::Value, out: &mut Vec<Param>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaf_params(&name, v, out);
            }
        }
        serde_json::Value::String(s) => out.push(Param::new(prefix, s)),
        other => out.push(Param::new(prefix, other.to_string())),
    }
}

/// Params that describe the run rather than set it (not replayed by `--reproduce`).
const RUN_FACT_PARAMS: &[&str] = &[
    params::DEVICE,
    "dataset_size",
    "train_size",
    "valid_size",
    "in_channels",
    "classes",
    "unet_config",
    "parameters",
];

/// Every param of a training run: the settings and the facts of this run's data and model.
pub(super) fn run_params(
    config: &Config,
    data: &PreparedData,
    split: &Split,
    model: &UNetConfig,
) -> Result<Vec<Param>> {
    let mut params = config_params(config)?;
    let unet = serde_json::to_string(model).map_err(|e| {
        PipelineError::Internal(format!("cannot write the U-Net config as JSON: {e}"))
    })?;
    params.extend([
        Param::new(params::DEVICE, config.train.backend.to_string()),
        Param::new("dataset_size", data.dataset.len().to_string()),
        Param::new("train_size", split.train.len().to_string()),
        Param::new("valid_size", split.valid.len().to_string()),
        Param::new("in_channels", data.in_channels.to_string()),
        Param::new("classes", data.dataset.encoding().num_classes().to_string()),
        Param::new("unet_config", unet),
    ]);
    Ok(params)
}

/// Flags that set every logged setting of `run` back (for `--reproduce`); the params of runs
/// made before the nested `[train]` tables are translated when loaded ([`crate::config::renamed`]).
/// A run without the params of a training run is refused.
pub fn reproduce_flags(run: &Run) -> Result<Flags> {
    if run.tag(tags::KIND) == Some(kinds::INFERENCE) || run.param("learning_rate").is_none() {
        return Err(PipelineError::NotFound(format!(
            "--reproduce {}: not a training run (it has no training params); pick a run that `train` made",
            run.info.run_id
        )));
    }
    let mut flags = Flags::new();
    for p in &run.data.params {
        // `model.*` and `data.*` name their section; every other param is a `train.` key.
        let section = p.key.split('.').next().unwrap_or_default();
        let key = if ["model", "data"].contains(&section) {
            p.key.clone()
        } else {
            format!("train.{}", p.key)
        };
        if RUN_FACT_PARAMS.contains(&p.key.as_str()) {
            continue;
        }
        // Params are text: numbers, booleans and lists were written as JSON, strings as is.
        let value = serde_json::from_str::<serde_json::Value>(&p.value)
            .ok()
            .and_then(|j| figment::value::Value::serialize(j).ok())
            .unwrap_or_else(|| figment::value::Value::from(p.value.clone()));
        flags.set(&key, Some(value));
    }
    Ok(flags)
}

/// The datasets of the run as MLflow inputs, one per split (MLflow keeps one input per
/// dataset name and digest): digest = D (MLflow keeps 36 characters; the source has all of it),
/// source = the lakeFS URI at D, context = training / validation, profile = the split's size.
pub(super) fn dataset_inputs(
    config: &Config,
    data: &PreparedData,
    split: &Split,
) -> Result<Vec<DatasetInput>> {
    let source = serde_json::json!({ "uri": data.uri(config)?.to_string() }).to_string();
    let name = format!(
        "{}/{}",
        config.lakefs.repository,
        data::data_root(config).trim_end_matches('/')
    );
    Ok([
        ("training", split.train.len()),
        ("validation", split.valid.len()),
    ]
    .into_iter()
    .map(|(context, rows)| DatasetInput {
        tags: vec![context_tag(context)],
        dataset: Dataset {
            name: format!("{} ({context} split)", name.trim_end_matches('/')),
            digest: data.commit.chars().take(36).collect(),
            source_type: "lakefs".into(),
            source: source.clone(),
            schema: None,
            profile: Some(
                serde_json::json!({
                    "num_rows": rows,
                    "pairs": data.stats.pairs,
                    "classes": data.dataset.encoding().num_classes(),
                })
                .to_string(),
            ),
        },
    })
    .collect())
}
