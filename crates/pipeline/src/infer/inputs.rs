//! What `infer` predicts: the images of the model's training data commit D (the default), a
//! local folder (recursively; a folder with `images/` and `masks/` is a dataset and is
//! scored), one file, a `lakefs://repo/ref/prefix` (recorded at the commit it resolved to), or
//! paths on stdin; each image with its ground truth where one exists (the same stem under the
//! sibling `masks/` folder).

use std::ffi::OsStr;
use std::io::BufRead;
use std::path::{Component, Path, PathBuf};

use lakefs_client::{ClientError as _, DownloadOptions, LakeFsUri};
use seg_model::data::IMAGE_EXTENSIONS;

use crate::config::Config;
use crate::error::{PipelineError, Result};
use crate::model_ref::ResolvedModel;
use crate::services::Services;
use crate::terminal::Progress;

/// Where the images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// The images of the model's training data commit D.
    TrainingData,
    /// A local folder (recursively), a single file, or a `lakefs://repo/ref/prefix`.
    Path(String),
    /// Paths on stdin, one per line.
    Stdin,
}

impl InputSpec {
    /// `--input` text: `-` for stdin, anything else a path or URI; none = the training data.
    pub fn from_arg(arg: Option<&str>) -> Self {
        match arg {
            None => Self::TrainingData,
            Some("-") => Self::Stdin,
            Some(p) => Self::Path(p.to_string()),
        }
    }
}

/// One image to predict.
#[derive(Debug, Clone)]
pub(super) struct InputItem {
    /// The file on disk.
    pub path: PathBuf,
    /// What to call it in output (`lakefs://...` for lakeFS inputs).
    pub name: String,
    /// Relative path of its mask under the output folder.
    pub rel: PathBuf,
    /// Its ground-truth mask, when one exists.
    pub truth: Option<PathBuf>,
}

/// The images to predict and what they are.
#[derive(Debug, Clone)]
pub(super) struct InputSet {
    /// The images.
    pub items: Vec<InputItem>,
    /// What was predicted, as runs and manifests record it.
    pub input_ref: String,
}

/// Gathers the inputs of `spec`; `output_dir` is left out of folder walks.
pub(super) async fn gather(
    services: &Services,
    config: &Config,
    model: &ResolvedModel,
    spec: &InputSpec,
    output_dir: &Path,
    progress: &Progress,
) -> Result<InputSet> {
    match spec {
        InputSpec::TrainingData => training_data(services, config, model, progress).await,
        InputSpec::Path(text) if text.starts_with("lakefs://") => {
            lakefs_prefix(services, config, &text.parse()?, progress).await
        }
        InputSpec::Path(text) => local(Path::new(text), output_dir),
        InputSpec::Stdin => stdin().await,
    }
}

/// The images of the model's data commit D, scored against D's masks.
async fn training_data(
    services: &Services,
    config: &Config,
    model: &ResolvedModel,
    progress: &Progress,
) -> Result<InputSet> {
    let l = &config.lakefs;
    let (repo, commit) = (&model.data_repository, &model.data_commit);
    let images_uri = LakeFsUri::new(
        repo,
        commit,
        &format!("{}/", l.images_path.trim_matches('/')),
    )?;
    let spinner = progress.spinner(&format!(
        "downloading the training data {}",
        LakeFsUri::new(repo, commit, "")?
    ));
    let download = DownloadOptions::new(&config.paths.cache_dir);
    let images = services
        .lakefs
        .download_prefix(repo, commit, &l.images_path, &download)
        .await?;
    let masks = services
        .lakefs
        .download_prefix(repo, commit, &l.masks_path, &download)
        .await?;
    spinner.finish_and_clear();
    let files = walk_images(&images.dir, None)?;
    let items = items_under(&images.dir, files, Some(&masks.dir), |_, rel| {
        lakefs_name(&images_uri, rel)
    });
    Ok(InputSet {
        items,
        input_ref: images_uri.to_string(),
    })
}

/// The name of a downloaded object: its URI (`rel` is its path under `folder`).
fn lakefs_name(folder: &LakeFsUri, rel: &Path) -> String {
    let rel = rel.to_string_lossy();
    folder
        .join(&rel)
        .map_or_else(|_| format!("{folder}{rel}"), |u| u.to_string())
}

