//! Stride-1 convolutions without im2col: one gemm per kernel tap over a zero-padded copy of
//! the input.
//!
//! On the padded grid (row width `wp = w + 2·pw`), output position `p = r·wp + c` of a stride-1
//! convolution reads input position `p + i·dh·wp + j·dw` for tap `(i, j)` in every channel: a
//! plain strided matrix (`[c_in, positions]`, one row per channel) that the gemm crate packs
//! itself. So `y = Σ_taps W[:, :, i, j]·shift(x_pad)` needs one copy of the input (the
//! padded band) instead of im2col's `kh·kw` copies; the output is computed on the padded grid
//! (`wp - ow` extra columns per row, discarded by the epilogue that adds the bias and takes the
//! ReLU). The weight gradient is the same shifted matrices against the output gradient spread on
//! the grid: `dW[:, :, i, j]ᵀ = Σ shift(x_pad)·dy_gridᵀ`.
//!
//! Only worth it with enough input channels for each tap's product (`k = c_in`); below
//! [`MIN_CHANNELS`] (the U-Net's RGB input) im2col stays.

use super::*;

/// Fewest input channels for which the shifted form replaces im2col.
pub(super) const MIN_CHANNELS: usize = 8;

/// Whether `s` runs on the shifted form: stride 1 and at least [`MIN_CHANNELS`] inputs.
pub(super) fn applies(s: &ConvShape) -> bool {
    s.g.stride == [1, 1] && s.c_in >= MIN_CHANNELS && s.oh > 0 && s.ow > 0
}

/// The padded-grid layout of one band of output rows.
struct Band {
    /// Output rows of the band.
    rows: std::ops::Range<usize>,
    /// Padded input rows the band reads (`rows.len() + dh·(kh-1)`).
    in_rows: usize,
    /// Grid positions the band computes: `(rows - 1)·wp + ow` (the last row's padding
    /// columns are not needed).
    n: usize,
}

/// Sizes shared by the forward and weight-gradient passes.
struct Layout {
    /// Padded row width.
    wp: usize,
    /// Output rows per band.
    band_rows: usize,
}

impl Layout {
    fn new(s: &ConvShape) -> Self {
        let wp = s.w + 2 * s.g.padding[1];
        let halo = s.g.dilation[0] * (s.kh - 1);
        // Per output row: c_in padded input rows plus c_out grid rows (output or gradient).
        let per_row = ((s.c_in + s.c_out) * wp).max(1);
        let band_rows =
            (s.tile_floats.saturating_sub(s.c_in * halo * wp) / per_row).clamp(1, s.oh.max(1));
        Self { wp, band_rows }
    }

    fn bands(&self, s: &ConvShape) -> impl Iterator<Item = Band> + use<> {
        let (oh, ow, wp, step) = (s.oh, s.ow, self.wp, self.band_rows);
        let halo = s.g.dilation[0] * (s.kh - 1);
        (0..oh).step_by(step).map(move |r0| {
            let rows = r0..(r0 + step).min(oh);
            Band {
                in_rows: rows.len() + halo,
                n: (rows.len() - 1) * wp + ow,
                rows,
            }
        })
    }

    /// Floats of the padded input band and of the grid band, for the largest band.
    fn scratch(&self, s: &ConvShape) -> (usize, usize) {
        let halo = s.g.dilation[0] * (s.kh - 1);
        let rows = self.band_rows.min(s.oh.max(1));
        (
            s.c_in * (rows + halo) * self.wp,
            s.c_out * ((rows - 1) * self.wp + s.ow),
        )
    }

    /// Copies the padded input rows of `band` of one image `x` (`[c_in, h, w]`) into `pad`
    /// (`[c_in, band.in_rows, wp]`), zeros where the padding is.
    fn pad(&self, s: &ConvShape, x: &[f32], band: &Band, pad: &mut [f32]) {
        let (ph, pw, wp) = (s.g.padding[0], s.g.padding[1], self.wp);
        let plane = band.in_rows * wp;
        for (c, dst) in pad[..s.c_in * plane].chunks_exact_mut(plane).enumerate() {
            let src = &x[c * s.h * s.w..(c + 1) * s.h * s.w];
            for (rr, row) in dst.chunks_exact_mut(wp).enumerate() {
                // Padded row `band.rows.start + rr` is input row `band.rows.start + rr - ph`.
                match (band.rows.start + rr).checked_sub(ph).filter(|&y| y < s.h) {
                    Some(y) => {
                        row[..pw].fill(0.0);
                        row[pw..pw + s.w].copy_from_slice(&src[y * s.w..(y + 1) * s.w]);
                        row[pw + s.w..].fill(0.0);
                    }
                    None => row.fill(0.0),
                }
            }
        }
    }

    /// Tap `(i, j)`'s input matrix over `band`: `[c_in, band.n]` inside the padded band.
    fn tap<'a>(&self, s: &ConvShape, pad: &'a [f32], band: &Band, i: usize, j: usize) -> Mat<'a> {
        let offset = i * s.g.dilation[0] * self.wp + j * s.g.dilation[1];
        Mat {
            data: &pad[offset..],
            rows: s.c_in,
            cols: band.n,
            rs: band.in_rows * self.wp,
            cs: 1,
        }
    }
}

