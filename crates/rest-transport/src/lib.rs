//! rest-transport: the HTTP machinery that the lakeFS and MLflow clients share.
//!
//! - [`client`]: a client's options (timeouts, retries, user agent) with the builder methods
//!   that set them, and the kinds of failure ([`ErrorKind`]) both clients classify into.
//! - [`exchange`]: the request cycle (send, refusal or no answer as the client's error, retries,
//!   JSON decoding with a body excerpt); a client implements [`Service`] for what is its own.
//! - [`RetryPolicy`]: exponential backoff with jitter, honouring `Retry-After`, bounded in
//!   attempts and in total time; serde-able with human-readable durations (`"30s"`).
//! - [`stream`]: a file as a streamed request body, and a response streamed into a temporary
//!   file beside its destination, size-checked, then renamed into place.
//! - [`paginate`]: a token-paged listing as a stream that fetches a page only when needed.
//! - [`encode`]: percent-encoding of path segments and paths.
//! - [`describe`]: what a transport failure was (timeout or unreachable) with its full cause.
//! - [`TransportError`]: a request without a whole answer, which each client's error wraps.

pub mod client;
pub mod describe;
pub mod encode;
pub mod exchange;
mod paging;
mod retry;
pub mod status;
pub mod stream;
mod transport_error;

pub use client::{ClientBuilder, ClientError, ClientOptions, ErrorKind, base_url};
pub use describe::{Failure, classify, error_chain};
pub use exchange::{Idempotent, Refusal, Service};
pub use paging::paginate;
pub use retry::{Retry, RetryPolicy, Retryable};
pub use stream::{DownloadError, StagedDownload, file_body, stream_to_temp};
pub use transport_error::{Server, TransportError};
