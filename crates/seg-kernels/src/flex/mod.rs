//! The U-Net's convolutions and batch norm + ReLU on burn-flex, with hand-written backward steps.
//!
//! burn's autodiff differentiates a convolution generically: the weight gradient is a
//! convolution whose "kernel" is the whole output gradient (on flex a 9x im2col of the input and
//! a skinny gemm), the input gradient a transposed convolution; batch norm is a dozen elementary
//! passes over memory and ReLU's backward two more. Here a 2-D convolution is im2col (NCHW,
//! `[c_in·kh·kw, oh·ow]` per image) and one gemm per image in each direction: the forward
//! `W·col`, the weight gradient `dY·colᵀ` and the input gradient `col2im(Wᵀ·dY)`; a transposed
//! convolution is the same three products with forward and input gradient swapped; batch norm
//! with batch statistics and the ReLU after it are one pass for the statistics and one for the
//! output, and their backward two passes. Images (or channels) run in parallel on rayon's
//! global pool, burn-flex's own; the gemm crate (which burn-flex uses too) does the products.
//! Stride-1 convolutions with rows at least 16 wide (the U-Net's forward and input gradients
//! down to 16x16) skip im2col: `direct.rs` accumulates 4 output channels x 4 SIMD vectors in
//! registers straight from a zero-padded copy of the input; where rows are at least 64 wide
//! the weight gradient is direct too (4 output channels' gradients times 3 input vectors per
//! SIMD vector of positions, lanes summed once per band). The decoder's convolution of
//! `cat([skip, up])` reads both inputs in place in both directions (forward, weight gradient;
//! the input gradient is split into the two inputs' gradients), and the 2x2 max-pool has its
//! own backward step. Output buffers are zeroed and weights regrouped by every thread: on the
//! calling thread alone those passes left the other core idle.
//!
//! The ops are burn [backend extensions](burn::backend::backend_extension) on `Flex` (used for
//! inference) and `Autodiff<Flex>` (training). They cover `f32` convolutions with one group;
//! anything else runs on burn's modules. `tests/own_kernels.rs` checks that logits, loss,
//! every gradient and the running statistics agree with burn's generic path.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, ExtensionType, backend_extension,
};
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

mod autodiff;
mod conv;
mod direct;
mod direct_grad;
mod norm;
mod pool;
mod product;
mod shape;
mod tensors;
#[cfg(test)]
mod tests;

use conv::*;
use norm::*;
use pool::*;
use product::*;
use shape::*;
use tensors::*;

/// Whether `x` lives on a flex device (training or inference) and is `f32`.
pub(super) fn applies(x: &Tensor<4>) -> bool {
    super::own_kernels_enabled()
        && x.dtype() == DType::F32
        && matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// Stride, padding (symmetric) and dilation of a one-group 2-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

/// The geometry of `conv`, or `None` for what these kernels do not cover (groups, asymmetric
/// or "same" padding), which stays on burn's path.
fn geometry(conv: &Conv2d) -> Option<Geometry> {
    let padding = match &conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [*top, *left]
        }
        PaddingConfig2d::Valid => [0, 0],
        _ => return None,
    };
    (conv.groups == 1).then_some(Geometry {
        stride: conv.stride,
        padding,
        dilation: conv.dilation,
    })
}

/// A zero bias for a bias-free convolution: untracked, so no gradient is computed for it.
fn zero_bias(channels: usize, like: &Tensor<4>) -> Tensor<1> {
    Tensor::zeros([channels], &like.device())
}

/// `conv.forward(x)` on the flex kernels, or on burn's module when they do not cover `conv`.
pub(super) fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some(geometry) = geometry(conv) else {
        return conv.forward(x);
    };
    let weight = conv.weight.val();
    let bias = match &conv.bias {
        Some(bias) => bias.val(),
        None => zero_bias(weight.dims()[0], &x),
    };
    Tensor::from_dispatch(<Dispatch as FlexTrainOps>::flex_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        geometry,
    ))
}

