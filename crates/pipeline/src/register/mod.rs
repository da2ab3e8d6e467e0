//! `register_model`: pick a training run, verify its model in lakeFS (the object exists at its
//! commit and its bytes hash to the run's `model_sha256`), apply the absolute promotion
//! criteria, register an MLflow model version whose source is the immutable lakeFS URI and tag
//! the model commit in lakeFS as `<model>-v<version>`; then [`promote`] it: with an evaluation
//! set, the challenger is scored against the champion on the same images ([`evaluation`],
//! [`gate`]), the comparison recorded as an MLflow run ([`report`]), and the alias moves only
//! when the challenger is really better.

pub mod evaluation;
pub mod gate;
mod plot;
mod promote;
mod report;

pub use gate::Decision;
pub use promote::{Evaluated, PerImage, promote};

use futures::TryStreamExt;
use lakefs_client::{LakeFsError, LakeFsUri};
use mlflow_client::{ModelVersion, NewModelVersion, Run, Tag};
use seg_model::Metric;
use serde::Serialize;

use crate::config::{Config, Criterion};
use crate::error::{PipelineError, Result};
use crate::model_ref;
use crate::run_record::{ModelLineage, tags};
use crate::services::Services;
use crate::terminal::{Table, format_utc, read_choice, truncate_chars};

/// How to choose the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunChoice {
    /// The newest FINISHED training run of the experiment that has a model.
    Newest,
    /// This run.
    Id(String),
    /// The best run by this metric (lower is better for losses, higher otherwise).
    BestBy(String),
    /// A table of runs; the choice is read from stdin.
    Manual,
}

/// What `register_model` reports (the `--json` object).
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// Registered model name.
    pub model_name: String,
    /// The version.
    pub version: String,
    /// Whether this call created it (false: the run was registered already).
    pub created: bool,
    /// The alias set on it.
    pub alias: String,
    /// The version the alias pointed at before, if another one.
    pub alias_moved_from: Option<String>,
    /// The training run.
    pub run_id: String,
    /// The version's source: the MLflow model folder `lakefs://repo/M/models/<run>/`.
    pub source: String,
    /// Model commit M.
    pub model_commit: String,
    /// Data commit D.
    pub data_commit: String,
    /// sha256 of the model file, verified.
    pub model_sha256: String,
    /// The lakeFS tag on M.
    pub lakefs_tag: String,
    /// Registered although the criteria were not met.
    pub forced: bool,
    /// Whether the alias moved to this version.
    pub decision: Decision,
    /// The comparison on the evaluation set, when one is configured.
    pub evaluation: Option<Evaluated>,
}

/// Whether lower values of `metric` are better: the vocabulary's losses, and any other name
/// that says loss or error.
pub fn lower_is_better(metric: &str) -> bool {
    Metric::from_name(metric).map_or_else(
        || metric.contains("loss") || metric.contains("error"),
        Metric::lower_is_better,
    )
}

/// Picks the run to register.
pub async fn choose_run(services: &Services, config: &Config, choice: &RunChoice) -> Result<Run> {
    if let RunChoice::Id(id) = choice {
        let run = model_ref::training_run(services, config, id).await?;
        model_ref::require_finished(&run)?;
        if run.tag(tags::MODEL_URI).is_none() {
            return Err(PipelineError::NotFound(format!(
                "run {id} has no model to register (no {} tag): pick a training run that stored a model",
                tags::MODEL_URI
            )));
        }
        return Ok(run);
    }
    let runs = model_ref::some_model_runs(services, config).await?;
    match choice {
        RunChoice::BestBy(metric) => best_by(runs, metric),
        RunChoice::Manual => pick_by_hand(runs),
        _ => runs
            .into_iter()
            .next()
            .ok_or_else(|| PipelineError::NotFound("no run".into())),
    }
}

