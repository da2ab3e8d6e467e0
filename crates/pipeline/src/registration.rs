//! `register_model`: pick a training run, verify its model in lakeFS (the object exists at its
//! commit and its bytes hash to the run's `model_sha256`), apply the promotion criteria, and
//! register an MLflow model version whose source is the immutable lakeFS URI; set the alias and
//! tag the model commit in lakeFS as `<model>-v<version>`.

use std::io::BufRead;

use futures::TryStreamExt;
use lakefs_client::LakeFsError;
use mlflow_client::{ModelVersion, NewModelVersion, Run, RunSearch, RunStatus, Tag};
use serde::Serialize;

use crate::config::{Config, Criterion};
use crate::error::{PipelineError, Result};
use crate::services::Services;
use crate::training::tags;

/// How to choose the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunChoice {
    /// The newest FINISHED run of the experiment that has a model.
    Newest,
    /// This run.
    Id(String),
    /// The best run by this metric (`loss`-like metrics: lowest; others: highest).
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
    /// The version's source: `lakefs://repo/M/models/<run>/model.segm`.
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
}

/// Whether lower values of `metric` are better.
pub fn lower_is_better(metric: &str) -> bool {
    metric.contains("loss") || metric.contains("error")
}

/// The runs of the experiment that produced a model, newest first.
pub async fn model_runs(services: &Services, config: &Config) -> Result<Vec<Run>> {
    let experiment = services
        .mlflow
        .get_experiment_by_name(&config.mlflow.experiment)
        .await?
        .ok_or_else(|| {
            PipelineError::NotFound(format!(
                "no MLflow experiment {:?} at {}: train a model first (cargo run -p train)",
                config.mlflow.experiment, config.mlflow.tracking_uri
            ))
        })?;
    let runs: Vec<Run> = services
        .mlflow
        .search_runs(RunSearch {
            experiment_ids: vec![experiment.experiment_id],
            filter: Some(format!(
                "attributes.status = 'FINISHED' and tags.{} LIKE 'lakefs://%'",
                tags::MODEL_URI
            )),
            order_by: vec!["attributes.start_time DESC".into()],
            ..RunSearch::default()
        })
        .try_collect()
        .await?;
    Ok(runs)
}

/// Picks the run to register.
pub async fn choose_run(services: &Services, config: &Config, choice: &RunChoice) -> Result<Run> {
    if let RunChoice::Id(id) = choice {
        let run = services.mlflow.get_run(id).await.map_err(|e| {
            if e.is_not_found() {
                PipelineError::NotFound(format!(
                    "no MLflow run {id} at {}",
                    config.mlflow.tracking_uri
                ))
            } else {
                e.into()
            }
        })?;
        if run.info.status != RunStatus::Finished || run.tag(tags::MODEL_URI).is_none() {
            return Err(PipelineError::NotFound(format!(
                "run {id} has no model to register (status {:?}, no {} tag): pick a FINISHED training run",
                run.info.status,
                tags::MODEL_URI
            )));
        }
        return Ok(run);
    }
    let runs = model_runs(services, config).await?;
    if runs.is_empty() {
        return Err(PipelineError::NotFound(format!(
            "experiment {:?} has no FINISHED run with a model: train one first (cargo run -p train)",
            config.mlflow.experiment
        )));
    }
    match choice {
        RunChoice::BestBy(metric) => {
            let lower = lower_is_better(metric);
            // Oldest first, so that among equal values the newest run (the last maximum) wins.
            runs.into_iter()
                .rev()
                .filter(|r| r.metric(metric).is_some_and(f64::is_finite))
                .max_by(|a, b| {
                    let (x, y) = (a.metric(metric).unwrap_or(0.0), b.metric(metric).unwrap_or(0.0));
                    let ord = x.total_cmp(&y);
                    if lower { ord.reverse() } else { ord }
                })
                .ok_or_else(|| {
                    PipelineError::NotFound(format!(
                        "no run with a model has the metric {metric:?} (e.g. iou, dice, accuracy, loss, val_iou)"
                    ))
                })
        }
        RunChoice::Manual => pick_by_hand(runs),
        _ => runs
            .into_iter()
            .next()
            .ok_or_else(|| PipelineError::NotFound("no run".into())),
    }
}

