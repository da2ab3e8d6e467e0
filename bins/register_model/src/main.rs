//! `register_model`: verifies a training run's model in lakeFS, applies the promotion criteria,
//! registers an MLflow model version whose source is the immutable lakeFS URI and, with an
//! evaluation set, moves the alias only when the challenger beats the champion on it. Exit
//! codes: 0 ok, 1 error (checksum mismatch, missing run, a server), 2 usage or configuration,
//! 3 promotion criteria not met (nothing registered, or registered but not promoted), 130
//! interrupted.

use std::path::PathBuf;

use clap::Parser;
use pipeline::register::{self, Decision, Registration, RunChoice};
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
    /// Register (and move the alias) even when the promotion criteria are not met or the
    /// challenger is not better than the champion (tagged forced=true / decision=forced).
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
    pipeline::tune_allocator();
    let cli = Cli::parse();
    terminal::init_logging(cli.quiet);
    let runtime = match terminal::runtime() {
        Ok(rt) => rt,
        Err(e) => std::process::exit(terminal::report(&e)),
    };
    let code = match runtime.block_on(run(&cli)) {
        Ok(r) => match (print_result(&cli, &r), &r.decision, &r.evaluation) {
            (Err(e), _, _) => terminal::report(&e),
            (Ok(()), Decision::Refused, Some(e)) => {
                terminal::report(&PipelineError::Criteria(format!(
                    "{}; version {} is registered, the alias {} stays (--force moves it)",
                    e.line, r.version, r.alias
                )))
            }
            _ => exit::OK,
        },
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
    register::promote(&services, &config, &choice, cli.force).await
}

/// Prints the result (the JSON object, or lines); an error when the JSON could not be written.
fn print_result(cli: &Cli, r: &Registration) -> Result<(), PipelineError> {
    if cli.json {
        return terminal::print_json(r, "the result");
    }
    let promoted = r.decision != Decision::Refused;
    println!(
        "{} {} version {} ({}{})",
        if r.created {
            "registered"
        } else {
            "already registered:"
        },
        r.model_name,
        r.version,
        if promoted {
            format!("alias {}", r.alias)
        } else {
            format!("not promoted: alias {} unchanged", r.alias)
        },
        r.alias_moved_from
            .as_ref()
            .map_or(String::new(), |v| format!(", moved from version {v}"))
    );
    if let Some(e) = &r.evaluation {
        println!("  decision:   {}", e.line);
        println!(
            "  evaluation: {} ({})",
            e.evaluation_run_url, e.evaluation_uri
        );
    }
    println!("  source:     {}", r.source);
    println!("  run:        {}", r.run_id);
    println!("  data:       {}", r.data_commit);
    println!("  sha256:     {}", r.model_sha256);
    println!("  lakeFS tag: {}", r.lakefs_tag);
    if r.forced {
        println!("  forced:     criteria not met");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
