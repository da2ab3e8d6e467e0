//! The U-Net: an encoder of conv blocks and max-pools, a decoder of up-sampling steps that
//! concatenate the encoder's skip connections, and a 1x1 head that outputs logits.
//!
//! ```text
//!  input ─ ConvBlock(in→c) ──────────────────────────────────────── concat ─ ConvBlock(2c→c) ─ 1x1 → logits
//!             │ maxpool                                                 ▲ up(2c→c)
//!             └ ConvBlock(c→2c) ─────────────────────── concat ─ ConvBlock(4c→2c)
//!                   │ maxpool                               ▲ up(4c→2c)
//!                   └ ... depth times ... ConvBlock(c·2^(d-1) → c·2^d)  (bottleneck)
//! ```
//! A `ConvBlock` is `conv3x3 → [BatchNorm] → ReLU → conv3x3 → [BatchNorm] → ReLU`.

use burn::config::Config;
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::interpolate::{Interpolate2d, Interpolate2dConfig, InterpolateMode};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::error::{Result, SegError};

/// How the decoder doubles the spatial size (`"transpose"` or `"bilinear"` in configuration
/// files and checkpoints; older checkpoints said `"Transpose"` / `"Bilinear"`, still read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpsampleMode {
    /// A learned 2x2 transposed convolution with stride 2.
    Transpose,
    /// Bilinear interpolation followed by a 1x1 convolution that halves the channels.
    Bilinear,
}

impl<'de> serde::Deserialize<'de> for UpsampleMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "transpose" | "Transpose" => Ok(Self::Transpose),
            "bilinear" | "Bilinear" => Ok(Self::Bilinear),
            other => Err(serde::de::Error::unknown_variant(
                other,
                &["transpose", "bilinear"],
            )),
        }
    }
}

/// Architecture of a [`UNet`]. Serialised into every checkpoint.
#[derive(Config, Debug, PartialEq)]
pub struct UNetConfig {
    /// Input channels: 1 (greyscale) or 3 (RGB).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Output channels: 1 for a binary task (sigmoid), the number of classes (>1) for softmax.
    #[config(default = 1)]
    pub num_classes: usize,
    /// Channels of the first encoder stage; each stage doubles them.
    #[config(default = 16)]
    pub base_channels: usize,
    /// Number of down-sampling steps (input sides must be divisible by 2^depth).
    #[config(default = 4)]
    pub depth: usize,
    /// Batch normalisation after each convolution.
    #[config(default = true)]
    pub batch_norm: bool,
    /// How the decoder up-samples.
    #[config(default = "UpsampleMode::Transpose")]
    pub upsample: UpsampleMode,
}

impl UNetConfig {
    /// Checks the values, naming the first one that is wrong.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.in_channels, 1 | 3) {
            return Err(SegError::invalid(
                "in_channels",
                self.in_channels,
                "1 for greyscale or 3 for RGB",
            ));
        }
        if self.num_classes == 0 || self.num_classes > 254 {
            return Err(SegError::invalid(
                "num_classes",
                self.num_classes,
                "1 for binary, 2..=254 for multi-class",
            ));
        }
        if !(1..=6).contains(&self.depth) {
            return Err(SegError::invalid("depth", self.depth, "1..=6"));
        }
        if self.base_channels == 0 || self.base_channels > 256 {
            return Err(SegError::invalid(
                "base_channels",
                self.base_channels,
                "1..=256",
            ));
        }
        Ok(())
    }

    /// Checks that an input of `height` x `width` passes through `depth` poolings exactly.
    pub fn check_input_size(&self, height: usize, width: usize) -> Result<()> {
        let step = 1usize << self.depth;
        if height == 0 || width == 0 || !height.is_multiple_of(step) || !width.is_multiple_of(step)
        {
            return Err(SegError::invalid(
                "image_size",
                format!("{height}x{width}"),
                format!(
                    "a positive multiple of {step} (2^depth, depth {}), e.g. 64, 128, 256",
                    self.depth
                ),
            ));
        }
        Ok(())
    }

    /// Number of task classes the metrics see: 2 for a binary model, else `num_classes`.
    pub fn task_classes(&self) -> usize {
        if self.num_classes == 1 {
            2
        } else {
            self.num_classes
        }
    }

    /// Builds a freshly initialised U-Net on `device` (seed the device first for reproducibility).
    pub fn init(&self, device: &Device) -> Result<UNet> {
        self.validate()?;
        let c = self.base_channels;
        let inc = ConvBlock::new(self.in_channels, c, self.batch_norm, device);
        let downs = (0..self.depth)
            .map(|i| ConvBlock::new(c << i, c << (i + 1), self.batch_norm, device))
            .collect();
        let ups = (0..self.depth)
            .rev()
            .map(|i| UpBlock::new(c << (i + 1), c << i, self, device))
            .collect();
        let head = Conv2dConfig::new([c, self.num_classes], [1, 1]).init(device);
        let model = UNet {
            inc,
            downs,
            ups,
            head,
            pool: MaxPool2dConfig::new([2, 2]).init(),
        };
        // burn initialises parameters lazily, on first use, from the device's RNG: the order
        // in which a forward pass first touches them would decide the weights a seed gives.
        // Initialise every parameter now, in declaration order, so that every path (burn's
        // modules, the fused libtorch kernels, any future one) starts from the same weights.
        model.visit(&mut Materialize);
        Ok(model)
    }
}

