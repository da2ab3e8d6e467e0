//! The flex kernels against their definitions.

use super::*;

/// Direct convolution by definition, for checking im2col + gemm.
fn naive_conv(s: &ConvShape, x: &[f32], w: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; s.n * s.out_image()];
    for b in 0..s.n {
        for o in 0..s.c_out {
            for oy in 0..s.oh {
                for ox in 0..s.ow {
                    let mut acc = 0.0;
                    for c in 0..s.c_in {
                        for ki in 0..s.kh {
                            for kj in 0..s.kw {
                                let iy = (oy * s.g.stride[0] + ki * s.g.dilation[0]) as isize
                                    - s.g.padding[0] as isize;
                                let ix = (ox * s.g.stride[1] + kj * s.g.dilation[1]) as isize
                                    - s.g.padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                    continue;
                                }
                                let xv =
                                    x[((b * s.c_in + c) * s.h + iy as usize) * s.w + ix as usize];
                                let wv = w[((o * s.c_in + c) * s.kh + ki) * s.kw + kj];
                                acc += xv * wv;
                            }
                        }
                    }
                    y[((b * s.c_out + o) * s.oh + oy) * s.ow + ox] = acc;
                }
            }
        }
    }
    y
}

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (v % 1000) as f32 / 500.0 - 1.0
        })
        .collect()
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// Forward against the definition, and both gradients against the adjoint identity
/// <conv(x, w), dy> = <x, dx(dy)> = <w, dw(x, dy)>, across strides, padding and dilation.
#[test]
fn conv_matches_definition_and_adjoints() {
    let cases = [
        ([2, 3, 9, 7], [4, 3, 3, 3], [1, 1], [1, 1], [1, 1]),
        ([3, 2, 8, 8], [5, 2, 3, 3], [2, 2], [1, 1], [1, 1]),
        ([1, 4, 10, 9], [3, 4, 3, 2], [1, 2], [2, 0], [2, 1]),
        ([2, 5, 6, 6], [2, 5, 1, 1], [1, 1], [0, 0], [1, 1]),
        ([2, 1, 5, 5], [3, 1, 5, 5], [1, 1], [0, 0], [1, 1]),
    ];
    for (xs, ws, stride, padding, dilation) in cases {
        let g = Geometry {
            stride,
            padding,
            dilation,
        };
        let s = ConvShape::new(xs, ws, g);
        let x = values(s.n * s.in_image(), 1);
        let w = values(ws.iter().product(), 2);
        let y = conv_forward(&s, &x, &w, &vec![0.0; s.c_out], false);
        close(
            &y,
            &naive_conv(&s, &x, &w),
            &format!("forward {xs:?} {ws:?}"),
        );
        let dy = values(y.len(), 3);
        let dx = conv_input_grad(&s, &dy, &w);
        close(&dx, &col2im_input_grad(&s, &dy, &w), "input gradient forms");
        let dw = conv_weight_grad(&s, &[&x], &dy);
        // One output row per im2col tile gives the same results as whole images.
        let mut banded = s;
        banded.tile_floats = 1;
        assert!(banded.tiles().count() == s.oh && s.tiles().count() == 1);
        close(
            &conv_forward(&banded, &x, &w, &vec![0.0; s.c_out], false),
            &y,
            "banded forward",
        );
        close(
            &conv_input_grad(&banded, &dy, &w),
            &dx,
            "banded input gradient",
        );
        close(&col2im_input_grad(&banded, &dy, &w), &dx, "banded col2im");
        close(
            &conv_weight_grad(&banded, &[&x], &dy),
            &dw,
            "banded weight gradient",
        );
        let reference = dot(&y, &dy);
        for (got, what) in [(dot(&x, &dx), "input"), (dot(&w, &dw), "weight")] {
            assert!(
                (got - reference).abs() <= 1e-3 * (1.0 + reference.abs()),
                "{what} gradient of {xs:?} {ws:?}: {got} vs {reference}"
            );
        }
    }
}

