//! The hand-written backward steps of the flex kernels on `Autodiff<Flex>`.

use super::*;

/// A float tensor of the autodiff flex backend.
type AdTensor<C> = FloatTensor<Autodiff<Flex, C>>;

/// What a convolution's backward step needs: its input, weight and geometry.
#[derive(Debug, Clone)]
pub(super) struct ConvState {
    pub(super) x: FlexTensor,
    pub(super) w: FlexTensor,
    pub(super) g: Geometry,
}

/// Backward of `flex_conv2d`.
#[derive(Debug)]
pub(super) struct Conv2dBackward;

impl Backward<Flex, 3> for Conv2dBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<ConvState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let [px, pw, pb] = ops.parents;
        let ConvState { x, w, g } = ops.state;
        let ((x, xs), (w, ws), (dy, _)) = (view(&x), view(&w), view(&dy));
        let s = ConvShape::new(dims4(&xs), dims4(&ws), g);
        let dy: &[f32] = dy.storage();
        if let Some(node) = pw {
            let dw = conv_weight_grad(&s, &[x.storage()], dy);
            grads.register::<Flex>(node.id, tensor(dw, ws.clone()));
        }
        if let Some(node) = pb {
            let db = channel_sums(dy, s.n, s.c_out, s.positions());
            grads.register::<Flex>(node.id, tensor(db, vec![s.c_out]));
        }
        if let Some(node) = px {
            let dx = conv_input_grad(&s, dy, w.storage());
            grads.register::<Flex>(node.id, tensor(dx, xs));
        }
    }
}

/// What the backward step of a convolution of a concatenation needs: both inputs, the weight
/// and the geometry.
#[derive(Debug, Clone)]
pub(super) struct ConvCatState {
    pub(super) parts: [FlexTensor; 2],
    pub(super) w: FlexTensor,
    pub(super) g: Geometry,
}

/// Backward of `flex_conv2d_cat`: the weight gradient reads both inputs in place, the input
/// gradient of the concatenation is split into the two inputs' gradients.
#[derive(Debug)]
pub(super) struct ConvCatBackward;

impl Backward<Flex, 4> for ConvCatBackward {
    type State = ConvCatState;

    fn backward(self, ops: Ops<ConvCatState, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let [p0, p1, pw, pb] = ops.parents;
        let ConvCatState { parts, w, g } = ops.state;
        let views = parts.each_ref().map(view);
        let ((w, ws), (dy, _)) = (view(&w), view(&dy));
        let s = cat_shape(&views, &ws, g);
        let dy: &[f32] = dy.storage();
        if let Some(node) = pw {
            let inputs = views.each_ref().map(|(x, _)| x.storage::<f32>());
            let dw = conv_weight_grad(&s, &inputs, dy);
            grads.register::<Flex>(node.id, tensor(dw, ws.clone()));
        }
        if let Some(node) = pb {
            let db = channel_sums(dy, s.n, s.c_out, s.positions());
            grads.register::<Flex>(node.id, tensor(db, vec![s.c_out]));
        }
        if p0.is_some() || p1.is_some() {
            let dx = conv_input_grad(&s, dy, w.storage());
            let channels = views.each_ref().map(|(_, xs)| dims4(xs)[1]);
            let split = split_channels(&dx, s.n, &channels, s.h * s.w);
            for ((node, dx), (_, xs)) in [p0, p1].into_iter().zip(split).zip(views) {
                if let Some(node) = node {
                    grads.register::<Flex>(node.id, tensor(dx, xs));
                }
            }
        }
    }
}

/// Backward of `flex_max_pool2x2`.
#[derive(Debug)]
pub(super) struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let [px] = ops.parents;
        let ((x, xs), (dy, _)) = (view(&ops.state), view(&dy));
        if let Some(node) = px {
            let dx = max_pool2x2_backward(x.storage(), dy.storage(), dims4(&xs));
            grads.register::<Flex>(node.id, tensor(dx, xs));
        }
    }
}

/// Backward of `flex_conv_transpose2d`: the adjoint convolution's forward gives the input
/// gradient, its weight gradient (input `dy`, output gradient `x`) the weight's.
#[derive(Debug)]
pub(super) struct ConvTranspose2dBackward;

