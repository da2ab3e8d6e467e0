//! Between burn-flex tensors and the slice kernels: views, shapes, and the forward ops.

use super::*;

/// A contiguous `f32` flex tensor's data and shape.
pub(super) fn view(t: &FlexTensor) -> (FlexTensor, Vec<usize>) {
    let t = t.to_contiguous();
    let shape = t.layout().shape().to_vec();
    (t, shape)
}

pub(super) fn dims4(shape: &[usize]) -> [usize; 4] {
    match shape {
        [a, b, c, d] => [*a, *b, *c, *d],
        _ => panic!("flex kernels: expected a 4-D tensor, got shape {shape:?}"),
    }
}

pub(super) fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

/// The convolution computed by `flex_conv2d`.
pub(super) fn conv2d_forward(
    x: &FlexTensor,
    w: &FlexTensor,
    bias: &FlexTensor,
    g: Geometry,
) -> FlexTensor {
    let ((x, xs), (w, ws), (bias, _)) = (view(x), view(w), view(bias));
    let s = ConvShape::new(dims4(&xs), dims4(&ws), g);
    let y = conv_forward(&s, x.storage(), w.storage(), bias.storage(), false);
    tensor(y, vec![s.n, s.c_out, s.oh, s.ow])
}

/// The fused inference convolution computed by `flex_conv2d_affine_relu`:
/// `ReLU((W·col + bias)·scale + shift)`, with the affine folded into the weight and bias
/// (`W'[o] = W[o]·scale[o]`, `b'[o] = bias[o]·scale[o] + shift[o]`) and the ReLU applied to
/// each band of the output as the gemm produces it.
pub(super) fn conv2d_affine_relu_forward(
    x: &FlexTensor,
    w: &FlexTensor,
    bias: &FlexTensor,
    affine: [&FlexTensor; 2],
    g: Geometry,
) -> FlexTensor {
    conv2d_cat_affine_relu_forward(&[x], w, bias, affine, g)
}

/// [`conv2d_affine_relu_forward`] of the channel-wise concatenation of `parts` (all
/// `[n, c_i, h, w]` with the same `n`, `h`, `w`), read in place.
pub(super) fn conv2d_cat_affine_relu_forward(
    parts: &[&FlexTensor],
    w: &FlexTensor,
    bias: &FlexTensor,
    [scale, shift]: [&FlexTensor; 2],
    g: Geometry,
) -> FlexTensor {
    let views: Vec<(FlexTensor, Vec<usize>)> = parts.iter().map(|p| view(p)).collect();
    let ((w, ws), (bias, _)) = (view(w), view(bias));
    let ((scale, _), (shift, _)) = (view(scale), view(shift));
    let s = cat_shape(&views, &ws, g);
    let (scale, shift): (&[f32], &[f32]) = (scale.storage(), shift.storage());
    assert!(
        scale.len() == s.c_out && shift.len() == s.c_out,
        "fused convolution: {} output channels, {} scales, {} shifts",
        s.c_out,
        scale.len(),
        shift.len()
    );
    let (folded, bias) = fold_affine(w.storage(), bias.storage(), scale, shift);
    let inputs: Vec<&[f32]> = views.iter().map(|(x, _)| x.storage()).collect();
    let y = conv_forward_parts(&s, &inputs, &folded, &bias, true);
    tensor(y, vec![s.n, s.c_out, s.oh, s.ow])
}

/// The convolution computed by `flex_conv2d_cat`: of the channel-wise concatenation of
/// `parts` (all `[n, c_i, h, w]` with the same `n`, `h`, `w`), read in place.
pub(super) fn conv2d_cat_forward(
    parts: &[&FlexTensor],
    w: &FlexTensor,
    bias: &FlexTensor,
    g: Geometry,
) -> FlexTensor {
    let views: Vec<(FlexTensor, Vec<usize>)> = parts.iter().map(|p| view(p)).collect();
    let ((w, ws), (bias, _)) = (view(w), view(bias));
    let s = cat_shape(&views, &ws, g);
    let inputs: Vec<&[f32]> = views.iter().map(|(x, _)| x.storage()).collect();
    let y = conv_forward_parts(&s, &inputs, w.storage(), bias.storage(), false);
    tensor(y, vec![s.n, s.c_out, s.oh, s.ow])
}

