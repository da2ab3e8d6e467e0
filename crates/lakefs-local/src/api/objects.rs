//! Objects: upload (raw or multipart), delete, copy, stat, list, and download with ranges.

use super::*;

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
        mtime: OffsetDateTime::now_utc().unix_timestamp(),
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
    entry.mtime = OffsetDateTime::now_utc().unix_timestamp();
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

/// The first byte and the last of a `Range: bytes=...` header on an object of `size` bytes.
/// Written here rather than taken from the `headers` crate, which refuses a suffix longer than
/// the object where RFC 9110 (and Go's net/http, lakeFS's server) serve the whole object.
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

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-3", 10), Some((0, 3)));
        assert_eq!(parse_range("bytes=4-", 10), Some((4, 9)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 9)));
        // A suffix longer than the object is the whole object, a last byte past it is clamped.
        assert_eq!(parse_range("bytes=-30", 10), Some((0, 9)));
        assert_eq!(parse_range("bytes=5-99", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=5-4", 10), None);
        assert_eq!(parse_range("items=0-3", 10), None);
    }
}