impl Backward<Flex, 3> for ConvTranspose2dBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<ConvState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let [px, pw, pb] = ops.parents;
        let ConvState { x, w, g } = ops.state;
        let ((x, xs), (w, ws), (dy, _)) = (view(&x), view(&w), view(&dy));
        let s = adjoint_shape(&xs, &ws, g);
        let dy: &[f32] = dy.storage();
        if let Some(node) = pw {
            let dw = conv_weight_grad(&s, &[dy], x.storage());
            grads.register::<Flex>(node.id, tensor(dw, ws.clone()));
        }
        if let Some(node) = pb {
            let db = channel_sums(dy, s.n, s.c_in, s.h * s.w);
            grads.register::<Flex>(node.id, tensor(db, vec![s.c_in]));
        }
        if let Some(node) = px {
            let dx = conv_forward(&s, dy, w.storage(), &vec![0.0; s.c_out], false);
            grads.register::<Flex>(node.id, tensor(dx, xs));
        }
    }
}

/// What batch norm + ReLU's backward step needs.
#[derive(Debug, Clone)]
pub(super) struct NormState {
    pub(super) x: FlexTensor,
    pub(super) gamma: FlexTensor,
    pub(super) beta: FlexTensor,
    pub(super) mean: Vec<f32>,
    pub(super) variance: Vec<f32>,
    pub(super) epsilon: f64,
}

/// Backward of `flex_batch_norm_relu`.
#[derive(Debug)]
pub(super) struct NormReluBackward;

impl Backward<Flex, 3> for NormReluBackward {
    type State = NormState;

    fn backward(self, ops: Ops<NormState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let [px, pg, pb] = ops.parents;
        let st = ops.state;
        let ((x, xs), (gamma, _), (beta, _), (dy, _)) =
            (view(&st.x), view(&st.gamma), view(&st.beta), view(&dy));
        let [n, c, positions] = flat3(&xs);
        let (dx, dgamma, dbeta) = norm_relu_backward(
            x.storage(),
            dy.storage(),
            [n, c, positions],
            gamma.storage(),
            beta.storage(),
            &st.mean,
            &st.variance,
            st.epsilon,
        );
        if let Some(node) = px {
            grads.register::<Flex>(node.id, tensor(dx, xs));
        }
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, tensor(dgamma, vec![c]));
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, tensor(dbeta, vec![c]));
        }
    }
}

