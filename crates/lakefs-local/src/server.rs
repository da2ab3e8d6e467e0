//! The server: authentication (basic auth or login tokens on every API call but health and
//! login), the optional response tap of conformance tests, routing, and serving.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use headers::authorization::{Basic, Bearer};
use headers::{Authorization, HeaderMapExt};

use crate::api::{self, ApiError};
use crate::repo_ops;
use crate::state::{AppState, Tap, TapRecord};
use crate::store::{Store, StoreError};

/// Access key id of lakeFS's documented sample credentials, the ones `configs/default.toml`
/// uses (local use only).
pub const DEFAULT_ACCESS_KEY_ID: &str = "AKIAIOSFOLKFSSAMPLES";
/// Secret of lakeFS's documented sample credentials (local use only).
pub const DEFAULT_SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// Configuration of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data folder.
    pub data_dir: PathBuf,
    /// Access key id clients must present.
    pub access_key_id: String,
    /// Secret clients must present.
    pub secret_access_key: String,
    /// Record every JSON response (for conformance tests).
    pub tap: Option<Tap>,
}

impl ServerConfig {
    /// A config for `data_dir` with the quickstart's sample credentials.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            access_key_id: DEFAULT_ACCESS_KEY_ID.into(),
            secret_access_key: DEFAULT_SECRET_ACCESS_KEY.into(),
            tap: None,
        }
    }
}