/// The convolution of the channel-wise concatenation of `views` (contiguous, with their
/// shapes) with a `ws`-shaped weight; panics when the parts differ outside the channels.
pub(super) fn cat_shape(
    views: &[(FlexTensor, Vec<usize>)],
    ws: &[usize],
    g: Geometry,
) -> ConvShape {
    let [n, _, h, wd] = dims4(&views.first().expect("concatenated convolution: no input").1);
    let mut c_in = 0;
    for (_, xs) in views {
        let [pn, c, ph, pw] = dims4(xs);
        assert!(
            (pn, ph, pw) == (n, h, wd),
            "concatenated convolution: inputs of shapes {:?} differ outside the channels",
            views.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>()
        );
        c_in += c;
    }
    ConvShape::new([n, c_in, h, wd], dims4(ws), g)
}

/// Splits `[n, c, positions]` data along the channels into parts of `channels[i]` channels
/// each (the gradients of a concatenation's inputs), images copied in parallel.
pub(super) fn split_channels(
    x: &[f32],
    n: usize,
    channels: &[usize],
    positions: usize,
) -> Vec<Vec<f32>> {
    let c: usize = channels.iter().sum();
    let mut offset = 0;
    channels
        .iter()
        .map(|&c_part| {
            let (from, len) = (offset * positions, c_part * positions);
            offset += c_part;
            regrouped(n * len, len, |b, dst| {
                let at = b * c * positions + from;
                dst.copy_from_slice(&x[at..at + len]);
            })
        })
        .collect()
}

/// A per-output-channel affine folded into a convolution's weight (`[c_out, ...]`) and bias:
/// `W'[o] = W[o]·scale[o]`, `b'[o] = bias[o]·scale[o] + shift[o]`.
pub(super) fn fold_affine(
    w: &[f32],
    bias: &[f32],
    scale: &[f32],
    shift: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let row = w.len() / scale.len().max(1);
    let folded = regrouped(w.len(), row, |o, out| {
        for (v, &x) in out.iter_mut().zip(&w[o * row..]) {
            *v = x * scale[o];
        }
    });
    let bias = (bias.iter().zip(scale).zip(shift))
        .map(|((&b, &a), &t)| b * a + t)
        .collect();
    (folded, bias)
}

/// The convolution that a transposed convolution of `x` (`[n, c_in, h, w]`) with `w`
/// (`[c_in, c_out, kh, kw]`) is the adjoint of: it maps the transposed convolution's output
/// (`[n, c_out, oh, ow]`) back to `x`'s shape, with `w` as its weight.
pub(super) fn adjoint_shape(xs: &[usize], ws: &[usize], g: Geometry) -> ConvShape {
    let [n, c_in, h, w] = dims4(xs);
    let [wc_in, c_out, kh, kw] = dims4(ws);
    assert_eq!(
        c_in, wc_in,
        "transposed convolution: input has {c_in} channels, weight {wc_in}"
    );
    let out = |size: usize, k: usize, i: usize| {
        ((size - 1) * g.stride[i] + g.dilation[i] * (k - 1) + 1)
            .checked_sub(2 * g.padding[i])
            .expect("transposed convolution: padding exceeds the output")
    };
    let s = ConvShape::new(
        [n, c_out, out(h, kh, 0), out(w, kw, 1)],
        [c_in, c_out, kh, kw],
        g,
    );
    debug_assert_eq!((s.oh, s.ow), (h, w));
    s
}

/// The transposed convolution computed by `flex_conv_transpose2d`.
pub(super) fn conv_transpose2d_forward(
    x: &FlexTensor,
    w: &FlexTensor,
    bias: &FlexTensor,
    g: Geometry,
) -> FlexTensor {
    let ((x, xs), (w, ws), (bias, _)) = (view(x), view(w), view(bias));
    let s = adjoint_shape(&xs, &ws, g);
    let mut y = col2im_input_grad(&s, x.storage(), w.storage());
    let image = s.in_image();
    let bias: &[f32] = bias.storage();
    if image > 0 {
        y.par_chunks_mut(image)
            .for_each(|y_b| bias_relu(y_b, bias, s.h * s.w, 0..s.h * s.w, false));
    }
    tensor(y, vec![s.n, s.c_in, s.h, s.w])
}

