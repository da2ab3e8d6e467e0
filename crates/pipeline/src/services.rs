//! Clients of lakeFS and MLflow built from the configuration, checked to answer before any work
//! starts: a server that is down is one line naming its URL and how to start it.

use lakefs_client::{
    ClientBuilder as _, ClientError as _, LakeFsClient, LakeFsClientBuilder, LakeFsError,
};
use mlflow_client::{Auth, MlflowClient, MlflowClientBuilder};

use crate::config::Config;
use crate::error::{PipelineError, Result};

/// How to start lakeFS, for error messages.
pub const LAKEFS_HINT: &str = "Start lakeFS and MLflow with `scripts/quickstart.sh` (or only lakeFS: `cargo run --release -p lakefs-local -- --data-dir .seg-mlops/lakefs`, 127.0.0.1:8003 with the default config's keys), or point lakefs.endpoint / LAKECTL_SERVER_ENDPOINT_URL at your lakeFS";
/// How to start MLflow, for error messages.
pub const MLFLOW_HINT: &str = "Start lakeFS and MLflow with `scripts/quickstart.sh` (or only MLflow: `scripts/mlflow-server.sh start .seg-mlops/mlflow 5000`), or point mlflow.tracking_uri / MLFLOW_TRACKING_URI at your server";

/// Both clients, checked.
#[derive(Debug, Clone)]
pub struct Services {
    /// lakeFS.
    pub lakefs: LakeFsClient,
    /// MLflow.
    pub mlflow: MlflowClient,
}

/// The MLflow client of `config` (not yet checked).
pub fn mlflow_client(config: &Config) -> Result<MlflowClient> {
    let m = &config.mlflow;
    let auth = match (&m.token, &m.username, &m.password) {
        (Some(token), _, _) => Auth::Bearer(token.clone()),
        (None, Some(username), Some(password)) => Auth::Basic {
            username: username.clone(),
            password: password.clone(),
        },
        _ => Auth::None,
    };
    Ok(MlflowClientBuilder::new(&m.tracking_uri)
        .auth(auth)
        .connect_timeout(config.http.connect_timeout)
        .request_timeout(config.http.request_timeout)
        .retry(config.retry)
        .build()?)
}

/// The lakeFS client of `config` (not yet checked).
pub async fn lakefs_client(config: &Config) -> Result<LakeFsClient> {
    let l = &config.lakefs;
    Ok(LakeFsClientBuilder::new(&l.endpoint)
        .credentials(&l.access_key_id, &l.secret_access_key)
        .connect_timeout(config.http.connect_timeout)
        .request_timeout(config.http.request_timeout)
        .retry(config.retry)
        .build()
        .await?)
}

/// Connects to both servers: lakeFS health and credentials, MLflow health. The checks retry
/// once (a server that is down should fail in seconds, not after the full retry budget); the
/// clients handed back use the configured policy.
pub async fn connect(config: &Config) -> Result<Services> {
    let mut quick = config.clone();
    quick.retry.max_retries = quick.retry.max_retries.min(1);
    check_lakefs(&lakefs_client(&quick).await?, config).await?;
    check_mlflow(&mlflow_client(&quick)?, config).await?;
    Ok(Services {
        lakefs: lakefs_client(config).await?,
        mlflow: mlflow_client(config)?,
    })
}

/// lakeFS answers and accepts the credentials.
pub async fn check_lakefs(client: &LakeFsClient, config: &Config) -> Result<()> {
    let url = config.lakefs.endpoint.clone();
    let unreachable = |e: &LakeFsError| PipelineError::Unreachable {
        service: "lakeFS",
        url: url.clone(),
        reason: short_reason(&e.to_string()),
        hint: LAKEFS_HINT.into(),
    };
    match client.health().await {
        Err(e) if e.is_unreachable() || e.is_timeout() => {
            return Err(unreachable(&e));
        }
        // lakeFS answers its health check without credentials; an answer that is not lakeFS's
        // (a page, a refusal) means another server is there.
        Err(e) if is_foreign_answer(&e) => {
            return Err(PipelineError::Unreachable {
                service: "lakeFS",
                url: url.clone(),
                reason: format!(
                    "the server there is not lakeFS (its health check {})",
                    answer_of(&e.to_string())
                ),
                hint: LAKEFS_HINT.into(),
            });
        }
        Err(e) => return Err(e.into()),
        Ok(()) => {}
    }
    match client.current_user().await {
        Ok(_) => Ok(()),
        Err(e @ LakeFsError::Unauthorized { .. }) => Err(PipelineError::LakeFs(e)),
        Err(e) if e.is_unreachable() => Err(unreachable(&e)),
        // A server that answers any path (a web page, a proxy) passes the health check; its
        // answer to the user call is no lakeFS answer.
        Err(e) if is_foreign_answer(&e) && !matches!(e.cause(), LakeFsError::Forbidden { .. }) => {
            Err(PipelineError::Unreachable {
                service: "lakeFS",
                url,
                reason: format!(
                    "the server there is not lakeFS (its user call {})",
                    answer_of(&e.cause().to_string())
                ),
                hint: LAKEFS_HINT.into(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// MLflow answers.
pub async fn check_mlflow(client: &MlflowClient, config: &Config) -> Result<()> {
    match client.get_experiment("0").await {
        Ok(_) => Ok(()),
        // A server without the default experiment still answers.
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) if e.is_unreachable() || e.is_timeout() => Err(PipelineError::Unreachable {
            service: "MLflow",
            url: config.mlflow.tracking_uri.clone(),
            reason: short_reason(&e.cause().to_string()),
            hint: MLFLOW_HINT.into(),
        }),
        // MLflow answers /health with OK (credentials or not); a server that does not is
        // another service (a lakeFS, a proxy's page), whatever it answered to the MLflow call.
        Err(e) => match client.probe("/health").await {
            Ok(ok) if ok == "OK" => Err(e.into()),
            _ => Err(PipelineError::Unreachable {
                service: "MLflow",
                url: config.mlflow.tracking_uri.clone(),
                reason: format!(
                    "the server there is not MLflow (the MLflow API call {})",
                    answer_of(&e.cause().to_string())
                ),
                hint: MLFLOW_HINT.into(),
            }),
        },
    }
}

/// Whether a lakeFS call got an answer no lakeFS gives there (not found, refused, not JSON).
fn is_foreign_answer(e: &LakeFsError) -> bool {
    matches!(
        e.cause(),
        LakeFsError::NotFound { .. }
            | LakeFsError::Unauthorized { .. }
            | LakeFsError::Forbidden { .. }
            | LakeFsError::BadRequest { .. }
            | LakeFsError::Decode { .. }
    ) || matches!(e.cause(), LakeFsError::Server { status, .. } if *status == 405)
}

/// "answered: <what>" from a client's error text `<request>: <what>[; advice]` (the client's
/// advice is about its own service, which this is not).
fn answer_of(text: &str) -> String {
    let what = text.split_once(": ").map_or(text, |(_, rest)| rest);
    let what = what.split("; ").next().unwrap_or(what);
    format!("answered: {what}")
}

/// The transport cause of an error message without the client's own advice (the pipeline
/// gives its own).
fn short_reason(text: &str) -> String {
    let cut = text.find("; is ").unwrap_or(text.len());
    let text = &text[..cut];
    match text.rfind(": ") {
        Some(i) if text.contains("Connection refused") => text[i + 2..].to_string(),
        _ => text.to_string(),
    }
}
