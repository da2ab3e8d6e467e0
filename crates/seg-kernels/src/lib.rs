//! seg-kernels: seg-model's own CPU kernels, the U-Net's building blocks run on hand-written
//! forward and backward steps where burn's generic autodiff and modules are slow. seg-model's
//! U-Net calls the four blocks here ([`conv2d`], [`conv_block`], [`up_block`] and, inside them,
//! batch norm + ReLU and max-pool); nothing else depends on them.
//!
//! burn's autodiff differentiates on any backend by composing generic ops: a convolution's
//! weight gradient is a convolution over `swap_dims(0, 1)` copies of input and output
//! gradient, batch norm is a dozen elementary ops with transposed copies, ReLU's backward a
//! compare + `masked_fill`. The ops here are burn
//! [backend extensions](burn::backend::backend_extension) with a hand-written autodiff step:
//!
//! - on an autodiff libtorch device, a whole conv block (max-pool, conv, batch norm, ReLU,
//!   twice) or decoder step (transposed conv, concatenation, conv block) runs forward under
//!   libtorch's autograd, and burn's backward step hands the incoming gradient to libtorch's
//!   backward (`libtorch.rs`): PyTorch's own `convolution_backward`,
//!   `native_batch_norm_backward` and `threshold_backward`;
//! - on flex (training and inference), convolutions, transposed convolutions, batch norm +
//!   ReLU and the 2x2 max-pool run on seg-model's direct, im2col + gemm and fused kernels
//!   (`flex/`), and the decoder's convolution of `cat([skip, up])` reads both in place.
//!
//! Everywhere else, or after [`set_own_kernels`]`(false)`, burn's modules run. The maths is
//! the same either way (seg-model's `tests/own_kernels.rs`; `src/flex/tests.rs` checks each
//! kernel against burn's autodiff).

use std::cell::Cell;

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Relu};
use burn::tensor::Tensor;

#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "tch")]
mod libtorch;

thread_local! {
    static OWN_KERNELS: Cell<bool> = const { Cell::new(true) };
}

/// Turns seg-model's own kernels (libtorch's fused backward on `tch`, the im2col + gemm
/// kernels on `flex`; on by default) off or on for the calling thread (a training runs on the
/// thread that calls seg-model's `train`); with them off, every backend differentiates through
/// burn's generic ops. Results agree to float rounding; the switch exists to compare the two
/// and to rule the kernels out when debugging. Other threads are not affected.
pub fn set_own_kernels(enabled: bool) {
    OWN_KERNELS.with(|n| n.set(enabled));
}

/// Whether seg-model's own kernels are on for the calling thread.
fn own_kernels_enabled() -> bool {
    OWN_KERNELS.with(Cell::get)
}

/// `conv.forward(x)`, with libtorch's backward kernels on an autodiff libtorch device and the
/// flex kernels on flex.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if libtorch::applies(&x) {
        return libtorch::conv2d(conv, x);
    }
    #[cfg(feature = "flex")]
    if flex::applies(&x) {
        return flex::conv2d(conv, x);
    }
    conv.forward(x)
}

/// A transposed convolution's `forward(x)`, on the flex kernels on flex.
fn conv_transpose2d(conv: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if flex::applies(&x) {
        return flex::conv_transpose2d(conv, x);
    }
    conv.forward(x)
}

/// An optional max-pool, then two `conv → [batch norm] → ReLU` units (a U-Net conv block); on an autodiff libtorch device
/// with batch norm the pair is one libtorch sub-graph (one autodiff step instead of two).
pub fn conv_block(
    pool: Option<&MaxPool2d>,
    units: [(&Conv2d, Option<&BatchNorm>); 2],
    activation: &Relu,
    x: Tensor<4>,
) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if libtorch::applies(&x) {
        return libtorch::conv_block(pool, units, activation, x);
    }
    let x = match pool {
        #[cfg(feature = "flex")]
        Some(pool) if flex::applies(&x) => flex::max_pool2d(pool, x),
        Some(pool) => pool.forward(x),
        None => x,
    };
    let [(c1, n1), (c2, n2)] = units;
    let x = conv_norm_relu(c1, n1, activation, x);
    conv_norm_relu(c2, n2, activation, x)
}

/// A U-Net decoder step: `conv_block(cat([skip, up(x)], 1))` with a transposed-conv `up`; on an
/// autodiff libtorch device with batch norm the whole step is one libtorch sub-graph.
pub fn up_block(
    up: &ConvTranspose2d,
    units: [(&Conv2d, Option<&BatchNorm>); 2],
    activation: &Relu,
    x: Tensor<4>,
    skip: Tensor<4>,
) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if libtorch::applies(&x) {
        return libtorch::up_block(up, units, activation, x, skip);
    }
    let x = conv_transpose2d(up, x);
    #[cfg(feature = "flex")]
    if flex::applies(&x) {
        // Inference: the first convolution reads skip and up in place, no concatenated copy,
        // fused with batch norm and ReLU.
        let [(c1, n1), (c2, n2)] = units;
        if let Some(y) = flex::conv_cat_affine_relu(c1, n1, &skip, &x) {
            return conv_norm_relu(c2, n2, activation, y);
        }
        // Training (or batch norm in training mode): the convolution still reads both in place.
        if let Some(y) = flex::conv2d_cat(c1, &skip, &x) {
            let y = match n1 {
                Some(norm) => flex::batch_norm_relu(norm, y),
                None => activation.forward(y),
            };
            return conv_norm_relu(c2, n2, activation, y);
        }
    }
    conv_block(None, units, activation, Tensor::cat(vec![skip, x], 1))
}

/// `conv → [batch norm] → ReLU`: all three one kernel on flex in inference, batch norm + ReLU
/// fused on flex in training mode.
fn conv_norm_relu(
    conv: &Conv2d,
    norm: Option<&BatchNorm>,
    activation: &Relu,
    x: Tensor<4>,
) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if flex::applies(&x) {
        if let Some(y) = flex::conv_affine_relu(conv, norm, &x) {
            return y;
        }
        let y = flex::conv2d(conv, x);
        return match norm {
            Some(norm) => flex::batch_norm_relu(norm, y),
            None => activation.forward(y),
        };
    }
    burn_conv_norm_relu(conv, norm, activation, x)
}

/// `conv → [batch norm] → ReLU` with burn's modules.
fn burn_conv_norm_relu(
    conv: &Conv2d,
    norm: Option<&BatchNorm>,
    activation: &Relu,
    x: Tensor<4>,
) -> Tensor<4> {
    let mut x = conv.forward(x);
    if let Some(norm) = norm {
        x = norm.forward(x);
    }
    activation.forward(x)
}

/// Moves a batch norm's running statistics exactly as burn's `BatchNorm::forward_train`.
fn update_running(
    norm: &BatchNorm,
    mean: burn::backend::DispatchTensor,
    variance: burn::backend::DispatchTensor,
) {
    let mean = Tensor::<1>::from_dispatch(mean);
    let variance = Tensor::<1>::from_dispatch(variance);
    let device = mean.device();
    let m = norm.momentum;
    let running_mean = norm.running_mean.value_sync().to_device(&device);
    let running_var = norm.running_var.value_sync().to_device(&device);
    norm.running_mean.update(
        running_mean
            .mul_scalar(1.0 - m)
            .add(mean.mul_scalar(m))
            .detach(),
    );
    norm.running_var.update(
        running_var
            .mul_scalar(1.0 - m)
            .add(variance.mul_scalar(m))
            .detach(),
    );
}