/// The images under a lakeFS prefix, resolved to its commit; ground truth from the same prefix
/// with its last `images` segment replaced by `masks`, when that holds files.
async fn lakefs_prefix(
    services: &Services,
    config: &Config,
    uri: &LakeFsUri,
    progress: &Progress,
) -> Result<InputSet> {
    let commit = services
        .lakefs
        .resolve_commit(&uri.repository, &uri.reference)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                PipelineError::NotFound(format!(
                    "--input {uri}: no repository {:?} or ref {:?} in lakeFS at {}",
                    uri.repository, uri.reference, config.lakefs.endpoint
                ))
            } else {
                e.into()
            }
        })?;
    let at = uri.at(&commit)?;
    let spinner = progress.spinner(&format!("downloading {uri}"));
    let download = DownloadOptions::new(&config.paths.cache_dir);
    let images = services
        .lakefs
        .download_prefix(&at.repository, &commit, &at.path, &download)
        .await?;
    let masks_root = lakefs_truth(services, &at, &download).await?;
    spinner.finish_and_clear();
    let files = walk_images(&images.dir, None)?;
    let folder = LakeFsUri::new(
        &at.repository,
        &commit,
        &format!("{}/", at.path.trim_matches('/')),
    )?;
    let items = items_under(&images.dir, files, masks_root.as_deref(), |_, rel| {
        lakefs_name(&folder, rel)
    });
    Ok(InputSet {
        items,
        input_ref: at.to_string(),
    })
}

/// The local folder holding the ground truth of the images at `at` (a prefix with an `images`
/// segment): the `masks` counterpart downloaded, or none when it holds nothing.
async fn lakefs_truth(
    services: &Services,
    at: &LakeFsUri,
    download: &DownloadOptions,
) -> Result<Option<PathBuf>> {
    let parts: Vec<&str> = at.path.trim_matches('/').split('/').collect();
    let Some(i) = parts.iter().rposition(|s| *s == "images") else {
        return Ok(None);
    };
    let mut masks = parts.clone();
    masks[i] = "masks";
    let report = services
        .lakefs
        .download_prefix(
            &at.repository,
            &at.reference,
            &masks[..=i].join("/"),
            download,
        )
        .await?;
    Ok((report.files > 0).then(|| report.dir.join(parts[i + 1..].join("/"))))
}

/// A local file or folder.
fn local(path: &Path, output_dir: &Path) -> Result<InputSet> {
    let meta = std::fs::metadata(path).map_err(PipelineError::io("read", path))?;
    let input_ref = absolute(path).display().to_string();
    if meta.is_file() {
        let rel = PathBuf::from(path.file_name().unwrap_or(path.as_os_str()));
        let items = vec![InputItem {
            truth: truth_for(path, &rel, None),
            name: path.display().to_string(),
            rel,
            path: path.to_path_buf(),
        }];
        return Ok(InputSet { items, input_ref });
    }
    // A dataset folder (images/ + masks/): its images, scored against its masks.
    let (root, masks_root) = if path.join("images").is_dir() {
        let masks = path.join("masks");
        (path.join("images"), masks.is_dir().then_some(masks))
    } else {
        (path.to_path_buf(), None)
    };
    let out = resolved(output_dir);
    let input = resolved(path);
    if [input.as_path(), resolved(&root).as_path()].contains(&out.as_path()) {
        return Err(PipelineError::Usage(format!(
            "--output {} is the input folder {}: write the masks to another folder",
            output_dir.display(),
            path.display()
        )));
    }
    if let Some(masks) = &masks_root
        && out.starts_with(resolved(masks))
    {
        return Err(PipelineError::Usage(format!(
            "--output {} is in the ground truth folder {}: masks written there would overwrite the ground truth; write them to another folder",
            output_dir.display(),
            masks.display()
        )));
    }
    if out.starts_with(&input) {
        return Err(PipelineError::Usage(format!(
            "--output {} is inside the input folder {}: the next infer on that folder would read the masks as images; write them outside it",
            output_dir.display(),
            path.display()
        )));
    }
    let skip = output_dir.canonicalize().ok();
    let files = walk_images(&root, skip.as_deref())?;
    let local_name = |p: &Path, _: &Path| p.display().to_string();
    Ok(InputSet {
        items: items_under(&root, files, masks_root.as_deref(), local_name),
        input_ref,
    })
}