/// Forces the initialisation of every parameter it visits.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        let _ = param.val();
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        let _ = param.val();
    }
}

/// Two 3x3 convolutions, each followed by optional batch norm and ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    pub(crate) conv1: Conv2d,
    pub(crate) norm1: Option<BatchNorm>,
    pub(crate) conv2: Conv2d,
    pub(crate) norm2: Option<BatchNorm>,
    activation: Relu,
}

impl ConvBlock {
    fn new(input: usize, output: usize, batch_norm: bool, device: &Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(!batch_norm)
                .init(device)
        };
        let norm = |o| batch_norm.then(|| BatchNormConfig::new(o).init(device));
        Self {
            conv1: conv(input, output),
            norm1: norm(output),
            conv2: conv(output, output),
            norm2: norm(output),
            activation: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_pooled(None, x)
    }

    /// `forward(pool(x))`, or `forward(x)` without a pool.
    fn forward_pooled(&self, pool: Option<&MaxPool2d>, x: Tensor<4>) -> Tensor<4> {
        seg_kernels::conv_block(
            pool,
            [
                (&self.conv1, self.norm1.as_ref()),
                (&self.conv2, self.norm2.as_ref()),
            ],
            &self.activation,
            x,
        )
    }
}

/// One decoder step: up-sample (halving channels), concatenate the skip, then a conv block.
#[derive(Module, Debug)]
pub struct UpBlock {
    pub(crate) transpose: Option<ConvTranspose2d>,
    pub(crate) interpolate: Option<Interpolate2d>,
    pub(crate) reduce: Option<Conv2d>,
    pub(crate) block: ConvBlock,
}

impl UpBlock {
    fn new(input: usize, output: usize, config: &UNetConfig, device: &Device) -> Self {
        let (transpose, interpolate, reduce) = match config.upsample {
            UpsampleMode::Transpose => (
                Some(
                    ConvTranspose2dConfig::new([input, output], [2, 2])
                        .with_stride([2, 2])
                        .init(device),
                ),
                None,
                None,
            ),
            UpsampleMode::Bilinear => (
                None,
                Some(
                    Interpolate2dConfig::new()
                        .with_scale_factor(Some([2.0, 2.0]))
                        .with_mode(InterpolateMode::Linear)
                        .with_align_corners(false)
                        .init(),
                ),
                Some(Conv2dConfig::new([input, output], [1, 1]).init(device)),
            ),
        };
        Self {
            transpose,
            interpolate,
            reduce,
            block: ConvBlock::new(output * 2, output, config.batch_norm, device),
        }
    }

    fn forward(&self, x: Tensor<4>, skip: Tensor<4>) -> Tensor<4> {
        if let Some(transpose) = &self.transpose {
            let b = &self.block;
            return seg_kernels::up_block(
                transpose,
                [(&b.conv1, b.norm1.as_ref()), (&b.conv2, b.norm2.as_ref())],
                &b.activation,
                x,
                skip,
            );
        }
        let x = match (&self.interpolate, &self.reduce) {
            (Some(interpolate), Some(reduce)) => {
                seg_kernels::conv2d(reduce, interpolate.forward(x))
            }
            _ => unreachable!("UpBlock is built with either a transposed conv or interpolate+conv"),
        };
        self.block.forward(Tensor::cat(vec![skip, x], 1))
    }
}

