//! The blocks on autodiff libtorch: each runs forward under libtorch's autograd and is one burn
//! autodiff step whose backward hands the incoming gradient to libtorch's backward.

// burn 0.22 marks burn-tch deprecated (it points CPU users to flex); the user asked for it.
#![allow(deprecated)]

use super::graph::*;
use super::*;

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

/// Backward step of a [`TorchGraph`]: the gradient of dot(output, grad) with respect to the
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
        // dot(output, grad): one read of each in the forward and one multiply in the
        // backward, the least libtorch's autograd (no grad_outputs in tch) allows.
        let root = graph.output.0.reshape([-1]).dot(&grad.tensor.reshape([-1]));
        let leaves: Vec<&tch::Tensor> = wanted.iter().map(|(_, t)| *t).collect();
        // burn's backward steps cannot return errors: a libtorch failure here panics with
        // its message, and seg-model's training step turns that into SegError::Backend.
        let results = match tch::Tensor::f_run_backward(&[root], &leaves, false, false) {
            Ok(results) => results,
            Err(e) => panic!("libtorch backward of a fused U-Net block failed: {e}"),
        };
        for ((i, _), g) in wanted.iter().zip(results) {
            if let Some(node) = &ops.parents[*i] {
                grads.register::<LibTorch>(node.id, TchTensor::new(g));
            }
        }
    }
}

/// A float tensor of the autodiff libtorch backend.
type AdTensor<C> = FloatTensor<Autodiff<LibTorch, C>>;

/// Runs `forward` under libtorch's autograd on leaves standing in for the tracked `inputs`
/// and registers one burn autodiff step whose backward is libtorch's. `forward` returns the
/// differentiable output and any side outputs (statistics), which come back untracked.
fn torch_graph<C: CheckpointStrategy, const N: usize, const E: usize>(
    inputs: [AdTensor<C>; N],
    forward: impl Fn(&[tch::Tensor; N]) -> (tch::Tensor, [tch::Tensor; E]),
) -> (AdTensor<C>, [AdTensor<C>; E]) {
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
    fn native_max_pool2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (out, []) = torch_graph::<C, 1, 0>([x], |[x]| (max_pool2(x), []));
        out
    }

    fn native_up_block(
        x: FloatTensor<Self>,
        skip: FloatTensor<Self>,
        up_weight: FloatTensor<Self>,
        up_bias: FloatTensor<Self>,
        params: BlockParams<Self>,
        geometry: [ConvGeometry; 3],
        epsilon: [f64; 2],
    ) -> BlockOutput<Self> {
        let inputs = prepend([x, skip, up_weight, up_bias], params.into_array());
        let (out, stats) =
            torch_graph::<C, 10, 4>(inputs, |t| up_block_graph(t, geometry, epsilon));
        BlockOutput::new(out, stats)
    }

    fn native_conv_block(
        x: FloatTensor<Self>,
        params: BlockParams<Self>,
        geometry: [ConvGeometry; 2],
        epsilon: [f64; 2],
        pool: bool,
    ) -> BlockOutput<Self> {
        let inputs = prepend([x], params.into_array());
        let (out, stats) = torch_graph::<C, 7, 4>(inputs, |[x, params @ ..]| {
            block(x, params, geometry, epsilon, pool)
        });
        BlockOutput::new(out, stats)
    }

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
}
