//! seg-model: U-Net image segmentation on burn, knowing nothing about servers.
//!
//! - [`model`]: the U-Net and its [`UNetConfig`].
//! - [`data`]: datasets on disk, mask encodings, preprocessing, augmentation, the parallel
//!   batch loader and a synthetic generator.
//! - [`loss`], [`metrics`]: BCE/cross-entropy + Dice; confusion-matrix IoU/Dice/accuracy.
//! - [`train`]: the training loop, reporting through a [`TrainObserver`] that may stop it.
//! - [`evaluate`]: loss and metrics of a model on a split.
//! - [`predict`]: batched inference at the original image size, overlays.
//! - [`checkpoint`]: one model file with metadata and sha256.
//! - [`threshold`]: the foreground threshold of a binary model chosen on validation.
//! - [`onnx`]: a checkpoint as an ONNX model, preprocessing and decision inside the graph.
//! - [`backend`]: which burn device runs it (`flex` by default, `tch` for libtorch).

mod alloc;
pub use alloc::tune_allocator;
pub mod backend;
pub mod checkpoint;
pub mod compare;
pub mod data;
mod ema;
pub mod error;
pub mod evaluate;
pub use seg_kernels::set_own_kernels;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod predict;
pub mod threshold;
pub mod train;

pub use backend::BackendKind;
pub use checkpoint::{Checkpoint, CheckpointMeta, SavedCheckpoint};
pub use error::{Result, SegError};
pub use evaluate::{Evaluation, Scores, predict_ids};
pub use metrics::{ConfusionMatrix, FalseAlarms, Metric, SegMetrics};
pub use model::{UNet, UNetConfig, UpsampleMode};
pub use predict::{Prediction, Predictor, Tta};
pub use threshold::{ChosenThreshold, ThresholdSweep};
pub use train::{
    BatchReport, EpochReport, FinalTta, Flow, ImageSize, LrSchedule, NoObserver, Optimizer,
    OptimizerConfig, StopReason, TrainConfig, TrainEnd, TrainObserver, TrainOutcome, TrainStart,
    TrainTta, epochs_within_budget, train,
};