/// `conv.forward(x)` of a transposed convolution on the flex kernels (one group, no output
/// padding), or on burn's module.
pub(super) fn conv_transpose2d(conv: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    if conv.groups != 1 || conv.padding_out != [0, 0] {
        return conv.forward(x);
    }
    let geometry = Geometry {
        stride: conv.stride,
        padding: conv.padding,
        dilation: conv.dilation,
    };
    let weight = conv.weight.val();
    let bias = match &conv.bias {
        Some(bias) => bias.val(),
        None => zero_bias(weight.dims()[1], &x),
    };
    Tensor::from_dispatch(<Dispatch as FlexTrainOps>::flex_conv_transpose2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        geometry,
    ))
}

/// `ReLU(norm(conv(x)))` (or `ReLU(conv(x))` without `norm`) off autodiff devices, in one
/// fused kernel with batch norm's running statistics folded into the convolution; `None` where
/// the fused kernel does not apply (an autodiff device, batch norm in training mode, a
/// geometry the kernels do not cover).
pub(super) fn conv_affine_relu(
    conv: &Conv2d,
    norm: Option<&BatchNorm>,
    x: &Tensor<4>,
) -> Option<Tensor<4>> {
    let [w, bias, scale, shift] = fused_parameters(conv, norm, x)?;
    Some(Tensor::from_dispatch(
        <Dispatch as FlexTrainOps>::flex_conv2d_affine_relu(
            x.clone().into_dispatch(),
            w,
            bias,
            scale,
            shift,
            geometry(conv)?,
        ),
    ))
}

/// [`conv_affine_relu`] of `cat([first, second], 1)` with both read in place, without the
/// concatenated copy; `None` where the fused kernel does not apply.
pub(super) fn conv_cat_affine_relu(
    conv: &Conv2d,
    norm: Option<&BatchNorm>,
    first: &Tensor<4>,
    second: &Tensor<4>,
) -> Option<Tensor<4>> {
    let [w, bias, scale, shift] = fused_parameters(conv, norm, first)?;
    Some(Tensor::from_dispatch(
        <Dispatch as FlexTrainOps>::flex_conv2d_cat_affine_relu(
            first.clone().into_dispatch(),
            second.clone().into_dispatch(),
            w,
            bias,
            scale,
            shift,
            geometry(conv)?,
        ),
    ))
}

/// `conv.forward(cat([first, second], 1))` with both read in place (no concatenated copy, and
/// in training the input gradient split straight into the two inputs' gradients); `None` for
/// a geometry the kernels do not cover.
pub(super) fn conv2d_cat(
    conv: &Conv2d,
    first: &Tensor<4>,
    second: &Tensor<4>,
) -> Option<Tensor<4>> {
    let geometry = geometry(conv)?;
    let weight = conv.weight.val();
    let bias = match &conv.bias {
        Some(bias) => bias.val(),
        None => zero_bias(weight.dims()[0], first),
    };
    Some(Tensor::from_dispatch(
        <Dispatch as FlexTrainOps>::flex_conv2d_cat(
            first.clone().into_dispatch(),
            second.clone().into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            geometry,
        ),
    ))
}

/// Weight, bias, and batch norm's running statistics as a scale and shift (1 and 0 without
/// `norm`) for the fused inference convolution; `None` on an autodiff device, with batch norm
/// in training mode, or for a geometry the kernels do not cover.
fn fused_parameters(
    conv: &Conv2d,
    norm: Option<&BatchNorm>,
    x: &Tensor<4>,
) -> Option<[burn::backend::DispatchTensor; 4]> {
    if x.device().is_autodiff() || norm.is_some_and(|n| n.training.is_enabled()) {
        return None;
    }
    geometry(conv)?;
    let device = x.device();
    let weight = conv.weight.val();
    let c_out = weight.dims()[0];
    let bias = match &conv.bias {
        Some(bias) => bias.val(),
        None => zero_bias(c_out, x),
    };
    let (scale, shift) = match norm {
        Some(norm) => norm_scale_shift(norm, &device),
        None => (
            Tensor::ones([c_out], &device),
            Tensor::zeros([c_out], &device),
        ),
    };
    Some([
        weight.into_dispatch(),
        bias.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
    ])
}