/// The best of `runs` by `metric`; among equal values the newest.
fn best_by(runs: Vec<Run>, metric: &str) -> Result<Run> {
    let lower = lower_is_better(metric);
    // Oldest first, so that among equal values the newest run (the last maximum) wins.
    runs.into_iter()
        .rev()
        .filter_map(|r| r.metric(metric).filter(|v| v.is_finite()).map(|v| (v, r)))
        .max_by(|(x, _), (y, _)| {
            let ord = x.total_cmp(y);
            if lower { ord.reverse() } else { ord }
        })
        .map(|(_, r)| r)
        .ok_or_else(|| {
            PipelineError::NotFound(format!(
                "no run with a model has the metric {metric:?} (e.g. iou, dice, accuracy, loss, val_iou)"
            ))
        })
}

/// Prints the runs as a numbered table on stderr and reads the choice from stdin.
fn pick_by_hand(runs: Vec<Run>) -> Result<Run> {
    let metric = |r: &Run, k: &str| r.metric(k).map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut table = Table::new(&[
        ("run id", 32),
        ("name", 20),
        ("start (UTC)", 19),
        ("loss", -7),
        ("accuracy", -8),
        ("iou", -7),
        ("data commit", 12),
    ]);
    for r in &runs {
        table.row(vec![
            r.info.run_id.clone(),
            truncate_chars(&r.info.run_name, 20),
            format_utc(r.info.start_time / 1000),
            metric(r, "loss"),
            metric(r, "accuracy"),
            metric(r, "iou"),
            r.tag(tags::DATA_COMMIT)
                .map_or("-".to_string(), |c| truncate_chars(c, 12)),
        ]);
    }
    table.print();
    let n = read_choice(runs.len(), "register which run?", "--manual", false)?;
    runs.into_iter()
        .nth(n)
        .ok_or_else(|| PipelineError::Usage("no such run".into()))
}

/// Verifies that the run's model exists at its commit in lakeFS and that its bytes hash to
/// the run's `model_sha256`; returns the verified file in the cache.
pub async fn verify_model(
    services: &Services,
    config: &Config,
    run: &Run,
) -> Result<std::path::PathBuf> {
    let run_id = &run.info.run_id;
    let missing = |tag: &str| PipelineError::Lineage(format!("run {run_id} has no {tag} tag"));
    let expected = run
        .tag(tags::MODEL_SHA256)
        .ok_or_else(|| missing(tags::MODEL_SHA256))?;
    let whose = format!("model of run {run_id}");
    if let Some(folder) = run.tag(tags::MODEL_FOLDER_URI) {
        let files = model_ref::folder_files(run, expected)?;
        let folder: LakeFsUri = folder.parse()?;
        return model_ref::fetch_folder(services, config, &folder, &files, &whose).await;
    }
    let uri: LakeFsUri = run
        .tag(tags::MODEL_URI)
        .ok_or_else(|| missing(tags::MODEL_URI))?
        .parse()?;
    model_ref::fetch_verified(services, config, &uri, expected, &whose).await
}

/// The criteria that `run` does not meet, as lines naming metric, value and threshold.
pub fn unmet_criteria(config: &Config, run: &Run) -> Result<Vec<String>> {
    let mut unmet = Vec::new();
    if run.tag(tags::VALIDATION_FOREGROUND) == Some("0") {
        unmet.push(format!(
            "run {}'s validation split has no foreground pixel, so its scores measure nothing",
            run.info.run_id
        ));
    }
    for text in &config.register.criteria {
        let c = Criterion::parse(text)
            .map_err(|e| PipelineError::Usage(format!("register.criteria {text:?}: {e}")))?;
        match run.metric(&c.metric) {
            Some(v) if c.holds(v) => {}
            Some(v) => unmet.push(format!("{} = {v:.4} does not meet {c}", c.metric)),
            None => unmet.push(format!(
                "{} is not logged on run {} (needed by {c})",
                c.metric, run.info.run_id
            )),
        }
    }
    Ok(unmet)
}

