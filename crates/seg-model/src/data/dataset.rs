//! A segmentation dataset on disk: `images/` and `masks/` whose files pair up by stem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

use image::{DynamicImage, ImageReader, Limits};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::mask::{IGNORE_INDEX, MaskEncoding};
use crate::error::{Result, SegError};

/// File extensions read as images or masks.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// One image/mask pair on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplePaths {
    /// The shared file stem.
    pub stem: String,
    /// The image file.
    pub image: PathBuf,
    /// The mask file.
    pub mask: PathBuf,
}

/// A decoded pair at its original size: the image and one class id per pixel.
#[derive(Debug, Clone)]
pub struct RawSample {
    /// The image as decoded (any colour type).
    pub image: DynamicImage,
    /// Class ids, row-major, `width * height` long ([`IGNORE_INDEX`] = unlabelled).
    pub mask: Vec<u8>,
}

/// What a full pass over a dataset found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetStats {
    /// Number of pairs.
    pub pairs: usize,
    /// Pixels per class id, in id order (`num_classes` entries).
    pub class_pixels: Vec<u64>,
    /// Pixels marked ignore (unlabelled or unknown colour).
    pub ignored_pixels: u64,
    /// Smallest and largest image width.
    pub width_range: (u32, u32),
    /// Smallest and largest image height.
    pub height_range: (u32, u32),
    /// Number of images per colour type (`L8`, `Rgb8`, ...).
    pub color_types: BTreeMap<String, usize>,
    /// The largest value (luma) of any mask file, before decoding into classes.
    #[serde(default)]
    pub max_mask_value: u8,
}

impl DatasetStats {
    /// Pixels of every class but background (id 0).
    pub fn foreground_pixels(&self) -> u64 {
        self.class_pixels.iter().skip(1).sum()
    }
}

/// Decoded pixels per image allowed by default (50 megapixels: 200 MB as RGBA).
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 50_000_000;

static MAX_IMAGE_PIXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_IMAGE_PIXELS);

/// Sets the process-wide limit of decoded pixels per image ([`decode_image`] refuses larger
/// images from their header, before decoding them).
pub fn set_max_image_pixels(limit: u64) {
    MAX_IMAGE_PIXELS.store(limit, Ordering::Relaxed);
}

/// The limit [`set_max_image_pixels`] set.
pub fn max_image_pixels() -> u64 {
    MAX_IMAGE_PIXELS.load(Ordering::Relaxed)
}

/// Image/mask pairs matched by file stem, decoded lazily.
#[derive(Debug, Clone)]
pub struct SegmentationDataset {
    root: PathBuf,
    pairs: Vec<SamplePaths>,
    encoding: MaskEncoding,
}

