//! Code lineage from git (git2): the commit the binary runs from, whether the work tree has
//! changes, the branch. Recorded on every MLflow run.

use std::path::Path;

/// What git says about the code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitInfo {
    /// Commit id of HEAD (`unknown` outside a repository).
    pub commit: String,
    /// Whether tracked files differ from HEAD (or untracked files exist).
    pub dirty: bool,
    /// Current branch, if HEAD is on one.
    pub branch: Option<String>,
}

impl GitInfo {
    /// The value recorded when no repository is found.
    pub const UNKNOWN: &'static str = "unknown";
}

/// Git facts for the repository containing `dir` (searched upwards); `unknown` when there is
/// none, with the reason logged.
pub fn git_info(dir: &Path) -> GitInfo {
    match read(dir) {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(
                "no git lineage for {}: {}; runs record git_commit_hash = unknown",
                dir.display(),
                e.message()
            );
            GitInfo {
                commit: GitInfo::UNKNOWN.into(),
                dirty: false,
                branch: None,
            }
        }
    }
}

fn read(dir: &Path) -> Result<GitInfo, git2::Error> {
    let repo = git2::Repository::discover(dir)?;
    let head = repo.head()?;
    let commit = head.peel_to_commit()?.id().to_string();
    let branch = head
        .is_branch()
        .then(|| head.shorthand().ok().map(str::to_string))
        .flatten();
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true).include_ignored(false);
    let dirty = !repo.statuses(Some(&mut opts))?.is_empty();
    Ok(GitInfo {
        commit,
        dirty,
        branch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_dirty_and_branch_come_from_the_repository() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(git_info(dir.path()).commit, GitInfo::UNKNOWN);
        let repo = git2::Repository::init(dir.path()).expect("init");
        std::fs::write(dir.path().join("a.txt"), "a").expect("write");
        let mut index = repo.index().expect("index");
        index.add_path(Path::new("a.txt")).expect("add");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("tree");
        let sig = git2::Signature::now("t", "t@example.com").expect("sig");
        let id = repo
            .commit(Some("HEAD"), &sig, &sig, "first", &tree, &[])
            .expect("commit");
        index.write().expect("index");
        let clean = git_info(dir.path());
        assert_eq!(clean.commit, id.to_string());
        assert!(!clean.dirty, "{clean:?}");
        assert!(clean.branch.is_some());
        std::fs::write(dir.path().join("a.txt"), "changed").expect("write");
        assert!(git_info(dir.path()).dirty);
    }
}
