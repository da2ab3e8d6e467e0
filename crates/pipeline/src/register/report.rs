//! The comparison as an MLflow run of its own (kind `evaluation`), linked to both versions:
//! the gate's settings as params, each model's mean and the difference with its interval as
//! metrics, the decision and its line as tags, and as artifacts a per-image CSV, the scatter of
//! per-image scores, and side-by-side overlays of the images where the two disagree most.

use std::fmt::Write as _;
use std::path::Path;

use image::{DynamicImage, GenericImage, RgbImage};
use mlflow_client::{Metric, NewRun, Param, RunGuard, Tag};
use seg_model::compare::ScoredImage;
use seg_model::data::{ClassInfo, decode_image};

use super::evaluation::EvaluationSet;
use super::gate::{Decision, Verdict};
use crate::config::Config;
use crate::error::{PipelineError, Result};
use crate::lineage;
use crate::run_record::{self, kinds, tags};
use crate::services::Services;

/// Images shown side by side in `disagreements/`.
const SHOWN: usize = 4;

/// One side of the comparison.
pub(super) struct Side<'a> {
    /// Its version number.
    pub version: &'a str,
    /// Its training run.
    pub run_id: &'a str,
    /// Its scores, in the evaluation set's order.
    pub scores: &'a [ScoredImage],
}

/// Everything the evaluation run records.
pub(super) struct Comparison<'a> {
    pub set: &'a EvaluationSet,
    pub challenger: Side<'a>,
    pub champion: Option<Side<'a>>,
    pub verdict: &'a Verdict,
    pub decision: Decision,
    pub line: &'a str,
    pub classes: &'a [ClassInfo],
}

/// Records `c` as a FINISHED evaluation run; returns its id and its address in the UI.
pub(super) async fn record(
    services: &Services,
    config: &Config,
    c: &Comparison<'_>,
) -> Result<(String, String)> {
    let mlflow = &services.mlflow;
    let experiment = mlflow
        .get_or_create_experiment(&config.mlflow.experiment, &run_record::experiment_tags())
        .await?;
    let name = &config.register.model_name;
    let mut run_tags = run_record::code_tags(&lineage::git_info(Path::new(".")), "register_model");
    run_tags.extend([
        Tag::new(tags::KIND, kinds::EVALUATION),
        Tag::new(tags::MODEL_NAME, name),
        Tag::new(tags::CHALLENGER_VERSION, c.challenger.version),
        Tag::new(tags::TRAINING_RUN, c.challenger.run_id),
        Tag::new(tags::EVALUATION_COMMIT, &c.set.commit),
        Tag::new(tags::EVALUATION_DIGEST, &c.set.digest),
        Tag::new(tags::EVALUATION_URI, c.set.uri.to_string()),
        Tag::new(tags::DECISION, c.decision.name()),
        Tag::new("mlflow.note.content", c.line),
    ]);
    if let Some(champion) = &c.champion {
        run_tags.push(Tag::new(tags::COMPARED_WITH, champion.version));
        run_tags.push(Tag::new("champion_run_id", champion.run_id));
    }
    let versus = c
        .champion
        .as_ref()
        .map_or_else(|| "first".to_string(), |s| format!("v{}", s.version));
    let run = mlflow
        .create_run(
            &experiment.experiment_id,
            NewRun {
                run_name: Some(format!("evaluation-v{}-vs-{versus}", c.challenger.version)),
                tags: run_tags,
                ..NewRun::default()
            },
        )
        .await?;
    let run_id = run.info.run_id.clone();
    let artifact_uri = run.info.artifact_uri.clone();
    let guard = RunGuard::new(mlflow.clone(), run);
    let result = async {
        let g = &config.register.gate;
        let params = [
            Param::new("metric", c.verdict.metric.name()),
            Param::new("min_absolute_change", g.min_absolute_change.to_string()),
            Param::new("min_relative_change", g.min_relative_change.to_string()),
            Param::new("confidence", g.confidence.to_string()),
            Param::new("resamples", g.resamples.to_string()),
            Param::new("seed", g.seed.to_string()),
            Param::new("images", c.set.names.len().to_string()),
            Param::new("backend", config.infer_backend().to_string()),
            Param::new("tta_views", config.infer.tta()?.views().to_string()),
        ];
        mlflow.log_batch(&run_id, &metrics(c), &params, &[]).await?;
        let dir = tempfile::tempdir().map_err(PipelineError::io("create", "temp dir"))?;
        write_artifacts(c, dir.path())?;
        mlflow
            .upload_artifact_dir(&artifact_uri, "", dir.path())
            .await?;
        Ok::<_, PipelineError>(())
    }
    .await;
    run_record::end_run(mlflow, guard, result).await?;
    let url = run_record::run_url(
        &config.mlflow.tracking_uri,
        &experiment.experiment_id,
        &run_id,
    );
    Ok((run_id, url))
}

