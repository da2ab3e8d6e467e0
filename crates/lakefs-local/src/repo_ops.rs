//! Handlers of the repository operations that lakeFS's Python packages (`lakefs`, `lakefs-sdk`,
//! lakefs-spec's fsspec transactions) call in ordinary data-science work beyond reading and
//! writing objects: repository metadata, revert and cherry-pick.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{ApiResult, USER, bad, commit_json};
use crate::state::AppState;
use crate::store::{Change, Overrides};

/// `GET /repositories/{repository}/metadata`: the repository's metadata (a string map).
pub async fn get_repository_metadata(
    State(state): State<Arc<AppState>>,
    Path(repo): Path<String>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    Ok(Json(state.store().repo(&repo)?.rec.metadata.clone()))
}

/// Body of `POST /repositories/{repository}/metadata`.
#[derive(Deserialize)]
pub struct MetadataSet {
    metadata: BTreeMap<String, String>,
}

/// `POST /repositories/{repository}/metadata`: adds or updates the given keys.
pub async fn set_repository_metadata(
    State(state): State<Arc<AppState>>,
    Path(repo): Path<String>,
    Json(body): Json<MetadataSet>,
) -> ApiResult<StatusCode> {
    state.store().set_repo_metadata(&repo, body.metadata)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `DELETE /repositories/{repository}/metadata`.
#[derive(Deserialize)]
pub struct MetadataKeys {
    keys: Vec<String>,
}

/// `DELETE /repositories/{repository}/metadata`: removes the given keys.
pub async fn delete_repository_metadata(
    State(state): State<Arc<AppState>>,
    Path(repo): Path<String>,
    Json(body): Json<MetadataKeys>,
) -> ApiResult<StatusCode> {
    state.store().delete_repo_metadata(&repo, &body.keys)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of revert and cherry-pick (`RevertCreation`, `CherryPickCreation`).
#[derive(Deserialize)]
pub struct ApplyCommit {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    parent_number: Option<i64>,
    #[serde(default)]
    commit_overrides: Option<CommitOverrides>,
}

/// A new commit's message and metadata instead of the defaults.
#[derive(Deserialize, Default)]
pub struct CommitOverrides {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

impl ApplyCommit {
    /// Applies the body's change (or its inverse, `undo`) to `branch`.
    fn apply(
        self,
        state: &AppState,
        repo: &str,
        branch: &str,
        undo: bool,
    ) -> ApiResult<crate::store::CommitRec> {
        let parent_number = match self.parent_number {
            None => 0,
            Some(n) if n >= 0 => n as usize,
            Some(n) => return Err(bad(format!("parent_number {n} is negative"))),
        };
        let change = Change {
            reference: &self.reference,
            parent_number,
            undo,
        };
        let o = self.commit_overrides.unwrap_or_default();
        let overrides = Overrides {
            message: o.message,
            metadata: o.metadata,
        };
        Ok(state
            .store()
            .apply_change(repo, branch, &change, USER, overrides)?)
    }
}

/// `POST /repositories/{repository}/branches/{branch}/revert`: 204 with the revert committed.
pub async fn revert(
    State(state): State<Arc<AppState>>,
    Path((repo, branch)): Path<(String, String)>,
    Json(body): Json<ApplyCommit>,
) -> ApiResult<StatusCode> {
    // lakeFS's RevertCreation requires parent_number (1 for a commit with one parent).
    if body.parent_number.is_none() {
        return Err(bad(
            "revert: parent_number is required (1 for a commit with one parent)",
        ));
    }
    body.apply(&state, &repo, &branch, true)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /repositories/{repository}/branches/{branch}/cherry-pick`: 201 with the new commit.
pub async fn cherry_pick(
    State(state): State<Arc<AppState>>,
    Path((repo, branch)): Path<(String, String)>,
    Json(body): Json<ApplyCommit>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let c = body.apply(&state, &repo, &branch, false)?;
    Ok((StatusCode::CREATED, Json(commit_json(&c))))
}
