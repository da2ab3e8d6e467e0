//! Repositories, branches and tags.

use super::*;

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
