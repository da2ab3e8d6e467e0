//! The U-Net's 2x2, stride-2 max-pool at inference, written so that it vectorises.

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
