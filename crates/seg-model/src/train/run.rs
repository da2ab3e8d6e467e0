//! The loop itself: epochs of seeded, augmented batches, validation, EMA, the schedule, the
//! observer's say after every batch and epoch, and the choice of the best epoch (early stopping).

use super::*;

/// Trains a U-Net on `dataset` split by `split`.
///
/// When the observer stops the run, the best model of the epochs that finished is returned
/// (with [`TrainEnd::Stopped`]); when it stops before any epoch finished, the error is
/// [`SegError::Interrupted`] or [`SegError::ObserverFailed`].
///
/// Reproducible for a given seed on the CPU backends, provided no other training runs in the
/// same process at the same time: burn seeds one process-wide RNG.
pub fn train(
    model_config: &UNetConfig,
    config: &TrainConfig,
    dataset: &SegmentationDataset,
    split: &Split,
    observer: &mut dyn TrainObserver,
) -> Result<TrainOutcome> {
    let mut run = Run::setup(model_config, config, dataset, split)?;
    let mut selection = Selection::new(config.selection_metric, config.early_stopping_patience);
    let clock = Instant::now();
    let mut end = match observer.on_train_start(&run.start_facts()) {
        ControlFlow::Break(reason) => TrainEnd::Stopped { epoch: 1, reason },
        ControlFlow::Continue(()) => TrainEnd::Completed,
    };
    let epochs = if end == TrainEnd::Completed {
        config.epochs
    } else {
        0
    };
    // The epochs the schedule runs over: shortened when the budget will not allow them all.
    let mut planned = config.epochs;
    for epoch in 1..=epochs {
        let (report, snapshot) = match run.epoch(epoch, planned, observer)? {
            EpochResult::Finished(done) => *done,
            EpochResult::Stopped(reason) => {
                end = TrainEnd::Stopped { epoch, reason };
                break;
            }
        };
        let report = selection.consider(report, snapshot);
        let flow = observer.on_epoch_end(&report);
        selection.history.push(report);
        let last = epoch == config.epochs;
        if let ControlFlow::Break(reason) = flow {
            end = TrainEnd::Stopped { epoch, reason };
            break;
        }
        if selection.patience_spent() {
            if !last {
                end = TrainEnd::EarlyStopped;
            }
            break;
        }
        if config.time_budget_secs > 0.0 {
            let elapsed = clock.elapsed().as_secs_f64();
            if elapsed >= config.time_budget_secs {
                if !last {
                    end = TrainEnd::TimeBudget;
                }
                break;
            }
            let fit = epochs_within_budget(config.time_budget_secs, elapsed, epoch);
            planned = planned.min(fit.max(epoch + 1));
        }
    }
    selection.finish(run, end)
}

/// Everything a run sets up once: model, optimiser, preprocessing, loaders, devices.
struct Run<'a> {
    model_config: &'a UNetConfig,
    config: &'a TrainConfig,
    dataset: &'a SegmentationDataset,
    split: &'a Split,
    backend: BackendKind,
    /// The model being trained (taken out for each optimiser step, which consumes it).
    model: Option<UNet>,
    /// The weight average that is validated instead of `model`, when on.
    ema: Option<WeightEma>,
    optim: burn::optim::ModuleOptimizer,
    shared: Arc<SegmentationDataset>,
    preprocess: Arc<Preprocess>,
    train_loader: LoaderConfig,
    train_device: Device,
    eval: Evaluation,
    step: usize,
}

/// What one epoch produced.
enum EpochResult {
    /// Trained and validated: its report and the model snapshot (validation mode).
    Finished(Box<(EpochReport, UNet)>),
    /// The observer stopped it.
    Stopped(StopReason),
}

