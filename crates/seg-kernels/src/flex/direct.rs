//! A direct stride-1 convolution for rows at least 16 wide (the U-Net's levels down to 16x16
//! at 128 px input), where im2col + gemm spends much of its time copying (the 9x im2col band,
//! then the gemm crate's packing of it): each tile of 4 output channels x 4 SIMD vectors (of
//! one row, or of consecutive rows when rows are narrower than the tile) is accumulated in
//! registers straight from a zero-padded copy of the input, one fused multiply-add per weight
//! and vector. The weight gradient of rows at least 64 wide reads the same padded input
//! (`direct_grad.rs`). SIMD through pulp, chosen at run time as the gemm crate does (AVX-512, else
//! AVX2, else scalar); no `unsafe`.

use super::*;
use pulp::bytemuck;
use pulp::{Arch, Simd, WithSimd};

/// Output channels per register tile (and the multiple `c_out` must be).
const TILE_CHANNELS: usize = 4;
/// Floats per padded input row beyond the output width's round-up to this many lanes (the
/// widest SIMD vector, AVX-512's 16 `f32`).
pub(super) const MAX_LANES: usize = 16;
/// Floats one SIMD vector reads from a padded input row with a 3-wide kernel (one vector and
/// two more floats). Reading this fixed span as an array reference lets the compiler drop the
/// bounds check on every vector load (one per kernel row instead of one per load and kernel
/// column: those checks outnumbered the multiply-adds).
pub(super) const MAX_VECTOR_SPAN: usize = MAX_LANES + 2;

/// Whether [`conv`] covers `s` and beats im2col + gemm on it: stride and dilation 1, a 1- or
/// 3-wide kernel with padding inside its span, `c_out` a multiple of 4, output rows at least 16
/// wide (narrower rows would leave most of an AVX-512 vector empty: at 8 it ran at half
/// im2col's speed; per-layer timings in BENCHMARKS.md, "A direct convolution").
pub(super) fn applies(s: &ConvShape) -> bool {
    let g = s.g;
    g.stride == [1, 1]
        && g.dilation == [1, 1]
        && (s.kw == 1 || s.kw == 3)
        && g.padding[0] < s.kh.max(1)
        && g.padding[1] < s.kw
        && s.c_out.is_multiple_of(TILE_CHANNELS)
        && s.c_in > 0
        && s.ow >= 16
}

/// The padded input's geometry: rows of `pw` floats (`h + 2·padding` of them per channel),
/// channels `cs` floats apart.
#[derive(Clone, Copy)]
pub(super) struct Padded {
    pub(super) pw: usize,
    pub(super) cs: usize,
}

impl Padded {
    /// The geometry of `s`'s padded input.
    pub(super) fn of(s: &ConvShape) -> Self {
        let (ph, pw) = (
            s.h + 2 * s.g.padding[0],
            s.ow.div_ceil(MAX_LANES) * MAX_LANES + s.kw - 1,
        );
        // Channels 4 KiB-aligned plus 5 cache lines apart: the same row of consecutive
        // channels falls in different L1 sets (a 256-wide image's planes are a multiple of
        // 4 KiB, and 16 channels' rows in the same set ran at half speed).
        let cs = (ph * pw).div_ceil(1024) * 1024 + 80;
        Self { pw, cs }
    }

    /// Floats of one image's padded input, with room after the last row for a vector's
    /// fixed-span read ([`MAX_VECTOR_SPAN`]).
    pub(super) fn image(&self, c_in: usize) -> usize {
        c_in * self.cs + MAX_VECTOR_SPAN
    }
}

/// `conv_forward_parts` for shapes where [`applies`]: `y[b] = W * x[b] + bias` (then ReLU with
/// `relu`), the input the channel-wise concatenation of `parts`.
pub(super) fn conv(
    s: &ConvShape,
    parts: &[&[f32]],
    w: &[f32],
    bias: &[f32],
    relu: bool,
) -> Vec<f32> {
    conv_on(Arch::new(), s, parts, w, bias, relu)
}

