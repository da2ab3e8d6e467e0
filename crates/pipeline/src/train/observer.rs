//! The training observer: per-epoch metrics (seg-model's names, [`EpochReport::metric_map`])
//! and per-step losses stream to MLflow through a
//! channel drained by an async logger that batches and retries, so a slow or briefly
//! unreachable MLflow never stalls or stops training; progress bars follow the same events;
//! Ctrl-C stops training at the next batch with the best model so far.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use mlflow_client::{Metric, MlflowClient};
use seg_model::metrics::keys;
use seg_model::{BatchReport, EpochReport, Flow, StopReason, TrainObserver, TrainStart};
use tokio::sync::mpsc;

use crate::terminal::Progress;

/// Shortest time between two log calls while training runs.
const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// What the logger managed to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggerReport {
    /// Metric values logged.
    pub logged: usize,
    /// Metric values that could not be logged by the end of the flush.
    pub lost: usize,
    /// The last error, if any call failed.
    pub last_error: Option<String>,
}

/// Sends metric batches to an MLflow run from any thread; an async task drains them.
#[derive(Debug)]
pub struct MetricLogger {
    tx: mpsc::UnboundedSender<Vec<Metric>>,
    task: tokio::task::JoinHandle<LoggerReport>,
}

impl MetricLogger {
    /// Starts the logger for `run_id` on the current tokio runtime. Metrics that cannot be sent
    /// are kept and retried every `retry_every`; [`MetricLogger::finish`] keeps trying for
    /// `flush_budget` at the end.
    pub fn start(
        client: MlflowClient,
        run_id: String,
        retry_every: Duration,
        flush_budget: Duration,
    ) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Metric>>();
        let task = tokio::spawn(async move {
            let mut pending: Vec<Metric> = Vec::new();
            let mut report = LoggerReport::default();
            let mut open = true;
            let mut next_try = Instant::now();
            let mut flush_deadline: Option<Instant> = None;
            loop {
                if open {
                    let wait = next_try.saturating_duration_since(Instant::now());
                    let received = if pending.is_empty() {
                        rx.recv().await
                    } else {
                        match tokio::time::timeout(wait, rx.recv()).await {
                            Ok(r) => r,
                            Err(_) => Some(Vec::new()),
                        }
                    };
                    match received {
                        Some(batch) => pending.extend(batch),
                        None => {
                            open = false;
                            flush_deadline = Some(Instant::now() + flush_budget);
                        }
                    }
                    // Take whatever else is queued, to send it in one call.
                    while let Ok(batch) = rx.try_recv() {
                        pending.extend(batch);
                    }
                }
                if pending.is_empty() {
                    if open {
                        continue;
                    }
                    return report;
                }
                if open && Instant::now() < next_try {
                    continue;
                }
                match client.log_batch(&run_id, &pending, &[], &[]).await {
                    Ok(()) => {
                        report.logged += pending.len();
                        pending.clear();
                        // Per-step losses arrive fast: gather them for a moment per call.
                        next_try = Instant::now() + MIN_INTERVAL;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "MLflow did not take {} metric values yet ({e}); keeping them and retrying",
                            pending.len()
                        );
                        report.last_error = Some(e.to_string());
                        next_try = Instant::now() + retry_every;
                        if let Some(deadline) = flush_deadline {
                            if Instant::now() >= deadline {
                                report.lost += pending.len();
                                return report;
                            }
                            tokio::time::sleep(retry_every).await;
                        }
                    }
                }
            }
        });
        Self { tx, task }
    }

    /// A sender for metric batches (cheap to clone, usable from the training thread).
    pub fn sender(&self) -> mpsc::UnboundedSender<Vec<Metric>> {
        self.tx.clone()
    }

    /// Closes the channel and waits until everything is logged or the flush budget is spent.
    pub async fn finish(self) -> LoggerReport {
        drop(self.tx);
        self.task.await.unwrap_or_else(|e| LoggerReport {
            logged: 0,
            lost: 0,
            last_error: Some(format!("the metric logger stopped: {e}")),
        })
    }
}