/// The U-Net. `forward` maps `[batch, in_channels, H, W]` to logits `[batch, num_classes, H, W]`.
#[derive(Module, Debug)]
pub struct UNet {
    pub(crate) inc: ConvBlock,
    pub(crate) downs: Vec<ConvBlock>,
    pub(crate) ups: Vec<UpBlock>,
    pub(crate) head: Conv2d,
    pool: MaxPool2d,
}

impl UNet {
    /// Logits for a batch of normalised images.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = self.inc.forward(input);
        let mut skips = Vec::with_capacity(self.downs.len());
        for down in &self.downs {
            skips.push(x.clone());
            x = down.forward_pooled(Some(&self.pool), x);
        }
        for (up, skip) in self.ups.iter().zip(skips.into_iter().rev()) {
            x = up.forward(x, skip);
        }
        seg_kernels::conv2d(&self.head, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// Counts parameters, and those still waiting for lazy initialisation.
    #[derive(Default)]
    struct Lazy {
        params: usize,
        uninitialised: usize,
    }
    impl ModuleVisitor for Lazy {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.params += 1;
            self.uninitialised += usize::from(!param.is_initialized());
        }
    }

    #[test]
    fn every_parameter_is_initialised_by_init() {
        let device = crate::BackendKind::default_kind().device();
        for upsample in [UpsampleMode::Transpose, UpsampleMode::Bilinear] {
            let model = UNetConfig::new()
                .with_upsample(upsample)
                .init(&device)
                .expect("model");
            let mut lazy = Lazy::default();
            model.visit(&mut lazy);
            assert!(lazy.params > 10, "{} parameters", lazy.params);
            assert_eq!(lazy.uninitialised, 0, "{upsample:?}: parameters left lazy");
        }
    }

    #[test]
    fn output_shape_matches_input_for_both_upsampling_modes() {
        let device = crate::BackendKind::default_kind().device();
        for upsample in [UpsampleMode::Transpose, UpsampleMode::Bilinear] {
            let config = UNetConfig::new()
                .with_num_classes(4)
                .with_base_channels(4)
                .with_depth(2)
                .with_upsample(upsample);
            let model = config.init(&device).expect("valid config");
            let x = Tensor::<4>::random([2, 3, 16, 24], Distribution::Default, &device);
            assert_eq!(model.forward(x).dims(), [2, 4, 16, 24]);
        }
    }

    #[test]
    fn upsample_modes_read_old_and_new_names() {
        for (text, mode) in [
            ("\"transpose\"", UpsampleMode::Transpose),
            ("\"Transpose\"", UpsampleMode::Transpose),
            ("\"bilinear\"", UpsampleMode::Bilinear),
            ("\"Bilinear\"", UpsampleMode::Bilinear),
        ] {
            assert_eq!(
                serde_json::from_str::<UpsampleMode>(text).expect(text),
                mode
            );
        }
        assert_eq!(
            serde_json::to_string(&UpsampleMode::Bilinear).expect("json"),
            "\"bilinear\""
        );
        let err = serde_json::from_str::<UpsampleMode>("\"bilinar\"").expect_err("refused");
        assert!(
            err.to_string().contains("`transpose` or `bilinear`"),
            "{err}"
        );
    }

    #[test]
    fn invalid_configs_are_named() {
        let err = UNetConfig::new()
            .with_in_channels(2)
            .validate()
            .expect_err("2 channels");
        assert!(err.to_string().contains("in_channels = 2"), "{err}");
        let err = UNetConfig::new()
            .with_depth(0)
            .validate()
            .expect_err("depth 0");
        assert!(err.to_string().contains("depth = 0"), "{err}");
        let err = UNetConfig::new()
            .check_input_size(100, 128)
            .expect_err("100 % 16");
        assert!(err.to_string().contains("multiple of 16"), "{err}");
    }
}