/// The fused inference kernel (affine folded into the weights, ReLU per band) against
/// convolution, bias, affine and ReLU one after the other, whole and in one-row bands.
#[test]
fn fused_conv_affine_relu_matches_its_parts() {
    let g = Geometry {
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
    };
    let (xs, ws) = ([3, 4, 7, 6], [5, 4, 3, 3]);
    let s = ConvShape::new(xs, ws, g);
    let x = values(s.n * s.in_image(), 11);
    let w = values(ws.iter().product(), 12);
    let (bias, scale, shift) = (values(5, 13), values(5, 14), values(5, 15));
    let conv = conv_forward(&s, &x, &w, &vec![0.0; s.c_out], false);
    let expected: Vec<f32> = conv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / s.positions()) % s.c_out;
            ((v + bias[c]) * scale[c] + shift[c]).max(0.0)
        })
        .collect();
    assert!(expected.contains(&0.0) && expected.iter().any(|&v| v > 0.0));
    let t = |data: &[f32], shape: &[usize]| tensor(data.to_vec(), shape.to_vec());
    let (xt, wt, bt) = (t(&x, &xs), t(&w, &ws), t(&bias, &[5]));
    let (at, st) = (t(&scale, &[5]), t(&shift, &[5]));
    let fused = conv2d_affine_relu_forward(&xt, &wt, &bt, [&at, &st], g);
    close(fused.storage(), &expected, "fused");
    let (folded, folded_bias) = fold_affine(&w, &bias, &scale, &shift);
    let mut banded = s;
    banded.tile_floats = 1;
    close(
        &conv_forward(&banded, &x, &folded, &folded_bias, true),
        &expected,
        "banded fused",
    );
    // The same input as two channel groups read in place (a decoder's skip and up-sampled
    // tensors): 1 + 3 channels of each image, whole and banded.
    let plane = s.h * s.w;
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for image in x.chunks(s.in_image()) {
        first.extend_from_slice(&image[..plane]);
        second.extend_from_slice(&image[plane..]);
    }
    let (ft, st2) = (t(&first, &[3, 1, 7, 6]), t(&second, &[3, 3, 7, 6]));
    let parts = conv2d_cat_affine_relu_forward(&[&ft, &st2], &wt, &bt, [&at, &st], g);
    close(parts.storage(), &expected, "fused, two parts");
    close(
        &conv_forward_parts(&banded, &[&first, &second], &folded, &folded_bias, true),
        &expected,
        "banded fused, two parts",
    );
}

/// The 2x2 max-pool against its definition, odd sizes included.
#[test]
fn max_pool2x2_matches_definition() {
    let dims = [2, 3, 5, 7];
    let x = values(dims.iter().product(), 21);
    let got = max_pool2x2(&x, dims);
    let (h, w) = (dims[2], dims[3]);
    let mut expected = Vec::new();
    for plane in x.chunks(h * w) {
        for oy in 0..h / 2 {
            for ox in 0..w / 2 {
                let at = |y: usize, x: usize| plane[(2 * oy + y) * w + 2 * ox + x];
                let m = [at(0, 1), at(1, 0), at(1, 1)]
                    .into_iter()
                    .fold(at(0, 0), f32::max);
                expected.push(m);
            }
        }
    }
    assert_eq!(got, expected);
}

/// The max-pool's backward against its definition: each window's gradient goes to its
/// maximum, the first in row-major order on ties (as burn's pooling picks it; values here
/// are coarse, and a ReLU before a pool makes ties of zeros common), odd rows and columns 0.
#[test]
fn max_pool2x2_backward_matches_definition() {
    let dims = [2, 3, 5, 7];
    let x: Vec<f32> = values(dims.iter().product(), 22)
        .into_iter()
        .map(|v| (v * 2.0).round().max(0.0))
        .collect();
    let (h, w) = (dims[2], dims[3]);
    let dy = values(dims[0] * dims[1] * (h / 2) * (w / 2), 23);
    let got = max_pool2x2_backward(&x, &dy, dims);
    let mut expected = vec![0.0; x.len()];
    let mut ties = 0;
    let mut g = dy.iter();
    for (p, plane) in x.chunks(h * w).enumerate() {
        for oy in 0..h / 2 {
            for ox in 0..w / 2 {
                let at =
                    [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(y, x)| (2 * oy + y) * w + 2 * ox + x);
                let max = at.iter().map(|&i| plane[i]).fold(f32::MIN, f32::max);
                let first = at
                    .into_iter()
                    .find(|&i| plane[i] == max)
                    .expect("a maximum");
                ties += usize::from(at.iter().filter(|&&i| plane[i] == max).count() > 1);
                expected[p * h * w + first] = *g.next().expect("one gradient per window");
            }
        }
    }
    assert!(ties > 0, "the data should have tied windows");
    assert_eq!(got, expected);
}

/// A convolution of two inputs read in place (the decoder's skip and up-sampled tensors in
/// training): its weight gradient equals that of the concatenated input, and the split input
/// gradient the concatenation's input gradient cut along the channels.
#[test]
fn conv_of_two_parts_gradients_match_the_concatenation() {
    let g = Geometry {
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
    };
    let s = ConvShape::new([2, 5, 6, 18], [4, 5, 3, 3], g);
    let x = values(s.n * s.in_image(), 31);
    let dy = values(s.n * s.out_image(), 32);
    let plane = s.h * s.w;
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for image in x.chunks(s.in_image()) {
        first.extend_from_slice(&image[..2 * plane]);
        second.extend_from_slice(&image[2 * plane..]);
    }
    let whole = conv_weight_grad(&s, &[&x], &dy);
    close(
        &conv_weight_grad(&s, &[&first, &second], &dy),
        &whole,
        "weight gradient, two parts",
    );
    let mut banded = s;
    banded.tile_floats = 1;
    close(
        &conv_weight_grad(&banded, &[&first, &second], &dy),
        &whole,
        "banded weight gradient, two parts",
    );
    let split = split_channels(&x, s.n, &[2, 3], plane);
    assert_eq!(split, vec![first, second]);
}

