//! The HTTP core: configuration, authentication, timeouts, retries and error mapping.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use rest_transport::exchange;
use rest_transport::{ClientBuilder, ClientOptions, Refusal, Service};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{MlflowError, Result};

/// How the client authenticates.
#[derive(Clone, Default)]
pub enum Auth {
    /// No authentication.
    #[default]
    None,
    /// HTTP basic auth (MLflow's basic-auth app).
    Basic {
        /// User name.
        username: String,
        /// Password (never printed).
        password: String,
    },
    /// Bearer token.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => write!(f, "None"),
            Self::Basic { username, .. } => {
                write!(f, "Basic {{ username: {username:?}, password: \"***\" }}")
            }
            Self::Bearer(_) => write!(f, "Bearer(\"***\")"),
        }
    }
}

/// Builds an [`MlflowClient`].
#[derive(Debug, Clone)]
pub struct MlflowClientBuilder {
    tracking_uri: String,
    auth: Auth,
    options: ClientOptions,
}

impl MlflowClientBuilder {
    /// A builder for the server at `tracking_uri` (e.g. `http://127.0.0.1:5000`).
    pub fn new(tracking_uri: impl Into<String>) -> Self {
        Self {
            tracking_uri: tracking_uri.into(),
            auth: Auth::None,
            options: ClientOptions::new(format!(
                "seg-mlops-mlflow-client/{}",
                env!("CARGO_PKG_VERSION")
            )),
        }
    }

    /// A builder from MLflow's environment variables: `MLFLOW_TRACKING_URI` (required),
    /// `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` or `MLFLOW_TRACKING_TOKEN`.
    pub fn from_env() -> Result<Self> {
        let uri = std::env::var("MLFLOW_TRACKING_URI").map_err(|_| {
            MlflowError::Config(
                "MLFLOW_TRACKING_URI is not set (e.g. http://127.0.0.1:5000)".into(),
            )
        })?;
        let mut builder = Self::new(uri);
        if let Ok(token) = std::env::var("MLFLOW_TRACKING_TOKEN") {
            builder.auth = Auth::Bearer(token);
        } else if let (Ok(username), Ok(password)) = (
            std::env::var("MLFLOW_TRACKING_USERNAME"),
            std::env::var("MLFLOW_TRACKING_PASSWORD"),
        ) {
            builder.auth = Auth::Basic { username, password };
        }
        Ok(builder)
    }

    /// Sets the authentication.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<MlflowClient> {
        let base =
            rest_transport::base_url(self.tracking_uri.trim_end_matches('/')).map_err(|e| {
                MlflowError::Config(format!(
                    "tracking URI {:?}: {e} (file stores are not served over REST)",
                    self.tracking_uri
                ))
            })?;
        let http = self
            .options
            .http_builder()
            .timeout(self.options.request_timeout)
            .build()
            .map_err(|e| MlflowError::Config(e.to_string()))?;
        Ok(MlflowClient {
            base: base.as_str().trim_end_matches('/').to_string(),
            host: base.host_str().unwrap_or_default().to_string(),
            http,
            config: self,
        })
    }
}

impl ClientBuilder for MlflowClientBuilder {
    fn options_mut(&mut self) -> &mut ClientOptions {
        &mut self.options
    }
}

/// An async MLflow client. Cheap to clone.
#[derive(Clone)]
pub struct MlflowClient {
    base: String,
    host: String,
    http: reqwest::Client,
    config: MlflowClientBuilder,
}

impl std::fmt::Debug for MlflowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowClient")
            .field("tracking_uri", &self.base)
            .field("auth", &self.config.auth)
            .finish()
    }
}

/// The root of MLflow's REST API.
pub(crate) const API: &str = "/api/2.0/mlflow";

pub(crate) use rest_transport::Idempotent;

impl MlflowClient {
    /// A client for `tracking_uri` with default settings.
    pub fn new(tracking_uri: &str) -> Result<Self> {
        MlflowClientBuilder::new(tracking_uri).build()
    }

    /// The tracking URI (no trailing slash).
    pub fn tracking_uri(&self) -> &str {
        &self.base
    }

    /// The builder this client came from (to build a twin, e.g. on another runtime).
    pub fn config(&self) -> &MlflowClientBuilder {
        &self.config
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{}", self.base, path));
        match &self.config.auth {
            Auth::None => req,
            Auth::Basic { username, password } => req.basic_auth(username, Some(password)),
            Auth::Bearer(token) => req.bearer_auth(token),
        }
    }

