//! The U-Net's convolutions and ReLUs, with libtorch's own backward kernels when training on
//! the `tch` backend.
//!
//! burn's autodiff differentiates a convolution on any backend by composing generic ops: the
//! weight gradient is a convolution over `swap_dims(0, 1)` copies of input and output gradient,
//! the bias gradient a `swap_dims` + `reshape` copy and a sum, and ReLU's backward a
//! compare + `masked_fill`. On libtorch that costs ~40 % more backward time than PyTorch's
//! fused `convolution_backward` (oneDNN) and `threshold_backward` kernels (measured with the
//! `throughput` bench's SEG_BENCH_PROFILE=1). The ops here are burn [backend
//! extensions](burn::backend::backend_extension) with a hand-written autodiff step: on an
//! autodiff libtorch device the forward runs under libtorch's autograd and the backward step
//! hands the incoming gradient to libtorch's backward kernels; everywhere else (flex, any
//! inference device) the plain burn modules run. The maths is the same either way.

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, Relu};
use burn::tensor::Tensor;

/// `conv.forward(x)`, with libtorch's backward kernels on an autodiff libtorch device.
pub(crate) fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if native::applies(&x) {
        return native::conv2d(conv, x);
    }
    conv.forward(x)
}

/// `conv.forward(x)` for a transposed convolution, with libtorch's backward kernels on an
/// autodiff libtorch device.
pub(crate) fn conv_transpose2d(conv: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if native::applies(&x) {
        return native::conv_transpose2d(conv, x);
    }
    conv.forward(x)
}

/// `conv → [batch norm] → ReLU`, with libtorch's kernels for all three (forward and backward)
/// on an autodiff libtorch device, burn's modules everywhere else.
pub(crate) fn conv_norm_relu(
    conv: &Conv2d,
    norm: Option<&BatchNorm>,
    activation: &Relu,
    x: Tensor<4>,
) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if native::applies(&x) {
        return native::conv_norm_relu(conv, norm, activation, x);
    }
    burn_conv_norm_relu(conv, norm, activation, x)
}

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

// burn 0.22 marks burn-tch deprecated (it points CPU users to flex); the user asked for it.
#[cfg(feature = "tch")]
#[allow(deprecated)]
mod native {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::libtorch::TchTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{
        Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, LibTorch, backend_extension,
    };
    use burn::nn::conv::{Conv2d, ConvTranspose2d};
    use burn::nn::{BatchNorm, PaddingConfig2d, Relu};
    use burn::tensor::Tensor;

    /// Whether `x` lives on an autodiff libtorch device (training on `tch`).
    pub(super) fn applies(x: &Tensor<4>) -> bool {
        let device = x.device();
        device.is_autodiff() && matches!(device.inner().as_dispatch(), DispatchDevice::LibTorch(_))
    }

    /// Geometry of a convolution: stride, padding, dilation, groups.
    #[derive(Debug, Clone, Copy)]
    pub struct ConvGeometry {
        stride: [i64; 2],
        padding: [i64; 2],
        dilation: [i64; 2],
        groups: i64,
    }

    fn i64s(v: [usize; 2]) -> [i64; 2] {
        v.map(|x| i64::try_from(x).unwrap_or(i64::MAX))
    }

