//! Where `infer` writes: a mask per input under the output folder, keeping the inputs'
//! relative paths (`<rel>.png`; `<file name>.png` where two inputs would share a mask), never
//! over an input; overlays under `overlays/`; every file written beside its place and renamed,
//! so a file on disk is always complete.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use image::DynamicImage;

use super::inputs::InputItem;
use crate::error::{PipelineError, Result};

/// The file in an output folder that lists what infer wrote there, one relative path a line.
pub(super) const WRITTEN_LIST: &str = ".seg-mlops-infer-written";

/// Mask paths under `out` for the items, all checked before anything is written: none may
/// replace an input, a ground-truth mask, or a file infer did not write itself; a file infer
/// wrote before is replaced only with `overwrite`. The paths (and, with `overlay`, their
/// overlays') are then recorded as infer's own.
pub(super) fn assign(
    items: &[InputItem],
    out: &Path,
    overlay: bool,
    overwrite: bool,
) -> Result<Vec<PathBuf>> {
    let paths = mask_paths(items);
    let paths: Vec<PathBuf> = paths.into_iter().map(|rel| out.join(rel)).collect();
    let protected = protected_files(items);
    let earlier = written_before(out);
    for (item, mask) in items.iter().zip(&paths) {
        let overlay_file = overlay.then(|| overlay_path(out, mask));
        for path in std::iter::once(mask).chain(overlay_file.as_ref()) {
            check_target(path, out, &item.name, &protected, &earlier, overwrite)?;
        }
    }
    record_written(out, &paths, overlay)?;
    Ok(paths)
}

/// `<rel>.png` per item; `<file name>.png` where two would share one; numbered after that.
fn mask_paths(items: &[InputItem]) -> Vec<PathBuf> {
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
        paths.push(rel);
    }
    paths
}

/// The inputs and their ground-truth masks (resolved), each with what it is.
fn protected_files(items: &[InputItem]) -> HashMap<PathBuf, String> {
    let mut out = HashMap::new();
    for item in items {
        if let Ok(p) = item.path.canonicalize() {
            out.insert(p, format!("the input {}", item.name));
        }
        if let Some(Ok(p)) = item.truth.as_ref().map(|t| t.canonicalize()) {
            out.insert(p, format!("the ground truth of {}", item.name));
        }
    }
    out
}

/// What infer recorded as written under `out`.
fn written_before(out: &Path) -> HashSet<PathBuf> {
    std::fs::read_to_string(out.join(WRITTEN_LIST))
        .map(|text| text.lines().map(PathBuf::from).collect())
        .unwrap_or_default()
}

/// Refuses to write `path` over a protected file, a file infer did not write, or (without
/// `overwrite`) one it wrote before.
fn check_target(
    path: &Path,
    out: &Path,
    name: &str,
    protected: &HashMap<PathBuf, String>,
    earlier: &HashSet<PathBuf>,
    overwrite: bool,
) -> Result<()> {
    let resolved = path
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .zip(path.file_name())
        .map(|(p, f)| p.join(f));
    if let Some(what) = resolved.as_ref().and_then(|p| protected.get(p)) {
        return Err(PipelineError::Usage(format!(
            "writing the mask of {name} to {} would overwrite {what}: choose another --output",
            path.display()
        )));
    }
    if !path.exists() {
        return Ok(());
    }
    let rel = path.strip_prefix(out).unwrap_or(path);
    if !earlier.contains(rel) {
        return Err(PipelineError::Usage(format!(
            "{} exists and infer did not write it: choose a new or empty --output (infer never replaces files it did not write)",
            path.display()
        )));
    }
    if !overwrite {
        return Err(PipelineError::Usage(format!(
            "{} was written by an earlier infer: pass --overwrite to replace infer's own masks, or choose another --output",
            path.display()
        )));
    }
    Ok(())
}

/// Adds the masks (and overlays) to the list of what infer wrote under `out`.
fn record_written(out: &Path, paths: &[PathBuf], overlay: bool) -> Result<()> {
    std::fs::create_dir_all(out).map_err(PipelineError::io("create", out))?;
    let mut known = written_before(out);
    for mask in paths {
        let overlay_file = overlay.then(|| overlay_path(out, mask));
        for p in std::iter::once(mask).chain(overlay_file.as_ref()) {
            known.insert(p.strip_prefix(out).unwrap_or(p).to_path_buf());
        }
    }
    let mut lines: Vec<String> = known
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    lines.sort();
    let list = out.join(WRITTEN_LIST);
    std::fs::write(&list, lines.join("\n") + "\n").map_err(PipelineError::io("write", &list))
}

/// Removes what infer made for a run that wrote no mask: its list of written files in `out`,
/// then `out` and its parents up to `top` while they are empty (never anything else).
pub(super) fn remove_unused(out: &Path, top: &Path) {
    let _ = std::fs::remove_file(out.join(WRITTEN_LIST));
    let mut at = Some(out);
    while let Some(dir) = at {
        if std::fs::remove_dir(dir).is_err() || dir == top {
            break;
        }
        at = dir.parent();
    }
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
        let paths = assign(&items, &out, false, false).expect("paths");
        assert_eq!(paths[0], out.join("a.png"));
        assert_eq!(paths[1], out.join("a.jpeg.png"));
        assert_eq!(paths[2], out.join("b.png"));
        // Output folder = input folder: the mask of a.jpg would be the input a.png.
        let items = vec![item("a.png")];
        let err = assign(&items, dir.path(), false, false).expect_err("refused");
        assert!(err.to_string().contains("overwrite the input"), "{err}");
        assert_eq!(
            overlay_path(&out, &out.join("s/a.png")),
            out.join("overlays/s/a.png")
        );
    }

    #[test]
    fn only_files_infer_wrote_are_replaced_and_only_when_asked() {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("out");
        let items = vec![InputItem {
            path: dir.path().join("x.jpg"),
            name: "x.jpg".into(),
            rel: PathBuf::from("x.jpg"),
            truth: Some(dir.path().join("truth/x.png")),
        }];
        std::fs::create_dir_all(dir.path().join("truth")).expect("mkdir");
        std::fs::write(dir.path().join("truth/x.png"), b"t").expect("write");
        // The ground truth is never a target.
        let err = assign(&items, &dir.path().join("truth"), false, true).expect_err("truth");
        assert!(err.to_string().contains("ground truth of x.jpg"), "{err}");
        // A file infer did not write is never replaced.
        std::fs::create_dir_all(&out).expect("mkdir");
        std::fs::write(out.join("x.png"), b"mine").expect("write");
        let err = assign(&items, &out, false, true).expect_err("foreign");
        assert!(err.to_string().contains("did not write"), "{err}");
        std::fs::remove_file(out.join("x.png")).expect("rm");
        // Its own: recorded, then replaced only with --overwrite.
        assign(&items, &out, true, false).expect("first");
        std::fs::write(out.join("x.png"), b"mask").expect("write");
        let err = assign(&items, &out, true, false).expect_err("again");
        assert!(err.to_string().contains("--overwrite"), "{err}");
        assign(&items, &out, true, true).expect("overwrite");
    }
}
