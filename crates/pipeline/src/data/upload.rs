//! A local dataset into lakeFS: checked first (every pair decoded, names that cannot be keys
//! and links that leave the folder refused, errors naming the user's own files), then mirrored
//! onto a temporary branch and committed. That commit is the run's data commit D: exactly the
//! folder, whatever else merges meanwhile. It is merged into the branch only when the branch's
//! data did not change since the transaction began (else the mirror is made again on the new
//! head, so the branch never holds a union of two folders), and never after an interrupt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use futures::TryStreamExt;
use lakefs_client::{CommitOptions, LakeFsClient, LakeFsError, UploadDirOptions};
use seg_model::data::{DatasetStats, MaskEncoding, SegmentationDataset};

use super::DataSource;
use crate::config::Config;
use crate::error::{PipelineError, Result};
use crate::run_record::{commit_meta, kinds};
use crate::terminal::Progress;

/// How many times the mirror is made again when the branch's data keeps changing.
const MIRROR_TRIES: usize = 4;

/// What the upload of a folder did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uploaded {
    /// A new data commit D (the transaction's own), merged into the branch.
    New {
        /// D: exactly the folder.
        commit: String,
        /// Files uploaded or deleted.
        files: usize,
    },
    /// The branch already held exactly the folder at `base`.
    Unchanged {
        /// The branch's commit the transaction started from.
        base: String,
    },
}

/// Who uploads, and the flag that stops it before anything is merged.
#[derive(Debug, Clone, Copy)]
pub struct Uploader<'a> {
    /// Owner part of the temporary branch's name (host, process).
    pub owner: &'a str,
    /// Set on Ctrl-C.
    pub interrupted: &'a AtomicBool,
}

/// Checks that the user's folder `dir` has `images/` and `masks/`, and refuses links that lead
/// out of it.
pub fn check_layout(dir: &Path) -> Result<()> {
    for sub in ["images", "masks"] {
        if !dir.join(sub).is_dir() {
            return Err(PipelineError::Data(format!(
                "{} has no {sub}/ folder: put images in images/ and masks in masks/, paired by file name",
                dir.display()
            )));
        }
        refuse_links_out(dir, &dir.join(sub))?;
    }
    Ok(())
}

/// Opens and decodes every pair of the local folder `dir` (names the user's files, checked by
/// [`check_layout`]); the dataset and what the check found.
pub async fn verify_local(
    dir: &Path,
    encoding: &MaskEncoding,
    progress: &Progress,
) -> Result<(SegmentationDataset, DatasetStats)> {
    let dataset = SegmentationDataset::open(dir, encoding.clone())?;
    let spinner = progress.spinner(&format!(
        "checking {} image/mask pairs in {}",
        dataset.len(),
        dir.display()
    ));
    let verified = tokio::task::spawn_blocking({
        let dataset = dataset.clone();
        move || dataset.verify()
    })
    .await
    .map_err(|e| PipelineError::Internal(format!("the verification thread stopped: {e}")))?;
    spinner.finish_and_clear();
    Ok((dataset, verified?))
}

/// Refuses a symbolic link under `folder` that resolves outside the dataset `root`.
fn refuse_links_out(root: &Path, folder: &Path) -> Result<()> {
    let root = root
        .canonicalize()
        .map_err(PipelineError::io("resolve", root))?;
    for entry in walkdir::WalkDir::new(folder).follow_links(false) {
        let entry = entry.map_err(|e| PipelineError::Io {
            action: "list",
            path: e.path().map_or(folder.to_path_buf(), Path::to_path_buf),
            source: std::io::Error::other(e.to_string()),
        })?;
        if !entry.path_is_symlink() {
            continue;
        }
        let target = entry
            .path()
            .canonicalize()
            .map_err(PipelineError::io("follow the link", entry.path()))?;
        if !target.starts_with(&root) {
            return Err(PipelineError::Data(format!(
                "{} is a link to {}, outside the dataset {}: copy the files in instead",
                entry.path().display(),
                target.display(),
                root.display()
            )));
        }
    }
    Ok(())
}

