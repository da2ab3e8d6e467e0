//! Batch norm + ReLU with batch statistics on plain slices: forward and backward passes.

use super::*;

/// Lanes of the partial sums below: 16 independent f32 sums vectorise (one f64 or f32 running
/// sum is a chain of dependent adds, 3 % of a training step in `channel_stats` alone).
const LANES: usize = 16;

/// `Σ f(x[i], y[i])` (pairs in order; `y` may be shorter only if empty, then 0 is passed) as
/// [`LANES`] f32 partial sums per block of 1024 values, the blocks added in f64: the f32 part
/// of each sum has 64 terms, its rounding far below batch norm's epsilon.
fn lane_sum(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let paired = !y.is_empty();
    let mut total = 0f64;
    for (i, block) in x.chunks(1024).enumerate() {
        let other = if paired {
            &y[i * 1024..i * 1024 + block.len()]
        } else {
            &[][..]
        };
        let mut acc = [0f32; LANES];
        let mut rest = 0f32;
        if paired {
            let (xs, ys) = (block.chunks_exact(LANES), other.chunks_exact(LANES));
            let (xr, yr) = (xs.remainder(), ys.remainder());
            for (a, b) in xs.zip(ys) {
                for l in 0..LANES {
                    acc[l] += f(a[l], b[l]);
                }
            }
            rest = xr.iter().zip(yr).map(|(&a, &b)| f(a, b)).sum();
        } else {
            let xs = block.chunks_exact(LANES);
            let xr = xs.remainder();
            for a in xs {
                for l in 0..LANES {
                    acc[l] += f(a[l], 0.0);
                }
            }
            rest += xr.iter().map(|&a| f(a, 0.0)).sum::<f32>();
        }
        total += f64::from(acc.iter().sum::<f32>() + rest);
    }
    total
}

/// Per-channel mean and biased variance of `[n, c, positions]` data (two passes, sums of
/// f32 lanes added in f64).
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
            let mean = planes().map(|p| lane_sum(p, &[], |v, _| v)).sum::<f64>() / count;
            let m = mean as f32;
            let var = planes()
                .map(|p| {
                    lane_sum(p, &[], |v, _| {
                        let d = v - m;
                        d * d
                    })
                })
                .sum::<f64>()
                / count;
            (mean as f32, var as f32)
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
                let pass = |v: f32, g: f32| if v * scale + shift > 0.0 { g } else { 0.0 };
                db += lane_sum(xs, gs, pass);
                dg += lane_sum(xs, gs, |v, g| pass(v, g) * (v - m)) * f64::from(inv[ch]);
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
