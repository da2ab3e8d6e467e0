//! lakefs-local: a lakeFS-compatible server over a local folder, for tests and the no-Docker
//! quickstart. It implements the subset of the lakeFS API that lakefs-client uses (see the
//! README) with lakeFS semantics; every other endpoint answers 501. It is not a production
//! store: use a real lakeFS for anything shared.
//!
//! - [`store`]: the versioned store (records, refs, merge, persistence, blobs).
//! - [`state`]: what the handlers share.
//! - [`api`]: the HTTP handlers.
//! - [`server`]: authentication, routing, serving.

pub mod api;
pub mod repo_ops;
pub mod server;
pub mod state;
pub mod store;

pub use server::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, JSON_BODY_LIMIT, RunningServer, ServeError,
    ServerConfig, router, spawn,
};
pub use state::{Tap, TapRecord};