/// `pool.forward(x)`; a 2x2, stride-2 max-pool (the U-Net's) runs on a kernel that vectorises
/// (burn-flex's generic pooling is scalar: 12 % of an inference pass) and, in training, on a
/// backward step that runs on every thread.
pub(super) fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let plain_2x2 = pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && matches!(
            pool.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
        );
    if !plain_2x2 {
        return pool.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as FlexTrainOps>::flex_max_pool2x2(
        x.into_dispatch(),
    ))
}

/// Batch norm with running statistics as one per-channel scale and shift:
/// `scale = gamma / sqrt(running_var + eps)`, `shift = beta - running_mean · scale`.
fn norm_scale_shift(norm: &BatchNorm, device: &burn::tensor::Device) -> (Tensor<1>, Tensor<1>) {
    let mean = norm.running_mean.value_sync().to_device(device);
    let variance = norm.running_var.value_sync().to_device(device);
    let scale = norm
        .gamma
        .val()
        .div(variance.add_scalar(norm.epsilon).sqrt());
    let shift = norm.beta.val().sub(mean.mul(scale.clone()));
    (scale, shift)
}

/// `ReLU(norm(x))`: in training mode with the batch statistics (running statistics moved as
/// burn does), in inference mode with the running statistics folded into a scale and shift
/// (on burn's module when the device is an autodiff one).
pub(super) fn batch_norm_relu(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    if !norm.training.is_enabled() {
        if x.device().is_autodiff() {
            return burn::tensor::activation::relu(norm.forward(x));
        }
        // Inference: the running statistics fold into one per-channel scale and shift.
        let (scale, shift) = norm_scale_shift(norm, &x.device());
        return Tensor::from_dispatch(<Dispatch as FlexTrainOps>::flex_affine_relu(
            x.into_dispatch(),
            scale.into_dispatch(),
            shift.into_dispatch(),
        ));
    }
    let out = <Dispatch as FlexTrainOps>::flex_batch_norm_relu(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        norm.epsilon,
    );
    super::update_running(norm, out.mean, out.variance);
    Tensor::from_dispatch(out.output)
}

/// The output of a training-mode batch norm + ReLU, and the batch mean and biased variance.
#[derive(ExtensionType)]
pub struct NormOutput<B: Backend> {
    output: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
}

/// seg-model's flex kernels, with their own backward steps on an autodiff device.
#[backend_extension(Autodiff, Flex)]
pub trait FlexTrainOps: Backend {
    /// 2-D convolution (one group) plus a per-channel bias.
    fn flex_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: Geometry,
    ) -> FloatTensor<Self>;
    /// 2-D transposed convolution (one group, no output padding) plus a per-channel bias.
    fn flex_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: Geometry,
    ) -> FloatTensor<Self>;
    /// `ReLU(x · scale[c] + shift[c])`: batch norm with running statistics, then ReLU.
    fn flex_affine_relu(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `ReLU(conv2d(x) · scale[c] + shift[c])`: a convolution, batch norm with running
    /// statistics (or none: scale 1, shift 0) and ReLU in one pass (inference).
    fn flex_conv2d_affine_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        geometry: Geometry,
    ) -> FloatTensor<Self>;
    /// [`FlexTrainOps::flex_conv2d_affine_relu`] of `cat([first, second], 1)`, both read in
    /// place (inference).
    fn flex_conv2d_cat_affine_relu(
        first: FloatTensor<Self>,
        second: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        geometry: Geometry,
    ) -> FloatTensor<Self>;
    /// [`FlexTrainOps::flex_conv2d`] of `cat([first, second], 1)`, both read in place.
    fn flex_conv2d_cat(
        first: FloatTensor<Self>,
        second: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: Geometry,
    ) -> FloatTensor<Self>;
    /// 2x2 max-pool with stride 2 and no padding (odd trailing rows and columns dropped).
    fn flex_max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// ReLU(batch_norm(x)) with the batch's statistics.
    fn flex_batch_norm_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> NormOutput<Self>;
}
