//! Train/validation split and the batch loader: decoding and augmentation run in parallel
//! (rayon) on a producer thread, a bounded number of batches ahead of the model.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::augment::{AugmentConfig, prepare_sample, sample_rng};
use super::dataset::SegmentationDataset;
use super::preprocess::Preprocess;
use crate::error::{Result, SegError};

/// A deterministic train/validation split of a dataset's pair indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Indices used for training.
    pub train: Vec<usize>,
    /// Indices used for validation.
    pub valid: Vec<usize>,
}

impl Split {
    /// Checks a validation fraction: strictly between 0 and 1.
    pub fn check_fraction(valid_fraction: f64) -> Result<()> {
        if valid_fraction > 0.0 && valid_fraction < 1.0 {
            Ok(())
        } else {
            Err(SegError::invalid(
                "valid_fraction",
                valid_fraction,
                "must be between 0 and 1 (e.g. 0.2)",
            ))
        }
    }

    /// Shuffles `0..len` with `seed` and keeps `round(len * valid_fraction)` (at least 1) for
    /// validation. Fails when either side would be empty.
    pub fn new(len: usize, valid_fraction: f64, seed: u64) -> Result<Self> {
        Self::check_fraction(valid_fraction)?;
        let n_valid = ((len as f64 * valid_fraction).round() as usize).max(1);
        if len < 2 || n_valid >= len {
            return Err(SegError::InvalidConfig(format!(
                "{len} pair(s) cannot be split into training and validation (valid_fraction = {valid_fraction}); add data"
            )));
        }
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_5917));
        let mut valid = order.split_off(len - n_valid);
        valid.sort_unstable();
        order.sort_unstable();
        Ok(Self {
            train: order,
            valid,
        })
    }
}

/// One batch ready for the model.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Normalised images, `[batch, channels, height, width]` row-major.
    pub images: Vec<f32>,
    /// Class ids, `[batch, height, width]` row-major.
    pub masks: Vec<u8>,
    /// Number of samples.
    pub len: usize,
    /// Dataset indices of the samples, in order.
    pub indices: Vec<usize>,
}

/// What a [`BatchLoader`] reads and how.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Shuffle the order each epoch (training) or keep it (validation).
    pub shuffle: bool,
    /// Augmentations, `None` for none.
    pub augment: Option<AugmentConfig>,
    /// Seed of shuffling and augmentation.
    pub seed: u64,
    /// How many batches the producer may run ahead.
    pub prefetch: usize,
}

/// The data loader's thread pool: half the cores (at least one), apart from rayon's global
/// pool where burn-flex runs the model; `None` (the global pool) when it cannot be built.
fn loader_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        rayon::ThreadPoolBuilder::new()
            .num_threads((cores / 2).max(1))
            .thread_name(|i| format!("seg-loader-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// An iterator over the batches of one epoch, produced on a background thread.
pub struct BatchLoader {
    receiver: Receiver<Result<Batch>>,
    producer: Option<JoinHandle<()>>,
    batches: usize,
    delivered: usize,
    failed: bool,
}

impl BatchLoader {
    /// Starts producing the batches of `epoch` over `indices`.
    pub fn start(
        dataset: Arc<SegmentationDataset>,
        indices: &[usize],
        preprocess: Arc<Preprocess>,
        config: &LoaderConfig,
        epoch: usize,
    ) -> Self {
        let batch_size = config.batch_size.max(1);
        let mut order = indices.to_vec();
        if config.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                config.seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407),
            ));
        }
        let batches = order.len().div_ceil(batch_size);
        let (sender, receiver) = sync_channel(config.prefetch.max(1));
        let augment = config.augment.clone();
        let seed = config.seed;
        let producer = std::thread::spawn(move || {
            for chunk in order.chunks(batch_size) {
                let prepare = || -> Result<Vec<(Vec<f32>, Vec<u8>)>> {
                    chunk
                        .par_iter()
                        .map(|&i| {
                            let raw = dataset.load(i)?;
                            let mut rng = sample_rng(seed, epoch, i);
                            prepare_sample(
                                &raw,
                                &preprocess,
                                augment.as_ref().map(|a| (a, &mut rng)),
                            )
                        })
                        .collect()
                };
                // Decoding and augmentation run on the loader's own pool, so that they never
                // queue behind (or delay) the model's kernels on rayon's global pool.
                let prepared = match loader_pool() {
                    Some(pool) => pool.install(prepare),
                    None => prepare(),
                };
                let batch = prepared.map(|samples| {
                    let mut images = Vec::with_capacity(samples.len() * samples[0].0.len());
                    let mut masks = Vec::with_capacity(samples.len() * samples[0].1.len());
                    for (img, mask) in samples {
                        images.extend_from_slice(&img);
                        masks.extend_from_slice(&mask);
                    }
                    Batch {
                        images,
                        masks,
                        len: chunk.len(),
                        indices: chunk.to_vec(),
                    }
                });
                let failed = batch.is_err();
                if sender.send(batch).is_err() || failed {
                    return; // consumer gone, or error delivered
                }
            }
        });
        Self {
            receiver,
            producer: Some(producer),
            batches,
            delivered: 0,
            failed: false,
        }
    }

    /// Number of batches this epoch yields.
    pub fn num_batches(&self) -> usize {
        self.batches
    }
}

impl Iterator for BatchLoader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Ok(batch) = self.receiver.recv() {
            self.delivered += 1;
            self.failed |= batch.is_err();
            return Some(batch);
        }
        // The producer is gone: a short epoch must be an error, never a silent early end.
        let producer = self.producer.take()?;
        match producer.join() {
            Err(panic) => Some(Err(SegError::Panicked {
                what: "the batch loader",
                message: crate::error::panic_message(panic.as_ref()),
            })),
            Ok(()) if !self.failed && self.delivered < self.batches => {
                Some(Err(SegError::Panicked {
                    what: "the batch loader",
                    message: format!(
                        "it stopped after {} of {} batches",
                        self.delivered, self.batches
                    ),
                }))
            }
            Ok(()) => None,
        }
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        // Unblock the producer (its sends fail once the receiver is gone), then reap it.
        let (_, dead) = sync_channel(0);
        drop(std::mem::replace(&mut self.receiver, dead));
        if let Some(handle) = self.producer.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_deterministic_disjoint_and_complete() {
        let a = Split::new(100, 0.2, 3).expect("split");
        assert_eq!(a, Split::new(100, 0.2, 3).expect("split"));
        assert_ne!(a, Split::new(100, 0.2, 4).expect("split"));
        assert_eq!(a.valid.len(), 20);
        let mut all: Vec<usize> = a.train.iter().chain(&a.valid).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert!(Split::new(1, 0.2, 0).is_err());
        assert!(Split::new(10, 1.5, 0).is_err());
    }
}
