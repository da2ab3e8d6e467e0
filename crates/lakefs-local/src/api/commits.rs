//! Commits, the log, diffs and merges.

use super::*;

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
    let taken: Vec<&CommitRec> = commits.iter().skip(start).take(q.amount()).collect();
    let has_more = start + taken.len() < commits.len();
    let next = has_more.then(|| taken.last().map(|c| c.id.clone()).unwrap_or_default());
    Ok(Json(page(
        taken.into_iter().map(commit_json).collect(),
        next,
    )))
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