impl SegmentationDataset {
    /// Lists `root/images` and `root/masks` and pairs their files by stem (sorted by stem).
    /// Fails, naming the files, when a stem has no partner or when the folder is empty.
    pub fn open(root: impl AsRef<Path>, encoding: MaskEncoding) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        encoding.validate()?;
        let images = list_by_stem(&root, "images")?;
        let masks = list_by_stem(&root, "masks")?;
        let mut unmatched: Vec<String> = images
            .iter()
            .filter(|(stem, _)| !masks.contains_key(*stem))
            .map(|(_, p)| format!("images/{} (no mask)", file_name(p)))
            .chain(
                masks
                    .iter()
                    .filter(|(stem, _)| !images.contains_key(*stem))
                    .map(|(_, p)| format!("masks/{} (no image)", file_name(p))),
            )
            .collect();
        if !unmatched.is_empty() {
            let count = unmatched.len();
            unmatched.truncate(10);
            let mut stems = unmatched.join(", ");
            if count > 10 {
                stems.push_str(&format!(", ... and {} more", count - 10));
            }
            return Err(SegError::MissingPartner {
                dir: root,
                count,
                stems,
            });
        }
        let pairs: Vec<SamplePaths> = images
            .into_iter()
            .map(|(stem, image)| {
                let mask = masks[&stem].clone();
                SamplePaths { stem, image, mask }
            })
            .collect();
        if pairs.is_empty() {
            return Err(SegError::EmptyDataset { dir: root });
        }
        Ok(Self {
            root,
            pairs,
            encoding,
        })
    }

    /// The dataset folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The pairs, sorted by stem.
    pub fn pairs(&self) -> &[SamplePaths] {
        &self.pairs
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when there are no pairs (never, for an opened dataset).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// How masks encode classes.
    pub fn encoding(&self) -> &MaskEncoding {
        &self.encoding
    }

    /// Decodes pair `index`: the image, and its mask as class ids. Fails naming the file when
    /// either is unreadable, or when the mask's size differs from the image's.
    pub fn load(&self, index: usize) -> Result<RawSample> {
        let pair = self.pairs.get(index).ok_or_else(|| {
            SegError::InvalidConfig(format!(
                "sample index {index} is out of range: {} has {} pairs",
                self.root.display(),
                self.pairs.len()
            ))
        })?;
        let (image, mask_image) = self.decode_pair(pair)?;
        let mask = self.encoding.decode(&mask_image, &pair.mask)?;
        Ok(RawSample { image, mask })
    }

    /// Decodes a pair's two files, checking that their sizes match.
    fn decode_pair(&self, pair: &SamplePaths) -> Result<(DynamicImage, DynamicImage)> {
        let image = decode_image(&pair.image)?;
        let mask_image = decode_image(&pair.mask)?;
        if (image.width(), image.height()) != (mask_image.width(), mask_image.height()) {
            return Err(SegError::MaskSizeMismatch {
                image: pair.image.clone(),
                mask: pair.mask.clone(),
                image_w: image.width(),
                image_h: image.height(),
                mask_w: mask_image.width(),
                mask_h: mask_image.height(),
            });
        }
        Ok((image, mask_image))
    }

    /// Decodes every pair in parallel and counts classes: the check to run before training,
    /// so a corrupt file fails in seconds rather than mid-epoch. A dataset whose masks mark no
    /// pixel as foreground (0/1 masks read with a threshold of 127, say) is refused: every
    /// score on it would be perfect and mean nothing.
    pub fn verify(&self) -> Result<DatasetStats> {
        let total = self.count()?;
        if total.foreground_pixels() == 0 {
            return Err(self.no_foreground(total.max_mask_value));
        }
        Ok(total)
    }

    /// Pixels of every class but background in the masks of the pairs `indices` (a split's
    /// masks, decoded in parallel).
    pub fn foreground_pixels(&self, indices: &[usize]) -> Result<u64> {
        indices.par_iter().map(|&i| self.mask_foreground(i)).sum()
    }

    /// The pairs whose mask marks no pixel as foreground (the negatives: healthy tissue,
    /// empty scenes), in index order; the masks are decoded in parallel.
    pub fn empty_masks(&self) -> Result<Vec<usize>> {
        let empty: Vec<bool> = (0..self.len())
            .into_par_iter()
            .map(|i| Ok(self.mask_foreground(i)? == 0))
            .collect::<Result<_>>()?;
        Ok((0..self.len()).filter(|&i| empty[i]).collect())
    }

    /// Pixels of every class but background in the mask of pair `index`.
    fn mask_foreground(&self, index: usize) -> Result<u64> {
        let pair = self.pairs.get(index).ok_or_else(|| {
            SegError::InvalidConfig(format!("sample index {index} is out of range"))
        })?;
        let ids = self
            .encoding
            .decode(&decode_image(&pair.mask)?, &pair.mask)?;
        Ok(ids
            .iter()
            .filter(|&&id| id != 0 && id != IGNORE_INDEX)
            .count() as u64)
    }

    fn no_foreground(&self, max_value: u8) -> SegError {
        let (encoding, hint) = match &self.encoding {
            MaskEncoding::Binary { threshold } => (
                format!("binary encoding (foreground: values above {threshold})"),
                if max_value > 0 {
                    format!(
                        "for masks stored as 0..{max_value} set data.binary_threshold = {} (or data.mask_encoding = \"index\" when values are class ids)",
                        max_value - 1
                    )
                } else {
                    "every mask is all zero: give masks that mark the objects".to_string()
                },
            ),
            MaskEncoding::Index { num_classes } => (
                format!("index encoding ({num_classes} classes, 0 = background)"),
                "masks must hold class ids 1.. where the objects are".to_string(),
            ),
            MaskEncoding::Palette { .. } => (
                "palette encoding".to_string(),
                "check that data.palette lists the colours the masks use".to_string(),
            ),
        };
        SegError::NoForeground {
            dir: self.root.clone(),
            encoding,
            max_value,
            hint,
        }
    }

    /// Decodes every pair in parallel and counts classes.
    fn count(&self) -> Result<DatasetStats> {
        let n = self.encoding.num_classes();
        let partial: Vec<DatasetStats> = (0..self.len())
            .into_par_iter()
            .map(|i| {
                let pair = &self.pairs[i];
                let (image, mask_image) = self.decode_pair(pair)?;
                let max_mask_value = mask_image.to_luma8().iter().copied().max().unwrap_or(0);
                let sample = RawSample {
                    mask: self.encoding.decode(&mask_image, &pair.mask)?,
                    image,
                };
                let mut class_pixels = vec![0u64; n];
                let mut ignored = 0u64;
                for &id in &sample.mask {
                    match class_pixels.get_mut(usize::from(id)) {
                        Some(count) if id != IGNORE_INDEX => *count += 1,
                        _ => ignored += 1,
                    }
                }
                let (w, h) = (sample.image.width(), sample.image.height());
                Ok(DatasetStats {
                    pairs: 1,
                    class_pixels,
                    ignored_pixels: ignored,
                    width_range: (w, w),
                    height_range: (h, h),
                    color_types: BTreeMap::from([(format!("{:?}", sample.image.color()), 1)]),
                    max_mask_value,
                })
            })
            .collect::<Result<_>>()?;
        let mut total = DatasetStats {
            pairs: 0,
            class_pixels: vec![0; n],
            ignored_pixels: 0,
            width_range: (u32::MAX, 0),
            height_range: (u32::MAX, 0),
            color_types: BTreeMap::new(),
            max_mask_value: 0,
        };
        for s in partial {
            total.max_mask_value = total.max_mask_value.max(s.max_mask_value);
            total.pairs += s.pairs;
            for (t, c) in total.class_pixels.iter_mut().zip(&s.class_pixels) {
                *t += c;
            }
            total.ignored_pixels += s.ignored_pixels;
            total.width_range = (
                total.width_range.0.min(s.width_range.0),
                total.width_range.1.max(s.width_range.1),
            );
            total.height_range = (
                total.height_range.0.min(s.height_range.0),
                total.height_range.1.max(s.height_range.1),
            );
            for (k, v) in s.color_types {
                *total.color_types.entry(k).or_default() += v;
            }
        }
        Ok(total)
    }
}

