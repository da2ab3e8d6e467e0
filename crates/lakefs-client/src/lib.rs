//! lakefs-client: an async client for the lakeFS REST API (`../shared/specs/lakefs-openapi.yml`).
//!
//! - [`LakeFsClient`] / [`LakeFsClientBuilder`]: endpoint, basic auth or token login,
//!   timeouts and [`RetryPolicy`] (backoff with jitter, Retry-After, bounded total time).
//! - Endpoints ([`api`], [`objects`]): repositories, branches, objects (streaming, verified),
//!   commits, log, diff, merge, tags; listings are streams.
//! - [`LakeFsUri`]: URIs of the form `lakefs://repo/ref/path`; [`NameKind`]: lakeFS's naming rules.
//! - High level ([`sync`], [`transaction`]): `upload_dir`, `download_prefix` (cache keyed by
//!   commit id), and transactions that leave the target untouched on failure.

pub mod api;
pub mod client;
pub mod error;
pub mod names;
pub mod objects;
pub mod sync;
pub mod transaction;
pub mod types;
pub mod uri;

pub use client::{Credentials, LakeFsClient, LakeFsClientBuilder};
pub use error::{LakeFsError, Result};
pub use names::NameKind;
pub use objects::UploadOptions;
pub use rest_transport::{ClientBuilder, ClientError, ClientOptions, RetryPolicy};
pub use sync::{
    DEFAULT_CONCURRENCY, DownloadOptions, DownloadReport, SymlinkPolicy, UploadDirOptions,
    UploadReport,
};
pub use transaction::{CommitOptions, Transaction, TransactionOutcome, TxBranch};
pub use types::*;
pub use uri::LakeFsUri;
