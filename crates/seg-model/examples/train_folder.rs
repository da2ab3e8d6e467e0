//! Trains the U-Net on a binary dataset folder within a time budget and prints validation
//! Dice/IoU per epoch (the real-data run of BENCHMARKS.md):
//!
//! ```text
//! cargo run --release -p seg-model --example train_folder -- ../shared/datasets/kvasir-seg 128 1800 [backend]
//! ```

use seg_model::data::{MaskEncoding, SegmentationDataset, Split};
use seg_model::{BackendKind, EpochReport, Flow, TrainConfig, TrainObserver, UNetConfig};

struct Print;

impl TrainObserver for Print {
    fn on_train_start(&mut self, s: &seg_model::TrainStart) -> Flow {
        println!(
            "train {} / valid {} pairs, {} batches/epoch, {} parameters, backend {}",
            s.train_samples, s.valid_samples, s.batches_per_epoch, s.parameters, s.backend
        );
        Flow::Continue(())
    }
    fn on_epoch_end(&mut self, r: &EpochReport) -> Flow {
        println!(
            "epoch {:>3}  lr {:.2e}  train_loss {:.4}  valid_loss {:.4}  dice {:.4}  iou {:.4}  mIoU {:.4}  {:.1} img/s  {:.0}s{}",
            r.epoch,
            r.learning_rate,
            r.train_loss,
            r.valid_loss,
            r.metrics.foreground_dice,
            r.metrics.foreground_iou,
            r.metrics.mean_iou,
            r.train_images_per_sec,
            r.seconds,
            if r.is_best { "  *best" } else { "" }
        );
        Flow::Continue(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    seg_model::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .ok_or("usage: train_folder DATASET_DIR [SIZE] [BUDGET_SECS] [BACKEND]")?;
    let size: usize = args.get(1).map_or(Ok(128), |s| s.parse())?;
    let budget: f64 = args.get(2).map_or(Ok(1800.0), |s| s.parse())?;
    let backend = args
        .get(3)
        .map_or(Ok(BackendKind::default_kind()), |s| BackendKind::parse(s))?;
    let ds = SegmentationDataset::open(dir, MaskEncoding::default())?;
    let config = TrainConfig {
        epochs: 200,
        image_size: seg_model::ImageSize::square(size),
        time_budget_secs: budget,
        learning_rate: 2e-3,
        schedule: seg_model::LrSchedule::Constant,
        selection_metric: seg_model::Metric::ForegroundDice,
        backend,
        ..TrainConfig::default()
    };
    let split = Split::new(ds.len(), 0.2, config.seed)?;
    let outcome = seg_model::train(&UNetConfig::new(), &config, &ds, &split, &mut Print)?;
    let best = &outcome.history[outcome.best_epoch - 1];
    println!(
        "best epoch {}: dice {:.4} iou {:.4} (of {} epochs)",
        best.epoch,
        best.metrics.foreground_dice,
        best.metrics.foreground_iou,
        outcome.history.len()
    );
    Ok(())
}
