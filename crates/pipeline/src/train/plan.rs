//! What one run trains, decided before training: the train/validation split of the data, the
//! U-Net for its channels and classes, seg-model's training settings (with the backend). Both the
//! training ([`super::fit`]) and the storing of the model ([`super::store`]) read it.

use seg_model::data::Split;
use seg_model::{TrainConfig, UNetConfig};

use super::RunContext;
use crate::error::Result;

/// What one run trains: the split, the U-Net, seg-model's training settings.
pub(super) struct Plan {
    /// Training and validation indices.
    pub split: Split,
    /// The architecture.
    pub model: UNetConfig,
    /// Epochs, rates, schedule, selection, the backend.
    pub train: TrainConfig,
}

impl Plan {
    /// The plan of the run in `ctx`.
    pub(super) fn new(ctx: &RunContext<'_>) -> Result<Self> {
        let (config, data) = (ctx.config, ctx.data);
        let split = Split::stratified(
            data.dataset.len(),
            &data.dataset.empty_masks()?,
            config.data.valid_fraction,
            config.data.split_seed,
        )?;
        let classes = data.dataset.encoding().num_classes();
        Ok(Self {
            split,
            model: config.model_config(data.in_channels, classes),
            train: config.train.clone(),
        })
    }
}
