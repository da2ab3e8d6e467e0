//! Convolutions on plain slices: the forward product with its bias + ReLU epilogue, the input
//! gradient (a flipped-kernel convolution or col2im) and the weight and bias gradients.

use super::*;

/// `y[b] = W * x[b] + bias`: the forward convolution; with `relu`, `max(0, ·)` of it, applied
/// while the output is still in cache. The direct form where it applies (`direct.rs`), else
/// im2col + gemm.
pub(super) fn conv_forward(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    relu: bool,
) -> Vec<f32> {
    conv_forward_parts(s, &[x], w, bias, relu)
}

/// [`conv_forward`] of the channel-wise concatenation of `parts` (each `[n, c_i, h, w]`, the
/// `c_i` summing to `s.c_in`) without building it: each part fills its own channels of the
/// padded copy or its own rows of the im2col band (a U-Net decoder's `conv(cat([skip, up]))`
/// reads skip and up in place).
pub(super) fn conv_forward_parts(
    s: &ConvShape,
    parts: &[&[f32]],
    w: &[f32],
    bias: &[f32],
    relu: bool,
) -> Vec<f32> {
    if direct::applies(s) {
        return direct::conv(s, parts, w, bias, relu);
    }
    im2col_forward_parts(s, parts, w, bias, relu)
}

/// [`conv_forward_parts`] as im2col (of each band of output rows) + gemm.
fn im2col_forward_parts(
    s: &ConvShape,
    parts: &[&[f32]],
    w: &[f32],
    bias: &[f32],
    relu: bool,
) -> Vec<f32> {
    let part_shapes = part_shapes(s, parts);
    let (col_len, positions) = (s.col_len(), s.positions());
    let parallel = !per_image_parallel(s.n);
    let mut y = zeroed(s.n * s.out_image());
    for_images(&mut y, s.out_image(), s.n, s.tile_len(), |b, y_b, col| {
        for rows in s.tiles() {
            let band = rows.start * s.ow..rows.end * s.ow;
            im2col_parts(&part_shapes, parts, b, rows, col);
            matmul(
                &mut y_b[band.start..],
                positions,
                Mat::rows(w, s.c_out, col_len),
                Mat::rows(col, col_len, band.len()),
                false,
                parallel,
            );
            bias_relu(y_b, bias, positions, band, relu);
        }
    });
    y
}

/// The shape of each part of a channel-wise concatenated input (`[n, c_i, h, w]` each, the
/// `c_i` summing to `s.c_in`).
fn part_shapes(s: &ConvShape, parts: &[&[f32]]) -> Vec<ConvShape> {
    let plane = s.h * s.w;
    let shapes: Vec<ConvShape> = parts
        .iter()
        .map(|p| s.with_c_in(p.len() / (s.n * plane).max(1)))
        .collect();
    assert_eq!(
        shapes.iter().map(|p| p.c_in).sum::<usize>(),
        s.c_in,
        "convolution: the input parts' channels do not add up to the weight's"
    );
    shapes
}

/// im2col of image `b` of the concatenation of `parts` for the output rows `rows`: each part
/// fills its own rows of `col`.
fn im2col_parts(
    shapes: &[ConvShape],
    parts: &[&[f32]],
    b: usize,
    rows: std::ops::Range<usize>,
    col: &mut [f32],
) {
    let mut at = 0;
    for (part, ps) in parts.iter().zip(shapes) {
        let image = ps.in_image();
        ps.im2col(
            &part[b * image..(b + 1) * image],
            rows.clone(),
            &mut col[at..],
        );
        at += ps.col_len() * rows.len() * ps.ow;
    }
}

/// Adds `bias[c]` to the positions `band` of every channel `c` of one image, then (with
/// `relu`) takes `max(0, ·)`; nothing to do for a zero bias without ReLU.
pub(super) fn bias_relu(
    y_b: &mut [f32],
    bias: &[f32],
    positions: usize,
    band: std::ops::Range<usize>,
    relu: bool,
) {
    if !relu && bias.iter().all(|&b| b == 0.0) {
        return;
    }
    for (plane, &b) in y_b.chunks_exact_mut(positions).zip(bias) {
        let out = &mut plane[band.clone()];
        if relu {
            out.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
        } else {
            out.iter_mut().for_each(|v| *v += b);
        }
    }
}

/// The input gradient of the convolution. With stride 1 and padding at most the kernel's
/// span, it is itself a convolution of `dy` with the flipped, transposed kernel
/// ([`flipped_conv`]): one gemm with `c_out·kh·kw` products per element instead of `c_out`
/// (the col2im form's gemm writes a `[c_in·kh·kw, positions]` matrix with as few as 16
/// products per element at the U-Net's top level). Otherwise [`col2im_input_grad`].
pub(super) fn conv_input_grad(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    match flipped_conv(s, w) {
        Some((shape, flipped)) => {
            conv_forward(&shape, dy, &flipped, &vec![0.0; shape.c_out], false)
        }
        None => col2im_input_grad(s, dy, w),
    }
}

