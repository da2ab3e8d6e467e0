//! HTTP status facts shared by the clients.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Whether a response with this status may succeed when the same request is sent again:
/// 408, 429, 500, 502, 503, 504. Every other status (501 included) is permanent.
pub fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// The server's `Retry-After` (delay in seconds or an HTTP date), if it sent one.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value
        .parse::<u64>()
        .map(Duration::from_secs)
        .ok()
        .or_else(|| {
            httpdate::parse_http_date(value)
                .ok()
                .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default())
        })
}

/// A body as one line for an error message: an HTML page as "an HTML page" with its title
/// (what answered: a proxy, another service), anything else its first `max` bytes with
/// white space folded.
pub fn body_excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    if lower.trim_start().starts_with("<!doctype html") || lower.contains("<html") {
        let title = lower
            .find("<title>")
            .and_then(|i| {
                let start = i + "<title>".len();
                lower[start..]
                    .find("</title>")
                    .map(|end| text[start..start + end].trim().to_string())
            })
            .filter(|t| !t.is_empty());
        return match title {
            Some(t) => format!("an HTML page titled {:?} (not this API's answer)", fold(&t)),
            None => "an HTML page (not this API's answer)".to_string(),
        };
    }
    let mut cut = max.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let excerpt = fold(&text[..cut]);
    if cut < text.len() {
        format!("{excerpt}...")
    } else {
        excerpt
    }
}

/// White space runs (new lines included) as one space.
fn fold(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert(RETRY_AFTER, later.parse().expect("header"));
        let d = retry_after(&h).expect("date");
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert!(is_transient(503) && is_transient(429) && !is_transient(501));
        let page = b"<!DOCTYPE html>\n<html><head><title>404 Not\nFound</title></head><body>\n<h1>x</h1></body></html>";
        assert_eq!(
            body_excerpt(page, 300),
            "an HTML page titled \"404 Not Found\" (not this API's answer)"
        );
        assert_eq!(
            body_excerpt(b"line one\nline two", 300),
            "line one line two"
        );
        assert_eq!(body_excerpt("héllo".as_bytes(), 2), "h...");
        assert!(!is_transient(404));
    }
}
