//! Where `infer` writes: a mask per input under the output folder, keeping the inputs'
//! relative paths (`<rel>.png`; `<file name>.png` where two inputs would share a mask), never
//! over an input; overlays under `overlays/`; every file written beside its place and renamed,
//! so a file on disk is always complete.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use image::DynamicImage;

use super::inputs::InputItem;
use crate::error::{PipelineError, Result};

/// Mask paths under `out` for the items; refuses to overwrite any input.
pub(super) fn assign(items: &[InputItem], out: &Path) -> Result<Vec<PathBuf>> {
    let inputs: HashSet<PathBuf> = items
        .iter()
        .filter_map(|i| i.path.canonicalize().ok())
        .collect();
    let mut taken: HashMap<PathBuf, usize> = HashMap::new();
    let mut paths = Vec::with_capacity(items.len());
    for item in items {
        let mut rel = item.rel.with_extension("png");
        if taken.contains_key(&rel) {
            let mut name = item.rel.as_os_str().to_os_string();
            name.push(".png");
            rel = PathBuf::from(name);
        }
        let n = taken.entry(rel.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            rel = rel.with_extension(format!("{n}.png"));
        }
        let path = out.join(&rel);
        let resolved = path
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .zip(path.file_name())
            .map(|(p, f)| p.join(f));
        if resolved.as_ref().is_some_and(|p| inputs.contains(p)) {
            return Err(PipelineError::Usage(format!(
                "writing the mask of {} to {} would overwrite an input: choose another --output",
                item.name,
                path.display()
            )));
        }
        paths.push(path);
    }
    Ok(paths)
}

/// The overlay's path for the mask at `mask` under `out`.
pub(super) fn overlay_path(out: &Path, mask: &Path) -> PathBuf {
    out.join("overlays")
        .join(mask.strip_prefix(out).unwrap_or(mask))
}

/// Writes `img` as a PNG at `path`: beside it first, then renamed into place.
pub(super) fn save_png(img: &DynamicImage, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(PipelineError::io("create", dir))?;
    }
    let tmp = path.with_extension("png.part");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| PipelineError::Io {
            action: "write",
            path: tmp.clone(),
            source: std::io::Error::other(e),
        })?;
    std::fs::rename(&tmp, path).map_err(PipelineError::io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_never_collide_nor_overwrite_inputs() {
        let dir = tempfile::tempdir().expect("dir");
        let item = |name: &str| InputItem {
            path: dir.path().join(name),
            name: name.into(),
            rel: PathBuf::from(name),
            truth: None,
        };
        std::fs::write(dir.path().join("a.png"), b"x").expect("write");
        let items = vec![item("a.jpg"), item("a.jpeg"), item("b.jpg")];
        let out = dir.path().join("out");
        let paths = assign(&items, &out).expect("paths");
        assert_eq!(paths[0], out.join("a.png"));
        assert_eq!(paths[1], out.join("a.jpeg.png"));
        assert_eq!(paths[2], out.join("b.png"));
        // Output folder = input folder: the mask of a.jpg would be the input a.png.
        let items = vec![item("a.png")];
        let err = assign(&items, dir.path()).expect_err("refused");
        assert!(err.to_string().contains("overwrite"), "{err}");
        assert_eq!(
            overlay_path(&out, &out.join("s/a.png")),
            out.join("overlays/s/a.png")
        );
    }
}