/// [`conv`] with the SIMD instruction set `arch` (the tests run each one this machine has).
pub(super) fn conv_on(
    arch: Arch,
    s: &ConvShape,
    parts: &[&[f32]],
    w: &[f32],
    bias: &[f32],
    relu: bool,
) -> Vec<f32> {
    assert!(
        s.g.stride == [1, 1]
            && s.g.dilation == [1, 1]
            && (s.kw == 1 || s.kw == 3)
            && s.c_out.is_multiple_of(TILE_CHANNELS),
        "direct convolution: unsupported geometry {:?} with a {}x{} kernel and {} outputs",
        s.g,
        s.kh,
        s.kw,
        s.c_out
    );
    let p = Padded::of(s);
    // Weights regrouped per tile of output channels: [block][c][tap][TILE_CHANNELS].
    let taps = s.kh * s.kw;
    let c_in = s.c_in;
    let wt = regrouped(w.len(), taps * TILE_CHANNELS, |bc, row| {
        let (block, c) = (bc / c_in, bc % c_in);
        for lane in 0..TILE_CHANNELS {
            let src = &w[((block * TILE_CHANNELS + lane) * c_in + c) * taps..][..taps];
            for (t, &v) in src.iter().enumerate() {
                row[t * TILE_CHANNELS + lane] = v;
            }
        }
    });
    let positions = s.positions();
    let mut y = zeroed(s.n * s.out_image());
    if s.out_image() == 0 {
        return y;
    }
    let job = |xp: &[f32], first_block: usize, y_part: &mut [f32]| {
        arch.dispatch(Rows {
            input: Input { s, p, x: xp, relu },
            wt: &wt,
            bias,
            first_block,
            y: y_part,
        });
    };
    if per_image_parallel(s.n) {
        // Each image padded into its thread's scratch buffer, then all its channels.
        y.par_chunks_mut(s.out_image())
            .enumerate()
            .for_each(|(b, yb)| {
                with_scratch(p.image(s.c_in), |xp| {
                    pad(s, p, parts, b, xp);
                    job(xp, 0, yb);
                });
            });
    } else {
        // Few images: one at a time, its tiles of output channels in parallel.
        let mut xp = vec![0.0f32; p.image(s.c_in)];
        for (b, yb) in y.chunks_mut(s.out_image()).enumerate() {
            pad(s, p, parts, b, &mut xp);
            yb.par_chunks_mut(TILE_CHANNELS * positions)
                .enumerate()
                .for_each(|(block, yt)| job(&xp, block, yt));
        }
    }
    y
}

/// Writes image `b` of the concatenation of `parts` into `xp` (`[c_in][ph][pw]`) with zeros
/// around it.
pub(super) fn pad(s: &ConvShape, p: Padded, parts: &[&[f32]], b: usize, xp: &mut [f32]) {
    let plane = s.h * s.w;
    let (pad_h, pad_w) = (s.g.padding[0], s.g.padding[1]);
    let rows = s.h + 2 * pad_h;
    // Only the border is zeroed (the buffer is reused scratch): a whole-buffer fill was a
    // memset of the input's size per convolution.
    let mut channels = xp.chunks_exact_mut(p.cs);
    for part in parts {
        let c_part = part.len() / (s.n * plane).max(1);
        let image = &part[b * c_part * plane..(b + 1) * c_part * plane];
        for src in image.chunks_exact(plane.max(1)) {
            let Some(dst) = channels.next() else { return };
            let dst = &mut dst[..rows * p.pw];
            dst[..pad_h * p.pw].fill(0.0);
            dst[(pad_h + s.h) * p.pw..].fill(0.0);
            for (y, src_row) in src.chunks_exact(s.w.max(1)).enumerate() {
                let row = &mut dst[(y + pad_h) * p.pw..(y + pad_h + 1) * p.pw];
                row[..pad_w].fill(0.0);
                row[pad_w..pad_w + s.w].copy_from_slice(src_row);
                row[pad_w + s.w..].fill(0.0);
            }
        }
    }
}

/// One image's padded input and what to do with the sums.
#[derive(Clone, Copy)]
struct Input<'a> {
    s: &'a ConvShape,
    p: Padded,
    /// The image's padded input, `[c_in][ph][pw]`.
    x: &'a [f32],
    relu: bool,
}

/// One image's output channels `first_block * 4..` (as many tiles as `y` holds), row by row.
struct Rows<'a> {
    input: Input<'a>,
    /// The regrouped weights of all blocks.
    wt: &'a [f32],
    bias: &'a [f32],
    first_block: usize,
    /// `[tiles * 4][oh][ow]`.
    y: &'a mut [f32],
}

