//! The photometric augmentations as training draws them: within the configured ranges, no
//! randomness used when disabled, and the geometry and mask of a sample untouched.

use image::{DynamicImage, RgbImage};
use seg_model::data::augment::{prepare_sample, sample_rng};
use seg_model::data::photometric::Photometric;
use seg_model::data::{AugmentConfig, Preprocess, RawSample};

fn photometric() -> AugmentConfig {
    AugmentConfig {
        hue: 0.05,
        gamma: 0.3,
        blur_sigma: 1.0,
        jpeg_quality: 30,
        ..AugmentConfig::default()
    }
}

#[test]
fn disabled_options_draw_the_identity_and_no_random_number() {
    let mut rng = sample_rng(1, 0, 0);
    let draw = AugmentConfig::default().draw_photometric(&mut rng);
    assert_eq!(draw, Photometric::IDENTITY);
    assert_eq!(rng, sample_rng(1, 0, 0), "the stream is where it was");
}

#[test]
fn draws_stay_within_the_configured_ranges() {
    let cfg = photometric();
    for i in 0..200 {
        let d = cfg.draw_photometric(&mut sample_rng(5, 2, i));
        assert!(d.hue.abs() <= 0.05, "{d:?}");
        assert!((1.0 / 1.3 - 1e-6..=1.3 + 1e-6).contains(&d.gamma), "{d:?}");
        assert!((0.0..=1.0).contains(&d.blur_sigma), "{d:?}");
        assert!(matches!(d.jpeg_quality, Some(30..=95)), "{d:?}");
    }
}

#[test]
fn a_sample_keeps_its_geometry_and_mask_and_changes_its_colours() {
    let pixels: Vec<u8> = (0..16 * 16)
        .flat_map(|p: usize| [(p % 16 * 16) as u8, (p / 16 * 16) as u8, 128])
        .collect();
    let sample = RawSample {
        image: DynamicImage::ImageRgb8(RgbImage::from_raw(16, 16, pixels).expect("rgb")),
        mask: (0..256).map(|p| u8::from(p % 16 < 8)).collect(),
    };
    let pre = Preprocess::unnormalized(16, 16, 3);
    let (geometric, shifted) = (AugmentConfig::default(), photometric());
    for i in 0..8 {
        let plain = prepare_sample(&sample, &pre, Some((&geometric, &mut sample_rng(9, 0, i))));
        let other = prepare_sample(&sample, &pre, Some((&shifted, &mut sample_rng(9, 0, i))));
        let ((plain, plain_mask), (other, other_mask)) = (plain.expect("a"), other.expect("b"));
        assert_eq!(plain_mask, other_mask, "the same crop, flips and turns");
        assert_ne!(plain, other, "other colours");
    }
}

#[test]
fn out_of_range_photometric_strengths_name_their_field() {
    for (cfg, field) in [
        (
            AugmentConfig {
                hue: 0.6,
                ..photometric()
            },
            "augment.hue",
        ),
        (
            AugmentConfig {
                gamma: -0.1,
                ..photometric()
            },
            "augment.gamma",
        ),
        (
            AugmentConfig {
                blur_sigma: 6.0,
                ..photometric()
            },
            "augment.blur_sigma",
        ),
        (
            AugmentConfig {
                jpeg_quality: 99,
                ..photometric()
            },
            "augment.jpeg_quality",
        ),
        (
            AugmentConfig {
                jpeg_quality: 3,
                ..photometric()
            },
            "augment.jpeg_quality",
        ),
    ] {
        let err = cfg.validate().expect_err(field).to_string();
        assert!(err.contains(field), "{err}");
    }
    photometric().validate().expect("in range");
}
