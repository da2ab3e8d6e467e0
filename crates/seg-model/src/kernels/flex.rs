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
//!
//! The ops are burn [backend extensions](burn::backend::backend_extension) on `Flex` (used for
//! inference) and `Autodiff<Flex>` (training). They cover `f32` convolutions with one group;
//! anything else runs on burn's modules. `tests/native_kernels.rs` checks that logits, loss,
//! every gradient and the running statistics agree with burn's generic path.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
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

/// Whether `x` lives on a flex device (training or inference) and is `f32`.
pub(super) fn applies(x: &Tensor<4>) -> bool {
    super::native_enabled()
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
    if x.device().is_autodiff() || norm.is_some_and(|n| n.training.is_enabled()) {
        return None;
    }
    let geometry = geometry(conv)?;
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
    Some(Tensor::from_dispatch(
        <Dispatch as FlexTrainOps>::flex_conv2d_affine_relu(
            x.clone().into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            scale.into_dispatch(),
            shift.into_dispatch(),
            geometry,
        ),
    ))
}

/// `pool.forward(x)`; off autodiff devices a 2x2, stride-2 max-pool (the U-Net's) runs on a
/// kernel that vectorises (burn-flex's generic pooling is scalar: 12 % of an inference pass).
pub(super) fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let plain_2x2 = pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && matches!(
            pool.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
        );
    if !plain_2x2 || x.device().is_autodiff() {
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

// ---------------------------------------------------------------------------------------------
// Kernels on plain slices.

/// A convolution's sizes: input `[n, c_in, h, w]`, weight `[c_out, c_in, kh, kw]`, output
/// `[n, c_out, oh, ow]`.
#[derive(Debug, Clone, Copy)]
struct ConvShape {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    g: Geometry,
    /// Most floats of one im2col tile (a band of output rows): bounds each thread's buffer.
    tile_floats: usize,
}

/// [`ConvShape::tile_floats`]: 1 MiB per thread whatever the image size, so that an im2col band
/// and its output band stay in a core's L2 (2 MiB here) between im2col and gemm (4 MiB bands
/// measured ~20 % slower at inference).
const TILE_FLOATS: usize = 1 << 18;

impl ConvShape {
    /// The convolution of an `x`-shaped input with a `weight`-shaped kernel.
    fn new(x: [usize; 4], weight: [usize; 4], g: Geometry) -> Self {
        let [n, c_in, h, w] = x;
        let [c_out, wc_in, kh, kw] = weight;
        assert_eq!(
            c_in, wc_in,
            "convolution: input has {c_in} channels, weight {wc_in}"
        );
        let out = |size: usize, k: usize, i: usize| {
            let span = g.dilation[i] * (k - 1) + 1;
            let padded = size + 2 * g.padding[i];
            assert!(
                padded >= span,
                "convolution: kernel span {span} exceeds padded input {padded}"
            );
            (padded - span) / g.stride[i] + 1
        };
        Self {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            oh: out(h, kh, 0),
            ow: out(w, kw, 1),
            g,
            tile_floats: TILE_FLOATS,
        }
    }

    /// Rows of an image's im2col matrix.
    fn col_len(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Output positions per image (columns of the im2col matrix).
    fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// Bands of output rows whose im2col fits [`ConvShape::tile_floats`] (at least one row).
    fn tiles(&self) -> impl Iterator<Item = std::ops::Range<usize>> + use<> {
        let per_row = (self.col_len() * self.ow).max(1);
        let rows = (self.tile_floats / per_row).clamp(1, self.oh.max(1));
        let oh = self.oh;
        (0..oh).step_by(rows).map(move |r| r..(r + rows).min(oh))
    }

    /// Floats of the largest im2col tile.
    fn tile_len(&self) -> usize {
        self.tiles().map(|r| r.len()).max().unwrap_or(0) * self.ow * self.col_len()
    }

    fn in_image(&self) -> usize {
        self.c_in * self.h * self.w
    }

    fn out_image(&self) -> usize {
        self.c_out * self.positions()
    }

    /// For kernel offset `k` along axis `i`: the input index of output index 0 (may be
    /// negative) and the output range whose input index lies inside `0..size`.
    fn valid(&self, k: usize, i: usize, size: usize, out: usize) -> (isize, usize, usize) {
        let g = self.g;
        let offset = (k * g.dilation[i]) as isize - g.padding[i] as isize;
        let stride = g.stride[i] as isize;
        // first o with o*stride + offset >= 0; last o with o*stride + offset < size
        let lo = if offset >= 0 {
            0
        } else {
            ((-offset + stride - 1) / stride) as usize
        };
        let hi = if (size as isize) <= offset {
            0
        } else {
            (((size as isize - offset - 1) / stride) as usize + 1).min(out)
        };
        (offset, lo.min(hi), hi)
    }

    /// Fills `col` (`[col_len, rows.len()·ow]`) with the patches of one image `x`
    /// (`[c_in, h, w]`) for the output rows `rows`.
    fn im2col(&self, x: &[f32], rows: std::ops::Range<usize>, col: &mut [f32]) {
        let (oh, ow) = (self.oh, self.ow);
        let (sh, sw) = (self.g.stride[0], self.g.stride[1]);
        let (r0, width) = (rows.start, rows.len() * ow);
        let mut rows = col[..self.col_len() * width].chunks_exact_mut(width.max(1));
        for c in 0..self.c_in {
            let plane = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ki in 0..self.kh {
                let (oy_off, y_lo, y_hi) = self.valid(ki, 0, self.h, oh);
                for kj in 0..self.kw {
                    let (ox_off, x_lo, x_hi) = self.valid(kj, 1, self.w, ow);
                    let Some(row) = rows.next() else { return };
                    for (i, out) in row.chunks_exact_mut(ow).enumerate() {
                        let oy = r0 + i;
                        if oy < y_lo || oy >= y_hi {
                            out.fill(0.0);
                            continue;
                        }
                        let iy = (oy * sh) as isize + oy_off;
                        let src = &plane[iy as usize * self.w..(iy as usize + 1) * self.w];
                        out[..x_lo].fill(0.0);
                        out[x_hi..].fill(0.0);
                        if x_lo < x_hi {
                            let first = (x_lo * sw) as isize + ox_off;
                            if sw == 1 {
                                let first = first as usize;
                                out[x_lo..x_hi].copy_from_slice(&src[first..first + x_hi - x_lo]);
                            } else {
                                for (o, v) in out[x_lo..x_hi].iter_mut().enumerate() {
                                    *v = src[first as usize + o * sw];
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds `col` (`[col_len, rows.len()·ow]`) back onto one image `dx` (`[c_in, h, w]`):
    /// the adjoint of [`ConvShape::im2col`] for the output rows `rows`.
    fn col2im(&self, col: &[f32], rows: std::ops::Range<usize>, dx: &mut [f32]) {
        let (oh, ow) = (self.oh, self.ow);
        let (sh, sw) = (self.g.stride[0], self.g.stride[1]);
        let (r0, r1, width) = (rows.start, rows.end, rows.len() * ow);
        let mut rows = col[..self.col_len() * width].chunks_exact(width.max(1));
        for c in 0..self.c_in {
            let plane = &mut dx[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ki in 0..self.kh {
                let (oy_off, y_lo, y_hi) = self.valid(ki, 0, self.h, oh);
                for kj in 0..self.kw {
                    let (ox_off, x_lo, x_hi) = self.valid(kj, 1, self.w, ow);
                    let Some(row) = rows.next() else { return };
                    if x_lo >= x_hi {
                        continue;
                    }
                    for oy in y_lo.max(r0)..y_hi.min(r1) {
                        let iy = ((oy * sh) as isize + oy_off) as usize;
                        let dst = &mut plane[iy * self.w..(iy + 1) * self.w];
                        let at = (oy - r0) * ow;
                        let src = &row[at + x_lo..at + x_hi];
                        let first = ((x_lo * sw) as isize + ox_off) as usize;
                        if sw == 1 {
                            for (d, s) in dst[first..first + src.len()].iter_mut().zip(src) {
                                *d += s;
                            }
                        } else {
                            for (o, s) in src.iter().enumerate() {
                                dst[first + o * sw] += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A read-only matrix view: element `(r, c)` at `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows x cols` matrix.
    fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// Columns `cols` of a row-major matrix with `stride` floats per row.
    fn band(data: &'a [f32], rows: usize, stride: usize, cols: std::ops::Range<usize>) -> Self {
        Self {
            data: &data[cols.start..],
            rows,
            cols: cols.len(),
            rs: stride,
            cs: 1,
        }
    }

    /// This matrix transposed (no copy).
    fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst = a·b` (or `dst += a·b` with `accumulate`), `dst` row-major `a.rows x b.cols` with
/// `dst_rs` floats per row.
///
/// The workspace's one `unsafe` block: the gemm crate's API takes raw pointers and strides.
#[allow(unsafe_code)]
fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k
            && dst_rs >= n
            && (m == 0 || n == 0 || dst.len() >= (m - 1) * dst_rs + n)
            && a.fits()
            && b.fits(),
        "matmul: shapes do not agree"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_rs).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if parallel && m * n * k >= 64 * 64 * 64 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `fits` checked that every element the strides reach lies inside `a.data` and
    // `b.data`, and the length check that `dst` holds `m` rows of `dst_rs` floats (the last
    // one `n`); the slices do not alias (`dst` is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Whether to run images in parallel (each product on one thread) rather than one image at a
/// time with parallel products.
fn per_image_parallel(n: usize) -> bool {
    n >= rayon::current_num_threads()
}

thread_local! {
    /// Each thread's im2col buffer, kept between calls: a fresh multi-megabyte allocation per
    /// image cost a page fault per 4 KiB touched.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer of `len` floats (arbitrary contents).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
            f(&mut buffer[..len])
        }
        // Re-entered on this thread (a nested parallel region): a buffer of its own.
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// Runs `f(image index, image chunk of out, scratch)` for every image, in parallel when
/// [`per_image_parallel`]; `scratch` (`scratch_len` floats, the running thread's) has arbitrary
/// contents on entry.
fn for_images(
    out: &mut [f32],
    chunk: usize,
    n: usize,
    scratch_len: usize,
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) {
    if chunk == 0 {
        return;
    }
    let run = |(b, o): (usize, &mut [f32])| with_scratch(scratch_len, |s| f(b, o, s));
    if per_image_parallel(n) {
        out.par_chunks_mut(chunk).enumerate().for_each(run);
    } else {
        out.chunks_mut(chunk).enumerate().for_each(run);
    }
}

/// `y[b] = W·im2col(x[b]) + bias`: the forward convolution; with `relu`, `max(0, ·)` of it,
/// applied band by band while the band is still in cache.
fn conv_forward(s: &ConvShape, x: &[f32], w: &[f32], bias: &[f32], relu: bool) -> Vec<f32> {
    let (col_len, positions) = (s.col_len(), s.positions());
    let parallel = !per_image_parallel(s.n);
    let mut y = vec![0.0; s.n * s.out_image()];
    for_images(&mut y, s.out_image(), s.n, s.tile_len(), |b, y_b, col| {
        let x_b = &x[b * s.in_image()..(b + 1) * s.in_image()];
        for rows in s.tiles() {
            let band = rows.start * s.ow..rows.end * s.ow;
            s.im2col(x_b, rows, col);
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

/// Adds `bias[c]` to the positions `band` of every channel `c` of one image, then (with
/// `relu`) takes `max(0, ·)`; nothing to do for a zero bias without ReLU.
fn bias_relu(
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
fn conv_input_grad(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
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
fn flipped_conv(s: &ConvShape, w: &[f32]) -> Option<(ConvShape, Vec<f32>)> {
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
    let mut flipped = vec![0.0; w.len()];
    for o in 0..s.c_out {
        for c in 0..s.c_in {
            for i in 0..s.kh {
                for j in 0..s.kw {
                    flipped[((c * s.c_out + o) * s.kh + i) * s.kw + j] =
                        w[((o * s.c_in + c) * s.kh + (s.kh - 1 - i)) * s.kw + (s.kw - 1 - j)];
                }
            }
        }
    }
    Some((shape, flipped))
}

/// `dx[b] = col2im(Wᵀ·dy[b])`: the input gradient of any convolution, which is also the
/// forward of the transposed convolution with the same weight.
fn col2im_input_grad(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let (col_len, positions) = (s.col_len(), s.positions());
    let parallel = !per_image_parallel(s.n);
    let mut dx = vec![0.0; s.n * s.in_image()];
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

/// `dW = Σ_b dy[b]·im2col(x[b])ᵀ`: the weight gradient of the convolution. The gemm computes
/// `dWᵀ = Σ_b im2col(x[b])·dy[b]ᵀ` (`[col_len, c_out]`): with few output channels and many
/// positions, that orientation runs 1.5-2.6x faster in the gemm crate (measured at the U-Net's
/// 16- and 32-channel levels), and the transpose at the end is tiny.
fn conv_weight_grad(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (col_len, positions) = (s.col_len(), s.positions());
    let one = |b: usize, acc: &mut Vec<f32>, col: &mut Vec<f32>, parallel: bool| {
        let x_b = &x[b * s.in_image()..(b + 1) * s.in_image()];
        let dy_b = &dy[b * s.out_image()..(b + 1) * s.out_image()];
        for rows in s.tiles() {
            let band = rows.start * s.ow..rows.end * s.ow;
            s.im2col(x_b, rows, col);
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
    let zeros = || vec![0.0f32; col_len * s.c_out];
    let transposed = if per_image_parallel(s.n) {
        (0..s.n)
            .into_par_iter()
            .fold(
                || (zeros(), vec![0.0f32; s.tile_len()]),
                |(mut acc, mut col), b| {
                    one(b, &mut acc, &mut col, false);
                    (acc, col)
                },
            )
            .map(|(acc, _)| acc)
            .reduce(zeros, |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            })
    } else {
        let mut acc = zeros();
        let mut col = vec![0.0f32; s.tile_len()];
        for b in 0..s.n {
            one(b, &mut acc, &mut col, true);
        }
        acc
    };
    let mut dw = vec![0.0f32; s.c_out * col_len];
    for (r, row) in transposed.chunks_exact(s.c_out).enumerate() {
        for (o, &v) in row.iter().enumerate() {
            dw[o * col_len + r] = v;
        }
    }
    dw
}

/// Per-channel sums of `[n, c, positions]` data (a bias gradient).
fn channel_sums(dy: &[f32], n: usize, c: usize, positions: usize) -> Vec<f32> {
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

// ---------------------------------------------------------------------------------------------
// Batch norm + ReLU.

/// Per-channel mean and biased variance of `[n, c, positions]` data (two passes, f64 sums).
fn channel_stats(x: &[f32], n: usize, c: usize, positions: usize) -> (Vec<f32>, Vec<f32>) {
    let count = (n * positions) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes =
                || (0..n).map(move |b| &x[(b * c + ch) * positions..(b * c + ch + 1) * positions]);
            let mean = planes()
                .map(|p| p.iter().map(|&v| f64::from(v)).sum::<f64>())
                .sum::<f64>()
                / count;
            let var = planes()
                .map(|p| {
                    p.iter()
                        .map(|&v| {
                            let d = f64::from(v) - mean;
                            d * d
                        })
                        .sum::<f64>()
                })
                .sum::<f64>()
                / count;
            (mean as f32, var as f32)
        })
        .unzip()
}

/// `1 / sqrt(var + eps)` per channel.
fn inv_std(variance: &[f32], epsilon: f64) -> Vec<f32> {
    variance
        .iter()
        .map(|&v| (1.0 / (f64::from(v) + epsilon).sqrt()) as f32)
        .collect()
}

/// The forward of batch norm + ReLU on `[n, c, positions]` data.
struct NormForward {
    output: Vec<f32>,
    mean: Vec<f32>,
    variance: Vec<f32>,
}

fn norm_relu_forward(
    x: &[f32],
    [n, c, positions]: [usize; 3],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> NormForward {
    let (mean, variance) = channel_stats(x, n, c, positions);
    let inv = inv_std(&variance, epsilon);
    let mut output = vec![0.0; x.len()];
    if positions > 0 {
        output
            .par_chunks_mut(positions)
            .zip(x.par_chunks(positions))
            .enumerate()
            .for_each(|(i, (out, xs))| {
                let ch = i % c;
                let scale = gamma[ch] * inv[ch];
                let shift = beta[ch] - mean[ch] * scale;
                for (o, &v) in out.iter_mut().zip(xs) {
                    *o = (v * scale + shift).max(0.0);
                }
            });
    }
    NormForward {
        output,
        mean,
        variance,
    }
}

/// Gradients of batch norm + ReLU: (input, gamma, beta).
#[allow(clippy::too_many_arguments)]
fn norm_relu_backward(
    x: &[f32],
    dy: &[f32],
    [n, c, positions]: [usize; 3],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    variance: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let inv = inv_std(variance, epsilon);
    // The ReLU passes the gradient where its input, gamma·x̂ + beta, was positive.
    let (dgamma, dbeta): (Vec<f32>, Vec<f32>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let scale = gamma[ch] * inv[ch];
            let shift = beta[ch] - mean[ch] * scale;
            let (mut dg, mut db) = (0.0f64, 0.0f64);
            for b in 0..n {
                let r = (b * c + ch) * positions..(b * c + ch + 1) * positions;
                let (mut g_sum, mut gx_sum) = (0.0f32, 0.0f32);
                for (&v, &g) in x[r.clone()].iter().zip(&dy[r]) {
                    let g = if v * scale + shift > 0.0 { g } else { 0.0 };
                    g_sum += g;
                    gx_sum += g * (v - mean[ch]);
                }
                db += f64::from(g_sum);
                dg += f64::from(gx_sum) * f64::from(inv[ch]);
            }
            (dg as f32, db as f32)
        })
        .unzip();
    let count = (n * positions) as f32;
    let mut dx = vec![0.0; x.len()];
    if positions > 0 {
        dx.par_chunks_mut(positions)
            .enumerate()
            .for_each(|(i, out)| {
                let ch = i % c;
                let scale = gamma[ch] * inv[ch];
                let shift = beta[ch] - mean[ch] * scale;
                let mean_db = dbeta[ch] / count;
                let mean_dg = dgamma[ch] / count;
                let r = i * positions..(i + 1) * positions;
                for ((o, &v), &g) in out.iter_mut().zip(&x[r.clone()]).zip(&dy[r]) {
                    let g = if v * scale + shift > 0.0 { g } else { 0.0 };
                    let x_hat = (v - mean[ch]) * inv[ch];
                    *o = scale * (g - mean_db - x_hat * mean_dg);
                }
            });
    }
    (dx, dgamma, dbeta)
}

// ---------------------------------------------------------------------------------------------
// Tensors.

/// A contiguous `f32` flex tensor's data and shape.
fn view(t: &FlexTensor) -> (FlexTensor, Vec<usize>) {
    let t = t.to_contiguous();
    let shape = t.layout().shape().to_vec();
    (t, shape)
}

fn dims4(shape: &[usize]) -> [usize; 4] {
    match shape {
        [a, b, c, d] => [*a, *b, *c, *d],
        _ => panic!("flex kernels: expected a 4-D tensor, got shape {shape:?}"),
    }
}

fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

/// The convolution computed by `flex_conv2d`.
fn conv2d_forward(x: &FlexTensor, w: &FlexTensor, bias: &FlexTensor, g: Geometry) -> FlexTensor {
    let ((x, xs), (w, ws), (bias, _)) = (view(x), view(w), view(bias));
    let s = ConvShape::new(dims4(&xs), dims4(&ws), g);
    let y = conv_forward(&s, x.storage(), w.storage(), bias.storage(), false);
    tensor(y, vec![s.n, s.c_out, s.oh, s.ow])
}

/// The fused inference convolution computed by `flex_conv2d_affine_relu`:
/// `ReLU((W·col + bias)·scale + shift)`, with the affine folded into the weight and bias
/// (`W'[o] = W[o]·scale[o]`, `b'[o] = bias[o]·scale[o] + shift[o]`) and the ReLU applied to
/// each band of the output as the gemm produces it.
fn conv2d_affine_relu_forward(
    x: &FlexTensor,
    w: &FlexTensor,
    bias: &FlexTensor,
    [scale, shift]: [&FlexTensor; 2],
    g: Geometry,
) -> FlexTensor {
    let ((x, xs), (w, ws), (bias, _)) = (view(x), view(w), view(bias));
    let ((scale, _), (shift, _)) = (view(scale), view(shift));
    let s = ConvShape::new(dims4(&xs), dims4(&ws), g);
    let (scale, shift): (&[f32], &[f32]) = (scale.storage(), shift.storage());
    assert!(
        scale.len() == s.c_out && shift.len() == s.c_out,
        "fused convolution: {} output channels, {} scales, {} shifts",
        s.c_out,
        scale.len(),
        shift.len()
    );
    let (folded, bias) = fold_affine(w.storage(), bias.storage(), scale, shift);
    let y = conv_forward(&s, x.storage(), &folded, &bias, true);
    tensor(y, vec![s.n, s.c_out, s.oh, s.ow])
}

/// A per-output-channel affine folded into a convolution's weight (`[c_out, ...]`) and bias:
/// `W'[o] = W[o]·scale[o]`, `b'[o] = bias[o]·scale[o] + shift[o]`.
fn fold_affine(w: &[f32], bias: &[f32], scale: &[f32], shift: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let row = w.len() / scale.len().max(1);
    let folded = w
        .chunks_exact(row.max(1))
        .zip(scale)
        .flat_map(|(r, &a)| r.iter().map(move |&v| v * a))
        .collect();
    let bias = (bias.iter().zip(scale).zip(shift))
        .map(|((&b, &a), &t)| b * a + t)
        .collect();
    (folded, bias)
}

/// The convolution that a transposed convolution of `x` (`[n, c_in, h, w]`) with `w`
/// (`[c_in, c_out, kh, kw]`) is the adjoint of: it maps the transposed convolution's output
/// (`[n, c_out, oh, ow]`) back to `x`'s shape, with `w` as its weight.
fn adjoint_shape(xs: &[usize], ws: &[usize], g: Geometry) -> ConvShape {
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
fn conv_transpose2d_forward(
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

/// 2x2, stride-2 max-pool of `[n, c, h, w]` data: `[n, c, h / 2, w / 2]`.
fn max_pool2x2(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0.0; n * c * oh * ow];
    if oh * ow == 0 {
        return out;
    }
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, plane)| {
            for (oy, o_row) in o.chunks_exact_mut(ow).enumerate() {
                let r0 = &plane[2 * oy * w..2 * oy * w + 2 * ow];
                let r1 = &plane[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow];
                for ((v, a), b) in o_row
                    .iter_mut()
                    .zip(r0.chunks_exact(2))
                    .zip(r1.chunks_exact(2))
                {
                    *v = a[0].max(a[1]).max(b[0].max(b[1]));
                }
            }
        });
    out
}

/// `[n, c, positions]` of a 4-D shape.
fn flat3(shape: &[usize]) -> [usize; 3] {
    let [n, c, h, w] = dims4(shape);
    [n, c, h * w]
}

fn norm_relu(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, eps: f64) -> NormForward {
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
fn affine_relu(x: &FlexTensor, scale: &FlexTensor, shift: &FlexTensor) -> FlexTensor {
    let ((x, xs), (scale, _), (shift, _)) = (view(x), view(scale), view(shift));
    let [_, c, positions] = flat3(&xs);
    let (scale, shift): (&[f32], &[f32]) = (scale.storage(), shift.storage());
    let mut out = vec![0.0; x.layout().num_elements()];
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

    fn flex_max_pool2x2(x: FlexTensor) -> FlexTensor {
        let (x, xs) = view(&x);
        let [n, c, h, w] = dims4(&xs);
        tensor(
            max_pool2x2(x.storage(), [n, c, h, w]),
            vec![n, c, h / 2, w / 2],
        )
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

// ---------------------------------------------------------------------------------------------
// Autodiff.

/// A float tensor of the autodiff flex backend.
type AdTensor<C> = FloatTensor<Autodiff<Flex, C>>;

/// What a convolution's backward step needs: its input, weight and geometry.
#[derive(Debug, Clone)]
struct ConvState {
    x: FlexTensor,
    w: FlexTensor,
    g: Geometry,
}

/// Backward of `flex_conv2d`.
#[derive(Debug)]
struct Conv2dBackward;

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
            let dw = conv_weight_grad(&s, x.storage(), dy);
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

/// Backward of `flex_conv_transpose2d`: the adjoint convolution's forward gives the input
/// gradient, its weight gradient (input `dy`, output gradient `x`) the weight's.
#[derive(Debug)]
struct ConvTranspose2dBackward;

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
            let dw = conv_weight_grad(&s, dy, x.storage());
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
struct NormState {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: Vec<f32>,
    variance: Vec<f32>,
    epsilon: f64,
}

/// Backward of `flex_batch_norm_relu`.
#[derive(Debug)]
struct NormReluBackward;

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

/// Records a convolution-like op: `forward` computes the output from (x, w, bias), `op` is
/// its backward step.
fn tracked_conv<C: CheckpointStrategy, O: Backward<Flex, 3, State = ConvState>>(
    op: O,
    [x, w, b]: [AdTensor<C>; 3],
    g: Geometry,
    forward: fn(&FlexTensor, &FlexTensor, &FlexTensor, Geometry) -> FlexTensor,
) -> AdTensor<C> {
    let out = forward(x.primitive(), w.primitive(), b.primitive(), g);
    match op
        .prepare::<C>([x.node(), w.node(), b.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = ConvState {
                x: x.into_primitive(),
                w: w.into_primitive(),
                g,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
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

    fn flex_max_pool2x2(x: AdTensor<C>) -> AdTensor<C> {
        // burn's differentiable pooling (seg-model only calls this off autodiff devices).
        use burn::backend::ops::ModuleOps;
        Self::max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false)
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
        let output = match NormReluBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = NormState {
                    x: x.into_primitive(),
                    gamma: gamma.into_primitive(),
                    beta: beta.into_primitive(),
                    mean: out.mean,
                    variance: out.variance,
                    epsilon,
                };
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(output),
        };
        NormOutput {
            output,
            mean,
            variance,
        }
    }
}

#[cfg(test)]
mod tests {
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
                                    if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((b * s.c_in + c) * s.h + iy as usize) * s.w
                                        + ix as usize];
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
            let dw = conv_weight_grad(&s, &x, &dy);
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
                &conv_weight_grad(&banded, &x, &dy),
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
}
