//! Batch norm + ReLU with batch statistics on plain slices: forward and backward passes.

use super::*;

/// Per-channel mean and biased variance of `[n, c, positions]` data (two passes, f64 sums).
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