/// Tap `(i, j)` of a `[c_out, c_in, kh, kw]` weight as a `[c_out, c_in]` matrix (no copy).
fn weight_tap<'a>(s: &ConvShape, w: &'a [f32], i: usize, j: usize) -> Mat<'a> {
    let taps = s.kh * s.kw;
    Mat {
        data: &w[i * s.kw + j..],
        rows: s.c_out,
        cols: s.c_in,
        rs: s.c_in * taps,
        cs: taps,
    }
}

/// `y[b] = conv(x[b], W) + bias` (with `relu`, `max(0, ·)` of it) for a convolution that
/// [`applies`]: the same result as the im2col form.
pub(super) fn conv_forward(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    relu: bool,
) -> Vec<f32> {
    let layout = Layout::new(s);
    let (pad_len, grid_len) = layout.scratch(s);
    let parallel = !per_image_parallel(s.n);
    let mut y = vec![0.0; s.n * s.out_image()];
    for_images(
        &mut y,
        s.out_image(),
        s.n,
        pad_len + grid_len,
        |b, y_b, scratch| {
            let x_b = &x[b * s.in_image()..(b + 1) * s.in_image()];
            let (pad, grid) = scratch.split_at_mut(pad_len);
            for band in layout.bands(s) {
                layout.pad(s, x_b, &band, pad);
                for i in 0..s.kh {
                    for j in 0..s.kw {
                        matmul(
                            grid,
                            band.n,
                            weight_tap(s, w, i, j),
                            layout.tap(s, pad, &band, i, j),
                            i + j > 0,
                            parallel,
                        );
                    }
                }
                // Epilogue: grid row `r` of channel `o` -> output row `r`, plus bias, ReLU.
                for (o, (plane, &bo)) in y_b.chunks_exact_mut(s.positions()).zip(bias).enumerate() {
                    let src = &grid[o * band.n..(o + 1) * band.n];
                    for (k, r) in band.rows.clone().enumerate() {
                        let from = &src[k * layout.wp..k * layout.wp + s.ow];
                        let to = &mut plane[r * s.ow..(r + 1) * s.ow];
                        if relu {
                            for (t, f) in to.iter_mut().zip(from) {
                                *t = (f + bo).max(0.0);
                            }
                        } else {
                            for (t, f) in to.iter_mut().zip(from) {
                                *t = f + bo;
                            }
                        }
                    }
                }
            }
        },
    );
    y
}

/// `dW = Σ_b dy[b]·im2col(x[b])ᵀ` for a convolution that [`applies`], tap by tap:
/// `dW[:, :, i, j]ᵀ = Σ_b shift_ij(x_pad[b])·dy_grid[b]ᵀ` (`[c_in, c_out]` per tap).
pub(super) fn conv_weight_grad(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let layout = Layout::new(s);
    let (pad_len, grid_len) = layout.scratch(s);
    let taps = s.kh * s.kw;
    let tap_len = s.c_in * s.c_out;
    let one = |b: usize, acc: &mut Vec<f32>, scratch: &mut Vec<f32>, parallel: bool| {
        let x_b = &x[b * s.in_image()..(b + 1) * s.in_image()];
        let dy_b = &dy[b * s.out_image()..(b + 1) * s.out_image()];
        let (pad, grid) = scratch.split_at_mut(pad_len);
        for band in layout.bands(s) {
            layout.pad(s, x_b, &band, pad);
            // dy's band spread on the grid: zeros in the padding columns.
            for (o, dst) in grid[..s.c_out * band.n]
                .chunks_exact_mut(band.n)
                .enumerate()
            {
                let plane = &dy_b[o * s.positions()..(o + 1) * s.positions()];
                for (k, r) in band.rows.clone().enumerate() {
                    let at = k * layout.wp;
                    dst[at..at + s.ow].copy_from_slice(&plane[r * s.ow..(r + 1) * s.ow]);
                    let end = (at + layout.wp).min(band.n);
                    dst[at + s.ow..end].fill(0.0);
                }
            }
            let dy_grid = Mat::rows(grid, s.c_out, band.n).t();
            for i in 0..s.kh {
                for j in 0..s.kw {
                    let t = i * s.kw + j;
                    matmul(
                        &mut acc[t * tap_len..(t + 1) * tap_len],
                        s.c_out,
                        layout.tap(s, pad, &band, i, j),
                        dy_grid,
                        true,
                        parallel,
                    );
                }
            }
        }
    };
    let zeros = || vec![0.0f32; taps * tap_len];
    let scratch = || vec![0.0f32; pad_len + grid_len];
    let acc = if per_image_parallel(s.n) {
        (0..s.n)
            .into_par_iter()
            .fold(
                || (zeros(), scratch()),
                |(mut acc, mut buffer), b| {
                    one(b, &mut acc, &mut buffer, false);
                    (acc, buffer)
                },
            )
            .map(|(acc, _)| acc)
            .reduce(zeros, |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            })
    } else {
        let (mut acc, mut buffer) = (zeros(), scratch());
        for b in 0..s.n {
            one(b, &mut acc, &mut buffer, true);
        }
        acc
    };
    // acc[t][c][o] -> dw[o][c][t]
    let mut dw = vec![0.0f32; s.c_out * s.c_in * taps];
    for (t, tap) in acc.chunks_exact(tap_len).enumerate() {
        for (c, row) in tap.chunks_exact(s.c_out).enumerate() {
            for (o, &v) in row.iter().enumerate() {
                dw[(o * s.c_in + c) * taps + t] = v;
            }
        }
    }
    dw
}
