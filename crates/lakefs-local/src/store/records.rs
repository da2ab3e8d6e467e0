//! The records of the store: objects (entries), trees and commits (content-addressed, written
//! once), repositories in memory, and one line of a staging log. Data only: what changes them
//! is [`super::history`], what writes them is [`super::persistence`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One object in a tree or a staging area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// sha256 of the content (the blob's name).
    pub blob: String,
    /// Hex MD5 of the content (lakeFS's checksum for single-part uploads).
    pub checksum: String,
    /// Size in bytes.
    pub size: u64,
    /// Seconds since epoch.
    pub mtime: i64,
    /// User metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Content type.
    #[serde(default)]
    pub content_type: String,
}

/// A snapshot: path -> entry.
pub type Tree = BTreeMap<String, Entry>;

/// A commit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRec {
    /// Content-derived id.
    pub id: String,
    /// Parents.
    pub parents: Vec<String>,
    /// Committer.
    pub committer: String,
    /// Message.
    pub message: String,
    /// Seconds since epoch.
    pub creation_date: i64,
    /// Tree id.
    pub meta_range_id: String,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Distance from the root commit (1-based).
    pub generation: u64,
}

/// A repository record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRec {
    /// Name.
    pub id: String,
    /// Seconds since epoch.
    pub creation_date: i64,
    /// Default branch.
    pub default_branch: String,
    /// Storage namespace (`local://...`).
    pub storage_namespace: String,
    /// Repository metadata (`GET/POST/DELETE /repositories/{repository}/metadata`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// What to commit with.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// Message.
    pub message: String,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Committer.
    pub committer: String,
    /// Creation date (seconds; default now).
    pub date: Option<i64>,
    /// Commit even without changes.
    pub allow_empty: bool,
}

/// A repository's state in memory.
#[derive(Debug)]
pub struct Repo {
    /// The record.
    pub rec: RepoRec,
    /// Branch -> commit id.
    pub branches: BTreeMap<String, String>,
    /// Tag -> commit id.
    pub tags: BTreeMap<String, String>,
    /// Commits by id.
    pub commits: HashMap<String, CommitRec>,
    /// Trees by id.
    pub trees: HashMap<String, Arc<Tree>>,
    /// Branch -> staged changes (`None` = deleted).
    pub staging: HashMap<String, BTreeMap<String, Option<Entry>>>,
}

/// One staged change as a line of the staging log.
#[derive(Debug, Serialize, Deserialize)]
pub struct StagingLine {
    /// The object's path.
    pub path: String,
    /// The staged entry (`None` = deleted).
    pub entry: Option<Entry>,
}
