//! Several local folders trained on as one dataset (`--data-dir A --data-dir B`, e.g. a folder
//! of negatives whose masks are empty beside the annotated one): a folder of links to every
//! pair of each, so that the pairs of all of them are checked, held back, uploaded in one data
//! commit and split together. File stems must be unique across the folders: one stem in two
//! folders would be one object in lakeFS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use seg_model::data::{MaskEncoding, SegmentationDataset};

use super::holdout::link_pair;
use crate::error::{PipelineError, Result};

/// A temporary folder with `images/` and `masks/` linking every pair of `dirs`; a stem found
/// in two of them is refused, naming both.
pub fn stage(dirs: &[PathBuf], encoding: &MaskEncoding) -> Result<tempfile::TempDir> {
    let stage = tempfile::tempdir().map_err(PipelineError::io("create", "temp dir"))?;
    let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
    for dir in dirs {
        let dataset = SegmentationDataset::open(dir, encoding.clone())?;
        for pair in dataset.pairs() {
            if let Some(first) = seen.insert(pair.stem.clone(), dir) {
                return Err(PipelineError::Data(format!(
                    "the pair {:?} is in both {} and {}: file stems must be unique across the --data-dir folders; rename the files of one of them",
                    pair.stem,
                    first.display(),
                    dir.display()
                )));
            }
            link_pair(stage.path(), pair)?;
        }
        tracing::info!("{} pairs from {}", dataset.len(), dir.display());
    }
    Ok(stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(root: &Path, name: &str, stems: &[&str]) -> PathBuf {
        let dir = root.join(name);
        for sub in ["images", "masks"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        for stem in stems {
            let img = image::RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9]));
            img.save(dir.join("images").join(format!("{stem}.png")))
                .expect("image");
            let mask = image::GrayImage::new(4, 4);
            mask.save(dir.join("masks").join(format!("{stem}.png")))
                .expect("mask");
        }
        dir
    }

    #[test]
    fn the_union_links_every_pair_and_refuses_a_stem_twice() {
        let root = tempfile::tempdir().expect("tmp");
        let a = folder(root.path(), "a", &["x", "y"]);
        let b = folder(root.path(), "b", &["z"]);
        let staged = stage(&[a.clone(), b], &MaskEncoding::default()).expect("union");
        let union =
            SegmentationDataset::open(staged.path(), MaskEncoding::default()).expect("open");
        let stems: Vec<&str> = union.pairs().iter().map(|p| p.stem.as_str()).collect();
        assert_eq!(stems, ["x", "y", "z"]);

        let c = folder(root.path(), "c", &["y"]);
        let err = stage(&[a, c], &MaskEncoding::default())
            .expect_err("y twice")
            .to_string();
        assert!(err.contains("\"y\" is in both"), "{err}");
        assert!(err.contains("rename"), "{err}");
    }
}
