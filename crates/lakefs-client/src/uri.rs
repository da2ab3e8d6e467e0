//! `lakefs://repo/ref/path` URIs: parse, print, join.

use std::fmt;
use std::str::FromStr;

use crate::error::LakeFsError;
use crate::names::NameKind;

/// A lakeFS object (or prefix) address: repository, ref (branch, tag or commit id) and path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LakeFsUri {
    /// Repository name.
    pub repository: String,
    /// Branch, tag or commit id. Lineage records commit ids only.
    pub reference: String,
    /// Path inside the ref (may be empty for the root; no leading slash).
    pub path: String,
}

impl LakeFsUri {
    /// Builds a URI, validating each part.
    pub fn new(repository: &str, reference: &str, path: &str) -> Result<Self, LakeFsError> {
        let uri = Self {
            repository: repository.to_string(),
            reference: reference.to_string(),
            path: path.trim_start_matches('/').to_string(),
        };
        uri.validate(&uri.to_string())?;
        Ok(uri)
    }

    fn validate(&self, text: &str) -> Result<(), LakeFsError> {
        let bad = |why: &str| LakeFsError::InvalidUri {
            uri: text.to_string(),
            reason: why.to_string(),
        };
        if !NameKind::Repository.accepts(&self.repository) {
            return Err(bad(&format!(
                "repository names are {}",
                NameKind::Repository.rule()
            )));
        }
        if self.reference.is_empty()
            || self
                .reference
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b == b'/' || b.is_ascii_control())
        {
            return Err(bad(
                "the ref must be a non-empty branch, tag or commit id without '/' or spaces",
            ));
        }
        if self.path.split('/').any(|s| s == "..")
            || self.path.contains('\\')
            || self.path.contains('\0')
        {
            return Err(bad("the path must not contain '..', backslashes or NUL"));
        }
        Ok(())
    }

    /// The same repository and ref with `segment` appended to the path (`/`-joined).
    pub fn join(&self, segment: &str) -> Result<Self, LakeFsError> {
        let segment = segment.trim_start_matches('/');
        let path = if self.path.is_empty() || self.path.ends_with('/') {
            format!("{}{segment}", self.path)
        } else {
            format!("{}/{segment}", self.path)
        };
        Self::new(&self.repository, &self.reference, &path)
    }

    /// The same repository and path at another ref (e.g. the commit id a branch resolved to).
    pub fn at(&self, reference: &str) -> Result<Self, LakeFsError> {
        Self::new(&self.repository, reference, &self.path)
    }
}

impl fmt::Display for LakeFsUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lakefs://{}/{}/{}",
            self.repository, self.reference, self.path
        )
    }
}

impl FromStr for LakeFsUri {
    type Err = LakeFsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| LakeFsError::InvalidUri {
            uri: text.to_string(),
            reason: why.to_string(),
        };
        let rest = text
            .strip_prefix("lakefs://")
            .ok_or_else(|| bad("expected lakefs://<repository>/<ref>/<path>"))?;
        let mut parts = rest.splitn(3, '/');
        let repository = parts.next().unwrap_or_default();
        let reference = parts
            .next()
            .ok_or_else(|| bad("missing ref after the repository"))?;
        let path = parts.next().unwrap_or_default();
        let uri = Self {
            repository: repository.to_string(),
            reference: reference.to_string(),
            path: path.to_string(),
        };
        uri.validate(text)?;
        Ok(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_joins() {
        let uri: LakeFsUri = "lakefs://seg-data/main/models/model.segm"
            .parse()
            .expect("valid");
        assert_eq!(uri.repository, "seg-data");
        assert_eq!(uri.reference, "main");
        assert_eq!(uri.path, "models/model.segm");
        assert_eq!(uri.to_string(), "lakefs://seg-data/main/models/model.segm");
        let root: LakeFsUri = "lakefs://seg-data/abc123".parse().expect("no path");
        assert_eq!(root.path, "");
        assert_eq!(
            root.join("data/")
                .expect("join")
                .join("x.png")
                .expect("join")
                .to_string(),
            "lakefs://seg-data/abc123/data/x.png"
        );
        assert_eq!(uri.at("c0ffee").expect("at").reference, "c0ffee");
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            "s3://a/b/c",
            "lakefs://",
            "lakefs://Repo/main/x",
            "lakefs://ab/main",
            "lakefs://repo",
            "lakefs://repo//x",
            "lakefs://repo/main/../etc",
        ] {
            let err = bad.parse::<LakeFsUri>().expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
