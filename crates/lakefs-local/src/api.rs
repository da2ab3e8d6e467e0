//! HTTP handlers: lakeFS's REST API (the subset lakefs-client uses) over [`Store`].

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
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::state::AppState;
use crate::store::{
    BlobInfo, CommitRec, CommitRequest, Entry, MergeRequest, RepoRec, StoreError, now_secs,
};

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

fn paginate<T>(items: Vec<(String, T)>, q: &ListQuery, to_json: impl Fn(T) -> Value) -> Value {
    let amount = q.amount.unwrap_or(100).clamp(1, 1000);
    let after = q.after.clone().unwrap_or_default();
    let prefix = q.prefix.clone().unwrap_or_default();
    let mut rest: Vec<(String, T)> = items
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix) && (after.is_empty() || *k > after))
        .collect();
    let has_more = rest.len() > amount;
    rest.truncate(amount);
    let next_offset = if has_more {
        rest.last().map(|(k, _)| k.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    let results: Vec<Value> = rest.into_iter().map(|(_, v)| to_json(v)).collect();
    json!({
        "pagination": { "has_more": has_more, "next_offset": next_offset, "results": results.len(), "max_per_page": 1000 },
        "results": results,
    })
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

// --- setup, config, auth ---------------------------------------------------------------

/// `GET /healthcheck`.
pub async fn healthcheck() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `GET /setup_lakefs`.
pub async fn setup_state() -> Json<Value> {
    Json(json!({ "state": "initialized", "comm_prefs_missing": false }))
}

/// `POST /setup_lakefs`: this server is set up from its command line.
pub async fn setup() -> ApiError {
    ApiError(StatusCode::CONFLICT, "lakeFS already initialized".into())
}

fn storage_config_json() -> Value {
    json!({
        "blockstore_type": "local",
        "blockstore_namespace_example": "local://example-bucket/",
        "blockstore_namespace_ValidityRegex": "^local://",
        "pre_sign_support": false,
        "pre_sign_support_ui": false,
        "import_support": false,
        "import_validity_regex": "^local://",
        "pre_sign_multipart_upload": false,
        "blockstore_id": "",
        "blockstore_description": "lakefs-local: a folder on this machine",
    })
}

fn version_config_json() -> Value {
    json!({
        "version": format!("lakefs-local {}", env!("CARGO_PKG_VERSION")),
        "upgrade_recommended": false,
    })
}

/// `GET /config/storage`.
pub async fn storage_config() -> Json<Value> {
    Json(storage_config_json())
}

/// `GET /config/version`.
pub async fn version() -> Json<Value> {
    Json(version_config_json())
}

/// `GET /config`: storage and version configuration in one answer (what lakeFS's high-level
/// Python package reads before any upload). One storage: the list holds the default config.
pub async fn config() -> Json<Value> {
    Json(json!({
        "version_config": version_config_json(),
        "storage_config": storage_config_json(),
        "storage_config_list": [storage_config_json()],
        "ui_config": { "custom_viewers": [] },
    }))
}

/// `GET /user`.
pub async fn current_user(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "user": { "id": USER, "creation_date": state.started } }))
}

/// `POST /auth/login`.
pub async fn login(
    State(state): State<Arc<AppState>>,
    OptionalJson(body): OptionalJson,
) -> ApiResult<Json<Value>> {
    let id = body["access_key_id"].as_str().unwrap_or_default();
    let secret = body["secret_access_key"].as_str().unwrap_or_default();
    if !state.check_key(id, secret) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "invalid credentials".into(),
        ));
    }
    let (token, expires) = state.issue_token();
    Ok(Json(json!({ "token": token, "token_expiration": expires })))
}

/// Any route this server does not implement.
pub async fn not_implemented(req: Request) -> ApiError {
    ApiError(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "{} {} is not implemented by lakefs-local; use a real lakeFS for it",
            req.method(),
            req.uri().path()
        ),
    )
}

/// Any path outside the API.
pub async fn not_found(req: Request) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "{} {}: no such path (the API is under /api/v1)",
            req.method(),
            req.uri().path()
        ),
    )
}

// --- repositories ----------------------------------------------------------------------

