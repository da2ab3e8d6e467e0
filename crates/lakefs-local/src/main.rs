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
    /// Secret clients must present (default: the lakeFS quickstart sample). A flag's value
    /// is visible to every user in `ps`: give a real secret through the environment variable
    /// LAKEFS_LOCAL_SECRET_ACCESS_KEY or --secret-access-key-file instead.
    #[arg(
        long,
        env = "LAKEFS_LOCAL_SECRET_ACCESS_KEY",
        hide_env_values = true,
        conflicts_with = "secret_access_key_file"
    )]
    secret_access_key: Option<String>,
    /// File holding the secret (its first line), not visible in `ps`.
    #[arg(long, value_name = "FILE", env = "LAKEFS_LOCAL_SECRET_ACCESS_KEY_FILE")]
    secret_access_key_file: Option<std::path::PathBuf>,
}

impl Args {
    /// The secret: from the file, the flag or variable, or the quickstart sample.
    fn secret(&self) -> Result<String, String> {
        if let Some(path) = &self.secret_access_key_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?;
            let secret = text.lines().next().unwrap_or_default().trim().to_string();
            if secret.is_empty() {
                return Err(format!("the secret file {} is empty", path.display()));
            }
            return Ok(secret);
        }
        Ok(self
            .secret_access_key
            .clone()
            .unwrap_or_else(|| DEFAULT_SECRET_ACCESS_KEY.to_string()))
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let secret_access_key = match args.secret() {
        Ok(secret) => secret,
        Err(e) => {
            eprintln!("lakefs-local: {e}");
            std::process::exit(2);
        }
    };
    let config = ServerConfig {
        data_dir: args.data_dir.clone(),
        access_key_id: args.access_key_id.clone(),
        secret_access_key,
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
