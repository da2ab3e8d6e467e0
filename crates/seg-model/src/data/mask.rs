//! How mask files encode class ids: decoding them into one class id per pixel, and encoding
//! predicted ids back into mask files.

use image::{DynamicImage, GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SegError};

/// Class id that the loss and metrics skip (unlabelled or unknown pixels).
pub const IGNORE_INDEX: u8 = 255;

/// A class of the task: its name and the colour used for overlays (and palette masks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassInfo {
    /// Human-readable name.
    pub name: String,
    /// RGB colour.
    pub color: [u8; 3],
}

impl ClassInfo {
    /// Parses a palette entry `"#RRGGBB name"` (the name may be left out: it is then the
    /// colour).
    pub fn parse_entry(entry: &str) -> Result<Self> {
        let text = entry.trim();
        let (hex, name) = text.split_once(' ').unwrap_or((text, ""));
        let color = parse_hex_color(hex).map_err(|_| {
            SegError::invalid(
                "palette",
                format!("{entry:?}"),
                "write \"#RRGGBB name\" per class (e.g. \"#8429F6 land\")",
            )
        })?;
        let name = name.trim();
        Ok(Self {
            name: if name.is_empty() {
                hex_color(color)
            } else {
                name.to_string()
            },
            color,
        })
    }
}

/// The kind of a [`MaskEncoding`] without its parameters (how configuration files name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskEncodingKind {
    /// [`MaskEncoding::Binary`].
    Binary,
    /// [`MaskEncoding::Index`].
    Index,
    /// [`MaskEncoding::Palette`].
    Palette,
}

/// How class ids are stored in mask files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MaskEncoding {
    /// Greyscale (or grey stored as RGB): foreground where the luma is above `threshold`.
    Binary {
        /// Pixels strictly above this value are class 1 (default 127).
        threshold: u8,
    },
    /// The pixel value (luma) is the class id; `IGNORE_INDEX` (255) marks unlabelled pixels.
    Index {
        /// Number of classes; values >= this (other than 255) are an error.
        num_classes: usize,
    },
    /// RGB colour -> class; any other colour becomes [`IGNORE_INDEX`].
    Palette {
        /// The classes, in class-id order, with their mask colours.
        classes: Vec<ClassInfo>,
    },
}

impl Default for MaskEncoding {
    fn default() -> Self {
        Self::Binary { threshold: 127 }
    }
}

impl MaskEncoding {
    /// The encoding of `kind` with its parameters (the ones another kind uses are ignored),
    /// checked; `palette` holds `"#RRGGBB name"` entries in class order.
    pub fn new(
        kind: MaskEncodingKind,
        binary_threshold: u8,
        num_classes: usize,
        palette: &[String],
    ) -> Result<Self> {
        let encoding = match kind {
            MaskEncodingKind::Binary => Self::Binary {
                threshold: binary_threshold,
            },
            MaskEncodingKind::Index => Self::Index { num_classes },
            MaskEncodingKind::Palette => Self::Palette {
                classes: palette
                    .iter()
                    .map(|e| ClassInfo::parse_entry(e))
                    .collect::<Result<_>>()?,
            },
        };
        encoding.validate()?;
        Ok(encoding)
    }

    /// The mask file for class ids `ids` (one per pixel): binary as 0/255, index as the ids,
    /// palette as the classes' colours; the inverse of [`MaskEncoding::decode`].
    pub fn encode(&self, ids: &GrayImage) -> DynamicImage {
        match self {
            Self::Binary { .. } => {
                let mut m = ids.clone();
                for p in m.pixels_mut() {
                    p.0[0] = if p.0[0] > 0 { 255 } else { 0 };
                }
                DynamicImage::ImageLuma8(m)
            }
            Self::Index { .. } => DynamicImage::ImageLuma8(ids.clone()),
            Self::Palette { classes } => {
                DynamicImage::ImageRgb8(RgbImage::from_fn(ids.width(), ids.height(), |x, y| {
                    let id = usize::from(ids.get_pixel(x, y).0[0]);
                    image::Rgb(classes.get(id).map_or([0, 0, 0], |c| c.color))
                }))
            }
        }
    }