/// `GET /repositories`.
pub async fn list_repositories(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Json<Value> {
    let store = state.store();
    let items = store
        .repos
        .values()
        .map(|r| (r.rec.id.clone(), r.rec.clone()))
        .collect();
    Json(paginate(items, &q, |r| repo_json(&r)))
}

/// `POST /repositories`.
pub async fn create_repository(
    State(state): State<Arc<AppState>>,
    Json(body): Json<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = body["name"]
        .as_str()
        .ok_or_else(|| bad("name is required"))?;
    let ns = body["storage_namespace"]
        .as_str()
        .ok_or_else(|| bad("storage_namespace is required"))?;
    let default_branch = body["default_branch"].as_str().unwrap_or("main");
    let rec = state.store().create_repo(name, ns, default_branch)?;
    Ok((StatusCode::CREATED, Json(repo_json(&rec))))
}

/// `GET /repositories/{repository}`.
pub async fn get_repository(
    State(state): State<Arc<AppState>>,
    Path(repo): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(repo_json(&state.store().repo(&repo)?.rec)))
}

/// `DELETE /repositories/{repository}`.
pub async fn delete_repository(
    State(state): State<Arc<AppState>>,
    Path(repo): Path<String>,
) -> ApiResult<StatusCode> {
    state.store().delete_repo(&repo)?;
    Ok(StatusCode::NO_CONTENT)
}

// --- branches and tags -----------------------------------------------------------------

/// A page of refs (branches or tags) as a RefList.
fn refs_page(refs: &BTreeMap<String, String>, q: &ListQuery) -> Value {
    let items = refs
        .iter()
        .map(|(id, commit)| (id.clone(), json!({ "id": id, "commit_id": commit })))
        .collect();
    paginate(items, q, |v| v)
}

/// `GET /repositories/{repository}/branches`.
pub async fn list_branches(
    State(state): State<Arc<AppState>>,
    Path(repo): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let store = state.store();
    Ok(Json(refs_page(&store.repo(&repo)?.branches, &q)))
}

/// `POST /repositories/{repository}/branches`: answers 201 with the commit id as text.
pub async fn create_branch(
    State(state): State<Arc<AppState>>,
    Path(repo): Path<String>,
    Json(body): Json<Value>,
) -> ApiResult<Response> {
    let name = body["name"]
        .as_str()
        .ok_or_else(|| bad("name is required"))?;
    let source = body["source"]
        .as_str()
        .ok_or_else(|| bad("source is required"))?;
    let commit = state.store().create_branch(&repo, name, source)?;
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "text/html")],
        commit,
    )
        .into_response())
}

/// `GET /repositories/{repository}/branches/{branch}`.
pub async fn get_branch(
    State(state): State<Arc<AppState>>,
    Path((repo, branch)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let commit = state.store().branch_commit(&repo, &branch)?;
    Ok(Json(json!({ "id": branch, "commit_id": commit })))
}

/// `DELETE /repositories/{repository}/branches/{branch}`.
pub async fn delete_branch(
    State(state): State<Arc<AppState>>,
    Path((repo, branch)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.store().delete_branch(&repo, &branch)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /repositories/{repository}/branches/{branch}`: reset uncommitted changes.
pub async fn reset_branch(
    State(state): State<Arc<AppState>>,
    Path((repo, branch)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<StatusCode> {
    let path = body["path"].as_str().unwrap_or_default();
    let filter = match body["type"].as_str() {
        Some("reset") => None,
        Some("object") => Some((path, false)),
        Some("common_prefix") => Some((path, true)),
        other => {
            return Err(bad(format!(
                "reset type {other:?}: use reset, object or common_prefix"
            )));
        }
    };
    state.store().reset(&repo, &branch, filter)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /repositories/{repository}/tags`.
pub async fn list_tags(
    State(state): State<Arc<AppState>>,
    Path(repo): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let store = state.store();
    Ok(Json(refs_page(&store.repo(&repo)?.tags, &q)))
}

/// `POST /repositories/{repository}/tags`.
pub async fn create_tag(
    State(state): State<Arc<AppState>>,
    Path(repo): Path<String>,
    Json(body): Json<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let id = body["id"].as_str().ok_or_else(|| bad("id is required"))?;
    let reference = body["ref"].as_str().ok_or_else(|| bad("ref is required"))?;
    let commit = state.store().create_tag(&repo, id, reference)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "commit_id": commit })),
    ))
}