/// The observer the `train` binary hands to seg-model.
pub struct MlflowObserver {
    metrics: mpsc::UnboundedSender<Vec<Metric>>,
    interrupted: Arc<AtomicBool>,
    progress: Progress,
    epochs_bar: Option<ProgressBar>,
    batch_bar: Option<ProgressBar>,
    epochs: usize,
    /// Every finished epoch's report, in order.
    pub history: Vec<EpochReport>,
}

impl MlflowObserver {
    /// An observer that sends metrics into `metrics`, stops when `interrupted` is set, and draws
    /// on `progress`.
    pub fn new(
        metrics: mpsc::UnboundedSender<Vec<Metric>>,
        interrupted: Arc<AtomicBool>,
        progress: Progress,
        epochs: usize,
    ) -> Self {
        Self {
            metrics,
            interrupted,
            progress,
            epochs_bar: None,
            batch_bar: None,
            epochs,
            history: Vec::new(),
        }
    }

    fn send(&self, values: Vec<(String, f64)>, step: i64) {
        let now = mlflow_client::now_millis();
        let batch = values
            .into_iter()
            .map(|(key, value)| Metric {
                key,
                value,
                timestamp: now,
                step,
                model_id: None,
            })
            .collect();
        // The logger outlives training; a closed channel only means the run is ending.
        let _ = self.metrics.send(batch);
    }

    fn stop_requested(&self) -> Flow {
        if self.interrupted.load(Ordering::SeqCst) {
            ControlFlow::Break(StopReason::Interrupted)
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl TrainObserver for MlflowObserver {
    fn on_train_start(&mut self, start: &TrainStart) -> Flow {
        self.progress.println(&format!(
            "training on {}: {} train / {} validation pairs, {} batches per epoch, {} parameters",
            start.backend,
            start.train_samples,
            start.valid_samples,
            start.batches_per_epoch,
            start.parameters
        ));
        self.epochs_bar = Some(self.progress.bar(
            self.epochs as u64,
            "epochs {bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed} < {eta}]",
        ));
        self.batch_bar = Some(self.progress.bar(
            start.batches_per_epoch as u64,
            "  batch {bar:30.green/white} {pos}/{len} {msg}",
        ));
        self.stop_requested()
    }

    fn on_epoch_start(&mut self, _epoch: usize, _learning_rate: f64) -> Flow {
        if let Some(bar) = &self.batch_bar {
            bar.reset();
        }
        self.stop_requested()
    }

    fn on_batch_end(&mut self, r: &BatchReport) -> Flow {
        if let Some(bar) = &self.batch_bar {
            bar.set_position(r.batch as u64);
            bar.set_message(format!("loss {:.4}  {:.1} img/s", r.loss, r.images_per_sec));
        }
        self.send(
            vec![(keys::BATCH_LOSS.to_string(), r.loss)],
            i64::try_from(r.step).unwrap_or(i64::MAX),
        );
        self.stop_requested()
    }

    fn on_epoch_end(&mut self, r: &EpochReport) -> Flow {
        self.send(
            r.metric_map().into_iter().collect(),
            i64::try_from(r.epoch).unwrap_or(i64::MAX),
        );
        let tta = r
            .tta_metrics
            .as_ref()
            .map(|t| format!("  val_tta_dice {:.4}", t.dice))
            .unwrap_or_default();
        let line = format!(
            "epoch {:>3}/{}  train_loss {:.4}  val_loss {:.4}  val_iou {:.4}  val_dice {:.4}{tta}  acc {:.4}  {:.1} img/s  {:.1}s{}",
            r.epoch,
            self.epochs,
            r.train_loss,
            r.valid_loss,
            r.metrics.iou,
            r.metrics.dice,
            r.metrics.pixel_accuracy,
            r.train_images_per_sec,
            r.seconds,
            if r.is_best { "  (best)" } else { "" }
        );
        if let Some(bar) = &self.epochs_bar {
            bar.inc(1);
            bar.set_message(format!("val_iou {:.4}", r.metrics.iou));
        }
        self.progress.println(&line);
        self.history.push(r.clone());
        self.stop_requested()
    }
}

impl Drop for MlflowObserver {
    fn drop(&mut self) {
        for bar in [&self.batch_bar, &self.epochs_bar].into_iter().flatten() {
            bar.finish_and_clear();
        }
    }
}
