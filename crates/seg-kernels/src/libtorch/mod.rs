//! seg-model's own kernels on an autodiff libtorch device: a whole conv block or decoder step
//! runs forward under libtorch's autograd, and burn's backward step hands the incoming
//! gradient to libtorch's backward (PyTorch's own `convolution_backward`,
//! `native_batch_norm_backward` and `threshold_backward`). Split by job: this file dispatches the
//! blocks and declares the backend extension; [`graph`] builds the libtorch sub-graphs (and runs
//! them on plain libtorch); [`autodiff`] records them as one burn autodiff step each.
// burn 0.22 marks burn-tch deprecated (it points CPU users to flex); the user asked for it.
#![allow(deprecated)]

mod autodiff;
mod graph;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, ExtensionType, LibTorch,
    backend_extension,
};
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, PaddingConfig2d, Relu};
use burn::tensor::Tensor;

/// Whether `x` lives on an autodiff libtorch device (training on `tch`).
pub(super) fn applies(x: &Tensor<4>) -> bool {
    let device = x.device();
    super::own_kernels_enabled()
        && device.is_autodiff()
        && matches!(device.inner().as_dispatch(), DispatchDevice::LibTorch(_))
}

/// Geometry of a convolution: stride, padding, dilation, groups.
#[derive(Debug, Clone, Copy)]
pub struct ConvGeometry {
    stride: [i64; 2],
    padding: [i64; 2],
    dilation: [i64; 2],
    groups: i64,
}

/// A `usize` pair as libtorch's `i64`s; `None` when one does not fit (that op then stays
/// on burn's path rather than running with wrong geometry).
fn i64s(v: [usize; 2]) -> Option<[i64; 2]> {
    Some([i64::try_from(v[0]).ok()?, i64::try_from(v[1]).ok()?])
}

/// The geometry of `conv`, or `None` for padding libtorch's conv2d cannot express
/// (asymmetric or "same"), which stays on burn's path.
fn geometry(conv: &Conv2d) -> Option<ConvGeometry> {
    let padding = match &conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [*top, *left]
        }
        PaddingConfig2d::Valid => [0, 0],
        _ => return None,
    };
    Some(ConvGeometry {
        stride: i64s(conv.stride)?,
        padding: i64s(padding)?,
        dilation: i64s(conv.dilation)?,
        groups: i64::try_from(conv.groups).ok()?,
    })
}

/// The geometry of a transposed convolution (its output padding is checked by the
/// callers), or `None` when a value does not fit libtorch's `i64`.
fn transpose_geometry(conv: &ConvTranspose2d) -> Option<ConvGeometry> {
    Some(ConvGeometry {
        stride: i64s(conv.stride)?,
        padding: i64s(conv.padding)?,
        dilation: i64s(conv.dilation)?,
        groups: i64::try_from(conv.groups).ok()?,
    })
}

pub(super) fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let (Some(geometry), Some(bias)) = (geometry(conv), &conv.bias) else {
        return conv.forward(x);
    };
    Tensor::from_dispatch(<Dispatch as NativeTrainOps>::native_conv2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
        geometry,
    ))
}

pub(super) fn conv_transpose2d(conv: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    let (Some(bias), [0, 0], Some(geometry)) =
        (&conv.bias, conv.padding_out, transpose_geometry(conv))
    else {
        return conv.forward(x);
    };
    Tensor::from_dispatch(<Dispatch as NativeTrainOps>::native_conv_transpose2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
        geometry,
    ))
}

pub(super) fn conv_norm_relu(
    conv: &Conv2d,
    norm: Option<&BatchNorm>,
    activation: &Relu,
    x: Tensor<4>,
) -> Tensor<4> {
    let Some(geometry) = geometry(conv) else {
        return super::burn_conv_norm_relu(conv, norm, activation, x);
    };
    // Batch-norm units are fused per block (`conv_block`); one left over here (a partly
    // frozen block) runs on burn.
    match (norm, &conv.bias) {
        (None, Some(bias)) => {
            Tensor::from_dispatch(<Dispatch as NativeTrainOps>::native_conv_relu(
                x.into_dispatch(),
                conv.weight.val().into_dispatch(),
                bias.val().into_dispatch(),
                geometry,
            ))
        }
        _ => super::burn_conv_norm_relu(conv, norm, activation, x),
    }
}

/// The six parameters of a batch-norm conv block: two (conv weight, gamma, beta) triples.
#[derive(ExtensionType)]
pub struct BlockParams<B: Backend> {
    w1: FloatTensor<B>,
    gamma1: FloatTensor<B>,
    beta1: FloatTensor<B>,
    w2: FloatTensor<B>,
    gamma2: FloatTensor<B>,
    beta2: FloatTensor<B>,
}

impl<B: Backend> BlockParams<B> {
    fn into_array(self) -> [FloatTensor<B>; 6] {
        [
            self.w1,
            self.gamma1,
            self.beta1,
            self.w2,
            self.gamma2,
            self.beta2,
        ]
    }
}

/// A fused block's output and both units' batch mean and biased variance.
#[derive(ExtensionType)]
pub struct BlockOutput<B: Backend> {
    output: FloatTensor<B>,
    mean1: FloatTensor<B>,
    var1: FloatTensor<B>,
    mean2: FloatTensor<B>,
    var2: FloatTensor<B>,
}

impl<B: Backend> BlockOutput<B> {
    fn new(output: FloatTensor<B>, [mean1, var1, mean2, var2]: [FloatTensor<B>; 4]) -> Self {
        Self {
            output,
            mean1,
            var1,
            mean2,
            var2,
        }
    }
}