/// Batch norm + ReLU gradients against central finite differences of sum(out · dy).
#[test]
fn norm_relu_gradient_matches_finite_differences() {
    let dims = [2, 3, 5];
    let x = values(30, 7);
    let gamma = vec![1.5, -0.7, 0.9];
    let beta = vec![0.1, 0.2, -0.3];
    let dy = values(30, 9);
    let eps = 1e-5;
    let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| {
        dot(&norm_relu_forward(x, dims, gamma, beta, eps).output, &dy)
    };
    let f = norm_relu_forward(&x, dims, &gamma, &beta, eps);
    let (dx, dgamma, dbeta) =
        norm_relu_backward(&x, &dy, dims, &gamma, &beta, &f.mean, &f.variance, eps);
    let h = 1e-2f32;
    let numeric = |v: &[f32], i: usize, eval: &dyn Fn(&[f32]) -> f64| {
        let (mut up, mut down) = (v.to_vec(), v.to_vec());
        up[i] += h;
        down[i] -= h;
        (eval(&up) - eval(&down)) / (2.0 * f64::from(h))
    };
    for (i, &d) in dx.iter().enumerate() {
        let n = numeric(&x, i, &|v| loss(v, &gamma, &beta));
        assert!((n - f64::from(d)).abs() < 2e-2, "dx[{i}]: {d} vs {n}");
    }
    for i in 0..3 {
        let n = numeric(&gamma, i, &|v| loss(&x, v, &beta));
        assert!((n - f64::from(dgamma[i])).abs() < 2e-2, "dgamma[{i}]");
        let n = numeric(&beta, i, &|v| loss(&x, &gamma, v));
        assert!((n - f64::from(dbeta[i])).abs() < 2e-2, "dbeta[{i}]");
    }
}

/// Batch statistics from one pass against two-pass f64 sums: channels far from zero (mean
/// 1000, spread 1: a plain sum of squares would cancel), planes that cross the 1024-value
/// blocks and leave a remainder of the 16 lanes, and a constant channel (variance 0).
#[test]
fn channel_stats_match_two_pass_definition() {
    let (n, c, positions) = (3, 3, 1500);
    let noise = values(n * c * positions, 31);
    let x: Vec<f32> = noise
        .iter()
        .enumerate()
        .map(|(i, v)| match (i / positions) % c {
            0 => 1000.0 + v,
            1 => 0.25 * v - 3.0,
            _ => 7.0,
        })
        .collect();
    let (mean, variance) = channel_stats(&x, n, c, positions);
    for ch in 0..c {
        let plane = |b: usize| &x[(b * c + ch) * positions..(b * c + ch + 1) * positions];
        let all: Vec<f64> = (0..n)
            .flat_map(|b| plane(b).iter().map(|&v| f64::from(v)))
            .collect();
        let m = all.iter().sum::<f64>() / all.len() as f64;
        let var = all.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / all.len() as f64;
        assert!(
            (f64::from(mean[ch]) - m).abs() <= 1e-6 * (1.0 + m.abs()),
            "mean {ch}"
        );
        assert!(
            (f64::from(variance[ch]) - var).abs() <= 1e-4 * var + 1e-9,
            "variance {ch}: {} vs {var}",
            variance[ch]
        );
    }
}

/// pulp's instruction sets available here, scalar included.
fn instruction_sets() -> Vec<pulp::Arch> {
    let mut sets = vec![pulp::Arch::Scalar];
    #[cfg(target_arch = "x86_64")]
    {
        sets.extend(pulp::x86::V3::try_new().map(pulp::Arch::V3));
        sets.extend(pulp::x86::V4::try_new().map(pulp::Arch::V4));
    }
    sets
}

/// A stride-1, undilated geometry with `padding`.
fn stride1(padding: [usize; 2]) -> Geometry {
    Geometry {
        stride: [1, 1],
        padding,
        dilation: [1, 1],
    }
}

/// A 3x3 `c -> c` layer of the U-Net on a batch of 8 `size`-square inputs.
fn unet_layer(c: usize, size: usize) -> ConvShape {
    ConvShape::new([8, c, size, size], [c, c, 3, 3], stride1([1, 1]))
}

