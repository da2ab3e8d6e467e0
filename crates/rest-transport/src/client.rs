//! What both REST clients share about talking to a server: the options of their HTTP client
//! (timeouts, retry policy, user agent) with the builder methods that set them, and the kinds
//! of failure that callers match on (not found, unreachable, timeout, a transient status),
//! from which retrying follows.

use std::future::Future;
use std::time::Duration;

use crate::describe::{Failure, classify};
use crate::retry::{Retry, RetryPolicy, Retryable};
use crate::transport_error::{Server, TransportError};

/// Timeouts, retries and the user agent of a client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// Time for one metadata call (transfers may allow more).
    pub request_timeout: Duration,
    /// Retries of idempotent calls.
    pub retry: RetryPolicy,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl ClientOptions {
    /// Defaults (connect 10 s, requests 60 s, the default retry policy) with `user_agent`.
    pub fn new(user_agent: impl Into<String>) -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            user_agent: user_agent.into(),
        }
    }

    /// A reqwest client builder with the connect timeout and user agent set.
    pub fn http_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .user_agent(&self.user_agent)
    }
}

/// `text` as the base URL of a REST server: it must parse and be `http://` or `https://`;
/// otherwise why not, in words.
pub fn base_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be http:// or https://, not {}://",
            url.scheme()
        ));
    }
    Ok(url)
}

/// The builder methods every client has, over its [`ClientOptions`].
pub trait ClientBuilder: Sized {
    /// The options being built.
    fn options_mut(&mut self) -> &mut ClientOptions;

    /// Connect timeout (default 10 s).
    fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options_mut().connect_timeout = timeout;
        self
    }

    /// Timeout of one metadata call (default 60 s).
    fn request_timeout(mut self, timeout: Duration) -> Self {
        self.options_mut().request_timeout = timeout;
        self
    }

    /// Retry policy of idempotent calls.
    fn retry(mut self, retry: RetryPolicy) -> Self {
        self.options_mut().retry = retry;
        self
    }

    /// The `User-Agent` header.
    fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.options_mut().user_agent = agent.into();
        self
    }
}

/// What kind of failure an error is, in terms both clients share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The resource does not exist (404 or the API's own not-found code).
    NotFound,
    /// The connection broke or the answer could not be read.
    Unreachable,
    /// No connection could be made: the server never saw the request.
    NotConnected,
    /// The request's timeout ran out.
    Timeout,
    /// The body ended before its announced length.
    Truncated,
    /// Any other answer with this status; `retry_after` is the server's `Retry-After`.
    Status {
        /// The HTTP status.
        status: u16,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Anything else (configuration, decoding, local files).
    Other,
}

impl TransportError {
    /// Its kind, as [`ClientError::kind`] reports it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unreachable {
                never_sent: true, ..
            } => ErrorKind::NotConnected,
            Self::Unreachable { .. } => ErrorKind::Unreachable,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Truncated { .. } => ErrorKind::Truncated,
        }
    }
}

/// An error of a REST client: its kind, the last attempt's error when retries ran out, and
/// the [`TransportError`] it wraps for a request without an answer. Retrying (transport
/// failures, timeouts, truncated bodies and 408/429/5xx but 501 are retried, honouring
/// `Retry-After`) and the questions callers ask follow from these.
/// [`client_error!`](crate::client_error) implements it from the names of a client's variants.
pub trait ClientError: Sized + From<TransportError> {
    /// The server, as messages name it.
    const SERVER: Server;

    /// The kind of this error itself.
    fn kind(&self) -> ErrorKind;

    /// The last attempt's error when this one says that retries ran out.
    fn last_attempt(&self) -> Option<&Self>;

    /// Retries ran out after `attempts` in `seconds`; `last` is the last attempt's error.
    fn exhausted(last: Self, attempts: usize, seconds: f64) -> Self;

    /// A reqwest error without an answer for `request` to `url`, which had `timeout`: a
    /// timeout or an unreachable server.
    fn no_answer(request: &str, url: &str, e: &reqwest::Error, timeout: Duration) -> Self {
        let request = request.to_string();
        let unreachable = |reason, never_sent| TransportError::Unreachable {
            server: Self::SERVER,
            request: request.clone(),
            url: url.to_string(),
            reason,
            never_sent,
        };
        match classify(e) {
            Failure::Timeout => TransportError::Timeout {
                request: request.clone(),
                seconds: timeout.as_secs_f64(),
            },
            Failure::Unreachable(reason) => unreachable(reason, false),
            Failure::NotConnected(reason) => unreachable(reason, true),
        }
        .into()
    }

