//! Percent-encoding of URL path pieces.

/// One path segment, percent-encoded (`/` included; spaces as `%20`).
pub fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A `/`-separated path whose segments are encoded one by one (empty segments dropped).
pub fn path(p: &str) -> String {
    p.split('/')
        .filter(|s| !s.is_empty())
        .map(segment)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_and_paths() {
        assert_eq!(super::segment("a b/c"), "a%20b%2Fc");
        assert_eq!(super::path("/a b//c#d/"), "a%20b/c%23d");
    }
}