    /// Number of task classes (background included).
    pub fn num_classes(&self) -> usize {
        match self {
            Self::Binary { .. } => 2,
            Self::Index { num_classes } => *num_classes,
            Self::Palette { classes } => classes.len(),
        }
    }

    /// Class names and overlay colours, in id order.
    pub fn classes(&self) -> Vec<ClassInfo> {
        match self {
            Self::Palette { classes } => classes.clone(),
            _ => (0..self.num_classes())
                .map(|i| ClassInfo {
                    name: if self.num_classes() == 2 {
                        ["background", "foreground"][i].to_string()
                    } else {
                        format!("class{i}")
                    },
                    color: default_color(i),
                })
                .collect(),
        }
    }

    /// Checks the encoding's own values.
    pub fn validate(&self) -> Result<()> {
        let n = self.num_classes();
        if !(2..=254).contains(&n) {
            return Err(SegError::invalid("num_classes", n, "2..=254 classes"));
        }
        if let Self::Palette { classes } = self {
            for (i, a) in classes.iter().enumerate() {
                if let Some(b) = classes[..i].iter().find(|b| b.color == a.color) {
                    return Err(SegError::invalid(
                        "palette",
                        hex_color(a.color),
                        format!(
                            "one colour per class, but {:?} and {:?} share it",
                            b.name, a.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Decodes a mask image into one class id per pixel (row-major), [`IGNORE_INDEX`] where
    /// unlabelled. `path` is only used in error messages.
    pub fn decode(&self, mask: &DynamicImage, path: &std::path::Path) -> Result<Vec<u8>> {
        match self {
            Self::Binary { threshold } => Ok(mask
                .to_luma8()
                .into_raw()
                .into_iter()
                .map(|v| u8::from(v > *threshold))
                .collect()),
            Self::Index { num_classes } => {
                let ids = mask.to_luma8().into_raw();
                if let Some(&value) = ids
                    .iter()
                    .find(|&&v| v != IGNORE_INDEX && usize::from(v) >= *num_classes)
                {
                    return Err(SegError::ClassOutOfRange {
                        path: path.to_path_buf(),
                        value,
                        num_classes: *num_classes,
                    });
                }
                Ok(ids)
            }
            Self::Palette { classes } => {
                let lookup: std::collections::HashMap<[u8; 3], u8> = classes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.color, i as u8))
                    .collect();
                Ok(mask
                    .to_rgb8()
                    .pixels()
                    .map(|p| *lookup.get(&p.0).unwrap_or(&IGNORE_INDEX))
                    .collect())
            }
        }
    }
}

/// `#rrggbb` for a colour.
pub fn hex_color(c: [u8; 3]) -> String {
    format!("#{:02X}{:02X}{:02X}", c[0], c[1], c[2])
}

/// Parses `#rrggbb` (or `rrggbb`).
pub fn parse_hex_color(text: &str) -> Result<[u8; 3]> {
    let hex = text.trim().trim_start_matches('#');
    let bad = || SegError::InvalidConfig(format!("colour {text:?} is not #RRGGBB"));
    if hex.len() != 6 || !hex.is_ascii() {
        return Err(bad());
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
    Ok([byte(0)?, byte(2)?, byte(4)?])
}

/// A distinct overlay colour for class `i` (background black).
pub fn default_color(i: usize) -> [u8; 3] {
    const COLORS: [[u8; 3]; 10] = [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
    ];
    COLORS[i % COLORS.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgb};
    use std::path::Path;

    #[test]
    fn encoding_writes_what_decoding_reads() {
        let mask = GrayImage::from_raw(2, 1, vec![0, 1]).expect("mask");
        let binary = MaskEncoding::Binary { threshold: 127 };
        assert_eq!(binary.encode(&mask).to_luma8().into_raw(), vec![0, 255]);
        let index = MaskEncoding::Index { num_classes: 3 };
        assert_eq!(index.encode(&mask).to_luma8().into_raw(), vec![0, 1]);
        let palette = MaskEncoding::new(
            MaskEncodingKind::Palette,
            127,
            0,
            &["#010203 bg".to_string(), "#090807 fg".to_string()],
        )
        .expect("palette");
        let painted = palette.encode(&mask);
        assert_eq!(painted.to_rgb8().into_raw(), vec![1, 2, 3, 9, 8, 7]);
        for enc in [binary, index, palette] {
            let ids = enc
                .decode(&enc.encode(&mask), Path::new("m.png"))
                .expect("decode");
            assert_eq!(ids, vec![0, 1], "{enc:?}");
        }
        let p = ClassInfo::parse_entry("#8429F6 land").expect("entry");
        assert_eq!((p.name.as_str(), p.color), ("land", [0x84, 0x29, 0xF6]));
        assert!(ClassInfo::parse_entry("#84 land").is_err());
    }

    #[test]
    fn binary_thresholds_strictly_above() {
        let img = GrayImage::from_raw(4, 1, vec![0, 127, 128, 255]).expect("4 px");
        let ids = MaskEncoding::Binary { threshold: 127 }
            .decode(&DynamicImage::ImageLuma8(img), Path::new("m.png"))
            .expect("decode");
        assert_eq!(ids, vec![0, 0, 1, 1]);
    }

    #[test]
    fn index_rejects_out_of_range_but_keeps_ignore() {
        let enc = MaskEncoding::Index { num_classes: 3 };
        let ok = GrayImage::from_raw(3, 1, vec![0, 2, 255]).expect("3 px");
        assert_eq!(
            enc.decode(&DynamicImage::ImageLuma8(ok), Path::new("a.png"))
                .expect("decode"),
            vec![0, 2, 255]
        );
        let mut bad = GrayImage::new(2, 1);
        bad.put_pixel(1, 0, Luma([7]));
        let err = enc
            .decode(&DynamicImage::ImageLuma8(bad), Path::new("b.png"))
            .expect_err("7 >= 3");
        assert!(
            err.to_string().contains("b.png") && err.to_string().contains('7'),
            "{err}"
        );
    }

    #[test]
    fn palette_maps_unknown_colours_to_ignore() {
        let enc = MaskEncoding::Palette {
            classes: vec![
                ClassInfo {
                    name: "a".into(),
                    color: [1, 2, 3],
                },
                ClassInfo {
                    name: "b".into(),
                    color: [9, 9, 9],
                },
            ],
        };
        let mut img = RgbImage::new(3, 1);
        img.put_pixel(0, 0, Rgb([9, 9, 9]));
        img.put_pixel(1, 0, Rgb([1, 2, 3]));
        img.put_pixel(2, 0, Rgb([0, 0, 0]));
        let ids = enc
            .decode(&DynamicImage::ImageRgb8(img), Path::new("p.png"))
            .expect("decode");
        assert_eq!(ids, vec![1, 0, IGNORE_INDEX]);
    }

    #[test]
    fn hex_colours_round_trip_and_duplicates_are_refused() {
        assert_eq!(parse_hex_color("#8429F6").expect("hex"), [0x84, 0x29, 0xF6]);
        assert_eq!(hex_color([0x84, 0x29, 0xF6]), "#8429F6");
        assert!(parse_hex_color("#12345").is_err());
        let dup = MaskEncoding::Palette {
            classes: vec![
                ClassInfo {
                    name: "a".into(),
                    color: [1, 1, 1],
                },
                ClassInfo {
                    name: "b".into(),
                    color: [1, 1, 1],
                },
            ],
        };
        assert!(dup.validate().is_err());
    }
}
