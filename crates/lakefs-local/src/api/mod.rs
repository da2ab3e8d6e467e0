//! HTTP handlers: lakeFS's REST API (the subset lakefs-client uses) over [`Store`], one file
//! per part of the API; here what they share: the error answer, the optional JSON body, the
//! listing parameters and pagination, and the JSON shapes of repositories, commits and objects.

mod commits;
mod objects;
mod refs;
mod server;

pub use commits::*;
pub use objects::*;
pub use refs::*;
pub use server::*;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::state::AppState;
use crate::store::{BlobInfo, CommitRec, CommitRequest, Entry, MergeRequest, RepoRec, StoreError};

/// An error answered as `{"message": ...}` with its status.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "message": self.1 }))).into_response()
    }
}

/// The status lakeFS answers a store error of this kind with.
fn status_of(e: &StoreError) -> StatusCode {
    match e {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        StoreError::Forbidden(_) => StatusCode::FORBIDDEN,
        StoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self(status_of(&e), e.message().to_string())
    }
}

/// The `metadata` of a commit or merge body: absent or null is none; anything but an object
/// of strings is refused.
fn metadata_of(body: &Value) -> ApiResult<BTreeMap<String, String>> {
    match &body["metadata"] {
        Value::Null => Ok(BTreeMap::new()),
        value => serde_json::from_value(value.clone())
            .map_err(|e| bad(format!("metadata must be an object of string values: {e}"))),
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// A JSON request body that may be absent or empty, for operations whose spec marks the body
/// as not required (lakeFS accepts `Content-Type: application/json` with no body there); an
/// absent body reads as `{}`.
pub struct OptionalJson(pub Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for OptionalJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(json!({})));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| bad(format!("request body is not valid JSON: {e}")))
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// The user every credential of this server belongs to.
pub const USER: &str = "admin";

/// Listing parameters.
#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    amount: Option<usize>,
    #[serde(default)]
    delimiter: Option<String>,
}

/// Most results lakeFS returns in one page.
const MAX_PER_PAGE: usize = 1000;

impl ListQuery {
    /// The page size asked for, within lakeFS's limits (default 100).
    fn amount(&self) -> usize {
        self.amount.unwrap_or(100).clamp(1, MAX_PER_PAGE)
    }
}

/// One page in lakeFS's shape (`pagination` + `results`); `next` is the key to continue
/// `after` when more follow.
fn page(results: Vec<Value>, next: Option<String>) -> Value {
    json!({
        "pagination": {
            "has_more": next.is_some(),
            "next_offset": next.unwrap_or_default(),
            "results": results.len(),
            "max_per_page": MAX_PER_PAGE,
        },
        "results": results,
    })
}

/// The page of `items` (sorted by key) that `q` asks for: keys under its prefix, after its
/// `after`, at most its amount.
fn paginate<T>(items: Vec<(String, T)>, q: &ListQuery, to_json: impl Fn(T) -> Value) -> Value {
    let amount = q.amount();
    let after = q.after.clone().unwrap_or_default();
    let prefix = q.prefix.clone().unwrap_or_default();
    let mut rest: Vec<(String, T)> = items
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix) && (after.is_empty() || *k > after))
        .collect();
    let has_more = rest.len() > amount;
    rest.truncate(amount);
    let next = has_more.then(|| rest.last().map(|(k, _)| k.clone()).unwrap_or_default());
    page(rest.into_iter().map(|(_, v)| to_json(v)).collect(), next)
}

fn repo_json(r: &RepoRec) -> Value {
    json!({ "id": r.id, "creation_date": r.creation_date, "default_branch": r.default_branch, "storage_namespace": r.storage_namespace, "storage_id": "", "read_only": false })
}

pub(crate) fn commit_json(c: &CommitRec) -> Value {
    json!({
        "id": c.id, "parents": c.parents, "committer": c.committer, "message": c.message,
        "creation_date": c.creation_date, "meta_range_id": c.meta_range_id, "metadata": c.metadata,
        "generation": c.generation, "version": 1,
    })
}

fn stats_json(state: &AppState, path: &str, e: &Entry) -> Value {
    json!({
        "path": path, "path_type": "object",
        "physical_address": format!("local://{}", state.blobs.path(&e.blob).display()),
        "checksum": e.checksum, "size_bytes": e.size, "mtime": e.mtime,
        "metadata": e.metadata, "content_type": e.content_type,
    })
}
