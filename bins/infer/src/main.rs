//! `infer`: predicts masks with a registered model version (by alias or number) or a training
//! run, resolved through MLflow to its immutable lakeFS URI and verified by sha256 before it is
//! loaded. Exit codes: 0 ok, 1 error (or some inputs could not be read), 2 usage or
//! configuration, 130 interrupted.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use pipeline::infer::{ImageResult, InferOptions, InferSummary};
use pipeline::model_ref::ModelChoice;
use pipeline::terminal::{self, Progress};
use pipeline::{Flags, exit};

/// Predict segmentation masks with a verified model: by default the registered model's alias
/// (register.alias) on the images of its training data commit; masks at each image's size.
#[derive(Debug, Parser)]
// `--version` picks a model version here, so the binary's own version is not a flag.
#[command(about, long_about = None, disable_version_flag = true)]
struct Cli {
    /// TOML file layered over configs/default.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Use the registered version under this alias (default: register.alias, champion).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["model_version", "run_id", "interactive"])]
    alias: Option<String>,
    /// Use this version of the registered model (register.model_name).
    #[arg(long = "version", value_name = "N", conflicts_with_all = ["run_id", "interactive"], value_parser = clap::value_parser!(u64).range(1..))]
    model_version: Option<u64>,
    /// Use the model of this training run.
    #[arg(long, value_name = "ID", conflicts_with = "interactive")]
    run_id: Option<String>,
    /// List the training runs and read the choice from stdin (empty line = newest).
    #[arg(long)]
    interactive: bool,
    /// What to predict: a folder (recursively; a folder with images/ and masks/ is scored), an
    /// image file, lakefs://repo/ref/prefix, or - for paths on stdin. Default: the images of
    /// the model's training data commit.
    #[arg(long, value_name = "PATH|URI|-")]
    input: Option<String>,
    /// Where masks are written, keeping the inputs' relative paths (infer.output_dir).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Also write colour overlays under <output>/overlays/ (infer.overlay).
    #[arg(long)]
    overlay: bool,
    /// Test-time augmentation: average each prediction with those of infer.tta_views symmetric
    /// views (by default 2: the image and its left-right mirror; infer.tta).
    #[arg(long)]
    tta: bool,
    /// Views of test-time augmentation (implies --tta): 2 (left-right mirror), 4 (both
    /// mirrors), 8 (mirrors and transposes) (infer.tta_views).
    #[arg(long, value_name = "N")]
    tta_views: Option<u64>,
    /// Replace masks (and overlays) that an earlier infer wrote in the output folder; infer
    /// never replaces inputs, ground truth, or files it did not write.
    #[arg(long)]
    overwrite: bool,
    /// flex, tch or tch-cuda:N (infer.backend; default train.backend).
    #[arg(long, value_name = "BACKEND")]
    backend: Option<String>,
    /// Images per forward pass (infer.batch_size).
    #[arg(long, value_name = "N")]
    batch_size: Option<u64>,
    /// Version the masks in lakeFS (predictions/<model>-v<version>/) and log an MLflow
    /// inference run, linked both ways.
    #[arg(long)]
    commit: bool,
    /// MLflow experiment of --interactive's runs and of the inference run (mlflow.experiment).
    #[arg(long, value_name = "NAME")]
    experiment: Option<String>,
    /// One JSON line per image on stdout, then a summary line.
    #[arg(long)]
    json: bool,
    /// No progress bar; only warnings and errors on stderr.
    #[arg(long)]
    quiet: bool,
}

impl Cli {
    fn flags(&self) -> Flags {
        let mut f = Flags::new();
        f.set(
            "infer.output_dir",
            self.output
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        )
        .set("infer.backend", self.backend.clone())
        .set("infer.batch_size", self.batch_size)
        .set("mlflow.experiment", self.experiment.clone());
        if self.overlay {
            f.set("infer.overlay", Some(true));
        }
        if self.tta || self.tta_views.is_some() {
            f.set("infer.tta", Some(true));
        }
        f.set("infer.tta_views", self.tta_views);
        f
    }

