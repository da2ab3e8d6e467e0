//! The process's allocator settings for training and prediction.
//!
//! A U-Net step allocates and frees tensors of megabytes to tens of megabytes, dozens of times.
//! glibc's malloc serves each of those with a fresh `mmap` and returns it with `munmap` (its
//! dynamic threshold stops at 32 MiB, and freed heap tops are trimmed): every free then costs a
//! TLB shootdown on every core and every new buffer a page fault per 4 KiB. Measured on the
//! throughput bench (flex, 2 threads): 23 % of the process's CPU time in the kernel, down to 3 %
//! with the buffers kept in the heap (BENCHMARKS.md, the allocator section).

use std::sync::Once;

/// On glibc, keeps large freed buffers in the process's heap for reuse instead of handing them
/// back to the OS (`M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` raised to 2 GiB). A process-wide
/// choice, so the binaries make it first thing in `main` (the library never does); idempotent,
/// and a no-op on other C libraries. The resident memory then stays at the run's peak instead
/// of falling between steps.
pub fn tune_allocator() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        glibc::keep_large_buffers();
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    /// `mallopt(M_MMAP_THRESHOLD, 2 GiB)` and `mallopt(M_TRIM_THRESHOLD, 2 GiB)`.
    #[allow(unsafe_code)]
    pub(super) fn keep_large_buffers() {
        // SAFETY: mallopt only changes malloc's tuning parameters (thread-safe: it takes the
        // arenas' locks); no memory is touched. A refused value (return 0) leaves glibc's
        // defaults, which are correct, only slower.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}