/// Paths on stdin, one per line.
async fn stdin() -> Result<InputSet> {
    let lines: Vec<String> = tokio::task::spawn_blocking(|| {
        std::io::stdin()
            .lock()
            .lines()
            .map_while(std::result::Result::ok)
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    })
    .await
    .map_err(|e| PipelineError::Usage(format!("cannot read stdin: {e}")))?;
    let items = lines
        .into_iter()
        .map(|line| {
            let path = PathBuf::from(&line);
            let rel = if path.is_relative() {
                safe_rel(&path)
            } else {
                PathBuf::from(path.file_name().unwrap_or(path.as_os_str()))
            };
            InputItem {
                truth: truth_for(&path, &rel, None),
                name: line,
                rel,
                path,
            }
        })
        .collect();
    Ok(InputSet {
        items,
        input_ref: "stdin".into(),
    })
}

/// `path` absolute with links resolved as far as it exists (the rest appended as written), so
/// that a folder not yet created compares with existing ones.
fn resolved(path: &Path) -> PathBuf {
    let full = absolute(path);
    let mut missing = Vec::new();
    let mut existing = full.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                existing = parent;
            }
            _ => return full,
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The mask file for an image stem in `dir` (any image extension, png first).
fn find_mask(dir: &Path, stem: &OsStr) -> Option<PathBuf> {
    IMAGE_EXTENSIONS.iter().find_map(|ext| {
        let mut name = stem.to_os_string();
        name.push(".");
        name.push(ext);
        let p = dir.join(name);
        p.is_file().then_some(p)
    })
}

/// Ground truth of `image`: `masks_root/<rel>` when the inputs have a known masks folder,
/// else the same path with its last `images` folder replaced by `masks`.
pub(super) fn truth_for(image: &Path, rel: &Path, masks_root: Option<&Path>) -> Option<PathBuf> {
    let stem = image.file_stem()?;
    if let Some(root) = masks_root {
        let dir = rel.parent().map_or(root.to_path_buf(), |p| root.join(p));
        return find_mask(&dir, stem);
    }
    let parent = image.parent()?;
    let comps: Vec<Component> = parent.components().collect();
    let at = comps.iter().rposition(|c| c.as_os_str() == "images")?;
    let mut dir = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        dir.push(if i == at {
            OsStr::new("masks")
        } else {
            c.as_os_str()
        });
    }
    find_mask(&dir, stem)
}

/// Image files under `root` (recursively, sorted, hidden folders and `skip` left out).
fn walk_images(root: &Path, skip: Option<&Path>) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let hidden = e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.');
            let skipped = skip.is_some_and(|s| e.path().canonicalize().is_ok_and(|p| p == s));
            !hidden && !skipped
        });
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e.path().map_or(root.to_path_buf(), Path::to_path_buf);
            PipelineError::Io {
                action: "list",
                path,
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        if entry.file_type().is_file() && is_image(entry.path()) {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

/// A relative path made safe to join under the output folder (no root, no `..`).
pub(super) fn safe_rel(path: &Path) -> PathBuf {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Items for `files` under `root` (their paths relative to it name the masks).
fn items_under(
    root: &Path,
    files: Vec<PathBuf>,
    masks_root: Option<&Path>,
    name: impl Fn(&Path, &Path) -> String,
) -> Vec<InputItem> {
    files
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(root)
                .map_or_else(|_| safe_rel(&path), Path::to_path_buf);
            InputItem {
                truth: truth_for(&path, &rel, masks_root),
                name: name(&path, &rel),
                rel,
                path,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth_is_found_beside_images() {
        let dir = tempfile::tempdir().expect("dir");
        let images = dir.path().join("set/images/sub");
        let masks = dir.path().join("set/masks/sub");
        std::fs::create_dir_all(&images).expect("mkdir");
        std::fs::create_dir_all(&masks).expect("mkdir");
        std::fs::write(images.join("a.jpg"), b"x").expect("write");
        std::fs::write(masks.join("a.png"), b"x").expect("write");
        std::fs::write(images.join("b.jpg"), b"x").expect("write");
        let rel = Path::new("sub/a.jpg");
        assert_eq!(
            truth_for(&images.join("a.jpg"), rel, None),
            Some(masks.join("a.png"))
        );
        assert_eq!(
            truth_for(
                &images.join("a.jpg"),
                rel,
                Some(&dir.path().join("set/masks"))
            ),
            Some(masks.join("a.png"))
        );
        assert_eq!(
            truth_for(&images.join("b.jpg"), Path::new("sub/b.jpg"), None),
            None
        );
        assert_eq!(
            safe_rel(Path::new("../x/./y.png")),
            PathBuf::from("x/y.png")
        );
    }
}
