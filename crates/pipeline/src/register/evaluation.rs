//! The frozen evaluation set (`register.evaluation_data`: a lakeFS folder with `images/` and
//! `masks/`), resolved to its commit and downloaded into the cache, and the scores of one model
//! on every image of it, computed as `infer` computes them (its backend, batch size and
//! test-time augmentation; seg-model's one scoring rule).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use lakefs_client::{ClientError as _, DownloadOptions, LakeFsUri};
use seg_model::compare::{ScoredImage, score_images};
use seg_model::data::IMAGE_EXTENSIONS;
use seg_model::predict::FileInput;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{PipelineError, Result};
use crate::model_ref::ResolvedModel;
use crate::services::Services;

/// The evaluation set at one commit, downloaded.
#[derive(Debug, Clone)]
pub struct EvaluationSet {
    /// The folder at its commit: `lakefs://repo/<commit>/eval/`.
    pub uri: LakeFsUri,
    /// The commit id.
    pub commit: String,
    /// sha256 over its objects' paths and checksums: equal for equal content at any commit
    /// (a branch moves with every merge; the set may not have changed).
    pub digest: String,
    /// The images' names (paths under `images/`), in order.
    pub names: Vec<String>,
    /// The image files with their ground truth, in the same order.
    pub inputs: Vec<FileInput>,
}

impl EvaluationSet {
    /// `eval@abcdef123456`: how one-line messages name it.
    pub fn short(&self) -> String {
        let folder = self.uri.path.trim_matches('/');
        let name = folder.rsplit('/').next().unwrap_or(folder);
        format!("{name}@{}", &self.commit[..self.commit.len().min(12)])
    }
}

/// The configured evaluation set at its current commit, or `None` when none is configured.
pub async fn fetch(services: &Services, config: &Config) -> Result<Option<EvaluationSet>> {
    let text = &config.register.evaluation_data;
    if text.is_empty() {
        return Ok(None);
    }
    let at: LakeFsUri = text.parse()?;
    let lakefs = &services.lakefs;
    let commit = lakefs
        .resolve_commit(&at.repository, &at.reference)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                PipelineError::NotFound(format!(
                    "register.evaluation_data {text}: no repository {:?} or ref {:?} in lakeFS",
                    at.repository, at.reference
                ))
            } else {
                e.into()
            }
        })?;
    let folder = at.path.trim_matches('/').to_string();
    let uri = LakeFsUri::new(&at.repository, &commit, &format!("{folder}/"))?;
    let download = DownloadOptions::new(&config.paths.cache_dir);
    let fetch = |sub: &'static str| {
        let prefix = format!("{folder}/{sub}");
        let (repo, commit) = (at.repository.clone(), commit.clone());
        let download = download.clone();
        async move {
            lakefs
                .download_prefix(&repo, &commit, &prefix, &download)
                .await
        }
    };
    let images = fetch("images").await?;
    let masks = fetch("masks").await?;
    if images.files == 0 {
        return Err(PipelineError::Data(format!(
            "the evaluation set {uri} has no images/ (register.evaluation_data = {text:?}): put images/ and masks/ there, paired by file name"
        )));
    }
    let (names, inputs) = pair(&images.dir, &masks.dir, &uri)?;
    let mut listed: Vec<String> = lakefs
        .list_objects(&at.repository, &commit, &format!("{folder}/"), None)
        .map_ok(|o| format!("{}\t{}", o.path, o.checksum))
        .try_collect()
        .await?;
    listed.sort();
    let digest = hex::encode(Sha256::digest(listed.join("\n").as_bytes()));
    Ok(Some(EvaluationSet {
        uri,
        commit,
        digest,
        names,
        inputs,
    }))
}

/// The images under `images` with their masks under `masks` (same stem); a missing mask is an
/// error naming the image.
fn pair(images: &Path, masks: &Path, uri: &LakeFsUri) -> Result<(Vec<String>, Vec<FileInput>)> {
    let masks_by_stem: BTreeMap<String, PathBuf> = files(masks)?
        .into_iter()
        .filter_map(|p| Some((stem(&p, masks)?, p)))
        .collect();
    let mut names = Vec::new();
    let mut inputs = Vec::new();
    for image in files(images)? {
        let rel = image
            .strip_prefix(images)
            .unwrap_or(&image)
            .to_string_lossy()
            .into_owned();
        let truth = stem(&image, images)
            .and_then(|s| masks_by_stem.get(&s).cloned())
            .ok_or_else(|| {
                PipelineError::Data(format!(
                    "the evaluation set {uri} has no mask for images/{rel}: every image needs one under masks/"
                ))
            })?;
        names.push(rel);
        inputs.push(FileInput {
            path: image,
            truth: Some(truth),
        });
    }
    Ok((names, inputs))
}

/// The image files under `dir`, sorted.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| PipelineError::Io {
            action: "list",
            path: dir.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let is_image = entry
            .path()
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if entry.file_type().is_file() && is_image {
            out.push(entry.into_path());
        }
    }
    Ok(out)
}

/// The path of `file` under `root` without its extension (`sub/x` for `sub/x.png`).
fn stem(file: &Path, root: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    Some(rel.with_extension("").to_string_lossy().into_owned())
}

/// `model` scored on every image of `set`, as `infer` would predict it.
pub async fn score(
    model: &ResolvedModel,
    config: &Config,
    set: &EvaluationSet,
) -> Result<Vec<ScoredImage>> {
    let backend = config.infer_backend();
    let batch = config.infer.batch_size;
    let tta = config.infer.tta()?;
    let (file, sha) = (model.local.clone(), model.model_sha256.clone());
    let inputs = set.inputs.clone();
    tokio::task::spawn_blocking(move || {
        let device = backend.device();
        let checkpoint = seg_model::checkpoint::load_verified(&file, &sha, &device)?;
        let predictor = seg_model::Predictor::new(checkpoint, device, batch).with_tta(tta);
        score_images(&predictor, &inputs)
    })
    .await
    .map_err(|e| PipelineError::Internal(format!("the evaluation thread stopped: {e}")))?
    .map_err(PipelineError::from)
}
