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
    /// The indices (on either side) whose mask has no foreground: the negatives.
    pub negatives: Vec<usize>,
}

/// Salt of the negatives' own shuffle ([`Split::stratified`]).
const NEGATIVE_SALT: u64 = 0x4E45_4741_5449_5645;
/// Salt of each epoch's draw of negatives ([`Split::epoch_train`]).
const DRAW_SALT: u64 = 0x4452_4157;

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
            negatives: Vec::new(),
        })
    }

    /// Splits the pairs with foreground and the `negatives` (pairs without) each on their
    /// own, so that both sides hold negatives in the dataset's proportion. The pairs with
    /// foreground split exactly as [`Split::new`] splits them alone: adding negatives to a
    /// dataset leaves the split of its other pairs as it was. Fewer than two negatives all go
    /// to training.
    pub fn stratified(
        len: usize,
        negatives: &[usize],
        valid_fraction: f64,
        seed: u64,
    ) -> Result<Self> {
        let mut negatives: Vec<usize> = negatives.iter().copied().filter(|&i| i < len).collect();
        negatives.sort_unstable();
        negatives.dedup();
        let positives: Vec<usize> = (0..len)
            .filter(|i| negatives.binary_search(i).is_err())
            .collect();
        if positives.len() < 2 && !negatives.is_empty() {
            return Err(SegError::InvalidConfig(format!(
                "{} of the {len} pairs have foreground in their mask: at least 2 are needed to split into training and validation; add pairs with objects",
                positives.len()
            )));
        }
        let own = Self::new(positives.len(), valid_fraction, seed)?;
        let mut train: Vec<usize> = own.train.iter().map(|&i| positives[i]).collect();
        let mut valid: Vec<usize> = own.valid.iter().map(|&i| positives[i]).collect();
        match Self::new(negatives.len(), valid_fraction, seed ^ NEGATIVE_SALT) {
            Ok(neg) => {
                train.extend(neg.train.iter().map(|&i| negatives[i]));
                valid.extend(neg.valid.iter().map(|&i| negatives[i]));
            }
            Err(_) => train.extend(&negatives),
        }
        train.sort_unstable();
        valid.sort_unstable();
        Ok(Self {
            train,
            valid,
            negatives,
        })
    }

    /// The training pairs of `epoch`: with `negative_fraction` every training pair with
    /// foreground plus a fresh seeded draw of the training negatives making up that share of
    /// the epoch (all of them when fewer exist); without it every training pair.
    pub fn epoch_train(
        &self,
        negative_fraction: Option<f64>,
        seed: u64,
        epoch: usize,
    ) -> Vec<usize> {
        let Some(fraction) = negative_fraction else {
            return self.train.clone();
        };
        let (mut negatives, mut epoch_pairs): (Vec<usize>, Vec<usize>) = self
            .train
            .iter()
            .partition(|i| self.negatives.binary_search(i).is_ok());
        let fraction = fraction.clamp(0.0, 0.99);
        let wanted = (epoch_pairs.len() as f64 * fraction / (1.0 - fraction)).round() as usize;
        negatives.shuffle(&mut ChaCha8Rng::seed_from_u64(
            seed ^ DRAW_SALT ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ));
        negatives.truncate(wanted);
        epoch_pairs.extend(negatives);
        epoch_pairs.sort_unstable();
        epoch_pairs
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
    fn the_stratified_split_keeps_the_split_of_the_pairs_with_foreground() {
        // 10 pairs with foreground, then 6 negatives interleaved among them.
        let len = 16;
        let negatives = [1, 4, 7, 10, 13, 15];
        let positives: Vec<usize> = (0..len).filter(|i| !negatives.contains(i)).collect();
        let alone = Split::new(positives.len(), 0.2, 5).expect("split");
        let split = Split::stratified(len, &negatives, 0.2, 5).expect("split");
        let keep = |side: &[usize]| -> Vec<usize> {
            side.iter()
                .copied()
                .filter(|i| !negatives.contains(i))
                .collect()
        };
        let map = |side: &[usize]| -> Vec<usize> { side.iter().map(|&i| positives[i]).collect() };
        assert_eq!(keep(&split.valid), map(&alone.valid));
        assert_eq!(keep(&split.train), map(&alone.train));
        // Negatives on both sides (1 of 6 validated at 0.2), none lost, none twice.
        let valid_negatives = split.valid.iter().filter(|i| negatives.contains(i)).count();
        assert_eq!(valid_negatives, 1);
        let mut all = [split.train.clone(), split.valid.clone()].concat();
        all.sort_unstable();
        assert_eq!(all, (0..len).collect::<Vec<_>>());
        assert_eq!(split.negatives, negatives);
        // Without negatives it is the plain split.
        assert_eq!(
            Split::stratified(10, &[], 0.2, 5).expect("split"),
            Split::new(10, 0.2, 5).expect("split")
        );
        // Only negatives (or one pair with foreground) cannot train.
        assert!(Split::stratified(4, &[0, 1, 2], 0.2, 5).is_err());
    }

    #[test]
    fn each_epoch_draws_its_share_of_negatives_afresh() {
        let negatives: Vec<usize> = (100..200).collect();
        let split = Split::stratified(200, &negatives, 0.2, 3).expect("split");
        let train_negatives = split.train.iter().filter(|&&i| i >= 100).count();
        assert_eq!(
            split.epoch_train(None, 3, 1),
            split.train,
            "unset: everything"
        );
        let one = split.epoch_train(Some(0.2), 3, 1);
        let two = split.epoch_train(Some(0.2), 3, 2);
        let negatives_in = |e: &[usize]| e.iter().filter(|&&i| i >= 100).count();
        // 80 pairs with foreground train: 0.2 of the epoch is 20 negatives.
        assert_eq!(one.len(), 100);
        assert_eq!(negatives_in(&one), 20);
        assert_ne!(one, two, "another epoch, another draw");
        assert_eq!(one, split.epoch_train(Some(0.2), 3, 1), "seeded");
        assert_eq!(negatives_in(&split.epoch_train(Some(0.0), 3, 1)), 0);
        // More wanted than exist: all of them.
        assert_eq!(
            negatives_in(&split.epoch_train(Some(0.9), 3, 1)),
            train_negatives
        );
    }

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