    /// The geometry of `conv`, or `None` for padding libtorch's conv2d cannot express
    /// (asymmetric or "same"), which stays on burn's path.
    fn geometry(conv: &Conv2d) -> Option<ConvGeometry> {
        let padding = match &conv.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right)
                if top == bottom && left == right =>
            {
                [*top, *left]
            }
            PaddingConfig2d::Valid => [0, 0],
            _ => return None,
        };
        Some(ConvGeometry {
            stride: i64s(conv.stride),
            padding: i64s(padding),
            dilation: i64s(conv.dilation),
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
        let (Some(bias), [0, 0]) = (&conv.bias, conv.padding_out) else {
            return conv.forward(x);
        };
        let geometry = ConvGeometry {
            stride: i64s(conv.stride),
            padding: i64s(conv.padding),
            dilation: i64s(conv.dilation),
            groups: i64::try_from(conv.groups).unwrap_or(1),
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
        match (norm, &conv.bias) {
            (None, Some(bias)) => {
                Tensor::from_dispatch(<Dispatch as NativeTrainOps>::native_conv_relu(
                    x.into_dispatch(),
                    conv.weight.val().into_dispatch(),
                    bias.val().into_dispatch(),
                    geometry,
                ))
            }
            // Batch norm in training mode (a frozen one keeps its running statistics: burn's path).
            (Some(norm), None) if norm.training.is_enabled() => {
                let (output, mean, variance) = <Dispatch as NativeTrainOps>::native_conv_norm_relu(
                    x.into_dispatch(),
                    conv.weight.val().into_dispatch(),
                    norm.gamma.val().into_dispatch(),
                    norm.beta.val().into_dispatch(),
                    geometry,
                    norm.epsilon,
                );
                // The running statistics move exactly as in burn's BatchNorm::forward_train.
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
                Tensor::from_dispatch(output)
            }
            _ => super::burn_conv_norm_relu(conv, norm, activation, x),
        }
    }

    /// Fused training-time units whose autodiff step uses libtorch's backward kernels.
    #[backend_extension(Autodiff, LibTorch)]
    pub trait NativeTrainOps: Backend {
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
        /// ReLU(batch_norm(conv2d(x))) with batch statistics; returns the output and the batch
        /// mean and biased variance per channel (for the running statistics).
        fn native_conv_norm_relu(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            geometry: ConvGeometry,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    }

    fn conv(
        x: &tch::Tensor,
        w: &tch::Tensor,
        b: Option<&tch::Tensor>,
        g: ConvGeometry,
    ) -> tch::Tensor {
        x.conv2d(w, b, g.stride, g.padding, g.dilation, g.groups)
    }

    fn conv_t(x: &tch::Tensor, w: &tch::Tensor, b: &tch::Tensor, g: ConvGeometry) -> tch::Tensor {
        x.conv_transpose2d(
            w,
            Some(b),
            g.stride,
            g.padding,
            [0, 0],
            g.groups,
            g.dilation,
        )
    }

    /// Batch norm with batch statistics, then an in-place ReLU; returns (output, mean, biased
    /// variance), the statistics detached.
    fn norm_relu(
        y: &tch::Tensor,
        gamma: &tch::Tensor,
        beta: &tch::Tensor,
        eps: f64,
    ) -> (tch::Tensor, tch::Tensor, tch::Tensor) {
        let (mut out, mean, invstd) = y.native_batch_norm(
            Some(gamma),
            Some(beta),
            None::<&tch::Tensor>,
            None,
            true,
            0.0,
            eps,
        );
        let _ = out.relu_();
        let variance = tch::no_grad(|| invstd.detach().pow_tensor_scalar(-2.0) - eps);
        // A copy: libtorch saved `mean` for the backward, and burn-tch may update a tensor it
        // owns alone in place.
        (out, mean.detach().copy(), variance)
    }

    impl NativeTrainOps for LibTorch {
        fn native_conv2d(
            x: TchTensor,
            weight: TchTensor,
            bias: TchTensor,
            geometry: ConvGeometry,
        ) -> TchTensor {
            TchTensor::new(conv(
                &x.tensor,
                &weight.tensor,
                Some(&bias.tensor),
                geometry,
            ))
        }

        fn native_conv_transpose2d(
            x: TchTensor,
            weight: TchTensor,
            bias: TchTensor,
            geometry: ConvGeometry,
        ) -> TchTensor {
            TchTensor::new(conv_t(&x.tensor, &weight.tensor, &bias.tensor, geometry))
        }

        fn native_conv_relu(
            x: TchTensor,
            weight: TchTensor,
            bias: TchTensor,
            geometry: ConvGeometry,
        ) -> TchTensor {
            let y = conv(&x.tensor, &weight.tensor, Some(&bias.tensor), geometry);
            TchTensor::new(y.relu())
        }

        fn native_conv_norm_relu(
            x: TchTensor,
            weight: TchTensor,
            gamma: TchTensor,
            beta: TchTensor,
            geometry: ConvGeometry,
            epsilon: f64,
        ) -> (TchTensor, TchTensor, TchTensor) {
            let y = conv(&x.tensor, &weight.tensor, None, geometry);
            let (out, mean, var) = norm_relu(&y, &gamma.tensor, &beta.tensor, epsilon);
            (
                TchTensor::new(out),
                TchTensor::new(mean),
                TchTensor::new(var),
            )
        }
    }

    /// A libtorch tensor kept for the backward step (`tch::Tensor` has no `Clone`).
    #[derive(Debug)]
    struct Kept(tch::Tensor);

    impl Clone for Kept {
        fn clone(&self) -> Self {
            Self(self.0.shallow_clone())
        }
    }

    /// State of a sub-graph recorded by libtorch's autograd: its output, the leaves standing in
    /// for the burn inputs that need a gradient, and the burn primitives themselves (holding
    /// them keeps burn-tch from reusing their storage in place while libtorch still needs it).
    #[derive(Debug, Clone)]
    struct TorchGraph<const N: usize> {
        output: Kept,
        leaves: [Option<Kept>; N],
        _inputs: [TchTensor; N],
    }

    /// Backward step of a [`TorchGraph`]: the gradient of sum(output * grad) with respect to the
    /// leaves is exactly the vector-Jacobian product, and libtorch computes it with its own
    /// backward kernels.
    #[derive(Debug)]
    struct TorchGraphBackward;

    impl<const N: usize> Backward<LibTorch, N> for TorchGraphBackward {
        type State = TorchGraph<N>;

        fn backward(
            self,
            ops: Ops<Self::State, N>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let grad = grads.consume::<LibTorch>(&ops.node);
            let graph = ops.state;
            let wanted: Vec<(usize, &tch::Tensor)> = ops
                .parents
                .iter()
                .zip(graph.leaves.iter())
                .enumerate()
                .filter_map(|(i, (parent, leaf))| match (parent, leaf) {
                    (Some(_), Some(leaf)) => Some((i, &leaf.0)),
                    _ => None,
                })
                .collect();
            if wanted.is_empty() {
                return;
            }
            let root = (&graph.output.0 * &grad.tensor).sum(tch::Kind::Float);
            let leaves: Vec<&tch::Tensor> = wanted.iter().map(|(_, t)| *t).collect();
            let results = tch::Tensor::run_backward(&[root], &leaves, false, false);
            for ((i, _), g) in wanted.iter().zip(results) {
                if let Some(node) = &ops.parents[*i] {
                    grads.register::<LibTorch>(node.id, TchTensor::new(g));
                }
            }
        }
    }

    /// Runs `forward` under libtorch's autograd on leaves standing in for the tracked `inputs`
    /// and registers one burn autodiff step whose backward is libtorch's. `forward` returns the
    /// differentiable output and any side outputs (statistics), which come back untracked.
    fn torch_graph<C: CheckpointStrategy, const N: usize, const E: usize>(
        inputs: [FloatTensor<Autodiff<LibTorch, C>>; N],
        forward: impl Fn(&[tch::Tensor; N]) -> (tch::Tensor, [tch::Tensor; E]),
    ) -> (
        FloatTensor<Autodiff<LibTorch, C>>,
        [FloatTensor<Autodiff<LibTorch, C>>; E],
    ) {
        let nodes = inputs.each_ref().map(|t| t.node());
        let side = |extra: [tch::Tensor; E]| {
            extra.map(|t| Autodiff::<LibTorch, C>::from_inner(TchTensor::new(t)))
        };
        match TorchGraphBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let leaves: [Option<Kept>; N] = inputs.each_ref().map(|t| {
                    t.is_tracked()
                        .then(|| Kept(t.primitive().tensor.detach().set_requires_grad(true)))
                });
                let args: [tch::Tensor; N] = std::array::from_fn(|i| match &leaves[i] {
                    Some(leaf) => leaf.0.shallow_clone(),
                    None => inputs[i].primitive().tensor.shallow_clone(),
                });
                let (output, extra) = forward(&args);
                let value = TchTensor::new(output.detach());
                let state = TorchGraph {
                    output: Kept(output),
                    leaves,
                    _inputs: inputs.map(|t| t.into_primitive()),
                };
                (prep.finish(state, value), side(extra))
            }
            OpsKind::UnTracked(prep) => {
                let args = inputs.map(|t| t.into_primitive().tensor);
                let (output, extra) = tch::no_grad(|| forward(&args));
                (prep.finish(TchTensor::new(output)), side(extra))
            }
        }
    }

    impl<C: CheckpointStrategy> NativeTrainOps for Autodiff<LibTorch, C> {
        fn native_conv2d(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            geometry: ConvGeometry,
        ) -> FloatTensor<Self> {
            let (out, []) = torch_graph::<C, 3, 0>([x, weight, bias], |[x, w, b]| {
                (conv(x, w, Some(b), geometry), [])
            });
            out
        }

        fn native_conv_transpose2d(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            geometry: ConvGeometry,
        ) -> FloatTensor<Self> {
            let (out, []) = torch_graph::<C, 3, 0>([x, weight, bias], |[x, w, b]| {
                (conv_t(x, w, b, geometry), [])
            });
            out
        }

        fn native_conv_relu(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            geometry: ConvGeometry,
        ) -> FloatTensor<Self> {
            let (out, []) = torch_graph::<C, 3, 0>([x, weight, bias], |[x, w, b]| {
                let mut y = conv(x, w, Some(b), geometry);
                let _ = y.relu_();
                (y, [])
            });
            out
        }

        fn native_conv_norm_relu(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            geometry: ConvGeometry,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            let (out, [mean, var]) =
                torch_graph::<C, 4, 2>([x, weight, gamma, beta], |[x, w, g, b]| {
                    let y = conv(x, w, None, geometry);
                    let (out, mean, var) = norm_relu(&y, g, b, epsilon);
                    (out, [mean, var])
                });
            (out, mean, var)
        }
    }
}
