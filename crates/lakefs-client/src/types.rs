//! lakeFS API models (the subset of ../shared/specs/lakefs-openapi.yml the client uses).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Listing pagination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Pagination {
    /// More results after this page.
    pub has_more: bool,
    /// Value for `after` to get the next page.
    #[serde(default)]
    pub next_offset: String,
    /// Results in this page.
    #[serde(default)]
    pub results: u64,
    /// Page size limit.
    #[serde(default)]
    pub max_per_page: u64,
}

/// A page of a listing.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    /// Pagination state.
    pub pagination: Pagination,
    /// Items.
    #[serde(default = "Vec::new")]
    pub results: Vec<T>,
}

/// A repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// Name.
    pub id: String,
    /// Seconds since epoch.
    pub creation_date: i64,
    /// Default branch.
    pub default_branch: String,
    /// Where its objects live (`local://...`, `s3://...`).
    pub storage_namespace: String,
    /// Read-only flag.
    #[serde(default)]
    pub read_only: bool,
}

/// A branch or tag: its name and the commit it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    /// Name.
    pub id: String,
    /// Commit id.
    pub commit_id: String,
}

/// A commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Commit id (content-derived).
    pub id: String,
    /// Parent ids.
    #[serde(default)]
    pub parents: Vec<String>,
    /// Who committed.
    pub committer: String,
    /// Message.
    pub message: String,
    /// Seconds since epoch.
    pub creation_date: i64,
    /// Id of the tree snapshot.
    pub meta_range_id: String,
    /// User metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Object metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectStats {
    /// Path within the ref.
    pub path: String,
    /// `object` or `common_prefix`.
    pub path_type: String,
    /// Address in the underlying storage.
    #[serde(default)]
    pub physical_address: String,
    /// Checksum: hex MD5 for single-part uploads.
    #[serde(default)]
    pub checksum: String,
    /// Size in bytes.
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// Modification time, seconds since epoch.
    #[serde(default)]
    pub mtime: i64,
    /// User metadata (`X-Lakefs-Meta-*`).
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Content type.
    #[serde(default)]
    pub content_type: Option<String>,
}

impl ObjectStats {
    /// The user metadata value for `key`, matched case-insensitively (lakeFS returns keys in
    /// Go's canonical header form: `sha256` comes back as `Sha256`).
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .as_ref()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// One failure of a bulk delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectError {
    /// HTTP-like status of this path.
    pub status_code: u16,
    /// Message.
    pub message: String,
    /// The path.
    #[serde(default)]
    pub path: Option<String>,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    /// `added`, `removed`, `changed` or `conflict`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Path.
    pub path: String,
    /// `object` or `common_prefix`.
    pub path_type: String,
    /// Size, when known.
    #[serde(default)]
    pub size_bytes: Option<u64>,
}

/// Storage configuration of the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageConfig {
    /// `local`, `s3`, `gs`, `azure`, `mem`.
    pub blockstore_type: String,
    /// Example namespace.
    pub blockstore_namespace_example: String,
    /// Whether presigned URLs are offered (false for the local blockstore).
    pub pre_sign_support: bool,
    /// Import support.
    #[serde(default)]
    pub import_support: bool,
}

/// Server version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionConfig {
    /// Version string.
    #[serde(default)]
    pub version: Option<String>,
}

/// A lakeFS user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub id: String,
    /// Seconds since epoch.
    pub creation_date: i64,
}

/// Setup state (`initialized` or `not_initialized`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupState {
    /// State.
    #[serde(default)]
    pub state: Option<String>,
}

/// Credentials returned by setup.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsWithSecret {
    /// Access key id.
    pub access_key_id: String,
    /// Secret (never printed by Debug).
    pub secret_access_key: String,
    /// Seconds since epoch.
    pub creation_date: i64,
}

impl std::fmt::Debug for CredentialsWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsWithSecret")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .finish()
    }
}

/// Merge strategies for conflicting paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeStrategy {
    /// The source's version wins.
    SourceWins,
    /// The destination's version wins.
    DestWins,
}

/// How a merge commits (lakeFS's `Merge` body); `Default` is a plain merge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeOptions {
    /// The merge commit's message (lakeFS's default when none).
    pub message: Option<String>,
    /// The merge commit's metadata.
    pub metadata: BTreeMap<String, String>,
    /// Which side wins conflicting paths (a conflict is an error without one).
    pub strategy: Option<MergeStrategy>,
    /// Merge even when the destination's content would not change (lakeFS never
    /// fast-forwards, so otherwise it answers "no changes").
    pub allow_empty: bool,
}

/// What a branch reset discards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetScope {
    /// All uncommitted changes.
    All,
    /// One object's uncommitted change.
    Object(String),
    /// Uncommitted changes under a prefix.
    Prefix(String),
}
