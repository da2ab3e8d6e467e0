//! The training data's life in lakeFS: a local folder (or the seeded synthetic set) is checked
//! pair by pair, then mirrored into the repository's data paths in one transaction whose
//! commit is the run's data commit D ([`upload`]); unchanged data reuses the data commit that
//! holds it; D is downloaded into the cache keyed by D.

pub mod holdout;
pub mod union;
pub mod upload;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use futures::TryStreamExt;
use lakefs_client::{ClientError as _, DownloadOptions, LakeFsClient, LakeFsUri};
use seg_model::data::{DatasetStats, MaskEncoding, SegmentationDataset};

use crate::config::Config;
use crate::error::{PipelineError, Result};
use crate::terminal::Progress;

pub use upload::{Uploaded, Uploader};

/// Where the training data came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A local folder with `images/` and `masks/`.
    Folder(PathBuf),
    /// Several local folders trained on as one ([`union`]).
    Folders(Vec<PathBuf>),
    /// The seeded synthetic set (no data anywhere).
    Synthetic(PathBuf),
    /// Already in lakeFS (nothing local to upload).
    LakeFs,
}

impl std::fmt::Display for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Folder(p) => write!(f, "folder {}", p.display()),
            Self::Folders(ps) => {
                let names: Vec<String> = ps.iter().map(|p| p.display().to_string()).collect();
                write!(f, "folders {}", names.join(" + "))
            }
            Self::Synthetic(p) => write!(f, "synthetic data {}", p.display()),
            Self::LakeFs => write!(f, "lakeFS"),
        }
    }
}

/// The data a run trains on.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// The immutable lakeFS commit holding it (D).
    pub commit: String,
    /// Whether this preparation made that commit.
    pub committed: bool,
    /// Files uploaded (0 when nothing changed).
    pub uploaded: usize,
    /// Files downloaded into the cache (0 on a cache hit).
    pub downloaded: usize,
    /// Where it came from.
    pub source: DataSource,
    /// The dataset on local disk (the cache).
    pub dataset: SegmentationDataset,
    /// What the full verification pass found.
    pub stats: DatasetStats,
    /// Image channels the model takes (1 for greyscale data, else 3).
    pub in_channels: usize,
}

impl PreparedData {
    /// `lakefs://repo/D/<data folder>/`: the immutable URI of the data.
    pub fn uri(&self, config: &Config) -> Result<LakeFsUri> {
        Ok(LakeFsUri::new(
            &config.lakefs.repository,
            &self.commit,
            &data_root(config),
        )?)
    }
}

/// The common folder of the images and masks paths (`data/` for the defaults).
pub fn data_root(config: &Config) -> String {
    let images = config.lakefs.images_path.trim_matches('/');
    let masks = config.lakefs.masks_path.trim_matches('/');
    let common: Vec<&str> = images
        .split('/')
        .zip(masks.split('/'))
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    if common.is_empty() {
        String::new()
    } else {
        format!("{}/", common.join("/"))
    }
}

/// The folders of the data in the repository, each ending with `/` (the held-back folder too
/// when pairs are held back).
pub fn data_prefixes(config: &Config) -> Vec<String> {
    let l = &config.lakefs;
    let mut folders = vec![&l.images_path, &l.masks_path];
    if config.data.holdout_fraction > 0.0 {
        folders.push(&l.holdout_path);
    }
    folders
        .iter()
        .map(|p| format!("{}/", p.trim_matches('/')))
        .collect()
}

/// A local folder is usable data when it has `images/` with at least one file.
fn has_images(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("images"))
        .map(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().is_file())))
        .unwrap_or(false)
}

/// The repository exists (created, with the configured branch as its default, when missing)
/// and so does the configured branch.
pub async fn ensure_repository(lakefs: &LakeFsClient, config: &Config) -> Result<()> {
    let l = &config.lakefs;
    lakefs
        .ensure_repository(&l.repository, &config.storage_namespace(), &l.branch)
        .await?;
    ensure_branch(lakefs, config, &l.repository).await
}

