//! The libtorch sub-graphs of the blocks (convolution, transposed convolution, batch norm +
//! ReLU, max-pool, a conv block, a decoder step), and the blocks on plain libtorch (no autodiff).

// burn 0.22 marks burn-tch deprecated (it points CPU users to flex); the user asked for it.
#![allow(deprecated)]

use super::*;

pub(super) fn conv(
    x: &tch::Tensor,
    w: &tch::Tensor,
    b: Option<&tch::Tensor>,
    g: ConvGeometry,
) -> tch::Tensor {
    x.conv2d(w, b, g.stride, g.padding, g.dilation, g.groups)
}

pub(super) fn conv_t(
    x: &tch::Tensor,
    w: &tch::Tensor,
    b: &tch::Tensor,
    g: ConvGeometry,
) -> tch::Tensor {
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
pub(super) fn norm_relu(
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

/// 2x2 max-pool with stride 2.
pub(super) fn max_pool2(x: &tch::Tensor) -> tch::Tensor {
    x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
}

/// The conv block of [`NativeTrainOps::native_conv_block`] on libtorch tensors: `x` and
/// the six [`BlockParams`] in order.
pub(super) fn block(
    x: &tch::Tensor,
    params: &[tch::Tensor],
    geometry: [ConvGeometry; 2],
    epsilon: [f64; 2],
    pool: bool,
) -> (tch::Tensor, [tch::Tensor; 4]) {
    let [w1, g1, b1, w2, g2, b2] = params else {
        unreachable!("a conv block has six parameters")
    };
    let pooled;
    let x = if pool {
        pooled = max_pool2(x);
        &pooled
    } else {
        x
    };
    let (y, m1, v1) = norm_relu(&conv(x, w1, None, geometry[0]), g1, b1, epsilon[0]);
    let (y, m2, v2) = norm_relu(&conv(&y, w2, None, geometry[1]), g2, b2, epsilon[1]);
    (y, [m1, v1, m2, v2])
}

/// The decoder step of [`NativeTrainOps::native_up_block`] on libtorch tensors: x, skip,
/// up-weight, up-bias, then the six [`BlockParams`].
pub(super) fn up_block_graph(
    t: &[tch::Tensor; 10],
    geometry: [ConvGeometry; 3],
    epsilon: [f64; 2],
) -> (tch::Tensor, [tch::Tensor; 4]) {
    let [x, skip, wt, bt, params @ ..] = t;
    let up = conv_t(x, wt, bt, geometry[0]);
    let joined = tch::Tensor::cat(&[skip, &up], 1);
    block(&joined, params, [geometry[1], geometry[2]], epsilon, false)
}

/// `[a, b..]` as one array.
pub(super) fn prepend<T, const N: usize, const M: usize>(head: [T; N], tail: [T; 6]) -> [T; M] {
    let mut all = head.into_iter().chain(tail);
    std::array::from_fn(|_| all.next().expect("M = N + 6"))
}

impl NativeTrainOps for LibTorch {
    fn native_max_pool2(x: TchTensor) -> TchTensor {
        TchTensor::new(max_pool2(&x.tensor))
    }

    fn native_up_block(
        x: TchTensor,
        skip: TchTensor,
        up_weight: TchTensor,
        up_bias: TchTensor,
        params: BlockParams<Self>,
        geometry: [ConvGeometry; 3],
        epsilon: [f64; 2],
    ) -> BlockOutput<Self> {
        let t: [TchTensor; 10] = prepend([x, skip, up_weight, up_bias], params.into_array());
        let (y, stats) = up_block_graph(&t.map(|t| t.tensor), geometry, epsilon);
        BlockOutput::new(TchTensor::new(y), stats.map(TchTensor::new))
    }

    fn native_conv_block(
        x: TchTensor,
        params: BlockParams<Self>,
        geometry: [ConvGeometry; 2],
        epsilon: [f64; 2],
        pool: bool,
    ) -> BlockOutput<Self> {
        let params = params.into_array().map(|t| t.tensor);
        let (y, stats) = block(&x.tensor, &params, geometry, epsilon, pool);
        BlockOutput::new(TchTensor::new(y), stats.map(TchTensor::new))
    }

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
}
