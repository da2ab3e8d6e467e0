//! How mask files encode class ids, and decoding them into one class id per pixel.

use image::DynamicImage;
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
            return Err(SegError::InvalidConfig(format!(
                "mask encoding has {n} classes; use 2..=254"
            )));
        }
        if let Self::Palette { classes } = self {
            for (i, a) in classes.iter().enumerate() {
                if let Some(b) = classes[..i].iter().find(|b| b.color == a.color) {
                    return Err(SegError::InvalidConfig(format!(
                        "palette colour {} is used by both {:?} and {:?}",
                        hex_color(a.color),
                        b.name,
                        a.name
                    )));
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
    use image::{GrayImage, Luma, Rgb, RgbImage};
    use std::path::Path;

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