/// `GET /repositories/{repository}/tags/{tag}`.
pub async fn get_tag(
    State(state): State<Arc<AppState>>,
    Path((repo, tag)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let store = state.store();
    let commit = store
        .repo(&repo)?
        .tags
        .get(&tag)
        .cloned()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("tag not found: {tag}")))?;
    Ok(Json(json!({ "id": tag, "commit_id": commit })))
}

/// `DELETE /repositories/{repository}/tags/{tag}`.
pub async fn delete_tag(
    State(state): State<Arc<AppState>>,
    Path((repo, tag)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.store().delete_tag(&repo, &tag)?;
    Ok(StatusCode::NO_CONTENT)
}

// --- commits, log, diff, merge ---------------------------------------------------------

/// `POST /repositories/{repository}/branches/{branch}/commits`.
pub async fn commit(
    State(state): State<Arc<AppState>>,
    Path((repo, branch)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let message = body["message"]
        .as_str()
        .ok_or_else(|| bad("message is required"))?;
    let metadata = metadata_of(&body)?;
    let request = CommitRequest {
        message: message.to_string(),
        metadata,
        committer: USER.to_string(),
        date: body["date"].as_i64(),
        allow_empty: body["allow_empty"].as_bool().unwrap_or(false),
    };
    let c = state.store().commit(&repo, &branch, request)?;
    Ok((StatusCode::CREATED, Json(commit_json(&c))))
}

/// `GET /repositories/{repository}/commits/{commitId}`.
pub async fn get_commit(
    State(state): State<Arc<AppState>>,
    Path((repo, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let store = state.store();
    let resolved = store.resolve(&repo, &id)?;
    let c = &store.repo(&repo)?.commits[&resolved.commit];
    Ok(Json(commit_json(c)))
}

/// `GET /repositories/{repository}/refs/{ref}/commits`.
pub async fn log(
    State(state): State<Arc<AppState>>,
    Path((repo, reference)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let store = state.store();
    let head = store.resolve(&repo, &reference)?.commit;
    let commits = store.log(&repo, &head)?;
    // Pages follow log order: `after` is the last commit id of the previous page.
    let start = match &q.after {
        Some(a) if !a.is_empty() => commits
            .iter()
            .position(|c| &c.id == a)
            .map_or(commits.len(), |i| i + 1),
        _ => 0,
    };
    let amount = q.amount.unwrap_or(100).clamp(1, 1000);
    let page: Vec<&CommitRec> = commits.iter().skip(start).take(amount).collect();
    let has_more = start + page.len() < commits.len();
    let next = if has_more {
        page.last().map(|c| c.id.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(Json(json!({
        "pagination": { "has_more": has_more, "next_offset": next, "results": page.len(), "max_per_page": 1000 },
        "results": page.into_iter().map(commit_json).collect::<Vec<_>>(),
    })))
}

/// The entries of `right` against `left`. A removed entry's size is the old object's between
/// commits, and 0 in a branch's uncommitted diff (lakeFS's staged tombstone has no size).
fn diff_entries(
    left: &crate::store::Tree,
    right: &crate::store::Tree,
    removed_sizes: bool,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (path, r) in right {
        match left.get(path) {
            None => out.push((path.clone(), json!({"type": "added", "path": path, "path_type": "object", "size_bytes": r.size}))),
            Some(l) if l.blob != r.blob || l.metadata != r.metadata => {
                out.push((path.clone(), json!({"type": "changed", "path": path, "path_type": "object", "size_bytes": r.size})))
            }
            Some(_) => {}
        }
    }
    for (path, l) in left {
        if !right.contains_key(path) {
            let size = if removed_sizes { l.size } else { 0 };
            out.push((
                path.clone(),
                json!({"type": "removed", "path": path, "path_type": "object", "size_bytes": size}),
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `GET /repositories/{repository}/branches/{branch}/diff`: uncommitted changes.
pub async fn diff_branch(
    State(state): State<Arc<AppState>>,
    Path((repo, branch)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let store = state.store();
    let head = store.branch_commit(&repo, &branch)?;
    let committed = store.commit_tree(&repo, &head)?;
    let view = store.view(&repo, &branch)?;
    Ok(Json(paginate(
        diff_entries(&committed, &view, false),
        &q,
        |v| v,
    )))
}

/// `GET /repositories/{repository}/refs/{leftRef}/diff/{rightRef}`.
pub async fn diff_refs(
    State(state): State<Arc<AppState>>,
    Path((repo, left, right)): Path<(String, String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let store = state.store();
    let l = store.commit_tree(&repo, &store.resolve(&repo, &left)?.commit)?;
    let r = store.commit_tree(&repo, &store.resolve(&repo, &right)?.commit)?;
    Ok(Json(paginate(diff_entries(&l, &r, true), &q, |v| v)))
}

/// `POST /repositories/{repository}/refs/{sourceRef}/merge/{destinationBranch}`.
pub async fn merge(
    State(state): State<Arc<AppState>>,
    Path((repo, source, dest)): Path<(String, String, String)>,
    OptionalJson(body): OptionalJson,
) -> ApiResult<Response> {
    let metadata = metadata_of(&body)?;
    let strategy = body["strategy"].as_str().filter(|s| !s.is_empty());
    if let Some(s) = strategy
        && !matches!(s, "source-wins" | "dest-wins")
    {
        return Err(bad(format!(
            "merge strategy {s:?}: use source-wins or dest-wins"
        )));
    }
    let request = MergeRequest {
        message: body["message"].as_str().map(str::to_string),
        metadata,
        strategy: strategy.map(str::to_string),
        committer: USER.to_string(),
        allow_empty: body["allow_empty"].as_bool().unwrap_or(false),
    };
    let merged = state.store().merge(&repo, &source, &dest, request);
    match merged {
        Ok(reference) => Ok(Json(json!({ "reference": reference })).into_response()),
        // lakeFS answers a conflict with an empty MergeResult, no message (the conflicting
        // paths are in this server's log only).
        Err(StoreError::Conflict(message)) => {
            tracing::info!("merge {source} into {dest} of {repo}: {message}");
            Ok((StatusCode::CONFLICT, Json(json!({ "reference": "" }))).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

// --- objects ---------------------------------------------------------------------------

/// `?path=` of object calls.
#[derive(Debug, Deserialize)]
pub struct PathQuery {
    path: String,
}

/// Go's canonical MIME header form (`sha256` -> `Sha256`, `x-key` -> `X-Key`), as lakeFS keys
/// user metadata.
fn canonical_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = true;
    for c in key.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// `POST /repositories/{repository}/branches/{branch}/objects`: raw body or multipart `content`.
pub async fn upload_object(
    State(state): State<Arc<AppState>>,
    Path((repo, branch)): Path<(String, String)>,
    Query(q): Query<PathQuery>,
    headers: HeaderMap,
    request: Request,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if q.path.is_empty() {
        return Err(bad("path is required"));
    }
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .map(|v| v.to_str().unwrap_or_default().to_string());
    if let Some(v) = &if_none_match
        && v.trim() != "*"
    {
        return Err(ApiError(
            StatusCode::NOT_IMPLEMENTED,
            format!("If-None-Match: {v} is not supported; only * is"),
        ));
    }
    state.store().branch_commit(&repo, &branch)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let metadata: BTreeMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix("x-lakefs-meta-")?;
            Some((canonical_key(key), v.to_str().ok()?.to_string()))
        })
        .collect();
    let (BlobInfo { sha256, md5, size }, stored_type) =
        receive_body(&state, request, content_type).await?;
    let entry = Entry {
        blob: sha256,
        checksum: md5,
        size,
        mtime: now_secs(),
        metadata,
        content_type: stored_type,
    };
    let mut store = state.store();
    if if_none_match.is_some() && store.view(&repo, &branch)?.contains_key(&q.path) {
        return Err(ApiError(
            StatusCode::PRECONDITION_FAILED,
            format!("path {} already exists", q.path),
        ));
    }
    store.stage(&repo, &branch, &q.path, Some(entry.clone()))?;
    Ok((
        StatusCode::CREATED,
        Json(stats_json(&state, &q.path, &entry)),
    ))
}

/// An upload's bytes into a blob: the raw body, or the multipart part named `content`; with the
/// content type to store.
async fn receive_body(
    state: &AppState,
    request: Request,
    content_type: String,
) -> ApiResult<(BlobInfo, String)> {
    if !content_type.starts_with("multipart/form-data") {
        let stream = request
            .into_body()
            .into_data_stream()
            .map(|r| r.map_err(std::io::Error::other));
        return Ok((state.blobs.write(stream).await?, content_type));
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| bad(e.to_string()))?;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(e.to_string()))?
    {
        if field.name() == Some("content") {
            let ct = field
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_string();
            let blob = state
                .blobs
                .write(field.map(|r| r.map_err(std::io::Error::other)))
                .await?;
            return Ok((blob, ct));
        }
    }
    Err(bad("multipart upload needs a part named \"content\""))
}

/// `DELETE /repositories/{repository}/branches/{branch}/objects`.
pub async fn delete_object(
    State(state): State<Arc<AppState>>,
    Path((repo, branch)): Path<(String, String)>,
    Query(q): Query<PathQuery>,
) -> ApiResult<StatusCode> {
    state.store().stage(&repo, &branch, &q.path, None)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /repositories/{repository}/branches/{branch}/objects/delete`.
pub async fn delete_objects(
    State(state): State<Arc<AppState>>,
    Path((repo, branch)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let paths: Vec<String> = serde_json::from_value(body["paths"].clone())
        .map_err(|_| bad("paths must be a list of strings"))?;
    if paths.len() > 1000 {
        return Err(bad("at most 1000 paths per call"));
    }
    let mut store = state.store();
    let mut errors = Vec::new();
    for p in paths {
        if let Err(e) = store.stage(&repo, &branch, &p, None) {
            if matches!(e, StoreError::NotFound(_)) && store.branch_commit(&repo, &branch).is_err()
            {
                return Err(e.into());
            }
            errors.push(
                json!({ "status_code": status_of(&e).as_u16(), "message": e.message(), "path": p }),
            );
        }
    }
    Ok(Json(json!({ "errors": errors })))
}

/// `POST /repositories/{repository}/branches/{branch}/objects/copy?dest_path=`.
pub async fn copy_object(
    State(state): State<Arc<AppState>>,
    Path((repo, branch)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    Json(body): Json<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let dest = q
        .get("dest_path")
        .ok_or_else(|| bad("dest_path is required"))?;
    let src_path = body["src_path"]
        .as_str()
        .ok_or_else(|| bad("src_path is required"))?;
    let src_ref = body["src_ref"].as_str().unwrap_or(&branch).to_string();
    let mut store = state.store();
    let mut entry = store
        .view(&repo, &src_ref)?
        .get(src_path)
        .cloned()
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("object not found: {src_path}"),
            )
        })?;
    entry.mtime = now_secs();
    store.stage(&repo, &branch, dest, Some(entry.clone()))?;
    Ok((StatusCode::CREATED, Json(stats_json(&state, dest, &entry))))
}

fn find(state: &AppState, repo: &str, reference: &str, path: &str) -> ApiResult<Entry> {
    state
        .store()
        .view(repo, reference)?
        .get(path)
        .cloned()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("object not found: {path}")))
}

/// `GET /repositories/{repository}/refs/{ref}/objects/stat`.
pub async fn stat_object(
    State(state): State<Arc<AppState>>,
    Path((repo, reference)): Path<(String, String)>,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<Value>> {
    let e = find(&state, &repo, &reference, &q.path)?;
    Ok(Json(stats_json(&state, &q.path, &e)))
}

/// `GET /repositories/{repository}/refs/{ref}/objects/ls`.
pub async fn list_objects(
    State(state): State<Arc<AppState>>,
    Path((repo, reference)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let view = state.store().view(&repo, &reference)?;
    let prefix = q.prefix.clone().unwrap_or_default();
    let delimiter = q.delimiter.clone().filter(|d| !d.is_empty());
    let mut items: Vec<(String, Value)> = Vec::new();
    let mut last_prefix = String::new();
    for (path, e) in view.range(prefix.clone()..) {
        if !path.starts_with(&prefix) {
            break;
        }
        if let Some(d) = &delimiter
            && let Some(i) = path[prefix.len()..].find(d.as_str())
        {
            let common = path[..prefix.len() + i + d.len()].to_string();
            if common != last_prefix {
                last_prefix = common.clone();
                items.push((common.clone(), json!({"path": common, "path_type": "common_prefix", "physical_address": "", "checksum": "", "mtime": 0})));
            }
            continue;
        }
        let mut stats = stats_json(&state, path, e);
        // lakeFS's listing leaves out empty user metadata (its stat call keeps it).
        if let Some(o) = stats.as_object_mut()
            && o.get("metadata")
                .is_some_and(|m| m.as_object().is_some_and(|m| m.is_empty()))
        {
            o.remove("metadata");
        }
        items.push((path.clone(), stats));
    }
    Ok(Json(paginate(
        items,
        &ListQuery { prefix: None, ..q },
        |v| v,
    )))
}

fn parse_range(range: &str, size: u64) -> Option<(u64, u64)> {
    let spec = range.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size.checked_sub(1)?)
        }
        (s, "") => (s.parse().ok()?, size.checked_sub(1)?),
        (s, e) => (
            s.parse().ok()?,
            e.parse::<u64>().ok()?.min(size.checked_sub(1)?),
        ),
    };
    (start <= end && start < size).then_some((start, end))
}

/// The headers of an object's answer: status (206 for a range), length, ETag, type, date,
/// range and user metadata.
fn object_headers(
    e: &Entry,
    etag: String,
    range: Option<(u64, u64)>,
    len: u64,
) -> axum::http::response::Builder {
    let mut builder = Response::builder()
        .status(if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header(header::CONTENT_LENGTH, len)
        .header(header::ETAG, etag)
        .header(
            header::CONTENT_TYPE,
            if e.content_type.is_empty() {
                "application/octet-stream"
            } else {
                &e.content_type
            },
        )
        .header(
            header::LAST_MODIFIED,
            httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.mtime.max(0) as u64),
            ),
        )
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some((start, end)) = range {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{}", e.size),
        );
    }
    for (k, v) in &e.metadata {
        if let Ok(value) = HeaderValue::from_str(v) {
            builder = builder.header(format!("X-Lakefs-Meta-{k}"), value);
        }
    }
    builder
}

/// `len` bytes of an object's blob from `start`, streamed.
async fn blob_body(state: &AppState, e: &Entry, start: u64, len: u64) -> ApiResult<Body> {
    let path = state.blobs.path(&e.blob);
    let internal = |err: std::io::Error| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("blob {}: {err}", e.blob),
        )
    };
    let mut file = tokio::fs::File::open(&path).await.map_err(internal)?;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(internal)?;
    Ok(Body::from_stream(
        tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024),
    ))
}

/// `GET` (and `HEAD`) `/repositories/{repository}/refs/{ref}/objects`, with `Range`.
pub async fn get_object(
    State(state): State<Arc<AppState>>,
    Path((repo, reference)): Path<(String, String)>,
    Query(q): Query<PathQuery>,
    headers: HeaderMap,
    method: axum::http::Method,
) -> ApiResult<Response> {
    let e = find(&state, &repo, &reference, &q.path)?;
    let etag = format!("\"{}\"", e.checksum);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) => Some(parse_range(r, e.size).ok_or_else(|| {
            ApiError(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("range {r} does not fit {} bytes", e.size),
            )
        })?),
        None => None,
    };
    let (start, end) = range.unwrap_or((0, e.size.saturating_sub(1)));
    let len = if e.size == 0 { 0 } else { end - start + 1 };
    let builder = object_headers(&e, etag, range, len);
    let body = if method == axum::http::Method::HEAD || len == 0 {
        Body::empty()
    } else {
        blob_body(&state, &e, start, len).await?
    };
    builder
        .body(body)
        .map_err(|err| ApiError(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))
}