/// Prints the runs as a numbered table on stderr and reads the choice from stdin: a bad choice
/// asks again on a terminal, and is a usage error when stdin is piped or closed.
fn pick_by_hand(runs: Vec<Run>) -> Result<Run> {
    let metric = |r: &Run, k: &str| r.metric(k).map_or("-".to_string(), |v| format!("{v:.4}"));
    eprintln!(
        "{:>3}  {:<32}  {:<20}  {:<19}  {:>7}  {:>8}  {:>7}  data commit",
        "#", "run id", "name", "start (UTC)", "loss", "accuracy", "iou"
    );
    for (i, r) in runs.iter().enumerate() {
        let start = r.info.start_time / 1000;
        eprintln!(
            "{:>3}  {:<32}  {:<20}  {:<19}  {:>7}  {:>8}  {:>7}  {}",
            i + 1,
            r.info.run_id,
            truncate_chars(&r.info.run_name, 20),
            format_utc(start),
            metric(r, "loss"),
            metric(r, "accuracy"),
            metric(r, "iou"),
            r.tag(tags::DATA_COMMIT)
                .map_or("-", |c| &c[..c.len().min(12)]),
        );
    }
    let n = read_choice(runs.len(), "register which run?", false)?;
    runs.into_iter()
        .nth(n)
        .ok_or_else(|| PipelineError::Usage("no such run".into()))
}

/// Reads a choice `1..=count` from stdin and returns it 0-based; an empty line is the first
/// entry when `empty_is_first`. A bad choice asks again on a terminal and is a usage error
/// when stdin is piped or closed.
pub(crate) fn read_choice(count: usize, prompt: &str, empty_is_first: bool) -> Result<usize> {
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let flag = if empty_is_first {
        "--interactive"
    } else {
        "--manual"
    };
    loop {
        if empty_is_first {
            eprint!("{prompt} [1-{count}, empty = 1]: ");
        } else {
            eprint!("{prompt} [1-{count}]: ");
        }
        let Some(Ok(line)) = lines.next() else {
            return Err(PipelineError::Usage(format!(
                "{flag}: no choice on stdin (pipe a number, e.g. `echo 2 | ... {flag}`)"
            )));
        };
        let text = line.trim();
        if text.is_empty() && empty_is_first {
            return Ok(0);
        }
        match text.parse::<usize>() {
            Ok(n) if (1..=count).contains(&n) => return Ok(n - 1),
            _ if interactive => eprintln!("{text:?} is not a number from 1 to {count}"),
            _ => {
                return Err(PipelineError::Usage(format!(
                    "{flag}: {text:?} is not a number from 1 to {count}"
                )));
            }
        }
    }
}

pub(crate) fn truncate_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time in seconds (UTC), without a date library.
pub(crate) fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The parts of a `lakefs://repo/ref/path` URI.
pub(crate) fn split_uri(uri: &str) -> Result<(String, String, String)> {
    let parsed: lakefs_client::LakeFsUri = uri.parse()?;
    Ok((
        parsed.repository.clone(),
        parsed.reference.clone(),
        parsed.path.clone(),
    ))
}

/// Verifies that the run's model exists at its commit in lakeFS and that its bytes hash to
/// the run's `model_sha256`; returns the verified file in the cache.
pub async fn verify_model(
    services: &Services,
    config: &Config,
    run: &Run,
) -> Result<std::path::PathBuf> {
    let run_id = &run.info.run_id;
    let uri = run.tag(tags::MODEL_URI).ok_or_else(|| {
        PipelineError::Lineage(format!("run {run_id} has no {} tag", tags::MODEL_URI))
    })?;
    let expected = run.tag(tags::MODEL_SHA256).ok_or_else(|| {
        PipelineError::Lineage(format!("run {run_id} has no {} tag", tags::MODEL_SHA256))
    })?;
    fetch_verified(
        services,
        config,
        uri,
        expected,
        &format!("model of run {run_id}"),
    )
    .await
}

