//! What every binary does at its edge: logs on stderr, Ctrl-C handling, one error line and
//! the exit code.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}

/// Sets the returned flag on the first Ctrl-C or SIGTERM (work stops at the next safe point);
/// a second one exits at once with 130. Call inside a tokio runtime.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    tokio::spawn(async move {
        if interrupt().await {
            tracing::warn!(
                "interrupted: stopping at the next safe point (interrupt again to quit now)"
            );
            set.store(true, Ordering::SeqCst);
            if interrupt().await {
                std::process::exit(crate::error::exit::INTERRUPTED);
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

/// The multi-threaded tokio runtime of a binary; exits with code 1 and one line when it cannot
/// be started.
pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(crate::error::exit::ERROR);
        }
    }
}

/// Prints `error: <message>` as one line on stderr and returns the exit code.
pub fn report(e: &PipelineError) -> i32 {
    let text = e.to_string().replace('\n', " ");
    eprintln!("error: {text}");
    e.exit_code()
}

/// Prints `value` as one JSON line on stdout; on failure prints one `error:` line naming
/// `what` and returns false.
pub fn print_json<T: serde::Serialize>(value: &T, what: &str) -> bool {
    match serde_json::to_string(value) {
        Ok(line) => {
            println!("{line}");
            true
        }
        Err(e) => {
            eprintln!("error: cannot write {what} as JSON: {e}");
            false
        }
    }
}
