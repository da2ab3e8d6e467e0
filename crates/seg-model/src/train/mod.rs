//! The training loop: epochs of seeded, augmented batches, validation after every epoch,
//! best-checkpoint selection by a chosen metric, early stopping and an LR schedule. Progress
//! leaves only through a [`TrainObserver`]; the library prints nothing.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;

use burn::optim::{AdamConfig, AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::checkpoint::CheckpointMeta;
use crate::data::{
    AugmentConfig, BatchLoader, LoaderConfig, Preprocess, SegmentationDataset, Split,
};
use crate::ema::WeightEma;
use crate::error::{Result, SegError, backend_call};
use crate::evaluate::{Evaluation, scalar};
use crate::loss::{LossConfig, LossTargets, segmentation_loss};
use crate::metrics::{Metric, NegativeScores, SegMetrics, keys};
use crate::model::{UNet, UNetConfig};
use crate::predict::Tta;
use crate::threshold::ChosenThreshold;

mod config;
mod outcome;
mod report;
mod run;
mod schedule;
#[cfg(test)]
mod tests;

pub use config::*;
pub use outcome::*;
pub use report::*;
pub use run::*;
pub use schedule::*;
