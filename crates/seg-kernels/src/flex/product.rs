//! Matrix products on the gemm crate, per-thread scratch buffers and the image-parallel loop.

use super::*;

/// A read-only matrix view: element `(r, c)` at `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    pub(super) data: &'a [f32],
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) rs: usize,
    pub(super) cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows x cols` matrix.
    pub(super) fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// Columns `cols` of a row-major matrix with `stride` floats per row.
    pub(super) fn band(
        data: &'a [f32],
        rows: usize,
        stride: usize,
        cols: std::ops::Range<usize>,
    ) -> Self {
        Self {
            data: &data[cols.start..],
            rows,
            cols: cols.len(),
            rs: stride,
            cs: 1,
        }
    }

    /// This matrix transposed (no copy).
    pub(super) fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    pub(super) fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst = a·b` (or `dst += a·b` with `accumulate`), `dst` row-major `a.rows x b.cols` with
/// `dst_rs` floats per row.
///
/// One of the workspace's two `unsafe` blocks (the other is `mallopt` in src/alloc.rs): the
/// gemm crate's API takes raw pointers and strides.
#[allow(unsafe_code)]
pub(super) fn matmul(
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
        ::gemm::Parallelism::Rayon(0)
    } else {
        ::gemm::Parallelism::None
    };
    // SAFETY: `fits` checked that every element the strides reach lies inside `a.data` and
    // `b.data`, and the length check that `dst` holds `m` rows of `dst_rs` floats (the last
    // one `n`); the slices do not alias (`dst` is borrowed mutably).
    unsafe {
        ::gemm::gemm(
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
pub(super) fn per_image_parallel(n: usize) -> bool {
    n >= rayon::current_num_threads()
}

thread_local! {
    /// Each thread's im2col buffer, kept between calls: a fresh multi-megabyte allocation per
    /// image cost a page fault per 4 KiB touched.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `len` zeros, written by all of rayon's threads: a buffer the kernels then overwrite or
/// accumulate into. Filled on the calling thread (`vec![0.0; len]`, a memset once the
/// allocator reuses heap memory) it left the other core idle for ~5 % of a training step; one
/// float at a time in parallel it was ~4 % (rayon checks every item it collects), so the
/// buffer is written as 64-byte blocks and then viewed as floats.
pub(super) fn zeroed(len: usize) -> Vec<f32> {
    const BLOCK: usize = 16;
    let mut blocks: Vec<[f32; BLOCK]> = Vec::with_capacity(len.div_ceil(BLOCK));
    blocks.par_extend(rayon::iter::repeat_n([0.0; BLOCK], len / BLOCK).with_min_len(1 << 11));
    // Same alignment, and a 64-byte block is 16 floats: the cast cannot fail.
    let mut v: Vec<f32> = bytemuck::allocation::try_cast_vec(blocks).unwrap_or_default();
    v.resize(len, 0.0);
    v
}

/// A buffer of `len` floats in rows of `row` (a weight regrouped or transposed for a kernel),
/// each row filled by `fill(row index, row)` on one of rayon's threads.
pub(super) fn regrouped(
    len: usize,
    row: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let mut v = zeroed(len);
    if row > 0 {
        v.par_chunks_mut(row)
            .with_min_len((1 << 12) / row + 1)
            .enumerate()
            .for_each(|(r, out)| fill(r, out));
    }
    v
}

/// Runs `f` with this thread's scratch buffer of `len` floats (arbitrary contents).
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
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

/// `Σ_b` of per-image terms: `add(b, acc)` adds image `b`'s term into `acc` (`len` floats,
/// zeroed at first). One run of images per thread, so that each run is one accumulator to
/// zero and to add up.
pub(super) fn sum_over_images(
    n: usize,
    len: usize,
    add: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let zeros = || vec![0.0f32; len];
    (0..n)
        .into_par_iter()
        .with_min_len(n.div_ceil(rayon::current_num_threads()))
        .fold(zeros, |mut acc, b| {
            add(b, &mut acc);
            acc
        })
        .reduce(zeros, |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            a
        })
}

/// Runs `f(image index, image chunk of out, scratch)` for every image, in parallel when
/// [`per_image_parallel`]; `scratch` (`scratch_len` floats, the running thread's) has arbitrary
/// contents on entry.
pub(super) fn for_images(
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