    fn choice(&self) -> Option<ModelChoice> {
        if let Some(a) = &self.alias {
            Some(ModelChoice::Alias(a.clone()))
        } else if let Some(v) = self.model_version {
            Some(ModelChoice::Version(v.to_string()))
        } else if let Some(r) = &self.run_id {
            Some(ModelChoice::RunId(r.clone()))
        } else if self.interactive {
            Some(ModelChoice::Interactive)
        } else {
            None
        }
    }
}

fn main() {
    pipeline::tune_allocator();
    let started = Instant::now();
    let cli = Cli::parse();
    terminal::init_logging(cli.quiet);
    let runtime = match terminal::runtime() {
        Ok(rt) => rt,
        Err(e) => std::process::exit(terminal::report(&e)),
    };
    let code = runtime.block_on(run(cli, started));
    runtime.shutdown_background();
    std::process::exit(code);
}

async fn run(cli: Cli, started: Instant) -> i32 {
    let progress = Progress::new(cli.quiet);
    let opts = InferOptions {
        config_file: cli.config.clone(),
        flags: cli.flags(),
        choice: cli.choice(),
        input: cli.input.clone(),
        commit: cli.commit,
        overwrite: cli.overwrite,
        quiet: cli.quiet,
        interrupted: terminal::interrupt_flag(|| {
            eprintln!("{}", terminal::SECOND_INTERRUPT);
            std::process::exit(exit::INTERRUPTED)
        }),
        started: Some(started),
    };
    let json = cli.json;
    let emit = move |r: &ImageResult| {
        if json && let Err(e) = terminal::print_json(r, &r.input) {
            terminal::report(&e);
        }
    };
    match pipeline::infer::infer(opts, &progress, emit).await {
        Ok(summary) => {
            if cli.json {
                if let Err(e) = terminal::print_json(&summary, "the summary") {
                    return terminal::report(&e);
                }
            } else {
                print_summary(&summary);
            }
            if summary.failed > 0 {
                eprintln!(
                    "error: {} of {} inputs could not be read (each named above) and have no mask; the other {} masks are in {}",
                    summary.failed,
                    summary.failed + summary.images,
                    summary.images,
                    summary.output_dir.display()
                );
                return exit::ERROR;
            }
            exit::OK
        }
        Err(e) => terminal::report(&e),
    }
}

fn print_summary(s: &InferSummary) {
    let m = &s.model;
    let tta = if s.tta {
        format!(", {}-view TTA", s.tta_views)
    } else {
        String::new()
    };
    println!(
        "predicted {} masks with {} (run {}) in {:.2}s ({:.1} images/s, {}{tta})",
        s.images,
        m.label(),
        m.run_id,
        s.seconds,
        s.images_per_sec,
        s.backend
    );
    println!(
        "  model:   {} (sha256 {} verified)",
        m.model_uri, m.model_sha256
    );
    println!("  input:   {}", s.input_ref);
    println!("  masks:   {}", s.output_dir.display());
    if let Some(t) = &s.metrics {
        println!(
            "  metrics: iou {:.4}  dice {:.4}  (mean with background: iou {:.4}  dice {:.4})  pixel accuracy {:.4} ({} images with ground truth)",
            t.iou,
            t.dice,
            t.mean_iou_with_background,
            t.mean_dice_with_background,
            t.pixel_accuracy,
            t.images
        );
        if let Some(rate) = t.false_alarm_rate {
            println!(
                "  false alarms: {} of {} images without foreground in their ground truth got more than 1 % of their pixels predicted as foreground ({:.1} %; {} got any)",
                t.false_alarm_images,
                t.empty_truth_images,
                100.0 * rate,
                t.any_foreground_images
            );
        }
    }
    if let (Some(uri), Some(run)) = (&s.predictions_uri, &s.inference_run_url) {
        println!("  lakeFS:  {uri}");
        println!("  MLflow:  {run}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