/// The pooling computed by `flex_max_pool2x2`.
pub(super) fn max_pool2x2_forward(x: &FlexTensor) -> FlexTensor {
    let (x, xs) = view(x);
    let [n, c, h, w] = dims4(&xs);
    tensor(
        max_pool2x2(x.storage(), [n, c, h, w]),
        vec![n, c, h / 2, w / 2],
    )
}

/// `[n, c, positions]` of a 4-D shape.
pub(super) fn flat3(shape: &[usize]) -> [usize; 3] {
    let [n, c, h, w] = dims4(shape);
    [n, c, h * w]
}

pub(super) fn norm_relu(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f64,
) -> NormForward {
    let ((x, xs), (gamma, _), (beta, _)) = (view(x), view(gamma), view(beta));
    norm_relu_forward(
        x.storage(),
        flat3(&xs),
        gamma.storage(),
        beta.storage(),
        eps,
    )
}

/// `ReLU(x · scale[c] + shift[c])` on `[n, c, h, w]` data, one pass.
pub(super) fn affine_relu(x: &FlexTensor, scale: &FlexTensor, shift: &FlexTensor) -> FlexTensor {
    let ((x, xs), (scale, _), (shift, _)) = (view(x), view(scale), view(shift));
    let [_, c, positions] = flat3(&xs);
    let (scale, shift): (&[f32], &[f32]) = (scale.storage(), shift.storage());
    let mut out = zeroed(x.layout().num_elements());
    if positions > 0 && c > 0 {
        out.par_chunks_mut(positions)
            .zip(x.storage::<f32>().par_chunks(positions))
            .enumerate()
            .for_each(|(i, (o, xs))| {
                let (a, b) = (scale[i % c], shift[i % c]);
                for (o, &v) in o.iter_mut().zip(xs) {
                    *o = (v * a + b).max(0.0);
                }
            });
    }
    tensor(out, xs)
}

impl FlexTrainOps for Flex {
    fn flex_affine_relu(x: FlexTensor, scale: FlexTensor, shift: FlexTensor) -> FlexTensor {
        affine_relu(&x, &scale, &shift)
    }

    fn flex_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        geometry: Geometry,
    ) -> FlexTensor {
        conv2d_forward(&x, &weight, &bias, geometry)
    }

    fn flex_conv_transpose2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        geometry: Geometry,
    ) -> FlexTensor {
        conv_transpose2d_forward(&x, &weight, &bias, geometry)
    }

    fn flex_conv2d_cat(
        first: FlexTensor,
        second: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        geometry: Geometry,
    ) -> FlexTensor {
        conv2d_cat_forward(&[&first, &second], &weight, &bias, geometry)
    }

    fn flex_max_pool2x2(x: FlexTensor) -> FlexTensor {
        max_pool2x2_forward(&x)
    }

    fn flex_conv2d_affine_relu(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        geometry: Geometry,
    ) -> FlexTensor {
        conv2d_affine_relu_forward(&x, &weight, &bias, [&scale, &shift], geometry)
    }

    fn flex_conv2d_cat_affine_relu(
        first: FlexTensor,
        second: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        geometry: Geometry,
    ) -> FlexTensor {
        conv2d_cat_affine_relu_forward(
            &[&first, &second],
            &weight,
            &bias,
            [&scale, &shift],
            geometry,
        )
    }

    fn flex_batch_norm_relu(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> NormOutput<Self> {
        let shape = x.layout().shape().to_vec();
        let c = shape.get(1).copied().unwrap_or(0);
        let out = norm_relu(&x, &gamma, &beta, epsilon);
        NormOutput {
            output: tensor(out.output, shape),
            mean: tensor(out.mean, vec![c]),
            variance: tensor(out.variance, vec![c]),
        }
    }
}