impl<'a> Run<'a> {
    fn setup(
        model_config: &'a UNetConfig,
        config: &'a TrainConfig,
        dataset: &'a SegmentationDataset,
        split: &'a Split,
    ) -> Result<Self> {
        let backend = config.backend;
        config.validate()?;
        model_config.validate()?;
        model_config.check_input_size(config.image_size.height, config.image_size.width)?;
        let task_classes = dataset.encoding().num_classes();
        if model_config.task_classes() != task_classes {
            return Err(SegError::InvalidConfig(format!(
                "model.num_classes = {} does not fit a dataset with {task_classes} classes (use 1 for binary, else the class count)",
                model_config.num_classes
            )));
        }
        if split.train.is_empty() || split.valid.is_empty() {
            return Err(SegError::EmptyDataset {
                dir: dataset.root().to_path_buf(),
            });
        }
        let (h, w, c) = (
            config.image_size.height,
            config.image_size.width,
            model_config.in_channels,
        );
        let preprocess = Arc::new(if config.estimate_normalization {
            Preprocess::estimate(dataset, &split.train, h, w, c, 256)?
        } else {
            Preprocess::unnormalized(h, w, c)
        });
        let train_device = backend.training_device();
        train_device.seed(config.seed);
        let model = model_config.init(&train_device)?;
        let ema = (config.ema_decay > 0.0).then(|| WeightEma::new(config.ema_decay, &model));
        let decay = config.optimizer.weight_decay;
        let optim = match config.optimizer.kind {
            Optimizer::Adam => AdamConfig::new()
                .with_weight_decay((decay > 0.0).then(|| WeightDecayConfig::new(decay as f32)))
                .init(),
            Optimizer::AdamW => AdamWConfig::new().with_weight_decay(decay as f32).init(),
        };
        let train_loader = LoaderConfig {
            batch_size: config.batch_size,
            shuffle: true,
            augment: Some(config.augment.clone()),
            seed: config.seed,
            prefetch: config.prefetch,
        };
        let shared = Arc::new(dataset.clone());
        let eval = Evaluation {
            dataset: shared.clone(),
            preprocess: preprocess.clone(),
            loader: LoaderConfig {
                shuffle: false,
                augment: None,
                ..train_loader.clone()
            },
            loss: config.loss.clone(),
            num_classes: model_config.num_classes,
            device: backend.device(),
            tta: config.tta.validation,
        };
        Ok(Self {
            model_config,
            config,
            dataset,
            split,
            backend,
            model: Some(model),
            ema,
            optim,
            shared,
            preprocess,
            train_loader,
            train_device,
            eval,
            step: 0,
        })
    }

    fn start_facts(&self) -> TrainStart {
        TrainStart {
            train_samples: self.split.train.len(),
            valid_samples: self.split.valid.len(),
            batches_per_epoch: self
                .split
                .epoch_train(self.config.negative_fraction, self.config.seed, 1)
                .len()
                .div_ceil(self.config.batch_size),
            parameters: self.model.as_ref().map_or(0, |m| m.num_params()),
            backend: self.backend.to_string(),
            preprocess: (*self.preprocess).clone(),
        }
    }

