//! The weight gradient of a stride-1 convolution straight from the zero-padded input that the
//! direct convolution (`direct.rs`) reads: no 9x im2col copy, no packing. SIMD through pulp,
//! chosen at run time (AVX-512, else AVX2, else scalar); no `unsafe`.

use super::direct::{MAX_LANES, MAX_VECTOR_SPAN, Padded, applies, pad};
use super::*;
use pulp::{Arch, Simd, WithSimd};

/// Output positions of one band of [`weight_grad`]: a band's output gradient for a group of
/// 4 output channels (16 KiB) stays in L1 while every input channel's rows stream past it.
const BAND_POSITIONS: usize = 1024;

/// Whether [`weight_grad`] covers `s` and beats im2col + gemm on it: what [`applies`] covers,
/// with output rows a whole number of AVX-512 vectors and at least 64 wide (at 32 and 16 the
/// gemm crate won; per-layer timings in BENCHMARKS.md), and at least one image
/// per thread (fewer images stay on im2col + gemm, whose products run in parallel).
pub(super) fn weight_grad_applies(s: &ConvShape) -> bool {
    applies(s) && s.ow >= 64 && s.ow.is_multiple_of(MAX_LANES) && per_image_parallel(s.n)
}

/// `dW[o][c][ki][kj] = Σ_b Σ_(oy,ox) dy[b][o][oy][ox] · x_padded[b][c][oy+ki][ox+kj]`: the
/// weight gradient of the convolution of the channel-wise concatenation of `parts`, where
/// [`weight_grad_applies`], straight from the zero-padded input the forward reads (no 9x
/// im2col copy, no packing). Along each output row, one SIMD vector of positions at a time,
/// 4 output channels' gradients times one (channel, kernel row)'s 3 shifted input vectors
/// accumulate in 12 registers; the lanes are summed once per band of positions.
pub(super) fn weight_grad(s: &ConvShape, parts: &[&[f32]], dy: &[f32]) -> Vec<f32> {
    weight_grad_on(Arch::new(), s, parts, dy)
}

/// [`weight_grad`] with the SIMD instruction set `arch` (the tests run each one this machine
/// has).
pub(super) fn weight_grad_on(arch: Arch, s: &ConvShape, parts: &[&[f32]], dy: &[f32]) -> Vec<f32> {
    assert!(
        applies(s) && s.ow.is_multiple_of(MAX_LANES),
        "direct weight gradient: unsupported geometry {:?} with a {}x{} kernel, {} outputs, \
         rows {} wide",
        s.g,
        s.kh,
        s.kw,
        s.c_out,
        s.ow
    );
    let p = Padded::of(s);
    sum_over_images(s.n, s.c_out * s.col_len(), |b, dw| {
        with_scratch(p.image(s.c_in), |xp| {
            pad(s, p, parts, b, xp);
            arch.dispatch(Sums {
                s,
                p,
                x: xp,
                dy: &dy[b * s.out_image()..(b + 1) * s.out_image()],
                dw,
            });
        });
    })
}

/// One image's contribution to the weight gradient, added to `dw` (`[c_out][c_in][kh][kw]`).
struct Sums<'a> {
    s: &'a ConvShape,
    p: Padded,
    /// The image's padded input, `[c_in][ph][pw]`.
    x: &'a [f32],
    /// The image's output gradient, `[c_out][oh][ow]`.
    dy: &'a [f32],
    dw: &'a mut [f32],
}

impl WithSimd for Sums<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // 12 accumulators with AVX-512's 32 registers: 4 output channels x 3 rows of the
        // gradient (one pair's 3 kernel columns, or 3 pairs of a 1-wide kernel). 24 (4 x 6,
        // 2 x 12) spilled to the stack every step: the compiler loads all input vectors
        // first. 6 with AVX2's 16 registers.
        match (S::REGISTER_COUNT >= 32, self.s.kw) {
            (true, 1) => self.run::<S, 4, 3, 1>(simd),
            (true, _) => self.run::<S, 4, 3, 3>(simd),
            (false, 1) => self.run::<S, 2, 3, 1>(simd),
            (false, _) => self.run::<S, 2, 3, 3>(simd),
        }
    }
}