impl WithSimd for Rows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // 16 accumulators with AVX-512's 32 registers; 8 with AVX2's 16.
        match (S::REGISTER_COUNT >= 32, self.input.s.kw) {
            (true, 1) => self.run::<S, 4, 1>(simd),
            (true, _) => self.run::<S, 4, 3>(simd),
            (false, 1) => self.run::<S, 2, 1>(simd),
            (false, _) => self.run::<S, 2, 3>(simd),
        }
    }
}

impl Rows<'_> {
    #[inline(always)]
    fn run<S: Simd, const V: usize, const KW: usize>(self, simd: S) {
        let Rows {
            input,
            wt,
            bias,
            first_block,
            y,
        } = self;
        let s = input.s;
        let lanes = S::F32_LANES;
        let positions = s.positions();
        let vectors = s.ow.div_ceil(lanes);
        let tiles = y.len() / (TILE_CHANNELS * positions);
        let block_weights = s.c_in * s.kh * s.kw * TILE_CHANNELS;
        // Tile `tile` of `y`: its weights, its bias and where its channels start in `y`.
        let tile_of = |tile: usize| {
            let block = first_block + tile;
            let bias: [f32; TILE_CHANNELS] =
                std::array::from_fn(|o| bias[block * TILE_CHANNELS + o]);
            (
                &wt[block * block_weights..(block + 1) * block_weights],
                bias,
                tile * TILE_CHANNELS * positions,
            )
        };
        if vectors >= V {
            // Each block of vectors of a row against every tile of output channels in turn,
            // so that the block's input segments (channels x kernel rows) stay in L1 between
            // tiles.
            let full = vectors / V * V;
            for oy in 0..s.oh {
                for v0 in (0..full).step_by(V) {
                    for tile in 0..tiles {
                        let (wt, bias, at) = tile_of(tile);
                        input.tile::<S, V, KW>(simd, wt, oy, v0, bias, &mut y[at..]);
                    }
                }
                for v0 in full..vectors {
                    for tile in 0..tiles {
                        let (wt, bias, at) = tile_of(tile);
                        input.tile::<S, 1, KW>(simd, wt, oy, v0, bias, &mut y[at..]);
                    }
                }
            }
            return;
        }
        // Rows narrower than a tile: a tile's vectors come from consecutive rows.
        let spots: Vec<(usize, usize)> = (0..s.oh)
            .flat_map(|oy| (0..vectors).map(move |v| (oy, v)))
            .collect();
        let mut groups = spots.chunks_exact(V);
        for group in groups.by_ref() {
            let spots: [(usize, usize); V] = std::array::from_fn(|i| group[i]);
            for tile in 0..tiles {
                let (wt, bias, at) = tile_of(tile);
                input.tile_at::<S, V, KW>(simd, wt, spots, bias, &mut y[at..]);
            }
        }
        for &spot in groups.remainder() {
            for tile in 0..tiles {
                let (wt, bias, at) = tile_of(tile);
                input.tile_at::<S, 1, KW>(simd, wt, [spot], bias, &mut y[at..]);
            }
        }
    }
}

