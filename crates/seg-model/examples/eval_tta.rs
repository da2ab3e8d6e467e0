//! Scores a saved checkpoint on the validation split `train` used (the seeded split of the
//! dataset folder) without test-time augmentation and with each TTA mode, at the model's
//! training size (what `val_dice` / `val_tta_dice` measure), with the false alarms on the
//! validation negatives and the threshold `train.choose_threshold` would choose, as in
//! BENCHMARKS.md:
//!
//! ```text
//! cargo run -p seg-model --example eval_tta -- MODEL.segm DATASET_DIR [VALID_FRACTION] [SPLIT_SEED]
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use seg_model::data::{LoaderConfig, SegmentationDataset, Split};
use seg_model::loss::LossConfig;
use seg_model::{BackendKind, Evaluation, Tta};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    seg_model::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: eval_tta MODEL.segm DATASET_DIR [VALID_FRACTION] [SPLIT_SEED]";
    let (model, dir) = match (args.first(), args.get(1)) {
        (Some(m), Some(d)) => (m, d),
        _ => return Err(usage.into()),
    };
    let fraction: f64 = args.get(2).map_or(Ok(0.2), |s| s.parse())?;
    let seed: u64 = args.get(3).map_or(Ok(42), |s| s.parse())?;
    let device = BackendKind::default_kind().device();
    let checkpoint = seg_model::checkpoint::load(Path::new(model), &device)?;
    let dataset = SegmentationDataset::open(dir, checkpoint.meta.mask_encoding.clone())?;
    let split = Split::stratified(dataset.len(), &dataset.empty_masks()?, fraction, seed)?;
    println!(
        "{} validation pairs of {} ({dir}), split seed {seed}",
        split.valid.len(),
        dataset.len()
    );
    let base = Evaluation {
        dataset: Arc::new(dataset),
        preprocess: Arc::new(checkpoint.meta.preprocess.clone()),
        loader: LoaderConfig {
            batch_size: 8,
            shuffle: false,
            augment: None,
            seed: 0,
            prefetch: 2,
        },
        loss: LossConfig::default(),
        num_classes: checkpoint.meta.model.num_classes,
        device,
        tta: Tta::Off,
    };
    for tta in [Tta::Off, Tta::Flip, Tta::Flips, Tta::Dihedral] {
        let started = Instant::now();
        let (scores, sweep) = Evaluation {
            tta,
            ..base.clone()
        }
        .run_swept(&checkpoint.model, &split.valid, true)?;
        let (m, negatives) = match scores.tta {
            Some(m) => (m, scores.tta_negatives),
            None => (scores.metrics, scores.negatives),
        };
        let chosen = sweep.map(|s| s.best());
        println!(
            "{} views: foreground dice {:.4}  iou {:.4}{}{}  ({:.1} s)",
            tta.views(),
            m.dice,
            m.iou,
            negatives.map_or(String::new(), |n| format!(
                "  false alarms {} of {} negatives, dice without them {:.4}",
                n.false_alarms.false_alarms, n.false_alarms.empty_truth_images, n.positive.dice
            )),
            chosen.map_or(String::new(), |c| format!(
                "  threshold {:.2}: dice {:.4} (0.5: {:.4})",
                c.threshold, c.dice, c.dice_at_half
            )),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
