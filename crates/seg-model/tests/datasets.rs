//! The loaders on the three real datasets in ../shared/datasets, and bad input: each failure is
//! a clear error naming the file.

use std::path::{Path, PathBuf};

use seg_model::data::mask::parse_hex_color;
use seg_model::data::{ClassInfo, IGNORE_INDEX, MaskEncoding, SegmentationDataset};

/// The shared datasets folder (override with SEG_DATASETS_DIR). Missing data is a loud failure.
fn datasets_dir() -> PathBuf {
    let dir = std::env::var_os("SEG_DATASETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets"));
    assert!(
        dir.join("kvasir-seg").is_dir(),
        "datasets not found at {}: set SEG_DATASETS_DIR to the folder holding kvasir-seg/, isbi2012-em/, dubai-aerial/",
        dir.display()
    );
    dir
}

/// The dubai-aerial palette as measured on its masks (see ../shared/datasets/README.md).
fn dubai_palette() -> MaskEncoding {
    let classes = [
        ("land", "#8429F6"),
        ("water", "#E2A929"),
        ("building", "#3C1098"),
        ("vegetation", "#FEDD3A"),
        ("road", "#6EC1E4"),
        ("unlabelled", "#9B9B9B"),
    ]
    .into_iter()
    .map(|(name, hex)| ClassInfo {
        name: name.into(),
        color: parse_hex_color(hex).expect("palette colour"),
    })
    .collect();
    MaskEncoding::Palette { classes }
}

#[test]
fn kvasir_seg_is_998_binary_rgb_pairs() {
    let ds = SegmentationDataset::open(datasets_dir().join("kvasir-seg"), MaskEncoding::default())
        .expect("open kvasir-seg");
    assert_eq!(ds.len(), 998);
    let stats = ds.verify().expect("every pair decodes");
    assert_eq!(stats.pairs, 998);
    assert_eq!(stats.ignored_pixels, 0);
    assert_eq!(stats.width_range, (256, 256));
    assert_eq!(stats.color_types.get("Rgb8"), Some(&998));
    let fg = stats.class_pixels[1] as f64 / (stats.class_pixels[0] + stats.class_pixels[1]) as f64;
    assert!((0.05..0.4).contains(&fg), "polyp share {fg}");
    // JPEG noise in the grey masks is thresholded away: only ids 0 and 1.
    let sample = ds.load(0).expect("first pair");
    assert!(sample.mask.iter().all(|&m| m <= 1));
}

#[test]
fn isbi2012_em_is_greyscale_512() {
    let ds = SegmentationDataset::open(datasets_dir().join("isbi2012-em"), MaskEncoding::default())
        .expect("open isbi2012-em");
    assert_eq!(ds.len(), 30);
    let stats = ds.verify().expect("decodes");
    assert_eq!(
        stats.color_types.get("L8"),
        Some(&30),
        "{:?}",
        stats.color_types
    );
    assert_eq!(
        (stats.width_range, stats.height_range),
        ((512, 512), (512, 512))
    );
    // Cell interior (255 -> class 1) dominates membranes.
    assert!(stats.class_pixels[1] > stats.class_pixels[0]);
}

#[test]
fn dubai_aerial_palette_with_stray_black_pixels_ignored() {
    let ds = SegmentationDataset::open(datasets_dir().join("dubai-aerial"), dubai_palette())
        .expect("open dubai-aerial");
    assert_eq!(ds.len(), 72);
    let stats = ds.verify().expect("decodes");
    assert!(stats.width_range.0 < stats.width_range.1, "sizes vary");
    let total: u64 = stats.class_pixels.iter().sum::<u64>() + stats.ignored_pixels;
    let share = |n: u64| n as f64 / total as f64;
    // Measured shares: land 52.4%, water 13.6%, building 13.3%, black (ignored) 0.6%.
    assert!(
        (share(stats.class_pixels[0]) - 0.524).abs() < 0.02,
        "land {}",
        share(stats.class_pixels[0])
    );
    assert!((share(stats.class_pixels[1]) - 0.136).abs() < 0.02);
    assert!(stats.ignored_pixels > 0, "black pixels map to ignore");
    assert!(
        share(stats.ignored_pixels) < 0.02,
        "ignored {}",
        share(stats.ignored_pixels)
    );
    let sample = ds.load(0).expect("pair");
    assert!(sample.mask.iter().all(|&m| m < 6 || m == IGNORE_INDEX));
}

fn copy_pairs(from: &Path, to: &Path, n: usize) -> Vec<String> {
    let src = SegmentationDataset::open(from, MaskEncoding::default()).expect("source");
    std::fs::create_dir_all(to.join("images")).expect("mkdir");
    std::fs::create_dir_all(to.join("masks")).expect("mkdir");
    src.pairs()[..n]
        .iter()
        .map(|p| {
            for (file, sub) in [(&p.image, "images"), (&p.mask, "masks")] {
                std::fs::copy(file, to.join(sub).join(file.file_name().expect("name")))
                    .expect("copy");
            }
            p.image
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn truncated_jpeg_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let names = copy_pairs(&datasets_dir().join("kvasir-seg"), dir.path(), 3);
    let victim = dir.path().join("images").join(&names[1]);
    let bytes = std::fs::read(&victim).expect("read");
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).expect("truncate");
    let ds =
        SegmentationDataset::open(dir.path(), MaskEncoding::default()).expect("listing is fine");
    let err = ds.verify().expect_err("truncated file");
    let msg = err.to_string();
    assert!(
        msg.contains(&names[1]) && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn mask_of_other_size_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let names = copy_pairs(&datasets_dir().join("isbi2012-em"), dir.path(), 2);
    let mask = dir.path().join("masks").join(&names[0]);
    image::GrayImage::new(100, 80)
        .save(&mask)
        .expect("write small mask");
    let ds = SegmentationDataset::open(dir.path(), MaskEncoding::default()).expect("open");
    let msg = ds.verify().expect_err("size mismatch").to_string();
    assert!(
        msg.contains(&names[0]) && msg.contains("100x80") && msg.contains("512x512"),
        "{msg}"
    );
}

#[test]
fn missing_partner_and_empty_folder_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let names = copy_pairs(&datasets_dir().join("isbi2012-em"), dir.path(), 3);
    std::fs::remove_file(dir.path().join("masks").join(&names[2])).expect("rm");
    let msg = SegmentationDataset::open(dir.path(), MaskEncoding::default())
        .expect_err("missing mask")
        .to_string();
    assert!(
        msg.contains(&format!("images/{} (no mask)", names[2])),
        "{msg}"
    );

    let empty = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(empty.path().join("images")).expect("mkdir");
    std::fs::create_dir_all(empty.path().join("masks")).expect("mkdir");
    let msg = SegmentationDataset::open(empty.path(), MaskEncoding::default())
        .expect_err("empty")
        .to_string();
    assert!(
        msg.contains("empty") && msg.contains(&empty.path().display().to_string()),
        "{msg}"
    );

    let msg = SegmentationDataset::open(empty.path().join("nope"), MaskEncoding::default())
        .expect_err("no folder")
        .to_string();
    assert!(msg.contains("no images/ folder"), "{msg}");
}