/// The configured branch exists in `repo`: created from the repository's default branch when
/// `lakefs.create_branch` allows it, else an error naming the branches there are.
pub async fn ensure_branch(lakefs: &LakeFsClient, config: &Config, repo: &str) -> Result<()> {
    let branch = &config.lakefs.branch;
    match lakefs.get_branch(repo, branch).await {
        Ok(_) => return Ok(()),
        Err(e) if !e.is_not_found() => return Err(e.into()),
        Err(_) => {}
    }
    let default = lakefs.get_repository(repo).await?.default_branch;
    if config.lakefs.create_branch {
        lakefs.ensure_branch(repo, branch, &default).await?;
        tracing::info!("created branch {branch} of lakeFS repository {repo} from {default}");
        return Ok(());
    }
    let existing: Vec<String> = lakefs
        .list_branches(repo)
        .map_ok(|b| b.id)
        .try_collect()
        .await?;
    Err(PipelineError::NotFound(format!(
        "branch {branch:?} does not exist in lakeFS repository {repo} (it has: {}): check lakefs.branch, or pass --create-branch (lakefs.create_branch = true) to create it from {default}",
        existing.join(", ")
    )))
}

/// Prepares the training data: when a local folder (or the synthetic set) is the source, check
/// it and upload it (its commit is D); else find the data commit of the branch. Downloads D.
pub async fn prepare(
    lakefs: &LakeFsClient,
    config: &Config,
    data_dirs: &[PathBuf],
    encoding: &MaskEncoding,
    progress: &Progress,
    who: Uploader<'_>,
) -> Result<PreparedData> {
    ensure_repository(lakefs, config).await?;
    let l = &config.lakefs;
    let (source, encoding) = find_source(
        lakefs,
        config,
        data_dirs,
        encoding,
        progress,
        who.interrupted,
    )
    .await?;
    let (_union, local) = local_folder(&source, &encoding)?;
    let (commit, checked) = match &local {
        Some(dir) => {
            let (_, stats) = upload::verify_local(dir, &encoding, progress).await?;
            let staged = holdout::stage(config, dir, &encoding)?;
            let trained_on = match &staged {
                Some(stage) => stage.path().join("train"),
                None => dir.clone(),
            };
            check_splittable(&source, &trained_on, config, &encoding)?;
            let target = LakeFsUri::new(&l.repository, &l.branch, "")?;
            tracing::info!("uploading {source} to {target}");
            let spinner = progress.spinner(&format!("uploading {source} to {target}"));
            let parts = match &staged {
                Some(stage) => upload::Parts {
                    data: stage.path().join("train"),
                    holdout: Some(stage.path().join("holdout")),
                },
                None => upload::Parts {
                    data: dir.clone(),
                    holdout: None,
                },
            };
            let done = upload::upload(lakefs, config, &parts, &source, who).await;
            spinner.finish_and_clear();
            // Verified as a whole: the stats stand for the trained part only without holdout.
            (done?, staged.is_none().then_some(stats))
        }
        None => {
            let head = lakefs.resolve_commit(&l.repository, &l.branch).await?;
            (Uploaded::Unchanged { base: head }, None)
        }
    };
    let (commit, committed, files) = match commit {
        Uploaded::New { commit, files } => (commit, true, files),
        Uploaded::Unchanged { base } => (
            upload::data_commit_at(lakefs, config, &base).await?,
            false,
            0,
        ),
    };
    let mut prepared = download_at(lakefs, config, &commit, &encoding, checked, progress).await?;
    prepared.uploaded = files;
    prepared.committed = committed;
    prepared.source = source;
    tracing::info!(
        "data: {} pairs at {} ({})",
        prepared.stats.pairs,
        LakeFsUri::new(&l.repository, &commit, "")?,
        if committed { "new commit" } else { "unchanged" }
    );
    Ok(prepared)
}

/// Refuses, before anything is uploaded, data that cannot be split into training and
/// validation as training will split it: too few pairs, or too few with foreground beside
/// negatives (the split draws each kind on its own).
fn check_splittable(
    source: &DataSource,
    dir: &Path,
    config: &Config,
    encoding: &MaskEncoding,
) -> Result<()> {
    let dataset = SegmentationDataset::open(dir, encoding.clone())?;
    let fraction = config.data.valid_fraction;
    if seg_model::data::Split::new(dataset.len(), fraction, 0).is_err() {
        return Err(PipelineError::Data(format!(
            "{source} has {} pair(s): too few to split into training and validation (data.valid_fraction = {fraction}); add pairs (nothing was uploaded)",
            dataset.len()
        )));
    }
    let negatives = dataset.empty_masks()?;
    match seg_model::data::Split::stratified(dataset.len(), &negatives, fraction, 0) {
        Ok(_) => Ok(()),
        Err(seg_model::SegError::InvalidConfig(why)) => Err(PipelineError::Data(format!(
            "{source}: {why} (nothing was uploaded)"
        ))),
        Err(other) => Err(other.into()),
    }
}

