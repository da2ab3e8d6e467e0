//! Everything the three binaries show a person or read from one: progress bars, prompts and
//! run tables on stderr, logging, Ctrl-C, the one error line and JSON lines on stdout. The
//! process exit itself lives in the binaries.

mod progress;
mod prompt;
mod table;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use progress::Progress;
pub use prompt::read_choice;
pub use table::{Table, format_utc, truncate_chars};

use crate::error::PipelineError;

/// Logs go to stderr: `info` for this project's crates (`warn` with `quiet`), `warn` for the
/// rest; `RUST_LOG` overrides.
pub fn init_logging(quiet: bool) {
    let level = if quiet { "warn" } else { "info" };
    let default = format!(
        "warn,pipeline={level},train={level},register_model={level},infer={level},lakefs_client={level},mlflow_client={level},rest_transport={level}"
    );
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}

/// The line a binary prints when a second Ctrl-C stops it at once.
pub const SECOND_INTERRUPT: &str = "error: interrupted twice: stopped at once; nothing half-done was merged into lakeFS, but a temporary tx-* branch may remain (the next run on this host removes it once its process is gone and it is 10 minutes old; `train --status` lists them), and a started MLflow run stays RUNNING until the next run in its experiment ends it FAILED";

/// Sets the returned flag on the first Ctrl-C or SIGTERM (work stops at the next safe point)
/// and calls `on_second` on a second one (the binaries exit there). Call inside a tokio
/// runtime.
pub fn interrupt_flag(on_second: impl FnOnce() + Send + 'static) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    tokio::spawn(async move {
        if interrupt().await {
            tracing::warn!(
                "interrupted: stopping at the next safe point (interrupt again to quit now)"
            );
            set.store(true, Ordering::SeqCst);
            if interrupt().await {
                on_second();
            }
        }
    });
    flag
}

/// Waits for Ctrl-C (SIGINT) or, on Unix, SIGTERM; false when no handler can be installed.
async fn interrupt() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return tokio::signal::ctrl_c().await.is_ok();
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.is_ok(),
            _ = term.recv() => true,
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}

/// The multi-threaded tokio runtime of a binary.
pub fn runtime() -> Result<tokio::runtime::Runtime, PipelineError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| PipelineError::Internal(format!("cannot start the async runtime: {e}")))
}

/// Prints `error: <message>` as one line on stderr and returns the exit code.
pub fn report(e: &PipelineError) -> i32 {
    let text = e.to_string().replace('\n', " ");
    eprintln!("error: {text}");
    e.exit_code()
}

/// Prints `value` as one JSON line on stdout; an error naming `what` when it cannot be
/// written as JSON (nothing is printed then).
pub fn print_json<T: serde::Serialize>(value: &T, what: &str) -> Result<(), PipelineError> {
    let line = serde_json::to_string(value)
        .map_err(|e| PipelineError::Internal(format!("cannot write {what} as JSON: {e}")))?;
    println!("{line}");
    Ok(())
}
