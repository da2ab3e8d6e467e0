//! Batch norm + ReLU with batch statistics on plain slices: forward and backward passes.

use super::*;

/// Lanes of the partial sums below: 16 independent f32 sums vectorise (one f64 or f32 running
/// sum is a chain of dependent adds, 3 % of a training step in `channel_stats` alone).
/// Statistics and the backward's two sums each take one pass over the data.
const LANES: usize = 16;

/// `(Σ f(x[i], y[i]).0, Σ f(x[i], y[i]).1)` over pairs in order (`x` and `y` of one length)
/// as [`LANES`] f32 partial sums per block of 1024 values, the blocks added in f64 (the f32
/// part of each sum has 64 terms, its rounding far below batch norm's epsilon): two sums from
/// one pass over the data.
fn lane_sums(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    let mut total = (0f64, 0f64);
    for (block, other) in x.chunks(1024).zip(y.chunks(1024)) {
        let (mut first, mut second) = ([0f32; LANES], [0f32; LANES]);
        let (xs, ys) = (block.chunks_exact(LANES), other.chunks_exact(LANES));
        let (xr, yr) = (xs.remainder(), ys.remainder());
        for (a, b) in xs.zip(ys) {
            for l in 0..LANES {
                let (u, v) = f(a[l], b[l]);
                first[l] += u;
                second[l] += v;
            }
        }
        let (mut rest_first, mut rest_second) = (0f32, 0f32);
        for (&a, &b) in xr.iter().zip(yr) {
            let (u, v) = f(a, b);
            rest_first += u;
            rest_second += v;
        }
        total.0 += f64::from(first.iter().sum::<f32>() + rest_first);
        total.1 += f64::from(second.iter().sum::<f32>() + rest_second);
    }
    total
}

/// Per-channel mean and biased variance of `[n, c, positions]` data, from one pass: the sums
/// of `v - s` and `(v - s)²` (f32 lanes added in f64) with `s` the channel's first value, so
/// that `var = E[(v-s)²] - E[v-s]²` does not cancel (`s` lies within the data's spread).
pub(super) fn channel_stats(
    x: &[f32],
    n: usize,
    c: usize,
    positions: usize,
) -> (Vec<f32>, Vec<f32>) {
    let count = (n * positions) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes =
                || (0..n).map(move |b| &x[(b * c + ch) * positions..(b * c + ch + 1) * positions]);
            let shift = planes().find_map(|p| p.first().copied()).unwrap_or(0.0);
            let (sum, squares) = planes()
                .map(|p| {
                    lane_sums(p, p, |v, _| {
                        let d = v - shift;
                        (d, d * d)
                    })
                })
                .fold((0f64, 0f64), |(a, b), (u, v)| (a + u, b + v));
            let offset = sum / count;
            let var = (squares / count - offset * offset).max(0.0);
            ((f64::from(shift) + offset) as f32, var as f32)
        })
        .unzip()
}

/// `1 / sqrt(var + eps)` per channel.
pub(super) fn inv_std(variance: &[f32], epsilon: f64) -> Vec<f32> {
    variance
        .iter()
        .map(|&v| (1.0 / (f64::from(v) + epsilon).sqrt()) as f32)
        .collect()
}

/// The forward of batch norm + ReLU on `[n, c, positions]` data.
pub(super) struct NormForward {
    pub(super) output: Vec<f32>,
    pub(super) mean: Vec<f32>,
    pub(super) variance: Vec<f32>,
}

pub(super) fn norm_relu_forward(
    x: &[f32],
    [n, c, positions]: [usize; 3],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> NormForward {
    let (mean, variance) = channel_stats(x, n, c, positions);
    let inv = inv_std(&variance, epsilon);
    let mut output = zeroed(x.len());
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
pub(super) fn norm_relu_backward(
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
            let m = mean[ch];
            for b in 0..n {
                let r = (b * c + ch) * positions..(b * c + ch + 1) * positions;
                let (xs, gs) = (&x[r.clone()], &dy[r]);
                // The ReLU's gradient mask: passes where its input was positive.
                let (sum_g, sum_gx) = lane_sums(xs, gs, |v, g| {
                    let g = if v * scale + shift > 0.0 { g } else { 0.0 };
                    (g, g * (v - m))
                });
                db += sum_g;
                dg += sum_gx * f64::from(inv[ch]);
            }
            (dg as f32, db as f32)
        })
        .unzip();
    let count = (n * positions) as f32;
    let mut dx = zeroed(x.len());
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
