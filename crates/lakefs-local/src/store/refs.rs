//! References: resolving a ref expression (commit id, branch, tag, unique prefix, with `~`, `^`,
//! `@` and `$` modifiers) as lakeFS does, and creating and deleting branches and tags under
//! lakeFS's naming rules.

use std::collections::BTreeMap;

use lakefs_client::NameKind;

use super::records::Repo;
use super::{Store, StoreError};

/// What a ref names.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The commit.
    pub commit: String,
    /// The branch, when the ref is one (reads then include staged changes).
    pub branch: Option<String>,
}

impl Store {
    /// Resolves a branch, tag, commit id or unique commit-id prefix (>= 6 characters).
    pub fn resolve(&self, repo: &str, reference: &str) -> Result<Resolved, StoreError> {
        let (base, modifiers) = parse_ref_expression(reference)?;
        let r = self.repo(repo)?;
        let not_found = || StoreError::NotFound(format!("ref not found: {reference}"));
        let invalid = || StoreError::Invalid(format!("invalid ref: {reference}"));
        let mut resolved = self.resolve_base(r, base).ok_or_else(not_found)?;
        for (i, (kind, amount)) in modifiers.iter().enumerate() {
            match kind {
                // `@` (committed data of a branch) and `$` (its staging area) stand alone.
                '@' | '$' => {
                    if resolved.branch.is_none() || modifiers.len() != 1 || i != 0 {
                        return Err(invalid());
                    }
                    if *kind == '@' {
                        resolved.branch = None;
                    }
                }
                '~' => {
                    resolved.branch = None;
                    for _ in 0..*amount {
                        let c = r.commits.get(&resolved.commit).ok_or_else(not_found)?;
                        resolved.commit = c.parents.first().ok_or_else(not_found)?.clone();
                    }
                }
                _ => {
                    resolved.branch = None;
                    if *amount == 0 {
                        continue;
                    }
                    let c = r.commits.get(&resolved.commit).ok_or_else(not_found)?;
                    resolved.commit = c.parents.get(amount - 1).ok_or_else(invalid)?.clone();
                }
            }
        }
        Ok(resolved)
    }

    /// A plain ref as lakeFS resolves it: a full commit id first, then a branch, a tag, and a
    /// unique commit-id prefix.
    fn resolve_base(&self, r: &Repo, base: &str) -> Option<Resolved> {
        if r.commits.contains_key(base) {
            return Some(Resolved {
                commit: base.to_string(),
                branch: None,
            });
        }
        if let Some(c) = r.branches.get(base) {
            return Some(Resolved {
                commit: c.clone(),
                branch: Some(base.to_string()),
            });
        }
        if let Some(c) = r.tags.get(base) {
            return Some(Resolved {
                commit: c.clone(),
                branch: None,
            });
        }
        if base.len() >= 6 && base.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut matches = r.commits.keys().filter(|k| k.starts_with(base));
            if let (Some(only), None) = (matches.next(), matches.next()) {
                return Some(Resolved {
                    commit: only.clone(),
                    branch: None,
                });
            }
        }
        None
    }

    /// A branch's commit id, or 404.
    pub fn branch_commit(&self, repo: &str, branch: &str) -> Result<String, StoreError> {
        self.repo(repo)?
            .branches
            .get(branch)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("branch not found: {branch}")))
    }

    /// Creates a branch from a ref; returns its commit id.
    pub fn create_branch(
        &mut self,
        repo: &str,
        name: &str,
        source: &str,
    ) -> Result<String, StoreError> {
        validate_name(name, NameKind::Branch)?;
        let commit = self.resolve(repo, source)?.commit;
        let r = self.repo_mut(repo)?;
        if r.branches.contains_key(name) {
            return Err(StoreError::Conflict(format!(
                "branch {name} already exists"
            )));
        }
        r.branches.insert(name.to_string(), commit.clone());
        r.staging.insert(name.to_string(), BTreeMap::new());
        let r = self.repo(repo)?;
        self.write_staging(repo, name, &BTreeMap::new())?;
        self.save_refs(r)?;
        Ok(commit)
    }

    /// Deletes a branch (not the default one).
    pub fn delete_branch(&mut self, repo: &str, name: &str) -> Result<(), StoreError> {
        self.branch_commit(repo, name)?;
        let r = self.repo_mut(repo)?;
        if r.rec.default_branch == name {
            return Err(StoreError::Forbidden(format!(
                "cannot delete the default branch {name}"
            )));
        }
        r.branches.remove(name);
        r.staging.remove(name);
        let r = self.repo(repo)?;
        self.save_refs(r)?;
        self.remove_staging(repo, name)
    }

    /// Creates a tag.
    pub fn create_tag(
        &mut self,
        repo: &str,
        id: &str,
        reference: &str,
    ) -> Result<String, StoreError> {
        validate_name(id, NameKind::Tag)?;
        let commit = self.resolve(repo, reference)?.commit;
        let r = self.repo_mut(repo)?;
        if r.tags.contains_key(id) {
            return Err(StoreError::Conflict(format!("tag {id} already exists")));
        }
        r.tags.insert(id.to_string(), commit.clone());
        let r = self.repo(repo)?;
        self.save_refs(r)?;
        Ok(commit)
    }

    /// Deletes a tag.
    pub fn delete_tag(&mut self, repo: &str, id: &str) -> Result<(), StoreError> {
        let r = self.repo_mut(repo)?;
        if r.tags.remove(id).is_none() {
            return Err(StoreError::NotFound(format!("tag not found: {id}")));
        }
        let r = self.repo(repo)?;
        self.save_refs(r)
    }
}

/// Refuses a name lakeFS would refuse (the rules of [`NameKind`]).
pub fn validate_name(name: &str, kind: NameKind) -> Result<(), StoreError> {
    if kind.accepts(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid {} name {name:?}",
            kind.word()
        )))
    }
}

/// A ref modifier: its kind (`~`, `^`, `@`, `$`) and amount.
pub type RefModifier = (char, usize);

/// Splits a ref expression as lakeFS does (`main~2^1`, `main@`, `abc123$`) into its base and
/// its modifiers `(kind, amount)`; a bare `~` or `^` means 1.
pub fn parse_ref_expression(reference: &str) -> Result<(&str, Vec<RefModifier>), StoreError> {
    let invalid = || StoreError::Invalid(format!("invalid ref: {reference}"));
    let is_mod = |c: char| matches!(c, '~' | '^' | '@' | '$');
    let base_end = reference.find(is_mod).unwrap_or(reference.len());
    let base = &reference[..base_end];
    if base.is_empty() {
        return Err(invalid());
    }
    let mut modifiers = Vec::new();
    let mut rest = &reference[base_end..];
    while let Some(kind) = rest.chars().next() {
        let tail = &rest[1..];
        let end = tail.find(is_mod).unwrap_or(tail.len());
        let digits = &tail[..end];
        let amount = if digits.is_empty() {
            1
        } else if matches!(kind, '@' | '$') {
            return Err(invalid());
        } else {
            digits.parse::<usize>().map_err(|_| invalid())?
        };
        modifiers.push((kind, amount));
        rest = &tail[end..];
    }
    Ok((base, modifiers))
}