/// For a stride-1 convolution whose padding does not exceed its kernel's span: the
/// convolution from its output back to its input shape whose forward is its input gradient,
/// and that convolution's kernel `W'[c, o, i, j] = W[o, c, kh-1-i, kw-1-j]`.
pub(super) fn flipped_conv(s: &ConvShape, w: &[f32]) -> Option<(ConvShape, Vec<f32>)> {
    let g = s.g;
    let span = [g.dilation[0] * (s.kh - 1), g.dilation[1] * (s.kw - 1)];
    if g.stride != [1, 1] || g.padding[0] > span[0] || g.padding[1] > span[1] {
        return None;
    }
    let geometry = Geometry {
        stride: [1, 1],
        padding: [span[0] - g.padding[0], span[1] - g.padding[1]],
        dilation: g.dilation,
    };
    let shape = ConvShape::new(
        [s.n, s.c_out, s.oh, s.ow],
        [s.c_in, s.c_out, s.kh, s.kw],
        geometry,
    );
    if (shape.oh, shape.ow) != (s.h, s.w) {
        return None;
    }
    // flipped[c][o][i][j] = w[o][c][kh-1-i][kw-1-j]
    let (taps, c_in, c_out, kh, kw) = (s.kh * s.kw, s.c_in, s.c_out, s.kh, s.kw);
    // One row per input channel: rows of single kernels (9 floats) cost a closure call and a
    // division each, 1.4 % of a 128 px train step.
    let flipped = regrouped(w.len(), c_out * taps, |c, row| {
        for (o, dst) in row.chunks_exact_mut(taps).enumerate() {
            let src = &w[(o * c_in + c) * taps..(o * c_in + c + 1) * taps];
            for i in 0..kh {
                for j in 0..kw {
                    dst[i * kw + j] = src[(kh - 1 - i) * kw + (kw - 1 - j)];
                }
            }
        }
    });
    Some((shape, flipped))
}

/// `dx[b] = col2im(Wᵀ·dy[b])`: the input gradient of any convolution, which is also the
/// forward of the transposed convolution with the same weight.
pub(super) fn col2im_input_grad(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let (col_len, positions) = (s.col_len(), s.positions());
    let parallel = !per_image_parallel(s.n);
    let mut dx = zeroed(s.n * s.in_image());
    for_images(&mut dx, s.in_image(), s.n, s.tile_len(), |b, dx_b, col| {
        let dy_b = &dy[b * s.out_image()..(b + 1) * s.out_image()];
        for rows in s.tiles() {
            let band = rows.start * s.ow..rows.end * s.ow;
            matmul(
                col,
                band.len(),
                Mat::rows(w, s.c_out, col_len).t(),
                Mat::band(dy_b, s.c_out, positions, band),
                false,
                parallel,
            );
            s.col2im(col, rows, dx_b);
        }
    });
    dx
}

/// `dW = Σ_b dy[b]·im2col(x[b])ᵀ`: the weight gradient of the convolution of the
/// channel-wise concatenation of the parts `x` (one part: a plain input), straight from the
/// padded input where [`direct_grad::weight_grad_applies`] (stride 1, rows 64+ wide), else
/// [`im2col_weight_grad`].
pub(super) fn conv_weight_grad(s: &ConvShape, x: &[&[f32]], dy: &[f32]) -> Vec<f32> {
    if direct_grad::weight_grad_applies(s) {
        return direct_grad::weight_grad(s, x, dy);
    }
    im2col_weight_grad(s, x, dy)
}

/// [`conv_weight_grad`] by im2col + gemm, for any geometry. The gemm computes
/// `dWᵀ = Σ_b im2col(x[b])·dy[b]ᵀ` (`[col_len, c_out]`): with few output channels and many
/// positions, that orientation runs 1.5-2.6x faster in the gemm crate (measured at the U-Net's
/// 16- and 32-channel levels), and the transpose at the end is tiny.
pub(super) fn im2col_weight_grad(s: &ConvShape, x: &[&[f32]], dy: &[f32]) -> Vec<f32> {
    let (col_len, positions) = (s.col_len(), s.positions());
    let shapes = part_shapes(s, x);
    let one = |b: usize, acc: &mut [f32], col: &mut [f32], parallel: bool| {
        let dy_b = &dy[b * s.out_image()..(b + 1) * s.out_image()];
        for rows in s.tiles() {
            let band = rows.start * s.ow..rows.end * s.ow;
            im2col_parts(&shapes, x, b, rows, col);
            matmul(
                acc,
                s.c_out,
                Mat::rows(col, col_len, band.len()),
                Mat::band(dy_b, s.c_out, positions, band).t(),
                true,
                parallel,
            );
        }
    };
    let transposed = if per_image_parallel(s.n) {
        sum_over_images(s.n, col_len * s.c_out, |b, acc| {
            with_scratch(s.tile_len(), |col| one(b, acc, col, false));
        })
    } else {
        let mut acc = vec![0.0f32; col_len * s.c_out];
        let mut col = vec![0.0f32; s.tile_len()];
        for b in 0..s.n {
            one(b, &mut acc, &mut col, true);
        }
        acc
    };
    let c_out = s.c_out;
    regrouped(c_out * col_len, col_len, |o, row| {
        for (r, v) in row.iter_mut().enumerate() {
            *v = transposed[r * c_out + o];
        }
    })
}

/// Per-channel sums of `[n, c, positions]` data (a bias gradient).
pub(super) fn channel_sums(dy: &[f32], n: usize, c: usize, positions: usize) -> Vec<f32> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            (0..n)
                .map(|b| {
                    let start = (b * c + ch) * positions;
                    dy[start..start + positions].iter().sum::<f32>()
                })
                .sum()
        })
        .collect()
}