/// The local folder to upload, after checking the user's folders' layout: the folder itself,
/// or for several folders a staged union (kept alive by the returned guard); `None` when the
/// data is already in lakeFS.
fn local_folder(
    source: &DataSource,
    encoding: &MaskEncoding,
) -> Result<(Option<tempfile::TempDir>, Option<PathBuf>)> {
    Ok(match source {
        DataSource::Folders(dirs) => {
            for dir in dirs {
                upload::check_layout(dir)?;
            }
            let stage = union::stage(dirs, encoding)?;
            let path = stage.path().to_path_buf();
            (Some(stage), Some(path))
        }
        DataSource::Folder(dir) | DataSource::Synthetic(dir) => {
            upload::check_layout(dir)?;
            (None, Some(dir.clone()))
        }
        DataSource::LakeFs => (None, None),
    })
}

/// Where the data comes from: `--data-dir` (several: their union), `paths.data_dir` when it
/// holds images, the branch when it holds data, else the synthetic set (written on first use).
async fn find_source(
    lakefs: &LakeFsClient,
    config: &Config,
    data_dirs: &[PathBuf],
    encoding: &MaskEncoding,
    progress: &Progress,
    interrupted: &AtomicBool,
) -> Result<(DataSource, MaskEncoding)> {
    for dir in data_dirs {
        if !dir.exists() {
            return Err(PipelineError::Data(format!(
                "--data-dir {} does not exist: give a folder with images/ and masks/ whose files pair by name",
                dir.display()
            )));
        }
        if !has_images(dir) {
            return Err(PipelineError::Data(format!(
                "{} has no images: --data-dir needs images/ and masks/ folders whose files pair by name (images/x.jpg <-> masks/x.png)",
                dir.display()
            )));
        }
    }
    Ok(match data_dirs {
        [dir] => (DataSource::Folder(dir.clone()), encoding.clone()),
        [_, _, ..] => (DataSource::Folders(data_dirs.to_vec()), encoding.clone()),
        [] if has_images(&config.paths.data_dir) => (
            DataSource::Folder(config.paths.data_dir.clone()),
            encoding.clone(),
        ),
        [] if branch_has_data(lakefs, config).await? => (DataSource::LakeFs, encoding.clone()),
        [] => {
            let (dir, synthetic_encoding) = write_synthetic(config, progress, interrupted)?;
            (DataSource::Synthetic(dir), synthetic_encoding)
        }
    })
}

/// Whether the branch already holds images.
async fn branch_has_data(lakefs: &LakeFsClient, config: &Config) -> Result<bool> {
    let l = &config.lakefs;
    let prefix = format!("{}/", l.images_path.trim_matches('/'));
    let mut listing = std::pin::pin!(lakefs.list_objects(&l.repository, &l.branch, &prefix, None));
    let first = listing.try_next().await?;
    Ok(first.is_some())
}

/// Writes the seeded synthetic set (once per settings) under the cache; returns its folder
/// and encoding. A set is written whole or not at all; Ctrl-C stops the writing.
fn write_synthetic(
    config: &Config,
    progress: &Progress,
    interrupted: &AtomicBool,
) -> Result<(PathBuf, MaskEncoding)> {
    let d = &config.data;
    let synthetic = config.synthetic();
    let dir = config.paths.cache_dir.join("synthetic").join(format!(
        "n{}-s{}-c{}-seed{}",
        d.synthetic_count, d.synthetic_size, d.synthetic_classes, d.synthetic_seed
    ));
    if !synthetic.is_written(&dir) {
        let spinner = progress.spinner("generating the synthetic dataset");
        // rayon writes the pairs; the signal handler runs on another runtime worker.
        let written = synthetic.write(&dir, interrupted);
        spinner.finish_and_clear();
        match written {
            Err(seg_model::SegError::Cancelled { .. }) => return Err(PipelineError::Interrupted),
            other => other?,
        };
    }
    tracing::info!(
        "no data in {} nor in lakeFS: using {} synthetic pairs ({}x{}, {} classes, seed {}) from {}",
        config.paths.data_dir.display(),
        d.synthetic_count,
        d.synthetic_size,
        d.synthetic_size,
        d.synthetic_classes,
        d.synthetic_seed,
        dir.display()
    );
    Ok((dir, synthetic.encoding()))
}