/// The direct convolution against the definition: 3x3 and 1x1 kernels, padding 0-1, widths
/// that leave partial SIMD vectors and tiles, bias and ReLU, one image (parallel over channel
/// tiles) and several (parallel over images), and an input given as two concatenated parts.
#[test]
fn direct_conv_matches_definition() {
    // The U-Net's levels down to 16-wide rows take this path; 8-wide rows stay on im2col.
    let unet = |c: usize, size: usize| direct::applies(&unet_layer(c, size));
    assert!(unet(16, 128) && unet(32, 64) && unet(64, 32) && unet(128, 16));
    assert!(!unet(256, 8));
    let cases = [
        ([3, 5, 9, 37], [8, 5, 3, 3], [1, 1]),
        ([1, 6, 4, 70], [12, 6, 3, 3], [1, 1]),
        ([4, 3, 6, 33], [4, 3, 3, 3], [0, 0]),
        ([2, 7, 5, 40], [16, 7, 1, 1], [0, 0]),
        ([2, 4, 7, 64], [8, 4, 3, 3], [1, 1]),
        ([1, 2, 3, 5], [4, 2, 3, 3], [1, 1]),
        ([3, 6, 8, 19], [4, 6, 3, 1], [1, 0]),
    ];
    for (xs, ws, padding) in cases {
        let s = ConvShape::new(xs, ws, stride1(padding));
        let x = values(s.n * s.in_image(), 5);
        let w = values(ws.iter().product(), 6);
        let bias = values(s.c_out, 7);
        let mut expected = naive_conv(&s, &x, &w);
        for (i, v) in expected.iter_mut().enumerate() {
            *v += bias[(i / s.positions()) % s.c_out];
        }
        let what = format!("direct {xs:?} {ws:?} {padding:?}");
        close(&direct::conv(&s, &[&x], &w, &bias, false), &expected, &what);
        // Every instruction set this machine has: AVX-512 (16 lanes, 4-vector tiles), AVX2
        // (8 lanes, 2-vector tiles) and scalar.
        for arch in instruction_sets() {
            close(
                &direct::conv_on(arch, &s, &[&x], &w, &bias, false),
                &expected,
                &format!("{what} on {arch:?}"),
            );
        }
        let relu: Vec<f32> = expected.iter().map(|v| v.max(0.0)).collect();
        close(&direct::conv(&s, &[&x], &w, &bias, true), &relu, &what);
        // The same input as two parts of 1 and c_in - 1 channels.
        let plane = s.h * s.w;
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for image in x.chunks_exact(s.in_image()) {
            first.extend_from_slice(&image[..plane]);
            second.extend_from_slice(&image[plane..]);
        }
        close(
            &direct::conv(&s, &[&first, &second], &w, &bias, false),
            &expected,
            &format!("{what} in two parts"),
        );
    }
}

/// The direct weight gradient against im2col + gemm: 3x3 and 1x1 kernels, padding 0-1,
/// channel counts that leave a last group of (channel, kernel row) pairs short, rows of one
/// and several vectors, bands of several rows and a last short band, every instruction set
/// here, and an input given as two concatenated parts.
#[test]
fn direct_weight_grad_matches_im2col() {
    let unet = |c: usize, size: usize| direct_grad::weight_grad_applies(&unet_layer(c, size));
    assert!(unet(16, 128) && unet(32, 64) && unet(16, 256));
    assert!(!unet(64, 32) && !unet(128, 16));
    let cases = [
        ([2, 3, 5, 64], [16, 3, 3, 3], [1, 1]),
        ([3, 5, 70, 16], [8, 5, 3, 3], [1, 1]),
        ([2, 7, 5, 34], [4, 7, 3, 3], [0, 0]),
        ([2, 11, 4, 48], [12, 11, 1, 1], [0, 0]),
        ([1, 2, 9, 16], [4, 2, 3, 1], [1, 0]),
    ];
    for (xs, ws, padding) in cases {
        let s = ConvShape::new(xs, ws, stride1(padding));
        let x = values(s.n * s.in_image(), 21);
        let dy = values(s.n * s.out_image(), 22);
        let expected = im2col_weight_grad(&s, &[&x], &dy);
        let what = format!("weight gradient {xs:?} {ws:?} padding {padding:?}");
        for arch in instruction_sets() {
            close(
                &direct_grad::weight_grad_on(arch, &s, &[&x], &dy),
                &expected,
                &format!("{what} on {arch:?}"),
            );
        }
        let parts = split_channels(&x, s.n, &[2, s.c_in - 2], s.h * s.w);
        close(
            &direct_grad::weight_grad(&s, &[&parts[0], &parts[1]], &dy),
            &expected,
            &format!("{what} in two parts"),
        );
    }
}