/// A conv block that fuses: both units have batch norm in training mode and bias-free
/// convolutions libtorch can express.
struct Fusable<'a> {
    norms: [&'a BatchNorm; 2],
    params: BlockParams<Dispatch>,
    geometry: [ConvGeometry; 2],
    epsilon: [f64; 2],
}

impl<'a> Fusable<'a> {
    fn new(units: [(&Conv2d, Option<&'a BatchNorm>); 2]) -> Option<Self> {
        let [(c1, n1), (c2, n2)] = units;
        let (Some(n1), Some(n2), None, None) = (n1, n2, &c1.bias, &c2.bias) else {
            return None;
        };
        if !(n1.training.is_enabled() && n2.training.is_enabled()) {
            return None;
        }
        let geometry = [geometry(c1)?, geometry(c2)?];
        Some(Self {
            norms: [n1, n2],
            params: BlockParams {
                w1: c1.weight.val().into_dispatch(),
                gamma1: n1.gamma.val().into_dispatch(),
                beta1: n1.beta.val().into_dispatch(),
                w2: c2.weight.val().into_dispatch(),
                gamma2: n2.gamma.val().into_dispatch(),
                beta2: n2.beta.val().into_dispatch(),
            },
            geometry,
            epsilon: [n1.epsilon, n2.epsilon],
        })
    }

    /// Moves the running statistics and hands back the block's output.
    fn finish(norms: [&BatchNorm; 2], out: BlockOutput<Dispatch>) -> Tensor<4> {
        super::update_running(norms[0], out.mean1, out.var1);
        super::update_running(norms[1], out.mean2, out.var2);
        Tensor::from_dispatch(out.output)
    }
}

pub(super) fn up_block(
    up: &ConvTranspose2d,
    units: [(&Conv2d, Option<&BatchNorm>); 2],
    activation: &Relu,
    x: Tensor<4>,
    skip: Tensor<4>,
) -> Tensor<4> {
    // Parameters are initialised eagerly in `UNetConfig::init`, so the order of these
    // reads does not change the weights a seed gives.
    let up_params = up
        .bias
        .as_ref()
        .map(|bias| (up.weight.val().into_dispatch(), bias.val().into_dispatch()));
    match (up_params, transpose_geometry(up), Fusable::new(units)) {
        (Some((up_weight, up_bias)), Some(up_geometry), Some(block))
            if up.padding_out == [0, 0] =>
        {
            let out = <Dispatch as NativeTrainOps>::native_up_block(
                x.into_dispatch(),
                skip.into_dispatch(),
                up_weight,
                up_bias,
                block.params,
                [up_geometry, block.geometry[0], block.geometry[1]],
                block.epsilon,
            );
            Fusable::finish(block.norms, out)
        }
        _ => {
            let x = conv_transpose2d(up, x);
            conv_block(None, units, activation, Tensor::cat(vec![skip, x], 1))
        }
    }
}

pub(super) fn conv_block(
    pool: Option<&MaxPool2d>,
    units: [(&Conv2d, Option<&BatchNorm>); 2],
    activation: &Relu,
    x: Tensor<4>,
) -> Tensor<4> {
    // A plain 2x2/2 max-pool joins the sub-graph; anything else runs on burn first.
    let (pool, x) = match pool {
        Some(p)
            if p.kernel_size == [2, 2]
                && p.stride == [2, 2]
                && p.dilation == [1, 1]
                && !p.ceil_mode
                && matches!(p.padding, PaddingConfig2d::Valid) =>
        {
            (true, x)
        }
        Some(p) => (false, p.forward(x)),
        None => (false, x),
    };
    if let Some(block) = Fusable::new(units) {
        let out = <Dispatch as NativeTrainOps>::native_conv_block(
            x.into_dispatch(),
            block.params,
            block.geometry,
            block.epsilon,
            pool,
        );
        return Fusable::finish(block.norms, out);
    }
    let x = if pool {
        Tensor::from_dispatch(<Dispatch as NativeTrainOps>::native_max_pool2(
            x.into_dispatch(),
        ))
    } else {
        x
    };
    let [(c1, n1), (c2, n2)] = units;
    let x = conv_norm_relu(c1, n1, activation, x);
    conv_norm_relu(c2, n2, activation, x)
}

/// Fused training-time units whose autodiff step uses libtorch's backward kernels.
#[backend_extension(Autodiff, LibTorch)]
pub trait NativeTrainOps: Backend {
    /// A decoder step: the conv block of `native_conv_block` over
    /// `cat([skip, conv_transpose2d(x) + up_bias], 1)`; geometry is (transposed conv,
    /// conv 1, conv 2).
    fn native_up_block(
        x: FloatTensor<Self>,
        skip: FloatTensor<Self>,
        up_weight: FloatTensor<Self>,
        up_bias: FloatTensor<Self>,
        #[extension_type] params: BlockParams<Self>,
        geometry: [ConvGeometry; 3],
        epsilon: [f64; 2],
    ) -> BlockOutput<Self>;
    /// 2x2 max-pool with stride 2.
    fn native_max_pool2(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// An optional 2x2/2 max-pool, then two ReLU(batch_norm(conv2d(x))) units with batch
    /// statistics.
    fn native_conv_block(
        x: FloatTensor<Self>,
        #[extension_type] params: BlockParams<Self>,
        geometry: [ConvGeometry; 2],
        epsilon: [f64; 2],
        pool: bool,
    ) -> BlockOutput<Self>;
    /// 2-D convolution with bias.
    fn native_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;
    /// 2-D transposed convolution with bias (no output padding).
    fn native_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;
    /// ReLU(conv2d(x) + bias).
    fn native_conv_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;
}