/// Records `out` as the result of `op` on the inputs `nodes`, with the state `state()` kept
/// for the backward step when a gradient flows back through it (nothing kept otherwise).
fn record<C: CheckpointStrategy, O: Backward<Flex, N>, const N: usize>(
    op: O,
    nodes: [NodeGuard; N],
    out: FlexTensor,
    state: impl FnOnce() -> O::State,
) -> AdTensor<C> {
    match op.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state(), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// Records a convolution-like op: `forward` computes the output from (x, w, bias), `op` is
/// its backward step.
pub(super) fn tracked_conv<C: CheckpointStrategy, O: Backward<Flex, 3, State = ConvState>>(
    op: O,
    [x, w, b]: [AdTensor<C>; 3],
    g: Geometry,
    forward: fn(&FlexTensor, &FlexTensor, &FlexTensor, Geometry) -> FlexTensor,
) -> AdTensor<C> {
    let out = forward(x.primitive(), w.primitive(), b.primitive(), g);
    record::<C, O, 3>(op, [x.node(), w.node(), b.node()], out, || ConvState {
        x: x.into_primitive(),
        w: w.into_primitive(),
        g,
    })
}

impl<C: CheckpointStrategy> FlexTrainOps for Autodiff<Flex, C> {
    /// Composed from differentiable ops (the model calls the fused kernel only without
    /// autodiff).
    fn flex_affine_relu(x: AdTensor<C>, scale: AdTensor<C>, shift: AdTensor<C>) -> AdTensor<C> {
        use burn::backend::ops::{ActivationOps, FloatTensorOps};
        use burn::tensor::Shape;
        let c = x.primitive().layout().shape().get(1).copied().unwrap_or(0);
        let per_channel = || Shape::new([1, c, 1, 1]);
        let scale = Self::float_reshape(scale, per_channel());
        let shift = Self::float_reshape(shift, per_channel());
        Self::relu(Self::float_add(Self::float_mul(x, scale), shift))
    }

    fn flex_conv2d(
        x: AdTensor<C>,
        weight: AdTensor<C>,
        bias: AdTensor<C>,
        geometry: Geometry,
    ) -> AdTensor<C> {
        tracked_conv::<C, _>(Conv2dBackward, [x, weight, bias], geometry, conv2d_forward)
    }

    fn flex_conv_transpose2d(
        x: AdTensor<C>,
        weight: AdTensor<C>,
        bias: AdTensor<C>,
        geometry: Geometry,
    ) -> AdTensor<C> {
        tracked_conv::<C, _>(
            ConvTranspose2dBackward,
            [x, weight, bias],
            geometry,
            conv_transpose2d_forward,
        )
    }

    fn flex_conv2d_cat(
        first: AdTensor<C>,
        second: AdTensor<C>,
        weight: AdTensor<C>,
        bias: AdTensor<C>,
        geometry: Geometry,
    ) -> AdTensor<C> {
        let out = conv2d_cat_forward(
            &[first.primitive(), second.primitive()],
            weight.primitive(),
            bias.primitive(),
            geometry,
        );
        let nodes = [first.node(), second.node(), weight.node(), bias.node()];
        record::<C, _, 4>(ConvCatBackward, nodes, out, || ConvCatState {
            parts: [first.into_primitive(), second.into_primitive()],
            w: weight.into_primitive(),
            g: geometry,
        })
    }

    fn flex_max_pool2x2(x: AdTensor<C>) -> AdTensor<C> {
        let out = max_pool2x2_forward(x.primitive());
        record::<C, _, 1>(MaxPoolBackward, [x.node()], out, || x.into_primitive())
    }

    fn flex_conv2d_affine_relu(
        x: AdTensor<C>,
        weight: AdTensor<C>,
        bias: AdTensor<C>,
        scale: AdTensor<C>,
        shift: AdTensor<C>,
        geometry: Geometry,
    ) -> AdTensor<C> {
        // Differentiable as its two parts (seg-model only calls it off autodiff devices).
        let y = Self::flex_conv2d(x, weight, bias, geometry);
        Self::flex_affine_relu(y, scale, shift)
    }

    fn flex_conv2d_cat_affine_relu(
        first: AdTensor<C>,
        second: AdTensor<C>,
        weight: AdTensor<C>,
        bias: AdTensor<C>,
        scale: AdTensor<C>,
        shift: AdTensor<C>,
        geometry: Geometry,
    ) -> AdTensor<C> {
        // Differentiable as its two parts (seg-model only calls it off autodiff devices).
        let y = Self::flex_conv2d_cat(first, second, weight, bias, geometry);
        Self::flex_affine_relu(y, scale, shift)
    }

    fn flex_batch_norm_relu(
        x: AdTensor<C>,
        gamma: AdTensor<C>,
        beta: AdTensor<C>,
        epsilon: f64,
    ) -> NormOutput<Self> {
        let shape = x.primitive().layout().shape().to_vec();
        let c = shape.get(1).copied().unwrap_or(0);
        let out = norm_relu(x.primitive(), gamma.primitive(), beta.primitive(), epsilon);
        let stats = |v: &[f32]| Autodiff::<Flex, C>::from_inner(tensor(v.to_vec(), vec![c]));
        let (mean, variance) = (stats(&out.mean), stats(&out.variance));
        let output = tensor(out.output, shape);
        let nodes = [x.node(), gamma.node(), beta.node()];
        let output = record::<C, _, 3>(NormReluBackward, nodes, output, || NormState {
            x: x.into_primitive(),
            gamma: gamma.into_primitive(),
            beta: beta.into_primitive(),
            mean: out.mean,
            variance: out.variance,
            epsilon,
        });
        NormOutput {
            output,
            mean,
            variance,
        }
    }
}