/// Registers `run` (verified) as a version of the configured model and tags M in lakeFS; the
/// alias is [`promote`]'s to set.
async fn register_version(
    services: &Services,
    config: &Config,
    run: &Run,
    forced: bool,
) -> Result<Registration> {
    let mlflow = &services.mlflow;
    let name = &config.register.model_name;
    let facts = ModelLineage::try_from(run)?;
    let registered = mlflow.get_or_create_registered_model(name).await?;
    if registered.description.is_empty() {
        mlflow
            .update_registered_model(name, &config.register.description)
            .await?;
    }
    let (version, created) = version_of(services, config, run, &facts, forced).await?;
    let lakefs_tag = format!("{name}-v{}", version.version).replace('_', "-");
    tag_model_commit(services, &facts.source, &lakefs_tag).await?;
    Ok(Registration {
        model_name: name.clone(),
        version: version.version,
        created,
        alias: config.register.alias.clone(),
        alias_moved_from: None,
        run_id: run.info.run_id.clone(),
        source: facts.source,
        model_commit: facts.model_commit,
        data_commit: facts.data_commit,
        model_sha256: facts.model_sha256,
        lakefs_tag,
        forced,
        decision: Decision::Promoted,
        evaluation: None,
    })
}

/// The version of `run`'s model: the existing one with the same source, or a new one.
async fn version_of(
    services: &Services,
    config: &Config,
    run: &Run,
    facts: &ModelLineage,
    forced: bool,
) -> Result<(ModelVersion, bool)> {
    let mlflow = &services.mlflow;
    let name = &config.register.model_name;
    let run_id = &run.info.run_id;
    let existing: Vec<ModelVersion> = mlflow
        .search_model_versions(Some(format!("name='{name}' and run_id='{run_id}'")), vec![])
        .try_collect()
        .await?;
    if let Some(v) = existing.into_iter().find(|v| v.source == facts.source) {
        return Ok((v, false));
    }
    let mut version_tags = vec![
        Tag::new(tags::MODEL_COMMIT, &facts.model_commit),
        Tag::new(tags::MODEL_SHA256, &facts.model_sha256),
        Tag::new(tags::DATA_COMMIT, &facts.data_commit),
        Tag::new(tags::FORCED, forced.to_string()),
    ];
    if let Some(git) = &facts.git_commit {
        version_tags.push(Tag::new(tags::GIT_COMMIT, git));
    }
    for m in [
        Metric::Loss,
        Metric::PixelAccuracy,
        Metric::Iou,
        Metric::Dice,
    ] {
        if let Some(v) = run.metric(m.name()) {
            version_tags.push(Tag::new(format!("metric.{}", m.name()), v.to_string()));
        }
    }
    let description = format!(
        "Run {run_id}: data commit {}, model commit {}, sha256 {}{}",
        facts.data_commit,
        facts.model_commit,
        facts.model_sha256,
        if forced {
            " (registered with --force: criteria not met)"
        } else {
            ""
        }
    );
    let new = NewModelVersion {
        source: facts.source.clone(),
        run_id: Some(run_id.clone()),
        model_id: run.tag(tags::LOGGED_MODEL_ID).map(str::to_string),
        tags: version_tags,
        description: Some(description),
    };
    Ok((mlflow.create_model_version(name, new).await?, true))
}

/// Tags the model commit of `source` in lakeFS as `tag` (kept when it already marks it).
async fn tag_model_commit(services: &Services, source: &str, tag: &str) -> Result<()> {
    let uri: LakeFsUri = source.parse()?;
    let (repo, commit) = (&uri.repository, &uri.reference);
    match services.lakefs.create_tag(repo, tag, commit).await {
        Ok(_) => Ok(()),
        Err(LakeFsError::Conflict { .. }) => {
            let existing = services.lakefs.get_tag(repo, tag).await?;
            if existing.commit_id != *commit {
                return Err(PipelineError::Lineage(format!(
                    "lakeFS tag {tag} exists on commit {} instead of {commit}",
                    existing.commit_id
                )));
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_directions() {
        assert!(super::lower_is_better("val_loss") && !super::lower_is_better("iou"));
        assert!(super::lower_is_better("train_loss") && !super::lower_is_better("accuracy"));
    }
}
