//! The U-Net's 2x2, stride-2 max-pool, written so that it vectorises, and its backward.

use super::*;

/// 2x2, stride-2 max-pool of `[n, c, h, w]` data: `[n, c, h / 2, w / 2]`.
pub(super) fn max_pool2x2(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = zeroed(n * c * oh * ow);
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

/// The input gradient of [`max_pool2x2`]: each window's `dy` goes to the window's maximum (the
/// first in row-major order on ties, the last NaN if any, as burn's pooling picks it); the
/// rest, and odd trailing rows and columns, get 0.
pub(super) fn max_pool2x2_backward(x: &[f32], dy: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut dx = zeroed(n * c * h * w);
    if oh * ow == 0 {
        return dx;
    }
    dx.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .zip(dy.par_chunks(oh * ow))
        .for_each(|((d, plane), g)| {
            for (oy, g_row) in g.chunks_exact(ow).enumerate() {
                let rows = 2 * oy * w..(2 * oy + 2) * w;
                let (d0, d1) = d[rows.clone()].split_at_mut(w);
                let (x0, x1) = plane[rows].split_at(w);
                // Every element of the window written (0 but at the maximum): no scattered
                // stores, no branches on the data.
                for ((((d0, d1), x0), x1), &gv) in d0
                    .chunks_exact_mut(2)
                    .zip(d1.chunks_exact_mut(2))
                    .zip(x0.chunks_exact(2))
                    .zip(x1.chunks_exact(2))
                    .zip(g_row)
                {
                    let v = [x0[0], x0[1], x1[0], x1[1]];
                    let mut best = 0;
                    for k in 1..4 {
                        if v[k] > v[best] || v[k].is_nan() {
                            best = k;
                        }
                    }
                    let at = |k: usize| if k == best { gv } else { 0.0 };
                    d0.copy_from_slice(&[at(0), at(1)]);
                    d1.copy_from_slice(&[at(2), at(3)]);
                }
            }
        });
    dx
}
