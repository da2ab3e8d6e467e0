//! `register_model` from the choice of a run to the alias: the absolute criteria, the version,
//! and, when `register.evaluation_data` names an evaluation set, the challenger scored against
//! the champion on the same images with the paired bootstrap rule of `[register.gate]`. The
//! alias moves only when the challenger is really better (or with `--force`, recorded); every
//! judged version records the evaluation commit, whom it was compared with and the decision.

use serde::Serialize;

use seg_model::compare::ScoredImage;

use super::evaluation::{self, EvaluationSet};
use super::gate::{self, Decision, Verdict};
use super::report::{self, Comparison, Side};
use super::{Registration, RunChoice, choose_run, register_version, unmet_criteria, verify_model};
use crate::config::Config;
use crate::error::{PipelineError, Result};
use crate::model_ref::{self, ModelChoice};
use crate::run_record::tags;
use crate::services::Services;

/// The comparison behind a decision (the `evaluation` object of `register_model --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Evaluated {
    /// What the gate decided (with `--force` taken into account).
    pub decision: Decision,
    /// The decision in one line, with its numbers.
    pub line: String,
    /// The evaluation set at its commit.
    pub evaluation_uri: String,
    /// Its commit.
    pub evaluation_commit: String,
    /// The evaluation commit the champion was judged on, when the set's content differs.
    pub evaluation_changed_from: Option<String>,
    /// The champion compared with (none for a first version).
    pub compared_with: Option<String>,
    /// Means, the difference, its interval and the rule.
    pub verdict: Verdict,
    /// The MLflow evaluation run.
    pub evaluation_run_id: String,
    /// It in the MLflow UI.
    pub evaluation_run_url: String,
    /// Every image's scores.
    pub per_image: Vec<PerImage>,
}

/// One image of the evaluation set, scored by both models.
#[derive(Debug, Clone, Serialize)]
pub struct PerImage {
    /// Its path under `images/`.
    pub image: String,
    /// The challenger's Dice.
    pub challenger_dice: f64,
    /// The challenger's IoU.
    pub challenger_iou: f64,
    /// The champion's Dice.
    pub champion_dice: Option<f64>,
    /// The champion's IoU.
    pub champion_iou: Option<f64>,
}

/// Chooses, verifies, registers and (when it earns it) promotes a run. A run that misses the
/// absolute criteria is not registered (unless `force`); a registered challenger that is not
/// better than the champion keeps its version with `decision = refused`, and the alias stays.
pub async fn promote(
    services: &Services,
    config: &Config,
    choice: &RunChoice,
    force: bool,
) -> Result<Registration> {
    let run = choose_run(services, config, choice).await?;
    tracing::info!("run {} ({})", run.info.run_id, run.info.run_name);
    let file = verify_model(services, config, &run).await?;
    tracing::info!("verified {} (sha256 matches the run)", file.display());
    let unmet = unmet_criteria(config, &run)?;
    if !unmet.is_empty() && !force {
        return Err(PipelineError::Criteria(format!(
            "{}; nothing registered (--force registers anyway)",
            unmet.join("; ")
        )));
    }
    if !unmet.is_empty() {
        tracing::warn!("registering with --force: {}", unmet.join("; "));
    }
    // The evaluation set first: when it cannot be read, nothing is registered.
    let set = evaluation::fetch(services, config).await?;
    let mut reg = register_version(services, config, &run, !unmet.is_empty()).await?;
    let mlflow = &services.mlflow;
    let (name, alias) = (&config.register.model_name, &config.register.alias);
    let current = mlflow.get_version_by_alias(name, alias).await?;
    if current.as_ref().is_some_and(|v| v.version == reg.version) {
        tracing::info!(
            "version {} already holds the alias {alias}: nothing to compare",
            reg.version
        );
        return Ok(reg);
    }
    let champion = current;
    if let Some(set) = &set {
        let evaluated = judge(services, config, &reg, champion.as_ref(), set, force).await?;
        reg.decision = evaluated.decision;
        for (key, value) in [
            (tags::EVALUATION_COMMIT, set.commit.clone()),
            (tags::EVALUATION_DIGEST, set.digest.clone()),
            (
                tags::COMPARED_WITH,
                evaluated
                    .compared_with
                    .clone()
                    .unwrap_or_else(|| "none".into()),
            ),
            (tags::DECISION, reg.decision.name().to_string()),
            (tags::EVALUATION_RUN, evaluated.evaluation_run_id.clone()),
        ] {
            mlflow
                .set_model_version_tag(name, &reg.version, key, &value)
                .await?;
        }
        reg.evaluation = Some(evaluated);
    } else if champion.is_some() {
        tracing::warn!(
            "no evaluation set (register.evaluation_data): version {} takes the alias {alias} on the absolute criteria alone, without a comparison with the champion",
            reg.version
        );
    }
    if reg.decision != Decision::Refused {
        mlflow.set_alias(name, alias, &reg.version).await?;
        reg.alias_moved_from = champion.map(|c| c.version);
        if let Some(from) = &reg.alias_moved_from {
            tracing::info!(
                "alias {alias} of {name} moved from version {from} to {}",
                reg.version
            );
        }
    }
    Ok(reg)
}

