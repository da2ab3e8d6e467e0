//! The request cycle both clients share: send, turn a failure without an answer into a timeout
//! or an unreachable server, turn a refusal (any status but a success) into the service's own
//! error with its `Retry-After` and body, retry under the client's policy, and decode a JSON
//! answer naming an excerpt of the body when it does not fit. A client says only what is its
//! own: where its server is and how its refusals read ([`Service`]).

use std::future::Future;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::client::ClientError;
use crate::retry::RetryPolicy;
use crate::status::{body_excerpt, retry_after};

/// An answer whose status is not a success, as read off the wire.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
    /// The body (empty when it could not be read).
    pub body: Vec<u8>,
}

/// Whether the server may have acted on a request that got no clear answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotent {
    /// Sending it again does no harm: retried on every transient failure.
    Yes,
    /// Sent again only when the server provably never acted on it (no connection, 429, 503).
    No,
}

/// A REST service as one client sees it: where it is, how long a call may take, how to retry,
/// and what its refusals and undecodable answers are in the client's own error.
pub trait Service {
    /// The client's error.
    type Error: ClientError + std::fmt::Display;

    /// The server's URL, named when it cannot be reached.
    fn url(&self) -> &str;

    /// The client's retry policy.
    fn retry_policy(&self) -> &RetryPolicy;

    /// The timeout of an ordinary call (transfers set their own).
    fn request_timeout(&self) -> Duration;

    /// The error of `request`'s refusal.
    fn refused(&self, request: &str, refusal: Refusal) -> Self::Error;

    /// `request`'s answer did not decode: `reason` says why, with an excerpt of the body.
    fn undecodable(&self, request: &str, reason: String) -> Self::Error;

    /// `request` got no answer (`e`) within `timeout`: a timeout or an unreachable server.
    fn no_answer(&self, request: &str, e: &reqwest::Error, timeout: Duration) -> Self::Error {
        Self::Error::no_answer(request, self.url(), e, timeout)
    }
}

/// Sends `request` (labelled `label`, allowed `timeout`) once: the response when its status
/// is a success, else the service's error for the refusal.
pub async fn send_once<S: Service + ?Sized>(
    service: &S,
    label: &str,
    request: RequestBuilder,
    timeout: Duration,
) -> Result<Response, S::Error> {
    let resp = request
        .send()
        .await
        .map_err(|e| service.no_answer(label, &e, timeout))?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let retry_after = retry_after(resp.headers());
    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    Err(service.refused(
        label,
        Refusal {
            status,
            retry_after,
            body,
        },
    ))
}

/// [`send_once`] of the request `build` makes, under the service's retry policy, with the
/// ordinary timeout.
pub async fn send<S, F>(
    service: &S,
    label: &str,
    idempotent: Idempotent,
    build: F,
) -> Result<Response, S::Error>
where
    S: Service + ?Sized,
    F: Fn() -> RequestBuilder,
{
    let timeout = service.request_timeout();
    let attempt = || send_once(service, label, build(), timeout);
    retried(service, idempotent, attempt).await
}

/// `attempt` under the service's retry policy: on every transient failure when `idempotent`,
/// else only when the server provably never acted on it.
async fn retried<S, T, F, Fut>(
    service: &S,
    idempotent: Idempotent,
    attempt: F,
) -> Result<T, S::Error>
where
    S: Service + ?Sized,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S::Error>>,
{
    match idempotent {
        Idempotent::Yes => service.retry_policy().run_client(attempt).await,
        Idempotent::No => service.retry_policy().run_client_once(attempt).await,
    }
}

/// The whole body of a successful response (a connection lost while reading is no answer).
pub async fn read_body<S: Service + ?Sized>(
    service: &S,
    label: &str,
    resp: Response,
) -> Result<Vec<u8>, S::Error> {
    resp.bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| service.no_answer(label, &e, service.request_timeout()))
}

/// The body of the successful answer to the request `build` makes: sent and read as one
/// attempt, under the service's retry policy, with the ordinary timeout.
pub async fn call<S, F>(
    service: &S,
    label: &str,
    idempotent: Idempotent,
    build: F,
) -> Result<Vec<u8>, S::Error>
where
    S: Service + ?Sized,
    F: Fn() -> RequestBuilder,
{
    let timeout = service.request_timeout();
    let attempt = || async {
        let resp = send_once(service, label, build(), timeout).await?;
        read_body(service, label, resp).await
    };
    retried(service, idempotent, attempt).await
}

/// `body` decoded as `T`; when it does not fit, the service's error names why and an excerpt
/// of the body.
pub fn decode<S: Service + ?Sized, T: DeserializeOwned>(
    service: &S,
    label: &str,
    body: &[u8],
) -> Result<T, S::Error> {
    serde_json::from_slice(body)
        .map_err(|e| service.undecodable(label, format!("{e}: {}", body_excerpt(body, 200))))
}

/// A successful response's body decoded as `T` ([`read_body`], then [`decode`]).
pub async fn read_json<S: Service + ?Sized, T: DeserializeOwned>(
    service: &S,
    label: &str,
    resp: Response,
) -> Result<T, S::Error> {
    let body = read_body(service, label, resp).await?;
    decode(service, label, &body)
}
