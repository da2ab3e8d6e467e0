//! An HTTP proxy in front of a server that injects faults into a share of the requests, as a
//! bad network or an overloaded server would: 503 and 429 answers with `Retry-After` (for
//! any request, before it reaches the server, so that it was never acted on), and for reads
//! (GET, HEAD) also stalls past the client's timeout and connections reset in the middle of
//! the body. The share is set at run time, in per mille; faults follow a seeded sequence.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

/// What the proxy did so far.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Requests seen.
    pub requests: AtomicU64,
    /// Faults injected.
    pub faults: AtomicU64,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    per_mille: AtomicU32,
    stall: Duration,
    sequence: AtomicU64,
    counts: Arc<FaultCounts>,
}

/// A running fault proxy; dropping it stops it.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy to `upstream` (`http://host:port`) injecting faults into `per_mille` of the
    /// requests; a stall lasts `stall` (set it past the client's request timeout).
    pub async fn start(upstream: &str, per_mille: u32, stall: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            per_mille: AtomicU32::new(per_mille),
            stall,
            sequence: AtomicU64::new(0),
            counts: Arc::new(FaultCounts::default()),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint,
            shared,
            task,
        }
    }

    /// Sets the share of requests that get a fault, in per mille (1000: every one).
    pub fn set_rate(&self, per_mille: u32) {
        self.shared.per_mille.store(per_mille, Ordering::SeqCst);
    }

    /// Requests and faults so far.
    pub fn counts(&self) -> (u64, u64) {
        let c = &self.shared.counts;
        (
            c.requests.load(Ordering::SeqCst),
            c.faults.load(Ordering::SeqCst),
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fault, or none, for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Unavailable,
    TooMany,
    Stall,
    Reset,
}

fn next_fault(shared: &Shared, read: bool) -> Option<Fault> {
    let n = shared.sequence.fetch_add(1, Ordering::SeqCst);
    // A fixed-seed mix (splitmix64) of the request number.
    let mut x = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    if (x % 1000) as u32 >= shared.per_mille.load(Ordering::SeqCst) {
        return None;
    }
    let kinds: &[Fault] = if read {
        &[
            Fault::Unavailable,
            Fault::TooMany,
            Fault::Stall,
            Fault::Reset,
        ]
    } else {
        &[Fault::Unavailable, Fault::TooMany]
    };
    Some(kinds[((x >> 20) % kinds.len() as u64) as usize])
}

async fn forward(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    shared.counts.requests.fetch_add(1, Ordering::SeqCst);
    let read = matches!(req.method().as_str(), "GET" | "HEAD");
    let fault = next_fault(&shared, read);
    if fault.is_some() {
        shared.counts.faults.fetch_add(1, Ordering::SeqCst);
    }
    match fault {
        Some(Fault::Unavailable) => return refusal(StatusCode::SERVICE_UNAVAILABLE, "0"),
        Some(Fault::TooMany) => return refusal(StatusCode::TOO_MANY_REQUESTS, "1"),
        Some(Fault::Stall) => tokio::time::sleep(shared.stall).await,
        _ => {}
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return refusal(StatusCode::BAD_GATEWAY, "0");
    };
    let mut outgoing = shared
        .http
        .request(parts.method.clone(), format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            outgoing = outgoing.header(name, value);
        }
    }
    let Ok(answer) = outgoing.send().await else {
        return refusal(StatusCode::BAD_GATEWAY, "0");
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let Ok(bytes) = answer.bytes().await else {
        return refusal(StatusCode::BAD_GATEWAY, "0");
    };
    let body = if fault == Some(Fault::Reset) && bytes.len() > 1 {
        // Half the body, then the connection breaks.
        let half = bytes.slice(..bytes.len() / 2);
        Body::from_stream(futures::stream::iter([
            Ok(half),
            Err(std::io::Error::other("connection reset by the fault proxy")),
        ]))
    } else {
        Body::from(bytes.clone())
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    copy_headers(&headers, response.headers_mut(), bytes.len());
    response
}

fn copy_headers(from: &reqwest::header::HeaderMap, to: &mut HeaderMap, len: usize) {
    for (name, value) in from {
        if name == "transfer-encoding" || name == "content-length" || name == "connection" {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            to.append(n, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
        to.insert(axum::http::header::CONTENT_LENGTH, v);
    }
}

fn refusal(status: StatusCode, retry_after: &str) -> Response {
    let mut response = Response::new(Body::from(r#"{"message":"injected fault"}"#));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(retry_after) {
        headers.insert(axum::http::header::RETRY_AFTER, v);
    }
    response
}
