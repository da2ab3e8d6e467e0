//! Unit tests of the training loop's parts.

use super::*;

#[test]
fn warm_up_then_the_schedule_over_the_remaining_epochs() {
    let config = TrainConfig::new()
        .with_epochs(6)
        .with_learning_rate(1.0)
        .with_warmup_epochs(2)
        .with_lr_schedule(LrSchedule::Cosine { min_factor: 0.0 });
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
    let none = config.clone().with_warmup_epochs(0);
    assert_eq!(none.learning_rate_at(1).expect("rate"), 1.0);
    let err = config
        .with_warmup_epochs(6)
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
    let config = TrainConfig::new()
        .with_epochs(12)
        .with_learning_rate(1.0)
        .with_warmup_epochs(2)
        .with_lr_schedule(LrSchedule::Cosine { min_factor: 0.0 });
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
