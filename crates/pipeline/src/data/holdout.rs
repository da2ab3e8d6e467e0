//! A held-back part of a dataset (`data.holdout_fraction`): the pairs whose stem hashes below
//! the fraction go to `lakefs.holdout_path` in the same data commit instead of the data paths,
//! so neither training nor the choice of the best epoch ever sees them, and
//! `register.evaluation_data = "lakefs://repo/<branch>/holdout/"` scores every challenger on
//! them. The choice depends on the file name alone: a pair stays on its side when the dataset
//! grows, so the held-back set is stable.

use std::path::Path;

use seg_model::data::{MaskEncoding, SamplePaths, SegmentationDataset};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{PipelineError, Result};

/// Whether the pair with file stem `stem` is held back at `fraction`.
pub fn is_held_back(stem: &str, fraction: f64) -> bool {
    let hash = Sha256::digest(stem.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    (u64::from_be_bytes(first) as f64 / u64::MAX as f64) < fraction
}

/// A folder of links splitting `dir` into `train/` and `holdout/` (each with `images/` and
/// `masks/`), or `None` when nothing is held back. Too few pairs on either side is refused.
pub fn stage(
    config: &Config,
    dir: &Path,
    encoding: &MaskEncoding,
) -> Result<Option<tempfile::TempDir>> {
    let fraction = config.data.holdout_fraction;
    if fraction <= 0.0 {
        return Ok(None);
    }
    let dataset = SegmentationDataset::open(dir, encoding.clone())?;
    let stage = tempfile::tempdir().map_err(PipelineError::io("create", "temp dir"))?;
    let mut held = 0;
    for pair in dataset.pairs() {
        let side = if is_held_back(&pair.stem, fraction) {
            held += 1;
            "holdout"
        } else {
            "train"
        };
        link_pair(&stage.path().join(side), pair)?;
    }
    let kept = dataset.len() - held;
    if held == 0 || kept < 2 {
        return Err(PipelineError::Data(format!(
            "data.holdout_fraction = {fraction} holds back {held} of the {} pairs of {} (leaving {kept} to train on): choose a fraction that keeps some on both sides, or add pairs",
            dataset.len(),
            dir.display()
        )));
    }
    tracing::info!(
        "holding back {held} of {} pairs (data.holdout_fraction = {fraction}) under {}",
        dataset.len(),
        config.lakefs.holdout_path
    );
    Ok(Some(stage))
}

/// Links `pair`'s image and mask into `root`'s `images/` and `masks/` under their own names.
pub(super) fn link_pair(root: &Path, pair: &SamplePaths) -> Result<()> {
    for (sub, file) in [("images", &pair.image), ("masks", &pair.mask)] {
        let folder = root.join(sub);
        std::fs::create_dir_all(&folder).map_err(PipelineError::io("create", &folder))?;
        let link = folder.join(file.file_name().unwrap_or_default());
        let target = std::path::absolute(file).map_err(PipelineError::io("resolve", file))?;
        link_file(&target, &link)?;
    }
    Ok(())
}

#[cfg(unix)]
fn link_file(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).map_err(PipelineError::io("link", link))
}

#[cfg(not(unix))]
fn link_file(target: &Path, link: &Path) -> Result<()> {
    std::fs::copy(target, link)
        .map(|_| ())
        .map_err(PipelineError::io("copy", link))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_choice_is_by_name_stable_and_near_the_fraction() {
        let held = (0..2000)
            .filter(|i| super::is_held_back(&format!("img{i}"), 0.2))
            .count();
        assert!((340..460).contains(&held), "{held} of 2000 at 0.2");
        assert_eq!(super::is_held_back("a", 0.2), super::is_held_back("a", 0.2));
        assert!(!super::is_held_back("a", 0.0));
    }
}