    /// `request`'s body ended after `received` of `expected` bytes.
    fn truncated(request: &str, received: u64, expected: u64) -> Self {
        TransportError::Truncated {
            server: Self::SERVER,
            request: request.to_string(),
            received,
            expected,
        }
        .into()
    }

    /// The error itself, or the last attempt's error when retries ran out.
    fn cause(&self) -> &Self {
        match self.last_attempt() {
            Some(last) => last.cause(),
            None => self,
        }
    }

    /// Whether the same request may succeed if sent again.
    fn is_retryable(&self) -> bool {
        retry_of(self.kind()) != Retry::Never
    }

    /// Whether the server could not be reached (also after retries).
    fn is_unreachable(&self) -> bool {
        matches!(
            self.cause().kind(),
            ErrorKind::Unreachable | ErrorKind::NotConnected
        )
    }

    /// Whether a timeout ran out (also after retries).
    fn is_timeout(&self) -> bool {
        self.cause().kind() == ErrorKind::Timeout
    }

    /// Whether the resource does not exist (also after retries).
    fn is_not_found(&self) -> bool {
        self.cause().kind() == ErrorKind::NotFound
    }
}

fn retry_of(kind: ErrorKind) -> Retry {
    match kind {
        ErrorKind::Unreachable
        | ErrorKind::NotConnected
        | ErrorKind::Timeout
        | ErrorKind::Truncated => Retry::After(None),
        ErrorKind::Status {
            status,
            retry_after,
        } if crate::status::is_transient(status) => Retry::After(retry_after),
        _ => Retry::Never,
    }
}

impl<E: ClientError> Retryable for E {
    fn retry(&self) -> Retry {
        retry_of(self.kind())
    }
}

/// An error that proves the server did not act on the request (no connection could be made,
/// or it refused the request with 429 or 503 before doing anything), so that even a request
/// that is not idempotent may be sent again.
struct Unprocessed<E>(E);