/// Each side's means and the difference with its interval.
fn metrics(c: &Comparison<'_>) -> Vec<Metric> {
    let mean = |s: &[ScoredImage], f: fn(&seg_model::SegMetrics) -> f64| {
        s.iter().map(|i| f(&i.metrics)).sum::<f64>() / s.len().max(1) as f64
    };
    let mut out = vec![
        Metric::now("challenger_dice", mean(c.challenger.scores, |m| m.dice), 0),
        Metric::now("challenger_iou", mean(c.challenger.scores, |m| m.iou), 0),
    ];
    if let Some(champion) = &c.champion {
        out.push(Metric::now(
            "champion_dice",
            mean(champion.scores, |m| m.dice),
            0,
        ));
        out.push(Metric::now(
            "champion_iou",
            mean(champion.scores, |m| m.iou),
            0,
        ));
    }
    if let Some(d) = c.verdict.difference {
        out.extend([
            Metric::now("difference_mean", d.mean, 0),
            Metric::now("difference_low", d.low, 0),
            Metric::now("difference_high", d.high, 0),
            Metric::now("required_change", c.verdict.required, 0),
        ]);
    }
    out
}

/// `per_image.csv`, `comparison.png` and `disagreements/` under `dir`.
fn write_artifacts(c: &Comparison<'_>, dir: &Path) -> Result<()> {
    let champion = c.champion.as_ref().map(|s| s.scores);
    let mut csv = String::from(
        "image,challenger_dice,challenger_iou,champion_dice,champion_iou,difference\n",
    );
    let metric = |m: &seg_model::SegMetrics| c.verdict.metric.of(m);
    let mut gaps = Vec::new();
    for (i, name) in c.set.names.iter().enumerate() {
        let ours = &c.challenger.scores[i].metrics;
        let theirs = champion.map(|s| &s[i].metrics);
        let gap = theirs.map(|t| metric(ours) - metric(t));
        let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
        let _ = writeln!(
            csv,
            "{},{:.6},{:.6},{},{},{}",
            name.replace(',', "_"),
            ours.dice,
            ours.iou,
            cell(theirs.map(|t| t.dice)),
            cell(theirs.map(|t| t.iou)),
            cell(gap)
        );
        if let (Some(g), Some(t)) = (gap, theirs) {
            gaps.push((i, g, (metric(t), metric(ours))));
        }
    }
    let path = dir.join("per_image.csv");
    std::fs::write(&path, csv).map_err(PipelineError::io("write", &path))?;
    let Some(champion) = &c.champion else {
        return Ok(());
    };
    let pairs: Vec<(f64, f64)> = gaps.iter().map(|&(_, _, p)| p).collect();
    super::plot::comparison(
        &pairs,
        c.verdict.metric.name(),
        (
            &format!("v{}", champion.version),
            &format!("v{}", c.challenger.version),
        ),
        &dir.join("comparison.png"),
    )?;
    gaps.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    let folder = dir.join("disagreements");
    std::fs::create_dir_all(&folder).map_err(PipelineError::io("create", &folder))?;
    for (rank, &(i, gap, _)) in gaps.iter().take(SHOWN).enumerate() {
        let image = decode_image(&c.set.inputs[i].path)?;
        let side = side_by_side(
            &image,
            &c.challenger.scores[i],
            &champion.scores[i],
            c.classes,
        );
        let stem = c.set.names[i].replace(['/', '\\'], "_");
        let path = folder.join(format!("{}_{gap:+.3}_{stem}.png", rank + 1));
        side.save(&path).map_err(|e| PipelineError::Io {
            action: "write",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
    }
    Ok(())
}

/// The image with the challenger's mask (left) and the champion's (right) painted on it.
fn side_by_side(
    image: &DynamicImage,
    challenger: &ScoredImage,
    champion: &ScoredImage,
    classes: &[ClassInfo],
) -> RgbImage {
    let left = seg_model::predict::overlay(image, &challenger.mask, classes, 0.45);
    let right = seg_model::predict::overlay(image, &champion.mask, classes, 0.45);
    let (w, h) = left.dimensions();
    let mut out = RgbImage::new(w * 2 + 8, h);
    // Both halves fit by construction; a failure would only leave a blank half.
    let _ = out.copy_from(&left, 0, 0);
    let _ = out.copy_from(&right, w + 8, 0);
    out
}
