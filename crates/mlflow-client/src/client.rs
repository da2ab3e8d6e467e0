//! The HTTP core: configuration, authentication, timeouts, retries and error mapping.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use rest_transport::{ClientBuilder, ClientError as _, ClientOptions};
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

/// Whether a request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotent {
    Yes,
    No,
}

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

    pub(crate) fn request_timeout(&self) -> Duration {
        self.config.options.request_timeout
    }

    /// Sends a JSON request and decodes the JSON answer, retrying idempotent calls.
    pub(crate) async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        idempotent: Idempotent,
    ) -> Result<T> {
        let label = format!("{method} {path}");
        let attempt = || async {
            let mut req = self.request(method.clone(), path);
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(body) = body {
                // MLflow rejects a POST without Content-Type: application/json; .json() sets it.
                req = req.json(body);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| self.transport_error(&label, e, self.request_timeout()))?;
            if !resp.status().is_success() {
                return Err(self.response_error(&label, resp).await);
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| self.transport_error(&label, e, self.request_timeout()))?;
            let bytes = if bytes.is_empty() {
                &b"{}"[..]
            } else {
                &bytes[..]
            };
            serde_json::from_slice(bytes).map_err(|e| MlflowError::Decode {
                request: label.clone(),
                reason: format!(
                    "{e}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            })
        };
        if idempotent == Idempotent::Yes {
            self.with_retries(attempt).await
        } else {
            self.config.options.retry.run_client_once(attempt).await
        }
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

    /// A request that got no answer: a timeout (naming the timeout that was set on it) or an
    /// unreachable server.
    pub(crate) fn transport_error(
        &self,
        label: &str,
        e: reqwest::Error,
        timeout: Duration,
    ) -> MlflowError {
        MlflowError::no_answer(label, &self.base, &e, timeout)
    }

    /// The error of a response whose status is not a success (reads its body).
    /// The text a server answers to `GET path` outside the REST API: MLflow answers `/health`
    /// with `OK` (without credentials) and `/version` with its version; another kind of
    /// server answers otherwise, which tells that the URI is not MLflow's.
    pub async fn probe(&self, path: &str) -> Result<String> {
        let label = format!("GET {path}");
        let label = label.as_str();
        let resp = self
            .request(Method::GET, path)
            .timeout(self.request_timeout())
            .send()
            .await
            .map_err(|e| self.transport_error(label, e, self.request_timeout()))?;
        if !resp.status().is_success() {
            return Err(self.response_error(label, resp).await);
        }
        let text = resp
            .text()
            .await
            .map_err(|e| self.transport_error(label, e, self.request_timeout()))?;
        Ok(text.trim().to_string())
    }

    pub(crate) async fn response_error(&self, label: &str, resp: reqwest::Response) -> MlflowError {
        let status = resp.status();
        let retry_after = rest_transport::status::retry_after(resp.headers());
        let body = resp.bytes().await.unwrap_or_default();
        let mut e = self.status_error(label, status, &body);
        if let MlflowError::Api {
            retry_after: slot, ..
        } = &mut e
        {
            *slot = retry_after;
        }
        e
    }

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

#[cfg(test)]
mod tests {
    use super::*;

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