/// Decodes an image file, naming it in any error. A JPEG must end with its end-of-image
/// marker: the decoder would otherwise fill a truncated file with grey without complaint.
pub fn decode_image(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| SegError::io("read", path, e))?;
    decode_image_bytes(&bytes, path)
}

/// Decodes image bytes; `path` names them in errors.
pub fn decode_image_bytes(bytes: &[u8], path: &Path) -> Result<DynamicImage> {
    let decode_err = |reason: String| SegError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(decode_err("the file is empty".into()));
    }
    check_pixels(bytes, path, max_image_pixels())?;
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(e.to_string()))?;
    // The pixel limit above is the limit; the decoder's own (512 MB) would refuse a large RGB
    // image allowed by a raised limit with a vaguer message.
    reader.limits(Limits::no_limits());
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_is_complete(bytes) {
        return Err(decode_err(
            "JPEG is truncated (no end-of-image marker)".into(),
        ));
    }
    reader.decode().map_err(|e| decode_err(e.to_string()))
}

/// Refuses an image of more than `limit` pixels from its header, before decoding it.
pub fn check_pixels(bytes: &[u8], path: &Path, limit: u64) -> Result<()> {
    let header = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok());
    // An unreadable header is left to the decoder, which names the problem.
    let Some((width, height)) = header else {
        return Ok(());
    };
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limit {
        return Err(SegError::ImageTooLarge {
            path: path.to_path_buf(),
            width,
            height,
            pixels,
            limit,
        });
    }
    Ok(())
}

fn jpeg_is_complete(bytes: &[u8]) -> bool {
    // Some writers pad after EOI; accept the marker within the last few bytes.
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list_by_stem(root: &Path, folder: &'static str) -> Result<BTreeMap<String, PathBuf>> {
    let dir = root.join(folder);
    if !dir.is_dir() {
        return Err(SegError::MissingFolder {
            dir: root.to_path_buf(),
            missing: folder,
        });
    }
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| SegError::io("list", &dir, e))? {
        let entry = entry.map_err(|e| SegError::io("list", &dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(SegError::FileName { path });
        };
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let Some(ext) = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
        else {
            continue;
        };
        if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if out.insert(stem.clone(), path).is_some() {
            return Err(SegError::DuplicateStem {
                dir: root.to_path_buf(),
                folder,
                stem,
            });
        }
    }
    Ok(out)
}