    /// Runs `attempt` under the client's retry policy.
    pub(crate) async fn with_retries<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.config.options.retry.run_client(attempt).await
    }

    /// Sends `request` once, with `timeout` (a transfer's own), and checks its status.
    pub(crate) async fn send_once(
        &self,
        label: &str,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response> {
        exchange::send_once(self, label, request, timeout).await
    }

    /// Sends a JSON request and decodes the JSON answer (an empty one as `{}`), retrying
    /// idempotent calls.
    pub(crate) async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        idempotent: Idempotent,
    ) -> Result<T> {
        let label = format!("{method} {path}");
        let answer = exchange::call(self, &label, idempotent, || {
            let mut req = self.request(method.clone(), path);
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(body) = body {
                // MLflow rejects a POST without Content-Type: application/json; .json() sets it.
                req = req.json(body);
            }
            req
        })
        .await?;
        let answer = if answer.is_empty() {
            &b"{}"[..]
        } else {
            &answer[..]
        };
        exchange::decode(self, &label, answer)
    }

    /// A call whose answer carries nothing (`{}`): `method` on `{API}/{endpoint}` with a JSON
    /// body.
    pub(crate) async fn act<B: Serialize + ?Sized>(
        &self,
        method: Method,
        endpoint: &str,
        body: &B,
        idempotent: Idempotent,
    ) -> Result<()> {
        let path = format!("{API}/{endpoint}");
        let _: serde_json::Value = self
            .call(method, &path, &[], Some(body), idempotent)
            .await?;
        Ok(())
    }

    /// The text a server answers to `GET path` outside the REST API: MLflow answers `/health`
    /// with `OK` (without credentials) and `/version` with its version; another kind of
    /// server answers otherwise, which tells that the URI is not MLflow's.
    pub async fn probe(&self, path: &str) -> Result<String> {
        let label = format!("GET {path}");
        let request = self
            .request(Method::GET, path)
            .timeout(self.request_timeout());
        let resp = self
            .send_once(&label, request, self.request_timeout())
            .await?;
        let text = exchange::read_body(self, &label, resp).await?;
        Ok(String::from_utf8_lossy(&text).trim().to_string())
    }

    /// The error of an answer with `status` and `body` (any but a success) to `label`.
    pub(crate) fn status_error(&self, label: &str, status: StatusCode, body: &[u8]) -> MlflowError {
        #[derive(serde::Deserialize, Default)]
        struct ApiError {
            #[serde(default)]
            error_code: String,
            #[serde(default)]
            message: String,
        }
        let parsed: Option<ApiError> = serde_json::from_slice(body).ok();
        let text = rest_transport::status::body_excerpt(body, 500);
        let request = label.to_string();
        let Some(api) = parsed else {
            if status == StatusCode::FORBIDDEN && text.to_ascii_lowercase().contains("host") {
                return MlflowError::HostNotAllowed {
                    request,
                    host: self.host.clone(),
                };
            }
            return match status {
                StatusCode::NOT_FOUND => MlflowError::NotFound {
                    request,
                    message: text,
                },
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => MlflowError::PermissionDenied {
                    request,
                    status: status.as_u16(),
                    message: text,
                },
                _ => MlflowError::Api {
                    request,
                    status: status.as_u16(),
                    code: String::new(),
                    message: text,
                    retry_after: None,
                },
            };
        };
        let message = api.message;
        match api.error_code.as_str() {
            "RESOURCE_DOES_NOT_EXIST" | "NOT_FOUND" => MlflowError::NotFound { request, message },
            "RESOURCE_ALREADY_EXISTS" => MlflowError::AlreadyExists { request, message },
            "INVALID_PARAMETER_VALUE" | "BAD_REQUEST" | "INVALID_STATE" => {
                MlflowError::InvalidParameter {
                    request,
                    code: api.error_code,
                    message,
                }
            }
            "PERMISSION_DENIED" | "UNAUTHENTICATED" => MlflowError::PermissionDenied {
                request,
                status: status.as_u16(),
                message,
            },
            _ if status == StatusCode::NOT_FOUND => MlflowError::NotFound { request, message },
            _ if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
                MlflowError::PermissionDenied {
                    request,
                    status: status.as_u16(),
                    message,
                }
            }
            code => MlflowError::Api {
                request,
                status: status.as_u16(),
                code: code.to_string(),
                message,
                retry_after: None,
            },
        }
    }
}

/// MLflow as rest-transport's request cycle sees it: its refusals carry
/// `{"error_code": ..., "message": ...}`.
impl Service for MlflowClient {
    type Error = MlflowError;

    fn url(&self) -> &str {
        &self.base
    }

    fn retry_policy(&self) -> &rest_transport::RetryPolicy {
        &self.config.options.retry
    }

    fn request_timeout(&self) -> Duration {
        self.config.options.request_timeout
    }

    fn undecodable(&self, request: &str, reason: String) -> MlflowError {
        MlflowError::Decode {
            request: request.to_string(),
            reason,
        }
    }

    fn refused(&self, request: &str, refusal: Refusal) -> MlflowError {
        let mut e = self.status_error(request, refusal.status, &refusal.body);
        if let MlflowError::Api { retry_after, .. } = &mut e {
            *retry_after = refusal.retry_after;
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rest_transport::ClientError as _;

    #[test]
    fn debug_hides_secrets() {
        let client = MlflowClientBuilder::new("http://127.0.0.1:5000")
            .auth(Auth::Basic {
                username: "alice".into(),
                password: "hunter2".into(),
            })
            .build()
            .expect("client");
        let text = format!("{client:?} {:?}", client.config());
        assert!(
            !text.contains("hunter2") && text.contains("alice"),
            "{text}"
        );
        let bearer = format!("{:?}", Auth::Bearer("tok-123".into()));
        assert!(!bearer.contains("tok-123"));
    }

    #[test]
    fn error_bodies_map_to_typed_variants() {
        let c = MlflowClient::new("http://localhost:5000").expect("client");
        let e = c.status_error(
            "GET /x",
            StatusCode::NOT_FOUND,
            br#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"no run"}"#,
        );
        assert!(e.is_not_found());
        let e = c.status_error(
            "POST /x",
            StatusCode::BAD_REQUEST,
            br#"{"error_code":"RESOURCE_ALREADY_EXISTS","message":"dup"}"#,
        );
        assert!(matches!(e, MlflowError::AlreadyExists { .. }));
        let e = c.status_error(
            "GET /x",
            StatusCode::FORBIDDEN,
            b"Invalid Host header - possible DNS rebinding attack detected",
        );
        assert!(matches!(e, MlflowError::HostNotAllowed { .. }), "{e}");
        assert!(e.to_string().contains("--allowed-hosts"));
        let e = c.status_error("GET /x", StatusCode::SERVICE_UNAVAILABLE, b"busy");
        assert!(e.is_retryable());
        assert!(MlflowClient::new("file:///tmp/mlruns").is_err());
    }
}