/// Downloads the images and masks at `commit` into the cache and opens them; verifies them
/// (every pair decoded) unless `checked` holds what checking the same files found already.
pub async fn download_at(
    lakefs: &LakeFsClient,
    config: &Config,
    commit: &str,
    encoding: &MaskEncoding,
    checked: Option<DatasetStats>,
    progress: &Progress,
) -> Result<PreparedData> {
    let l = &config.lakefs;
    let at = |path: &str| LakeFsUri::new(&l.repository, commit, path);
    let download = DownloadOptions::new(&config.paths.cache_dir);
    let spinner = progress.spinner(&format!("downloading {}", at(&data_root(config))?));
    let images = lakefs
        .download_prefix(&l.repository, commit, &l.images_path, &download)
        .await?;
    let masks = lakefs
        .download_prefix(&l.repository, commit, &l.masks_path, &download)
        .await?;
    spinner.finish_and_clear();
    if images.files == 0 {
        return Err(PipelineError::Data(format!(
            "{} holds no images: upload a dataset with --data-dir DIR (images/ + masks/)",
            at(&l.images_path)?
        )));
    }
    let root = dataset_root(&images.dir, &masks.dir)?;
    let dataset = SegmentationDataset::open(&root, encoding.clone())?;
    let stats = match checked {
        Some(stats) if stats.pairs == dataset.len() => stats,
        _ => {
            let spinner =
                progress.spinner(&format!("verifying {} image/mask pairs", dataset.len()));
            let verified = tokio::task::spawn_blocking({
                let dataset = dataset.clone();
                move || dataset.verify()
            })
            .await
            .map_err(|e| {
                PipelineError::Internal(format!("the verification thread stopped: {e}"))
            })?;
            spinner.finish_and_clear();
            verified?
        }
    };
    let grey = stats
        .color_types
        .keys()
        .all(|k| k.starts_with('L') || k.starts_with("La"));
    Ok(PreparedData {
        commit: commit.to_string(),
        committed: false,
        uploaded: 0,
        downloaded: images.transferred + masks.transferred,
        source: DataSource::LakeFs,
        dataset,
        stats,
        in_channels: if grey { 1 } else { 3 },
    })
}

/// A folder with `images/` and `masks/`: the common parent when the downloads already sit
/// there under those names, else a folder of symbolic links beside them.
fn dataset_root(images: &Path, masks: &Path) -> Result<PathBuf> {
    if let (Some(a), Some(b)) = (images.parent(), masks.parent())
        && a == b
        && images.file_name().is_some_and(|n| n == "images")
        && masks.file_name().is_some_and(|n| n == "masks")
    {
        return Ok(a.to_path_buf());
    }
    let parent = images.parent().unwrap_or(images);
    let root = parent.join(".dataset");
    std::fs::create_dir_all(&root).map_err(PipelineError::io("create", &root))?;
    for (name, target) in [("images", images), ("masks", masks)] {
        let link = root.join(name);
        if link.exists() {
            continue;
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(target, &link).map_err(PipelineError::io("link", &link))?;
        #[cfg(not(unix))]
        return Err(PipelineError::Data(format!(
            "images and masks paths must share a parent folder on this platform ({} vs {})",
            images.display(),
            target.display()
        )));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_root_is_the_common_folder() {
        let mut c = crate::config::load_with_env(None, crate::config::Flags::new(), Vec::new())
            .expect("defaults")
            .config;
        assert_eq!(data_root(&c), "data/");
        c.lakefs.images_path = "x/imgs".into();
        c.lakefs.masks_path = "y/labels".into();
        assert_eq!(data_root(&c), "");
    }
}
