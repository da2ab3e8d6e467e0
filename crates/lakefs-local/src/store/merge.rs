//! Merging a ref into a branch as lakeFS does: refused onto a branch with uncommitted changes
//! ("uncommitted changes (dirty branch)"), a three-way merge from the common ancestor of highest
//! generation, where a path both sides changed differently is a conflict unless a strategy
//! (`source-wins`, `dest-wins`) picks a side; always a merge commit with both parents (lakeFS
//! never fast-forwards) and the strategy in its metadata (`.lakefs.merge.strategy`); "no
//! changes" when the merge would not change the destination's content, unless `allow_empty`.

use std::collections::{BTreeMap, HashSet};

use super::records::{CommitRec, Entry, Tree};
use super::{Store, StoreError};
use time::OffsetDateTime;

/// How to merge.
#[derive(Debug, Clone, Default)]
pub struct MergeRequest {
    /// Merge-commit message (default "Merge 'src' into 'dest'").
    pub message: Option<String>,
    /// Merge-commit metadata.
    pub metadata: BTreeMap<String, String>,
    /// `source-wins` or `dest-wins` for conflicting paths.
    pub strategy: Option<String>,
    /// Committer.
    pub committer: String,
    /// Create a merge commit even when nothing changes.
    pub allow_empty: bool,
}

impl Store {
    /// Merges `source` into branch `dest`; returns the destination's new commit id.
    pub fn merge(
        &mut self,
        repo: &str,
        source: &str,
        dest: &str,
        request: MergeRequest,
    ) -> Result<String, StoreError> {
        let src = self.resolve(repo, source)?.commit;
        let dst = self.clean_head(repo, dest, "merging")?;
        let dst_ancestors = self.ancestors(repo, &dst)?;
        let src_ancestors = self.ancestors(repo, &src)?;
        let base = self.merge_base(repo, &src_ancestors, &dst_ancestors)?;
        let (b, s, d) = (
            self.commit_tree(repo, &base)?,
            self.commit_tree(repo, &src)?,
            self.commit_tree(repo, &dst)?,
        );
        let merged = three_way(&b, &s, &d, request.strategy.as_deref())?;
        let unchanged = merged.len() == d.len()
            && merged
                .iter()
                .all(|(path, e)| d.get(path).is_some_and(|x| x.blob == e.blob));
        if unchanged && !request.allow_empty {
            return Err(StoreError::Invalid(format!(
                "update branch {dest}: no changes"
            )));
        }
        let parents = [dst, src];
        self.commit_merge(repo, source, dest, parents, merged, request)
    }

    /// The common ancestor of highest generation.
    fn merge_base(
        &self,
        repo: &str,
        a: &HashSet<String>,
        b: &HashSet<String>,
    ) -> Result<String, StoreError> {
        let r = self.repo(repo)?;
        a.intersection(b)
            .filter_map(|id| r.commits.get(id))
            .max_by_key(|c| c.generation)
            .map(|c| c.id.clone())
            .ok_or_else(|| StoreError::Invalid("no common ancestor".into()))
    }

    /// Writes the merge commit of `tree` with `parents` (destination first) and moves `dest`.
    fn commit_merge(
        &mut self,
        repo: &str,
        source: &str,
        dest: &str,
        parents: [String; 2],
        tree: Tree,
        request: MergeRequest,
    ) -> Result<String, StoreError> {
        let draft = CommitRec {
            id: String::new(),
            parents: parents.to_vec(),
            committer: request.committer,
            message: request
                .message
                .unwrap_or_else(|| format!("Merge '{source}' into '{dest}'")),
            creation_date: OffsetDateTime::now_utc().unix_timestamp(),
            meta_range_id: String::new(),
            metadata: {
                let mut m = request.metadata;
                let strategy = request.strategy.as_deref().unwrap_or("default");
                m.insert(".lakefs.merge.strategy".into(), strategy.to_string());
                m
            },
            generation: 0,
        };
        Ok(self.write_commit(repo, dest, draft, tree)?.id)
    }
}

/// The three-way merge of `source` and `dest` from `base`: each path takes the side that
/// changed it; both sides changing it differently is a conflict unless `strategy` picks one.
pub(super) fn three_way(
    base: &Tree,
    source: &Tree,
    dest: &Tree,
    strategy: Option<&str>,
) -> Result<Tree, StoreError> {
    let mut merged = dest.clone();
    let mut conflicts = Vec::new();
    let paths: HashSet<&String> = base
        .keys()
        .chain(source.keys())
        .chain(dest.keys())
        .collect();
    let same = |x: Option<&Entry>, y: Option<&Entry>| x.map(|e| &e.blob) == y.map(|e| &e.blob);
    for path in paths {
        let (b, s, d) = (base.get(path), source.get(path), dest.get(path));
        let pick = if same(s, b) || same(s, d) {
            d
        } else if same(d, b) {
            s
        } else {
            match strategy {
                Some("source-wins") => s,
                Some("dest-wins") => d,
                _ => {
                    conflicts.push(path.clone());
                    continue;
                }
            }
        };
        match pick {
            Some(e) => merged.insert(path.clone(), e.clone()),
            None => merged.remove(path),
        };
    }
    if conflicts.is_empty() {
        return Ok(merged);
    }
    conflicts.sort();
    Err(StoreError::Conflict(format!(
        "merge conflict: {}",
        conflicts.join(", ")
    )))
}
