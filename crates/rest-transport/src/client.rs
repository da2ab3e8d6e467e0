//! What both REST clients share about talking to a server: the options of their HTTP client
//! (timeouts, retry policy, user agent) with the builder methods that set them, and the kinds
//! of failure that callers match on (not found, unreachable, timeout, a transient status),
//! from which retrying follows.

use std::time::Duration;

use crate::retry::{Retry, RetryPolicy, Retryable};

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
    /// The server could not be reached or the connection broke.
    Unreachable,
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

/// An error of a REST client: its kind, and the last attempt's error when retries ran out.
/// Retrying (transport failures, timeouts, truncated bodies and 408/429/5xx but 501 are
/// retried, honouring `Retry-After`) and the questions callers ask follow from these two.
pub trait ClientError: Sized {
    /// The kind of this error itself.
    fn kind(&self) -> ErrorKind;

    /// The last attempt's error when this one says that retries ran out.
    fn last_attempt(&self) -> Option<&Self>;

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
        self.cause().kind() == ErrorKind::Unreachable
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
        ErrorKind::Unreachable | ErrorKind::Timeout | ErrorKind::Truncated => Retry::After(None),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    enum Fake {
        Kind(ErrorKind),
        Exhausted(Box<Fake>),
    }

    impl ClientError for Fake {
        fn kind(&self) -> ErrorKind {
            match self {
                Self::Kind(k) => *k,
                Self::Exhausted(_) => ErrorKind::Other,
            }
        }
        fn last_attempt(&self) -> Option<&Self> {
            match self {
                Self::Exhausted(last) => Some(last),
                Self::Kind(_) => None,
            }
        }
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
        let mut options = ClientOptions::new("ua/1");
        assert_eq!(options.request_timeout, Duration::from_secs(60));
        options.retry.max_retries = 1;
        assert!(options.http_builder().build().is_ok());
    }
}