impl Sums<'_> {
    /// Bands of rows, then groups of `O` output channels, then groups of `R / KW` (channel,
    /// kernel row) pairs (the last ones one pair at a time).
    #[inline(always)]
    fn run<S: Simd, const O: usize, const R: usize, const KW: usize>(mut self, simd: S) {
        let s = self.s;
        let (pairs, per_block) = (s.c_in * s.kh, R / KW);
        let band_rows = (BAND_POSITIONS / s.ow).clamp(1, s.oh.max(1));
        for first_row in (0..s.oh).step_by(band_rows) {
            let rows = first_row..(first_row + band_rows).min(s.oh);
            for o0 in (0..s.c_out).step_by(O) {
                let mut pair = 0;
                while pair + per_block <= pairs {
                    self.block::<S, O, R, KW>(simd, o0, pair, rows.clone());
                    pair += per_block;
                }
                while pair < pairs {
                    self.block::<S, O, KW, KW>(simd, o0, pair, rows.clone());
                    pair += 1;
                }
            }
        }
    }

    /// Output channels `o0..o0 + O` against the `R / KW` (channel, kernel row) pairs from
    /// `pair0` (`R` rows of the weight gradient: each pair's kernel columns) over output rows
    /// `rows`, summed into `dw`.
    #[inline(always)]
    fn block<S: Simd, const O: usize, const R: usize, const KW: usize>(
        &mut self,
        simd: S,
        o0: usize,
        pair0: usize,
        rows: std::ops::Range<usize>,
    ) {
        let s = self.s;
        let (lanes, pw, cs, positions) = (S::F32_LANES, self.p.pw, self.p.cs, s.positions());
        let mut acc = [[simd.splat_f32s(0.0); O]; R];
        // Where each row's padded input rows start (output row 0): pair r / KW, shifted by the
        // kernel column r % KW.
        let x_starts: [usize; R] = std::array::from_fn(|r| {
            let pair = pair0 + r / KW;
            (pair / s.kh) * cs + (pair % s.kh) * pw
        });
        for oy in rows {
            let dy_rows: [&[f32]; O] = std::array::from_fn(|o| {
                let start = (o0 + o) * positions + oy * s.ow;
                &self.dy[start..start + s.ow]
            });
            for v in (0..s.ow).step_by(lanes) {
                // One bounds check per pair: the chunk holds all its kernel columns' vectors.
                let segs: [&[f32; MAX_VECTOR_SPAN]; R] = std::array::from_fn(|r| {
                    self.x[x_starts[r] + oy * pw + v..]
                        .first_chunk()
                        .expect("the padded input holds a vector's span after every row")
                });
                let xs: [S::f32s; R] = std::array::from_fn(|r| {
                    let kj = r % KW;
                    bytemuck::pod_read_unaligned(bytemuck::cast_slice(&segs[r][kj..kj + lanes]))
                });
                let ds: [S::f32s; O] = std::array::from_fn(|o| {
                    bytemuck::pod_read_unaligned(bytemuck::cast_slice(&dy_rows[o][v..v + lanes]))
                });
                acc = outer_fma(simd, acc, xs, ds);
            }
        }
        let col_len = s.col_len();
        for (r, acc_r) in acc.iter().enumerate() {
            for (o, &a) in acc_r.iter().enumerate() {
                self.dw[(o0 + o) * col_len + pair0 * KW + r] += simd.reduce_sum_f32s(a);
            }
        }
    }
}

/// `acc[r][o] += x[r] * d[o]`, by value so that the accumulators stay in registers.
#[inline(always)]
fn outer_fma<S: Simd, const R: usize, const O: usize>(
    simd: S,
    acc: [[S::f32s; O]; R],
    x: [S::f32s; R],
    d: [S::f32s; O],
) -> [[S::f32s; O]; R] {
    std::array::from_fn(|r| std::array::from_fn(|o| simd.mul_add_e_f32s(x[r], d[o], acc[r][o])))
}
