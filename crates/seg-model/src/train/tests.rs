//! Unit tests of the training loop's parts.

use super::*;

#[test]
fn warm_up_then_the_schedule_over_the_remaining_epochs() {
    let config = TrainConfig {
        epochs: 6,
        learning_rate: 1.0,
        warmup_epochs: 2,
        schedule: LrSchedule::Cosine { min_factor: 0.0 },
        ..TrainConfig::default()
    };
    let rates: Vec<f64> = (1..=6)
        .map(|e| config.learning_rate_at(e).expect("rate"))
        .collect();
    assert!((rates[0] - 1.0 / 3.0).abs() < 1e-12 && (rates[1] - 2.0 / 3.0).abs() < 1e-12);
    assert!(
        (rates[2] - 1.0).abs() < 1e-12,
        "the schedule starts at the base rate"
    );
    assert!(
        rates[5].abs() < 1e-12,
        "and reaches its floor at the last epoch"
    );
    let none = TrainConfig {
        warmup_epochs: 0,
        ..config.clone()
    };
    assert_eq!(none.learning_rate_at(1).expect("rate"), 1.0);
    let err = TrainConfig {
        warmup_epochs: 6,
        ..config
    }
    .validate()
    .expect_err("too long");
    assert!(err.to_string().contains("warmup_epochs = 6"), "{err}");
}

#[test]
fn a_budget_shortens_the_schedule_to_the_epochs_that_fit() {
    // 10 s per epoch, 95 s budget: epochs start at 0, 10, ..., 90 s, so 10 of them.
    assert_eq!(epochs_within_budget(95.0, 30.0, 3), 10);
    assert_eq!(epochs_within_budget(100.0, 30.0, 3), 10);
    assert_eq!(epochs_within_budget(101.0, 30.0, 3), 11);
    // Never fewer than the epochs already done; nothing to go on without any.
    assert_eq!(epochs_within_budget(10.0, 60.0, 3), 3);
    assert_eq!(epochs_within_budget(10.0, 0.0, 0), usize::MAX);
    let config = TrainConfig {
        epochs: 12,
        learning_rate: 1.0,
        warmup_epochs: 2,
        schedule: LrSchedule::Cosine { min_factor: 0.0 },
        ..TrainConfig::default()
    };
    let planned = config.learning_rate_planned(8, 8).expect("rate");
    assert!(planned.abs() < 1e-12, "the floor at the planned last epoch");
    assert_eq!(
        config.learning_rate_planned(5, 99).expect("rate"),
        config.learning_rate_at(5).expect("rate"),
        "a plan beyond the configured epochs changes nothing"
    );
    let past = config.learning_rate_planned(10, 8).expect("rate");
    assert!(
        past.abs() < 1e-12,
        "an epoch past the plan stays at the floor"
    );
    assert_eq!(
        config.learning_rate_planned(1, 8).expect("rate"),
        config.learning_rate_at(1).expect("rate"),
        "the warm-up is not shortened"
    );
}

#[test]
fn the_config_reads_its_own_nested_form_and_refuses_unknown_keys() {
    let read = |json: &str| serde_json::from_str::<TrainConfig>(json);
    let config = read(
        r#"{"epochs": 3, "image_size": [64, 96], "optimizer": {"kind": "adamw"},
            "schedule": {"kind": "step", "every": 4}, "tta": {"final_views": 8}}"#,
    )
    .expect("nested form");
    assert_eq!(config.epochs, 3);
    assert_eq!(
        config.image_size,
        ImageSize {
            height: 64,
            width: 96
        }
    );
    assert_eq!(config.optimizer.kind, Optimizer::AdamW);
    assert_eq!(
        config.optimizer.weight_decay, 0.0,
        "the rest of a table defaults"
    );
    assert_eq!(
        config.schedule,
        LrSchedule::Step {
            every: 4,
            gamma: 0.5
        }
    );
    assert_eq!(config.tta.after_training, Tta::Dihedral);
    assert_eq!(config.tta.validation, Tta::Off);
    // What it writes, it reads back.
    let text = serde_json::to_string(&config).expect("write");
    assert_eq!(read(&text).expect("read back"), config);
    assert_eq!(
        read(r#"{"image_size": 32}"#).expect("square").image_size,
        ImageSize::square(32)
    );
    for (json, word) in [
        (r#"{"epoch": 3}"#, "epoch"),
        (r#"{"augment": {"brightnes": 0.2}}"#, "brightnes"),
        (
            r#"{"schedule": {"kind": "step", "min_factor": 0.1}}"#,
            "min_factor",
        ),
        (r#"{"schedule": {"kind": "cosin"}}"#, "cosin"),
        (r#"{"tta": {"validation_views": 3}}"#, "3 views"),
    ] {
        let err = read(json).expect_err(json).to_string();
        assert!(err.contains(word), "{json}: {err}");
    }
}
