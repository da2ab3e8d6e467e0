//! `register_model`: verifies a training run's model in lakeFS, applies the promotion criteria
//! and registers an MLflow model version whose source is the immutable lakeFS URI. Exit codes:
//! 0 ok, 1 error (criteria not met, checksum mismatch, missing run), 2 usage or configuration,
//! 130 interrupted.

use std::path::PathBuf;

use clap::Parser;
use pipeline::register::{self, Registration, RunChoice};
use pipeline::terminal;
use pipeline::{Flags, PipelineError, exit};

/// Register a trained model: pick the run, verify the model's bytes in lakeFS, check the
/// promotion criteria, create the model version (source = lakefs://repo/<commit>/...), set the
/// alias and tag the model commit in lakeFS.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// TOML file layered over configs/default.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Register this run (default: the newest FINISHED run with a model).
    #[arg(long, value_name = "ID", conflicts_with_all = ["best_by", "manual"])]
    run_id: Option<String>,
    /// Register the best run by this metric (e.g. iou, dice, accuracy; loss metrics: lowest).
    #[arg(long, value_name = "METRIC", conflicts_with = "manual")]
    best_by: Option<String>,
    /// Show the runs and read the choice from stdin (`echo 2 | register_model --manual`).
    #[arg(long)]
    manual: bool,
    /// Alias to set on the version (register.alias, default champion).
    #[arg(long, value_name = "NAME")]
    alias: Option<String>,
    /// Register even when the promotion criteria are not met (tagged forced=true).
    #[arg(long)]
    force: bool,
    /// MLflow experiment to pick runs from (mlflow.experiment).
    #[arg(long, value_name = "NAME")]
    experiment: Option<String>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Only warnings and errors on stderr.
    #[arg(long)]
    quiet: bool,
}

fn main() {
    let cli = Cli::parse();
    terminal::init_logging(cli.quiet);
    let runtime = match terminal::runtime() {
        Ok(rt) => rt,
        Err(e) => std::process::exit(terminal::report(&e)),
    };
    let code = match runtime.block_on(run(&cli)) {
        Ok(r) => {
            print_result(&cli, &r);
            exit::OK
        }
        Err(e) => terminal::report(&e),
    };
    std::process::exit(code);
}

async fn run(cli: &Cli) -> Result<Registration, PipelineError> {
    let mut flags = Flags::new();
    flags
        .set("register.alias", cli.alias.clone())
        .set("mlflow.experiment", cli.experiment.clone());
    let config = pipeline::config::load(cli.config.as_deref(), flags)?.config;
    let services = pipeline::services::connect(&config).await?;
    let choice = match (&cli.run_id, &cli.best_by, cli.manual) {
        (Some(id), _, _) => RunChoice::Id(id.clone()),
        (_, Some(metric), _) => RunChoice::BestBy(metric.clone()),
        (_, _, true) => RunChoice::Manual,
        _ => RunChoice::Newest,
    };
    let run = register::choose_run(&services, &config, &choice).await?;
    tracing::info!("run {} ({})", run.info.run_id, run.info.run_name);
    let file = register::verify_model(&services, &config, &run).await?;
    tracing::info!("verified {} (sha256 matches the run)", file.display());
    let unmet = register::unmet_criteria(&config, &run)?;
    if !unmet.is_empty() && !cli.force {
        return Err(PipelineError::Criteria(format!(
            "{}; nothing registered (--force registers anyway)",
            unmet.join("; ")
        )));
    }
    if !unmet.is_empty() {
        tracing::warn!("registering with --force: {}", unmet.join("; "));
    }
    register::register(
        &services,
        &config,
        &run,
        &config.register.alias,
        !unmet.is_empty(),
    )
    .await
}

fn print_result(cli: &Cli, r: &Registration) {
    if cli.json {
        terminal::print_json(r, "the result");
        return;
    }
    println!(
        "{} {} version {} (alias {}{})",
        if r.created {
            "registered"
        } else {
            "already registered:"
        },
        r.model_name,
        r.version,
        r.alias,
        r.alias_moved_from
            .as_ref()
            .map_or(String::new(), |v| format!(", moved from version {v}"))
    );
    println!("  source:     {}", r.source);
    println!("  run:        {}", r.run_id);
    println!("  data:       {}", r.data_commit);
    println!("  sha256:     {}", r.model_sha256);
    println!("  lakeFS tag: {}", r.lakefs_tag);
    if r.forced {
        println!("  forced:     criteria not met");
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
