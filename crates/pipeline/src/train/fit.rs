//! The training itself: seg-model's loop on a blocking thread (it is synchronous and CPU-bound)
//! while its metrics stream to MLflow through the logger, flushed before anything is stored.
//! A stopped run keeps its best model locally and uploads nothing.

use std::time::{Duration, Instant};

use seg_model::{SegError, StopReason, TrainEnd, TrainOutcome};

use super::RunContext;
use super::observer::{MetricLogger, MlflowObserver};
use super::plan::Plan;
use super::store;
use crate::error::{PipelineError, Result};

/// How often the logger retries MLflow while training runs (at the end it keeps trying for
/// the retry policy's `max_total`).
const LOG_RETRY_EVERY: Duration = Duration::from_secs(2);

/// Trains per `plan`; returns the outcome and the seconds the loop took, once every metric
/// is in MLflow. A stop (Ctrl-C, MLflow gone) keeps the best model so far locally.
pub(super) async fn fit(ctx: &RunContext<'_>, plan: &Plan) -> Result<(TrainOutcome, f64)> {
    let logger = MetricLogger::start(
        ctx.services.mlflow.clone(),
        ctx.run_id.clone(),
        LOG_RETRY_EVERY,
        ctx.config.retry.max_total,
    );
    let observer = MlflowObserver::new(
        logger.sender(),
        ctx.opts.interrupted.clone(),
        ctx.progress.clone(),
        plan.train.epochs,
    );
    let started = Instant::now();
    let outcome = run_training(plan, ctx.data.dataset.clone(), observer)
        .await
        .map_err(|e| match e {
            PipelineError::Interrupted => ctx.interrupted("no model was"),
            e => e,
        });
    let seconds = started.elapsed().as_secs_f64();
    let report = logger.finish().await;
    let outcome = outcome?;
    if let TrainEnd::Stopped { epoch, reason } = &outcome.end {
        tracing::info!("logged {} metric values before stopping", report.logged);
        let (epoch, reason) = (*epoch, reason.clone());
        let saved = store::save_local(ctx.config, &ctx.run_id, outcome.model, outcome.meta)?;
        ctx.progress.println(&format!(
            "stopped in epoch {epoch}; the best model so far is at {} (not uploaded)",
            saved.path.display()
        ));
        return Err(match reason {
            StopReason::Interrupted => ctx.interrupted("no model was"),
            StopReason::ObserverFailed(why) => {
                PipelineError::Model(SegError::ObserverFailed { epoch, reason: why })
            }
        });
    }
    if report.lost > 0 {
        let saved = store::save_local(ctx.config, &ctx.run_id, outcome.model, outcome.meta)?;
        return Err(PipelineError::Lineage(format!(
            "{} metric values could not be logged to MLflow ({}); the model was not stored in lakeFS, it is kept at {}",
            report.lost,
            report.last_error.unwrap_or_default(),
            saved.path.display()
        )));
    }
    tracing::debug!("{} metric values logged", report.logged);
    Ok((outcome, seconds))
}

/// Trains on a blocking thread (burn's loop is synchronous and CPU-bound).
async fn run_training(
    plan: &Plan,
    dataset: seg_model::data::SegmentationDataset,
    mut observer: MlflowObserver,
) -> Result<TrainOutcome> {
    let (model, train, split) = (plan.model.clone(), plan.train.clone(), plan.split.clone());
    tokio::task::spawn_blocking(move || {
        seg_model::train(&model, &train, &dataset, &split, &mut observer)
    })
    .await
    .map_err(|e| PipelineError::Internal(format!("the training thread stopped: {e}")))?
    .map_err(|e| match e {
        SegError::Interrupted { .. } => PipelineError::Interrupted,
        e => PipelineError::Model(e),
    })
}
