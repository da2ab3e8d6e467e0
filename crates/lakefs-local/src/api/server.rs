//! Health, setup, configuration, the user, login, and the answers for routes this server does
//! not implement or paths outside the API.

use super::*;

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