async fn authenticate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let open = matches!(
        path,
        "/api/v1/healthcheck" | "/api/v1/auth/login" | "/api/v1/setup_lakefs" | "/_health"
    );
    if !open {
        let headers = req.headers();
        let ok = if let Some(bearer) = headers.typed_get::<Authorization<Bearer>>() {
            state.token_valid(bearer.token())
        } else {
            headers
                .typed_get::<Authorization<Basic>>()
                .is_some_and(|basic| state.check_key(basic.username(), basic.password()))
        };
        if !ok {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "error authenticating request".into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn record(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(tap) = state.tap.clone() else {
        return next.run(req).await;
    };
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
    let resp = next.run(req).await;
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = resp.status().as_u16();
    if !content_type.starts_with("application/json") {
        tap.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(TapRecord {
                method,
                route,
                status,
                content_type,
                body: Vec::new(),
            });
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    tap.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(TapRecord {
            method,
            route,
            status,
            content_type,
            body: bytes.to_vec(),
        });
    Response::from_parts(parts, Body::from(bytes))
}

/// Rewrites every error response that is not JSON (extractor rejections, wrong methods,
/// payloads too large) into lakeFS's error shape `{"message": ...}`, keeping its status.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    ApiError(status, message).into_response()
}

/// Largest request body read into memory (JSON): a larger one is answered 413 before it is
/// read. Object uploads stream to disk and are not held to it.
pub const JSON_BODY_LIMIT: usize = 10 << 20;

/// The router for `config` (opens the store).
pub fn router(config: &ServerConfig) -> Result<Router, StoreError> {
    let store = Store::open(&config.data_dir)?;
    let state = Arc::new(AppState::new(
        store,
        &config.access_key_id,
        &config.secret_access_key,
        config.tap.clone(),
    ));
    let api_routes = server_routes()
        .merge(branch_routes())
        .merge(ref_routes())
        .fallback(api::not_implemented);
    Ok(Router::new()
        .nest("/api/v1", api_routes)
        .fallback(api::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route_layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(axum::extract::DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn(json_errors))
        .with_state(state))
}

/// The path of a repository's routes.
const REPO: &str = "/repositories/{repository}";

/// Health, setup, configuration, users, login and repositories.
fn server_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthcheck", get(api::healthcheck))
        .route("/setup_lakefs", get(api::setup_state).post(api::setup))
        .route("/config", get(api::config))
        .route("/config/storage", get(api::storage_config))
        .route("/config/version", get(api::version))
        .route("/user", get(api::current_user))
        .route("/auth/login", post(api::login))
        .route(
            "/repositories",
            get(api::list_repositories).post(api::create_repository),
        )
        .route(
            REPO,
            get(api::get_repository).delete(api::delete_repository),
        )
        .route(
            &format!("{REPO}/metadata"),
            get(repo_ops::get_repository_metadata)
                .post(repo_ops::set_repository_metadata)
                .delete(repo_ops::delete_repository_metadata),
        )
        .route(
            &format!("{REPO}/tags"),
            get(api::list_tags).post(api::create_tag),
        )
        .route(
            &format!("{REPO}/tags/{{tag}}"),
            get(api::get_tag).delete(api::delete_tag),
        )
}

/// Branches: create, read, reset, commit, diff, and the objects written on them.
fn branch_routes() -> Router<Arc<AppState>> {
    let branch = format!("{REPO}/branches/{{branch}}");
    Router::new()
        .route(
            &format!("{REPO}/branches"),
            get(api::list_branches).post(api::create_branch),
        )
        .route(
            &branch,
            get(api::get_branch)
                .delete(api::delete_branch)
                .put(api::reset_branch),
        )
        .route(&format!("{branch}/commits"), post(api::commit))
        .route(&format!("{branch}/diff"), get(api::diff_branch))
        .route(
            &format!("{branch}/objects"),
            // Object bodies stream to disk: no limit but the disk's.
            post(api::upload_object)
                .layer(axum::extract::DefaultBodyLimit::disable())
                .delete(api::delete_object),
        )
        .route(
            &format!("{branch}/objects/delete"),
            post(api::delete_objects),
        )
        .route(&format!("{branch}/objects/copy"), post(api::copy_object))
        .route(&format!("{branch}/revert"), post(repo_ops::revert))
        .route(
            &format!("{branch}/cherry-pick"),
            post(repo_ops::cherry_pick),
        )
}

/// Anything read at a ref: commits, log, diff, merge, objects.
fn ref_routes() -> Router<Arc<AppState>> {
    let at = format!("{REPO}/refs/{{ref}}");
    Router::new()
        .route(
            &format!("{REPO}/commits/{{commitId}}"),
            get(api::get_commit),
        )
        .route(&format!("{at}/commits"), get(api::log))
        .route(
            &format!("{REPO}/refs/{{leftRef}}/diff/{{rightRef}}"),
            get(api::diff_refs),
        )
        .route(
            &format!("{REPO}/refs/{{sourceRef}}/merge/{{destinationBranch}}"),
            post(api::merge),
        )
        .route(
            &format!("{at}/objects"),
            get(api::get_object).head(api::get_object),
        )
        .route(&format!("{at}/objects/stat"), get(api::stat_object))
        .route(&format!("{at}/objects/ls"), get(api::list_objects))
}

/// A running server (for tests and embedding): its address; dropping it stops the server.
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// `http://addr` (the client adds `/api/v1`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving (new connections are refused, open ones closed) and waits up to two
    /// seconds for in-flight requests; the data folder is untouched. For fault tests.
    pub async fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let abort = h.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(2), h)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data folder could not be opened.
    #[error("cannot open data folder: {0}")]
    Store(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Starts a server on `listen` (port 0 picks a free port) in the current tokio runtime.
pub async fn spawn(config: ServerConfig, listen: &str) -> Result<RunningServer, ServeError> {
    let app = router(&config).map_err(|e| ServeError::Store(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServeError::Bind {
            addr: listen.to_string(),
            source: e,
        })?;
    let addr = listener.local_addr().map_err(|e| ServeError::Bind {
        addr: listen.to_string(),
        source: e,
    })?;
    // Without TCP_NODELAY, a response written as headers then body waits on delayed ACKs
    // (~40 ms per request on loopback).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY: {e}");
        }
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
        handle: Some(handle),
    })
}