impl<E: ClientError> Retryable for Unprocessed<E> {
    fn retry(&self) -> Retry {
        match self.0.kind() {
            ErrorKind::Status {
                status: 429 | 503,
                retry_after,
            } => Retry::After(retry_after),
            ErrorKind::NotConnected => Retry::After(None),
            _ => Retry::Never,
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for Unprocessed<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl RetryPolicy {
    /// [`RetryPolicy::run_client`] for a request that is not idempotent: sent again only when
    /// no connection could be made or after a 429 or 503 (the server never saw it or refused it
    /// without acting on it), never after a timeout or a broken connection (it may have acted).
    pub async fn run_client_once<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, E>
    where
        E: ClientError + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(
            || {
                let fut = attempt();
                async move { fut.await.map_err(Unprocessed) }
            },
            |last, attempts, elapsed| {
                Unprocessed(E::exhausted(last.0, attempts, elapsed.as_secs_f64()))
            },
        )
        .await
        .map_err(|e| e.0)
    }

    /// [`RetryPolicy::run`] for a client's error: retries ran out is [`ClientError::exhausted`].
    pub async fn run_client<T, E, F, Fut>(&self, attempt: F) -> Result<T, E>
    where
        E: ClientError + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(attempt, |last, attempts, elapsed| {
            E::exhausted(last, attempts, elapsed.as_secs_f64())
        })
        .await
    }
}

/// Implements [`ClientError`] for a client's error enum from the names of its variants: the
/// server it talks to, the one wrapping [`TransportError`] (a tuple variant with `#[from]`), the
/// not-found one, the status one with `status` and `retry_after`, and the exhausted one with
/// `last`, `attempts` and `seconds`.
///
/// ```
/// use rest_transport::{ClientError, Server, TransportError};
///
/// #[derive(Debug)]
/// enum MyError {
///     NotFound { request: String },
///     Transport(TransportError),
///     Api { request: String, status: u16, retry_after: Option<std::time::Duration> },
///     RetriesExhausted { last: Box<MyError>, attempts: usize, seconds: f64 },
/// }
///
/// impl From<TransportError> for MyError {
///     fn from(e: TransportError) -> Self {
///         Self::Transport(e)
///     }
/// }
///
/// const MINE: Server = Server { name: "Mine", unreachable_hint: "is it running?" };
///
/// rest_transport::client_error!(MyError {
///     server: MINE,
///     transport: Transport,
///     not_found: NotFound,
///     status: Api,
///     exhausted: RetriesExhausted,
/// });
///
/// let timeout = TransportError::Timeout { request: "GET /x".into(), seconds: 5.0 };
/// let e = MyError::exhausted(timeout.into(), 3, 9.0);
/// assert!(e.is_timeout() && !e.is_retryable());
/// let busy = MyError::Api { request: "GET /x".into(), status: 503, retry_after: None };
/// assert!(busy.is_retryable());
/// ```
#[macro_export]
macro_rules! client_error {
    ($error:ty {
        server: $server:expr,
        transport: $transport:ident,
        not_found: $not_found:ident,
        status: $status:ident,
        exhausted: $exhausted:ident $(,)?
    }) => {
        impl $crate::ClientError for $error {
            const SERVER: $crate::Server = $server;

            fn kind(&self) -> $crate::ErrorKind {
                match self {
                    Self::$transport(e) => e.kind(),
                    Self::$not_found { .. } => $crate::ErrorKind::NotFound,
                    Self::$status {
                        status,
                        retry_after,
                        ..
                    } => $crate::ErrorKind::Status {
                        status: *status,
                        retry_after: *retry_after,
                    },
                    _ => $crate::ErrorKind::Other,
                }
            }

            fn last_attempt(&self) -> Option<&Self> {
                match self {
                    Self::$exhausted { last, .. } => Some(last),
                    _ => None,
                }
            }

            fn exhausted(last: Self, attempts: usize, seconds: f64) -> Self {
                Self::$exhausted {
                    last: Box::new(last),
                    attempts,
                    seconds,
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    enum Fake {
        Kind(ErrorKind),
        Transport(TransportError),
        Exhausted(Box<Fake>),
    }

    impl From<TransportError> for Fake {
        fn from(e: TransportError) -> Self {
            Self::Transport(e)
        }
    }

    impl ClientError for Fake {
        const SERVER: Server = Server {
            name: "Fake",
            unreachable_hint: "start it",
        };
        fn kind(&self) -> ErrorKind {
            match self {
                Self::Kind(k) => *k,
                Self::Transport(e) => e.kind(),
                Self::Exhausted(_) => ErrorKind::Other,
            }
        }
        fn last_attempt(&self) -> Option<&Self> {
            match self {
                Self::Exhausted(last) => Some(last),
                _ => None,
            }
        }
        fn exhausted(last: Self, _: usize, _: f64) -> Self {
            Self::Exhausted(Box::new(last))
        }
    }

    fn unreachable(never_sent: bool) -> Fake {
        Fake::from(TransportError::Unreachable {
            server: Fake::SERVER,
            request: "POST /x".into(),
            url: "http://h".into(),
            reason: "refused".into(),
            never_sent,
        })
    }

    #[test]
    fn kinds_decide_retries_and_answers_look_through_exhausted_retries() {
        let status = |s| {
            Fake::Kind(ErrorKind::Status {
                status: s,
                retry_after: Some(Duration::from_secs(3)),
            })
        };
        assert_eq!(
            status(503).retry(),
            Retry::After(Some(Duration::from_secs(3)))
        );
        assert_eq!(status(501).retry(), Retry::Never);
        assert_eq!(Fake::Kind(ErrorKind::NotFound).retry(), Retry::Never);
        assert!(Fake::Kind(ErrorKind::Timeout).is_retryable());
        let gone = Fake::Exhausted(Box::new(Fake::Kind(ErrorKind::Unreachable)));
        assert!(gone.is_unreachable() && !gone.is_retryable() && !gone.is_not_found());
        let missing = Fake::Exhausted(Box::new(Fake::Kind(ErrorKind::NotFound)));
        assert!(missing.is_not_found());
        assert_eq!(
            Unprocessed(status(503)).retry(),
            Retry::After(Some(Duration::from_secs(3)))
        );
        assert_eq!(Unprocessed(status(500)).retry(), Retry::Never);
        assert_eq!(
            Unprocessed(Fake::Kind(ErrorKind::Timeout)).retry(),
            Retry::Never
        );
        assert_eq!(
            Unprocessed(Fake::Kind(ErrorKind::Unreachable)).retry(),
            Retry::Never
        );
        // A refused connection proves the request was never handled: any method is resent.
        assert_eq!(Unprocessed(unreachable(true)).retry(), Retry::After(None));
        let refused = Fake::Exhausted(Box::new(unreachable(true)));
        assert!(refused.is_unreachable());
        assert_eq!(unreachable(false).kind(), ErrorKind::Unreachable);
        let text = TransportError::Unreachable {
            server: Fake::SERVER,
            request: "POST /x".into(),
            url: "http://h".into(),
            reason: "refused".into(),
            never_sent: true,
        }
        .to_string();
        assert_eq!(
            text,
            "POST /x: cannot reach Fake at http://h: refused; start it"
        );
        let cut = Fake::truncated("GET /f", 10, 12);
        assert_eq!(cut.kind(), ErrorKind::Truncated);
        let mut options = ClientOptions::new("ua/1");
        assert_eq!(options.request_timeout, Duration::from_secs(60));
        options.retry.max_retries = 1;
        assert!(options.http_builder().build().is_ok());
    }
}
