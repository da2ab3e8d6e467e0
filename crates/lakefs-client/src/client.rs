//! The HTTP core: endpoint, credentials (basic or token login), timeouts, retries, and the
//! mapping of lakeFS's `{message}` errors to [`LakeFsError`] kinds.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{LakeFsError, Result};
use rest_transport::exchange;
use rest_transport::{ClientBuilder, ClientOptions, Refusal, RetryPolicy, Service};

/// How the client authenticates.
#[derive(Clone)]
pub enum Credentials {
    /// Access key id and secret, sent as HTTP basic auth on every call.
    Basic {
        /// Access key id.
        access_key_id: String,
        /// Secret access key (never printed).
        secret_access_key: String,
    },
    /// A token from `POST /auth/login`, sent as a bearer token.
    Token(String),
    /// No credentials (health checks only).
    None,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { access_key_id, .. } => write!(
                f,
                "Basic {{ access_key_id: {access_key_id:?}, secret_access_key: \"***\" }}"
            ),
            Self::Token(_) => write!(f, "Token(\"***\")"),
            Self::None => write!(f, "None"),
        }
    }
}

/// Builds a [`LakeFsClient`].
#[derive(Debug, Clone)]
pub struct LakeFsClientBuilder {
    endpoint: String,
    credentials: Credentials,
    token_login: bool,
    options: ClientOptions,
    transfer_timeout: Duration,
    page_size: usize,
}

impl LakeFsClientBuilder {
    /// A builder for `endpoint` (`http://host:8000` or `http://host:8000/api/v1`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            credentials: Credentials::None,
            token_login: false,
            options: ClientOptions::new(format!(
                "seg-mlops-lakefs-client/{}",
                env!("CARGO_PKG_VERSION")
            )),
            transfer_timeout: Duration::from_secs(3600),
            page_size: 1000,
        }
    }

    /// A builder from lakectl's variables: `LAKECTL_SERVER_ENDPOINT_URL`,
    /// `LAKECTL_CREDENTIALS_ACCESS_KEY_ID`, `LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY`.
    pub fn from_env() -> Result<Self> {
        let endpoint = std::env::var("LAKECTL_SERVER_ENDPOINT_URL").map_err(|_| {
            LakeFsError::Config(
                "LAKECTL_SERVER_ENDPOINT_URL is not set (e.g. http://127.0.0.1:8000)".into(),
            )
        })?;
        let mut builder = Self::new(endpoint);
        if let (Ok(id), Ok(secret)) = (
            std::env::var("LAKECTL_CREDENTIALS_ACCESS_KEY_ID"),
            std::env::var("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY"),
        ) {
            builder = builder.credentials(id, secret);
        }
        Ok(builder)
    }

    /// Access key id and secret (HTTP basic auth).
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Credentials::Basic {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        };
        self
    }

    /// Exchange the key/secret for a token with `POST /auth/login` at build time.
    pub fn token_login(mut self, enabled: bool) -> Self {
        self.token_login = enabled;
        self
    }

    /// Timeout of one object upload or download (default 1 h).
    pub fn transfer_timeout(mut self, timeout: Duration) -> Self {
        self.transfer_timeout = timeout;
        self
    }

    /// Items per page of listings (1..=1000, default 1000).
    pub fn page_size(mut self, size: usize) -> Self {
        self.page_size = size.clamp(1, 1000);
        self
    }

    /// Builds the client; with token login, logs in first.
    pub async fn build(self) -> Result<LakeFsClient> {
        let trimmed = self.endpoint.trim_end_matches('/');
        let api = if trimmed.ends_with("/api/v1") {
            trimmed.to_string()
        } else {
            format!("{trimmed}/api/v1")
        };
        rest_transport::base_url(&api)
            .map_err(|e| LakeFsError::Config(format!("endpoint {:?}: {e}", self.endpoint)))?;
        let http = self
            .options
            .http_builder()
            .build()
            .map_err(|e| LakeFsError::Config(e.to_string()))?;
        let mut client = LakeFsClient {
            api,
            http,
            credentials: self.credentials.clone(),
            request_timeout: self.options.request_timeout,
            transfer_timeout: self.transfer_timeout,
            retry: self.options.retry,
            page_size: self.page_size,
        };
        if self.token_login {
            let Credentials::Basic {
                access_key_id,
                secret_access_key,
            } = &self.credentials
            else {
                return Err(LakeFsError::Config(
                    "token login needs an access key id and secret".into(),
                ));
            };
            let token = client.login(access_key_id, secret_access_key).await?;
            client.credentials = Credentials::Token(token);
        }
        Ok(client)
    }
}

impl ClientBuilder for LakeFsClientBuilder {
    fn options_mut(&mut self) -> &mut ClientOptions {
        &mut self.options
    }
}

/// An async lakeFS client. Cheap to clone.
#[derive(Clone)]
pub struct LakeFsClient {
    api: String,
    http: reqwest::Client,
    credentials: Credentials,
    request_timeout: Duration,
    transfer_timeout: Duration,
    retry: RetryPolicy,
    page_size: usize,
}