/// Scores the challenger (and the champion, if any) on `set`, decides, and records the
/// comparison as an MLflow evaluation run.
async fn judge(
    services: &Services,
    config: &Config,
    reg: &Registration,
    champion: Option<&mlflow_client::ModelVersion>,
    set: &EvaluationSet,
    force: bool,
) -> Result<Evaluated> {
    let challenger_model =
        model_ref::resolve(services, config, &ModelChoice::Version(reg.version.clone())).await?;
    tracing::info!(
        "scoring version {} on {} ({} images)",
        reg.version,
        set.uri,
        set.names.len()
    );
    let ours = evaluation::score(&challenger_model, config, set).await?;
    let theirs = match champion {
        Some(v) => {
            let model =
                model_ref::resolve(services, config, &ModelChoice::Version(v.version.clone()))
                    .await?;
            tracing::info!("scoring the champion, version {}", v.version);
            let scores = evaluation::score(&model, config, set).await?;
            Some((v, model.run_id, scores))
        }
        None => None,
    };
    let verdict = gate::judge(
        &config.register.gate,
        &ours,
        theirs.as_ref().map(|(_, _, s)| s.as_slice()),
    )?;
    let decision = Decision::of(verdict.better, force);
    let changed_from = changed_from(theirs.as_ref().map(|(v, _, _)| *v), set);
    let mut line = verdict.line(
        &reg.version,
        theirs.as_ref().map(|(v, _, _)| v.version.as_str()),
        &set.short(),
        decision,
    );
    if let Some(old) = &changed_from {
        tracing::warn!(
            "the evaluation set changed: the champion was judged on commit {old}, this comparison uses {}",
            set.commit
        );
        line.push_str(&format!(
            "; the evaluation set changed since the champion was judged (was commit {})",
            &old[..old.len().min(12)]
        ));
    }
    let classes = seg_model::checkpoint::read_meta(&challenger_model.local)?.classes;
    let comparison = Comparison {
        set,
        challenger: Side {
            version: &reg.version,
            run_id: &reg.run_id,
            scores: &ours,
        },
        champion: theirs.as_ref().map(|(v, run_id, s)| Side {
            version: &v.version,
            run_id,
            scores: s,
        }),
        verdict: &verdict,
        decision,
        line: &line,
        classes: &classes,
    };
    let (run_id, url) = report::record(services, config, &comparison).await?;
    let per_image = per_image(set, &ours, theirs.as_ref().map(|(_, _, s)| s.as_slice()));
    Ok(Evaluated {
        decision,
        line,
        evaluation_uri: set.uri.to_string(),
        evaluation_commit: set.commit.clone(),
        evaluation_changed_from: changed_from,
        compared_with: theirs.as_ref().map(|(v, _, _)| v.version.clone()),
        verdict,
        evaluation_run_id: run_id,
        evaluation_run_url: url,
        per_image,
    })
}

/// The champion's evaluation commit when the set's content has changed since it was judged
/// (its branch moves with every merge: the content, not the commit, says whether it changed).
fn changed_from(
    champion: Option<&mlflow_client::ModelVersion>,
    set: &EvaluationSet,
) -> Option<String> {
    let champion = champion?;
    let digest = champion.tag(tags::EVALUATION_DIGEST)?;
    if digest == set.digest {
        return None;
    }
    champion.tag(tags::EVALUATION_COMMIT).map(str::to_string)
}

/// Every image's scores by both models.
fn per_image(
    set: &EvaluationSet,
    ours: &[ScoredImage],
    theirs: Option<&[ScoredImage]>,
) -> Vec<PerImage> {
    set.names
        .iter()
        .enumerate()
        .map(|(i, image)| PerImage {
            image: image.clone(),
            challenger_dice: ours[i].metrics.dice,
            challenger_iou: ours[i].metrics.iou,
            champion_dice: theirs.map(|s| s[i].metrics.dice),
            champion_iou: theirs.map(|s| s[i].metrics.iou),
        })
        .collect()
}