    /// Trains one epoch of a run planned to last `planned` epochs, then validates it.
    fn epoch(
        &mut self,
        epoch: usize,
        planned: usize,
        observer: &mut dyn TrainObserver,
    ) -> Result<EpochResult> {
        let config = self.config;
        let started = Instant::now();
        let lr = config.learning_rate_planned(epoch, planned)?;
        if let ControlFlow::Break(reason) = observer.on_epoch_start(epoch, lr) {
            return Ok(EpochResult::Stopped(reason));
        }
        let pairs = self
            .split
            .epoch_train(config.negative_fraction, config.seed, epoch);
        let loader = BatchLoader::start(
            self.shared.clone(),
            &pairs,
            self.preprocess.clone(),
            &self.train_loader,
            epoch,
        );
        let batches = loader.num_batches();
        let (c, h, w) = (
            self.preprocess.channels,
            self.preprocess.height,
            self.preprocess.width,
        );
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        let mut batch_clock = Instant::now();
        for (b, batch) in loader.enumerate() {
            let batch = batch?;
            let len = batch.len;
            let value = self.step_on(batch, [c, h, w], lr, (epoch, b + 1))?;
            loss_sum += value * len as f64;
            seen += len;
            self.step += 1;
            let elapsed = batch_clock.elapsed().as_secs_f64();
            batch_clock = Instant::now();
            let flow = observer.on_batch_end(&BatchReport {
                epoch,
                batch: b + 1,
                batches,
                loss: value,
                images_per_sec: len as f64 / elapsed.max(1e-9),
                step: self.step,
            });
            if let ControlFlow::Break(reason) = flow {
                return Ok(EpochResult::Stopped(reason));
            }
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let snapshot = match &self.ema {
            Some(ema) => ema.snapshot(),
            None => self.model.as_ref().ok_or_else(missing_model)?.valid(),
        };
        let scores = self.eval.run(&snapshot, &self.split.valid)?;
        let report = EpochReport {
            epoch,
            learning_rate: lr,
            train_loss: loss_sum / seen.max(1) as f64,
            valid_loss: scores.loss,
            metrics: scores.metrics,
            tta_metrics: scores.tta,
            negatives: scores.negatives,
            train_images_per_sec: seen as f64 / train_seconds.max(1e-9),
            seconds: started.elapsed().as_secs_f64(),
            is_best: false,
        };
        Ok(EpochResult::Finished(Box::new((report, snapshot))))
    }
}

impl Run<'_> {
    /// One optimiser step on `batch` (`[channels, height, width]` per image) at rate `lr`;
    /// the batch's loss. `at` is (epoch, batch), 1-based, for a divergence error.
    fn step_on(
        &mut self,
        batch: crate::data::Batch,
        [c, h, w]: [usize; 3],
        lr: f64,
        (epoch, b): (usize, usize),
    ) -> Result<f64> {
        let x = Tensor::<4>::from_data(
            TensorData::new(batch.images, [batch.len, c, h, w]),
            &self.train_device,
        );
        let targets = LossTargets::from_masks(
            &batch.masks,
            batch.len,
            h,
            w,
            self.model_config.num_classes,
            &self.train_device,
        )?;
        let model = self.model.take().ok_or_else(missing_model)?;
        let (optim, loss_config) = (&mut self.optim, &self.config.loss);
        let (model, value) = backend_call("training step", || {
            let loss = segmentation_loss(loss_config, model.forward(x), &targets);
            let value = scalar(&loss)?;
            if !value.is_finite() {
                return Err(SegError::Diverged {
                    epoch,
                    batch: b,
                    loss: value,
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            Ok((optim.step(lr, model, grads), value))
        })?;
        self.model = Some(model);
        if let (Some(ema), Some(model)) = (&mut self.ema, &self.model) {
            ema.update(model)?;
        }
        Ok(value)
    }
}

fn missing_model() -> SegError {
    SegError::Backend("the model was lost in a failed optimiser step".into())
}

/// Best-epoch selection and early stopping.
struct Selection {
    metric: Metric,
    patience: usize,
    best: Option<(f64, usize, UNet)>,
    since_best: usize,
    history: Vec<EpochReport>,
}

impl Selection {
    fn new(metric: Metric, patience: usize) -> Self {
        Self {
            metric,
            patience,
            best: None,
            since_best: 0,
            history: Vec::new(),
        }
    }

    /// Scores an epoch; keeps its snapshot when it is the best so far (marking the report).
    fn consider(&mut self, mut report: EpochReport, snapshot: UNet) -> EpochReport {
        let score = self.metric.score(report.valid_loss, &report.metrics);
        if self.best.as_ref().is_none_or(|(s, _, _)| score > *s) {
            report.is_best = true;
            self.best = Some((score, report.epoch, snapshot));
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        report
    }

    fn patience_spent(&self) -> bool {
        self.patience > 0 && self.since_best >= self.patience
    }

    /// The outcome: the best model and its checkpoint metadata, or the stop as an error when
    /// no epoch finished.
    fn finish(self, run: Run<'_>, end: TrainEnd) -> Result<TrainOutcome> {
        let Some((_, best_epoch, model)) = self.best else {
            return Err(match end {
                TrainEnd::Stopped {
                    epoch,
                    reason: StopReason::Interrupted,
                } => SegError::Interrupted { epoch },
                TrainEnd::Stopped {
                    epoch,
                    reason: StopReason::ObserverFailed(reason),
                } => SegError::ObserverFailed { epoch, reason },
                _ => SegError::InvalidConfig("no epoch ran".into()),
            });
        };
        let metric_map = self
            .history
            .iter()
            .find(|r| r.epoch == best_epoch)
            .ok_or_else(|| SegError::InvalidConfig("best epoch has no report".into()))?
            .metric_map();
        let stopped = matches!(end, TrainEnd::Stopped { .. });
        let after = run.config.tta.after_training;
        let sweep = run.config.choose_threshold && run.model_config.num_classes == 1;
        let (final_tta, threshold) = if (after.is_on() || sweep) && !stopped {
            let (scores, swept) = Evaluation {
                tta: after,
                ..run.eval.clone()
            }
            .run_swept(&model, &run.split.valid, sweep)?;
            let final_tta = match scores.tta {
                Some(metrics) => Some(FinalTta {
                    tta: after,
                    metrics,
                    negatives: scores.tta_negatives,
                }),
                None if after.is_on() => {
                    return Err(SegError::Backend(
                        "test-time augmentation produced no metrics".into(),
                    ));
                }
                None => None,
            };
            (final_tta, swept.map(|s| s.best()))
        } else {
            (None, None)
        };
        let meta = CheckpointMeta::new(
            run.model_config.clone(),
            run.dataset.encoding().clone(),
            (*run.preprocess).clone(),
            metric_map,
            best_epoch,
        );
        let mut outcome = TrainOutcome {
            model,
            meta,
            history: self.history,
            best_epoch,
            final_tta,
            threshold,
            end,
        };
        if let Some(t) = &threshold {
            outcome.meta.threshold = t.threshold;
        }
        // The checkpoint carries the best epoch's per-epoch and run-level names.
        outcome
            .meta
            .metrics
            .extend(outcome.final_metrics().unwrap_or_default());
        Ok(outcome)
    }
}
