//! `lakefs-local`: serve a lakeFS-compatible API over a local folder.

use clap::Parser;
use lakefs_local::{DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, ServerConfig};

/// A lakeFS-compatible server over a local folder (tests and local quickstart; not a
/// production store).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Folder holding repositories, commits and objects.
    #[arg(long, env = "LAKEFS_LOCAL_DATA_DIR")]
    data_dir: std::path::PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8003", env = "LAKEFS_LOCAL_LISTEN")]
    listen: String,
    /// Access key id clients must present (default: the lakeFS quickstart sample).
    #[arg(long, default_value = DEFAULT_ACCESS_KEY_ID, env = "LAKEFS_LOCAL_ACCESS_KEY_ID")]
    access_key_id: String,
    /// Secret clients must present (default: the lakeFS quickstart sample).
    #[arg(long, default_value = DEFAULT_SECRET_ACCESS_KEY, env = "LAKEFS_LOCAL_SECRET_ACCESS_KEY", hide_default_value = true)]
    secret_access_key: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let config = ServerConfig {
        data_dir: args.data_dir.clone(),
        access_key_id: args.access_key_id,
        secret_access_key: args.secret_access_key,
        tap: None,
    };
    match lakefs_local::spawn(config, &args.listen).await {
        Ok(server) => {
            eprintln!(
                "lakefs-local: serving {} at http://{}/api/v1 (not a production store)",
                args.data_dir.display(),
                server.addr
            );
            let _ = tokio::signal::ctrl_c().await;
            server.stop().await;
        }
        Err(e) => {
            eprintln!("lakefs-local: {e}");
            std::process::exit(1);
        }
    }
}
