//! A convolution's sizes and the im2col / col2im copies between images and column bands.

use super::*;

/// A convolution's sizes: input `[n, c_in, h, w]`, weight `[c_out, c_in, kh, kw]`, output
/// `[n, c_out, oh, ow]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConvShape {
    pub(super) n: usize,
    pub(super) c_in: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) c_out: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) g: Geometry,
    /// Most floats of one im2col tile (a band of output rows): bounds each thread's buffer.
    pub(super) tile_floats: usize,
}

/// [`ConvShape::tile_floats`]: 1 MiB per thread whatever the image size, so that an im2col band
/// and its output band stay in a core's L2 (2 MiB here) between im2col and gemm (4 MiB bands
/// measured ~20 % slower at inference).
pub(super) const TILE_FLOATS: usize = 1 << 18;

impl ConvShape {
    /// The convolution of an `x`-shaped input with a `weight`-shaped kernel.
    pub(super) fn new(x: [usize; 4], weight: [usize; 4], g: Geometry) -> Self {
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

    /// The same convolution over `c_in` of its input channels (one part of a concatenated
    /// input).
    pub(super) fn with_c_in(&self, c_in: usize) -> Self {
        Self { c_in, ..*self }
    }

    /// Rows of an image's im2col matrix.
    pub(super) fn col_len(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Output positions per image (columns of the im2col matrix).
    pub(super) fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// Bands of output rows whose im2col fits [`ConvShape::tile_floats`] (at least one row).
    pub(super) fn tiles(&self) -> impl Iterator<Item = std::ops::Range<usize>> + use<> {
        let per_row = (self.col_len() * self.ow).max(1);
        let rows = (self.tile_floats / per_row).clamp(1, self.oh.max(1));
        let oh = self.oh;
        (0..oh).step_by(rows).map(move |r| r..(r + rows).min(oh))
    }

    /// Floats of the largest im2col tile.
    pub(super) fn tile_len(&self) -> usize {
        self.tiles().map(|r| r.len()).max().unwrap_or(0) * self.ow * self.col_len()
    }

    pub(super) fn in_image(&self) -> usize {
        self.c_in * self.h * self.w
    }

    pub(super) fn out_image(&self) -> usize {
        self.c_out * self.positions()
    }

    /// For kernel offset `k` along axis `i`: the input index of output index 0 (may be
    /// negative) and the output range whose input index lies inside `0..size`.
    pub(super) fn valid(
        &self,
        k: usize,
        i: usize,
        size: usize,
        out: usize,
    ) -> (isize, usize, usize) {
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
    pub(super) fn im2col(&self, x: &[f32], rows: std::ops::Range<usize>, col: &mut [f32]) {
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
    pub(super) fn col2im(&self, col: &[f32], rows: std::ops::Range<usize>, dx: &mut [f32]) {
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