impl std::fmt::Debug for LakeFsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeFsClient")
            .field("api", &self.api)
            .field("credentials", &self.credentials)
            .field("retry", &self.retry)
            .finish()
    }
}

pub(crate) use rest_transport::Idempotent;

pub(crate) use rest_transport::encode::segment as seg;

impl LakeFsClient {
    /// The API base URL (ends with `/api/v1`).
    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// The retry policy.
    pub fn retry_config(&self) -> &RetryPolicy {
        &self.retry
    }

    pub(crate) fn page_size(&self) -> usize {
        self.page_size
    }

    pub(crate) fn transfer_timeout(&self) -> Duration {
        self.transfer_timeout
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .timeout(self.request_timeout);
        match &self.credentials {
            Credentials::Basic {
                access_key_id,
                secret_access_key,
            } => req.basic_auth(access_key_id, Some(secret_access_key)),
            Credentials::Token(t) => req.bearer_auth(t),
            Credentials::None => req,
        }
    }

    /// Sends a request built by `build` (called once per attempt) and checks its status.
    pub(crate) async fn send<F>(
        &self,
        label: &str,
        idempotent: Idempotent,
        build: F,
    ) -> Result<Response>
    where
        F: Fn() -> RequestBuilder,
    {
        exchange::send(self, label, idempotent, build).await
    }

    /// Sends `request` once, with `timeout` (a transfer's own), and checks its status.
    pub(crate) async fn send_once(
        &self,
        label: &str,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Result<Response> {
        exchange::send_once(self, label, request, timeout).await
    }

    /// Runs `attempt` under the client's retry policy.
    pub(crate) async fn with_retries<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.retry.run_client(attempt).await
    }

    /// Sends a request with optional JSON body and query; the successful answer's body.
    async fn call(
        &self,
        label: &str,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        idempotent: Idempotent,
    ) -> Result<Vec<u8>> {
        exchange::call(self, label, idempotent, || {
            let mut req = self.request(method.clone(), path).query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            req
        })
        .await
    }

    /// JSON call: sends, then decodes the body as `T`.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        idempotent: Idempotent,
    ) -> Result<T> {
        let label = format!("{method} {path}");
        let answer = self
            .call(&label, &method, path, query, body, idempotent)
            .await?;
        exchange::decode(self, &label, &answer)
    }

    /// Call whose answer has no body worth reading (204, or text).
    pub(crate) async fn text(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        idempotent: Idempotent,
    ) -> Result<String> {
        let label = format!("{method} {path}");
        let answer = self
            .call(&label, &method, path, query, body, idempotent)
            .await?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }
}

/// lakeFS as rest-transport's request cycle sees it: its refusals carry `{"message": ...}`.
impl Service for LakeFsClient {
    type Error = LakeFsError;

    fn url(&self) -> &str {
        &self.api
    }

    fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    fn undecodable(&self, request: &str, reason: String) -> LakeFsError {
        LakeFsError::Decode {
            request: request.to_string(),
            reason,
        }
    }

    fn refused(&self, request: &str, refusal: Refusal) -> LakeFsError {
        let Refusal {
            status,
            retry_after,
            body,
        } = refusal;
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| rest_transport::status::body_excerpt(&body, 300));
        let request = request.to_string();
        match status {
            StatusCode::NOT_FOUND => LakeFsError::NotFound { request, message },
            StatusCode::CONFLICT => LakeFsError::Conflict { request, message },
            StatusCode::PRECONDITION_FAILED => LakeFsError::PreconditionFailed { request, message },
            StatusCode::UNAUTHORIZED => LakeFsError::Unauthorized { request, message },
            StatusCode::FORBIDDEN => LakeFsError::Forbidden { request, message },
            // lakeFS's graveler.ErrNoChanges: "commit: no changes" (and "no changes" for merges).
            StatusCode::BAD_REQUEST if message.contains("no changes") => {
                LakeFsError::NothingToCommit { request, message }
            }
            StatusCode::BAD_REQUEST => LakeFsError::BadRequest { request, message },
            _ => LakeFsError::Server {
                request,
                status: status.as_u16(),
                message,
                retry_after,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoint_is_normalised_and_debug_hides_the_secret() {
        for e in [
            "http://h:8000",
            "http://h:8000/",
            "http://h:8000/api/v1",
            "http://h:8000/api/v1/",
        ] {
            let c = LakeFsClientBuilder::new(e)
                .credentials("AKIA", "s3cr3t")
                .build()
                .await
                .expect("client");
            assert_eq!(c.api_url(), "http://h:8000/api/v1");
            let text = format!("{c:?}");
            assert!(text.contains("AKIA") && !text.contains("s3cr3t"), "{text}");
        }
        assert!(LakeFsClientBuilder::new("ftp://h").build().await.is_err());
    }
}