/// Downloads the object at `uri` (an immutable `lakefs://repo/<commit>/path`) into the cache
/// keyed by commit, and checks that its bytes hash to `expected` (sha256); a missing object or
/// another hash is refused, naming both values. `whose` says what the object is in messages.
pub async fn fetch_verified(
    services: &Services,
    config: &Config,
    uri: &str,
    expected: &str,
    whose: &str,
) -> Result<std::path::PathBuf> {
    let (repo, commit, path) = split_uri(uri)?;
    let dest = config.paths.cache_dir.join(&repo).join(&commit).join(&path);
    match services
        .lakefs
        .download_object_cached(&repo, &commit, &path, &dest)
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {
            return Err(PipelineError::Lineage(format!(
                "{uri} ({whose}) does not exist in lakeFS: {e}"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let actual = seg_model::checkpoint::file_sha256(&dest)?;
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        return Err(PipelineError::Lineage(format!(
            "{uri} ({whose}) has sha256 {actual}, but {expected} was recorded: the object was replaced after training; refusing it"
        )));
    }
    Ok(dest)
}

/// The criteria that `run` does not meet, as lines naming metric, value and threshold.
pub fn unmet_criteria(config: &Config, run: &Run) -> Result<Vec<String>> {
    let mut unmet = Vec::new();
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

/// Registers `run` (verified) as a version of the configured model, sets the alias and tags M.
pub async fn register(
    services: &Services,
    config: &Config,
    run: &Run,
    alias: &str,
    forced: bool,
) -> Result<Registration> {
    let mlflow = &services.mlflow;
    let name = &config.register.model_name;
    let run_id = run.info.run_id.clone();
    let source = run.tag(tags::MODEL_URI).unwrap_or_default().to_string();
    let model_commit = run.tag(tags::MODEL_COMMIT).unwrap_or_default().to_string();
    let data_commit = run.tag(tags::DATA_COMMIT).unwrap_or_default().to_string();
    let sha = run.tag(tags::MODEL_SHA256).unwrap_or_default().to_string();
    let registered = mlflow.get_or_create_registered_model(name).await?;
    if registered.description.is_empty() {
        mlflow
            .update_registered_model(name, &config.register.description)
            .await?;
    }
    let existing: Vec<ModelVersion> = mlflow
        .search_model_versions(Some(format!("name='{name}' and run_id='{run_id}'")), vec![])
        .try_collect()
        .await?;
    let (version, created) = match existing.into_iter().find(|v| v.source == source) {
        Some(v) => (v, false),
        None => {
            let mut version_tags = vec![
                Tag::new(tags::MODEL_COMMIT, &model_commit),
                Tag::new(tags::MODEL_SHA256, &sha),
                Tag::new(tags::DATA_COMMIT, &data_commit),
                Tag::new(
                    tags::GIT_COMMIT,
                    run.tag(tags::GIT_COMMIT).unwrap_or("unknown"),
                ),
                Tag::new("forced", forced.to_string()),
            ];
            for m in ["loss", "accuracy", "iou", "dice"] {
                if let Some(v) = run.metric(m) {
                    version_tags.push(Tag::new(format!("metric.{m}"), v.to_string()));
                }
            }
            let v = mlflow
                .create_model_version(
                    name,
                    NewModelVersion {
                        source: source.clone(),
                        run_id: Some(run_id.clone()),
                        model_id: run.tag(tags::LOGGED_MODEL_ID).map(str::to_string),
                        tags: version_tags,
                        description: Some(format!(
                            "Run {run_id}: data commit {data_commit}, model commit {model_commit}, sha256 {sha}{}",
                            if forced { " (registered with --force: criteria not met)" } else { "" }
                        )),
                    },
                )
                .await?;
            (v, true)
        }
    };
    let previous = mlflow.get_version_by_alias(name, alias).await?;
    let alias_moved_from = previous
        .map(|p| p.version)
        .filter(|p| *p != version.version);
    mlflow.set_alias(name, alias, &version.version).await?;
    if let Some(from) = &alias_moved_from {
        tracing::info!(
            "alias {alias} of {name} moved from version {from} to {}",
            version.version
        );
    }
    let lakefs_tag = format!("{name}-v{}", version.version).replace('_', "-");
    let (repo, commit, _) = split_uri(&source)?;
    match services
        .lakefs
        .create_tag(&repo, &lakefs_tag, &commit)
        .await
    {
        Ok(_) => {}
        Err(LakeFsError::Conflict { .. }) => {
            let existing = services.lakefs.get_tag(&repo, &lakefs_tag).await?;
            if existing.commit_id != commit {
                return Err(PipelineError::Lineage(format!(
                    "lakeFS tag {lakefs_tag} exists on commit {} instead of {commit}",
                    existing.commit_id
                )));
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Registration {
        model_name: name.clone(),
        version: version.version,
        created,
        alias: alias.to_string(),
        alias_moved_from,
        run_id,
        source,
        model_commit,
        data_commit,
        model_sha256: sha,
        lakefs_tag,
        forced,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates_and_metric_directions() {
        assert_eq!(super::format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::format_utc(1_764_329_400), "2025-11-28 11:30:00");
        assert!(super::lower_is_better("val_loss") && !super::lower_is_better("iou"));
    }
}