impl Input<'_> {
    /// Output row `oy`, vectors `v0..v0 + V` of one tile of 4 channels. One bounds check per
    /// (channel, kernel row) for the row segment; measured 1.1-1.15x faster at the 128- and
    /// 64-wide levels than [`Input::tile_at`], which checks every vector.
    #[inline(always)]
    fn tile<S: Simd, const V: usize, const KW: usize>(
        &self,
        simd: S,
        wt: &[f32],
        oy: usize,
        v0: usize,
        bias: [f32; TILE_CHANNELS],
        y: &mut [f32],
    ) {
        let s = self.s;
        let (lanes, pw, cs) = (S::F32_LANES, self.p.pw, self.p.cs);
        let mut acc: [[S::f32s; V]; TILE_CHANNELS] =
            std::array::from_fn(|o| [simd.splat_f32s(bias[o]); V]);
        // One loop over the (channel, kernel row) pairs, so that the accumulators stay in
        // registers; the kernel's columns are unrolled.
        let span = V * lanes + KW - 1;
        let (mut ki, mut row) = (0, oy * pw + v0 * lanes);
        for ws in wt.chunks_exact(KW * TILE_CHANNELS) {
            let seg = &self.x[row..row + span];
            for kj in 0..KW {
                let xs: [S::f32s; V] = std::array::from_fn(|v| {
                    let at = v * lanes + kj;
                    bytemuck::pod_read_unaligned(bytemuck::cast_slice(&seg[at..at + lanes]))
                });
                let w: [f32; TILE_CHANNELS] = std::array::from_fn(|o| ws[kj * TILE_CHANNELS + o]);
                acc = fma_tile(simd, acc, xs, w);
            }
            ki += 1;
            row += pw;
            if ki == s.kh {
                ki = 0;
                row += cs - s.kh * pw;
            }
        }
        self.store(simd, acc, std::array::from_fn(|v| (oy, v0 + v)), y);
    }

    /// The vectors `at` (output row, vector index in the row) of one tile of 4 channels.
    #[inline(always)]
    fn tile_at<S: Simd, const V: usize, const KW: usize>(
        &self,
        simd: S,
        wt: &[f32],
        at: [(usize, usize); V],
        bias: [f32; TILE_CHANNELS],
        y: &mut [f32],
    ) {
        let s = self.s;
        let (lanes, pw, cs) = (S::F32_LANES, self.p.pw, self.p.cs);
        let bases: [usize; V] = at.map(|(oy, v)| oy * pw + v * lanes);
        let mut acc: [[S::f32s; V]; TILE_CHANNELS] =
            std::array::from_fn(|o| [simd.splat_f32s(bias[o]); V]);
        let (mut ki, mut row) = (0, 0);
        for ws in wt.chunks_exact(KW * TILE_CHANNELS) {
            let segs: [&[f32; MAX_VECTOR_SPAN]; V] = std::array::from_fn(|v| {
                self.x[row + bases[v]..]
                    .first_chunk()
                    .expect("the padded input holds a vector's span after every row")
            });
            for kj in 0..KW {
                let xs: [S::f32s; V] = std::array::from_fn(|v| {
                    bytemuck::pod_read_unaligned(bytemuck::cast_slice(&segs[v][kj..kj + lanes]))
                });
                let w: [f32; TILE_CHANNELS] = std::array::from_fn(|o| ws[kj * TILE_CHANNELS + o]);
                acc = fma_tile(simd, acc, xs, w);
            }
            ki += 1;
            row += pw;
            if ki == s.kh {
                ki = 0;
                row += cs - s.kh * pw;
            }
        }
        self.store(simd, acc, at, y);
    }

    /// Writes a tile's sums (ReLU first, with `relu`) to the output vectors `at` (output row,
    /// vector index in the row), the row's last vector partially.
    #[inline(always)]
    fn store<S: Simd, const V: usize>(
        &self,
        simd: S,
        acc: [[S::f32s; V]; TILE_CHANNELS],
        at: [(usize, usize); V],
        y: &mut [f32],
    ) {
        let s = self.s;
        let (lanes, positions) = (S::F32_LANES, s.positions());
        let zero = simd.splat_f32s(0.0);
        for (o, acc_o) in acc.iter().enumerate() {
            for (&(oy, v), &a) in at.iter().zip(acc_o) {
                let a = if self.relu { simd.max_f32s(a, zero) } else { a };
                let row = o * positions + oy * s.ow;
                let (start, end) = (row + v * lanes, row + ((v + 1) * lanes).min(s.ow));
                if end - start == lanes {
                    y[start..end].copy_from_slice(bytemuck::cast_slice(std::slice::from_ref(&a)));
                } else {
                    simd.partial_store_f32s(&mut y[start..end], a);
                }
            }
        }
    }
}

/// `acc[o][v] += w[o] * x[v]`, by value so that the accumulators stay in registers.
#[inline(always)]
fn fma_tile<S: Simd, const V: usize>(
    simd: S,
    acc: [[S::f32s; V]; TILE_CHANNELS],
    xs: [S::f32s; V],
    ws: [f32; TILE_CHANNELS],
) -> [[S::f32s; V]; TILE_CHANNELS] {
    let ws = ws.map(|w| simd.splat_f32s(w));
    std::array::from_fn(|o| std::array::from_fn(|v| simd.mul_add_e_f32s(ws[o], xs[v], acc[o][v])))
}