/// What one upload mirrors: the pairs to train on and, when pairs are held back, those.
#[derive(Debug, Clone)]
pub struct Parts {
    /// `images/` and `masks/` for the data paths.
    pub data: PathBuf,
    /// `images/` and `masks/` for `lakefs.holdout_path`.
    pub holdout: Option<PathBuf>,
}

/// Mirrors the parts' `images/` and `masks/` into the data paths (and the held-back folder) in
/// one commit (see the module documentation).
pub async fn upload(
    lakefs: &LakeFsClient,
    config: &Config,
    parts: &Parts,
    source: &DataSource,
    who: Uploader<'_>,
) -> Result<Uploaded> {
    let dir = parts.data.as_path();
    let l = &config.lakefs;
    let commit = CommitOptions {
        message: format!("data: {source}"),
        metadata: BTreeMap::from([
            (commit_meta::KIND.to_string(), kinds::DATA.to_string()),
            ("source".to_string(), source.to_string()),
        ]),
        allow_empty: false,
    };
    let data_paths = super::data_prefixes(config);
    // The first commit of ours that was merged: the run's data commit D.
    let mut merged_d: Option<(String, usize)> = None;
    let done = |d: &Option<(String, usize)>| {
        d.clone()
            .map(|(commit, files)| Uploaded::New { commit, files })
    };
    for _ in 0..MIRROR_TRIES {
        let tx = lakefs.begin(&l.repository, &l.branch, who.owner).await?;
        let made = match mirror(lakefs, config, parts, tx.branch(), &commit).await {
            Ok(made) => made,
            Err(e) => {
                tx.discard().await;
                return Err(e);
            }
        };
        let Some((id, files)) = made else {
            let base = tx.base().to_string();
            tx.discard().await;
            return Ok(done(&merged_d).unwrap_or(Uploaded::Unchanged { base }));
        };
        if who.interrupted.load(Ordering::SeqCst) {
            tx.discard().await;
            return Err(interrupted(merged_d.as_ref().map(|(d, _)| d), &l.branch));
        }
        if let Some(head) = tx.target_changed(&data_paths).await? {
            tracing::warn!(
                "the data on {} changed while uploading (now at {head}): mirroring {} onto it again",
                l.branch,
                dir.display()
            );
            tx.discard().await;
            continue;
        }
        let merged = tx.merge(&merge_options(&id, source)).await;
        tx.discard().await;
        let merged = match merged {
            Ok(merged) => merged,
            // Another upload merged the same paths between the check and the merge.
            Err(LakeFsError::Conflict { .. }) => {
                tracing::warn!(
                    "the data on {} changed while merging: mirroring again",
                    l.branch
                );
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        merged_d.get_or_insert((id.clone(), files));
        if !changed_between(lakefs, config, &id, &merged).await? {
            return Ok(done(&merged_d).unwrap_or(Uploaded::Unchanged { base: merged }));
        }
        tracing::warn!(
            "another upload merged into {} at the same moment: mirroring again",
            l.branch
        );
    }
    Err(PipelineError::Data(format!(
        "the data on lakeFS branch {} kept changing while {} was uploaded ({MIRROR_TRIES} tries): other processes are writing it; try again",
        l.branch,
        dir.display()
    )))
}

/// The error of an interrupt before a merge: after `merged` (a data commit of ours already
/// merged into `branch`), or before anything was.
fn interrupted(merged: Option<&String>, branch: &str) -> PipelineError {
    match merged {
        Some(d) => {
            PipelineError::InterruptedAfter(format!("the data commit {d} was merged into {branch}"))
        }
        None => PipelineError::Interrupted,
    }
}

/// The merge of data commit `id`: not a data commit itself (D is the commit it brings in).
fn merge_options(id: &str, source: &DataSource) -> CommitOptions {
    CommitOptions {
        message: format!("merge data commit {id}: {source}"),
        metadata: BTreeMap::from([
            (commit_meta::KIND.to_string(), kinds::MERGE.to_string()),
            (commit_meta::DATA_COMMIT.to_string(), id.to_string()),
        ]),
        allow_empty: false,
    }
}

/// Mirrors the folder onto `branch` and commits it: the commit and the files uploaded or
/// deleted, or none when the branch already held exactly the folder.
async fn mirror(
    lakefs: &LakeFsClient,
    config: &Config,
    parts: &Parts,
    branch: &str,
    commit: &CommitOptions,
) -> Result<Option<(String, usize)>> {
    let l = &config.lakefs;
    let opts = UploadDirOptions {
        mirror: true,
        ..UploadDirOptions::default()
    };
    let repo = &l.repository;
    let dir = &parts.data;
    let images = lakefs
        .upload_dir(&dir.join("images"), repo, branch, &l.images_path, &opts)
        .await?;
    let masks = lakefs
        .upload_dir(&dir.join("masks"), repo, branch, &l.masks_path, &opts)
        .await?;
    let mut files = images.uploaded + masks.uploaded + images.deleted + masks.deleted;
    if let Some(held) = &parts.holdout {
        let root = l.holdout_path.trim_matches('/');
        for sub in ["images", "masks"] {
            let report = lakefs
                .upload_dir(
                    &held.join(sub),
                    repo,
                    branch,
                    &format!("{root}/{sub}"),
                    &opts,
                )
                .await?;
            files += report.uploaded + report.deleted;
        }
    }
    let mut commit = commit.clone();
    commit.metadata.extend([
        (
            "images".to_string(),
            (images.uploaded + images.skipped).to_string(),
        ),
        (
            "masks".to_string(),
            (masks.uploaded + masks.skipped).to_string(),
        ),
    ]);
    match lakefs
        .commit(repo, branch, &commit.message, &commit.metadata, false)
        .await
    {
        Ok(c) => Ok(Some((c.id, files))),
        Err(e) if e.is_nothing_to_commit() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the data paths differ between two commits.
async fn changed_between(lakefs: &LakeFsClient, config: &Config, a: &str, b: &str) -> Result<bool> {
    if a == b {
        return Ok(false);
    }
    let prefixes = super::data_prefixes(config);
    Ok(lakefs
        .diff_refs(&config.lakefs.repository, a, b)
        .try_any(|d| {
            let hit = prefixes.iter().any(|p| d.path.starts_with(p.as_str()));
            async move { hit }
        })
        .await?)
}

/// The data commit that holds the same data as `at`: the newest data commit at or before it
/// whose data paths no later commit (up to `at`) changed, else `at` itself.
pub async fn data_commit_at(lakefs: &LakeFsClient, config: &Config, at: &str) -> Result<String> {
    let repo = &config.lakefs.repository;
    let mut log = std::pin::pin!(lakefs.log(repo, at));
    while let Some(c) = log.try_next().await? {
        if c.metadata.get(commit_meta::KIND).map(String::as_str) == Some(kinds::DATA) {
            return Ok(if changed_between(lakefs, config, &c.id, at).await? {
                at.to_string()
            } else {
                c.id
            });
        }
    }
    Ok(at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_out_of_the_dataset_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let set = dir.path().join("set");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(set.join("masks")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::create_dir_all(set.join("inner")).expect("mkdir");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(set.join("inner"), set.join("masks/ok")).expect("link");
            assert!(refuse_links_out(&set, &set.join("masks")).is_ok());
            std::os::unix::fs::symlink(&outside, set.join("masks/away")).expect("link");
            let err = refuse_links_out(&set, &set.join("masks")).expect_err("refused");
            assert!(err.to_string().contains("away"), "{err}");
        }
    }
}
