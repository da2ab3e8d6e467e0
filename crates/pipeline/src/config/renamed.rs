//! Keys of the flat `[train]` table that earlier releases read, translated to the nested keys
//! of seg-model's `TrainConfig` for one more release, each with a warning that names the new
//! key. Every layer (the `--config` file, `SEG_*` variables, flags and the params `--reproduce`
//! replays) is translated on its own, before the layers are merged.

use std::collections::BTreeMap;

use figment::value::Value;

/// Old keys that only moved: `(old, new)`.
const MOVED: &[(&str, &str)] = &[
    ("train.weight_decay", "train.optimizer.weight_decay"),
    ("train.lr_schedule", "train.schedule.kind"),
    ("train.augment_scale", "train.augment.max_scale"),
    ("train.augment_rotate", "train.augment.rotate_degrees"),
    ("train.augment_brightness", "train.augment.brightness"),
    ("train.augment_contrast", "train.augment.contrast"),
    ("train.augment_saturation", "train.augment.saturation"),
    ("train.loss_ce_weight", "train.loss.ce_weight"),
    ("train.loss_dice_weight", "train.loss.dice_weight"),
    ("train.final_tta_views", "train.tta.final_views"),
    ("train.overlay_samples", "mlflow.overlay_samples"),
];

/// The numbers of each schedule: `(old key, new key, the schedule they belong to)`.
const SCHEDULE_NUMBERS: &[(&str, &str, &str)] = &[
    ("train.lr_min_factor", "train.schedule.min_factor", "cosine"),
    ("train.lr_step_every", "train.schedule.every", "step"),
    ("train.lr_step_gamma", "train.schedule.gamma", "step"),
];

/// One old key met in a layer: what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Renamed {
    /// The old key (`train.lr_min_factor`).
    pub old: String,
    /// The keys it was translated into (none when it was dropped).
    pub new: Vec<String>,
    /// What to write now, or why it was dropped.
    pub now: String,
}

impl Renamed {
    /// The warning, with where the old key was set.
    pub fn warning(&self, source: &str) -> String {
        format!(
            "{} (from {source}) is an old key, read until the next release: {}",
            self.old, self.now
        )
    }
}

fn moved(old: &str, new: &str) -> Renamed {
    Renamed {
        old: old.into(),
        new: vec![new.into()],
        now: format!("write {new} instead"),
    }
}

fn dropped(old: &str, why: String) -> Renamed {
    Renamed {
        old: old.into(),
        new: Vec::new(),
        now: format!("dropped: {why}"),
    }
}

/// Sets `key` unless the layer set it itself.
fn put(values: &mut BTreeMap<String, Value>, key: &str, value: Value) {
    values.entry(key.to_string()).or_insert(value);
}

/// Translates the old keys of one layer, given as dotted keys, into the new ones, and says what
/// it did. A new key set in the same layer wins over the old one.
pub fn translate(values: &mut BTreeMap<String, Value>) -> Vec<Renamed> {
    let mut done = Vec::new();
    // `optimizer = "adamw"`: the kind of the new [train.optimizer] table.
    if let Some(value) = values.remove("train.optimizer") {
        put(values, "train.optimizer.kind", value);
        done.push(moved("train.optimizer", "train.optimizer.kind"));
    }
    for (old, new) in MOVED {
        if let Some(value) = values.remove(*old) {
            put(values, new, value);
            done.push(moved(old, new));
        }
    }
    schedule_numbers(values, &mut done);
    augment_switch(values, &mut done);
    validation_tta(values, &mut done);
    done
}

/// `lr_min_factor`, `lr_step_every`, `lr_step_gamma`: the numbers of the layer's schedule move
/// into `[train.schedule]`, those of another kind are dropped (as they were ignored).
fn schedule_numbers(values: &mut BTreeMap<String, Value>, done: &mut Vec<Renamed>) {
    let kind = values
        .get("train.schedule.kind")
        .and_then(|v| v.as_str().map(str::to_string));
    for (old, new, owner) in SCHEDULE_NUMBERS {
        let Some(value) = values.remove(*old) else {
            continue;
        };
        match &kind {
            Some(kind) if kind != owner => done.push(dropped(
                old,
                format!("a {kind} schedule does not use it (it was ignored before too)"),
            )),
            _ => {
                put(values, new, value);
                done.push(moved(old, new));
            }
        }
    }
}

/// `augment = false`: every augmentation off; `augment = true` is what no key says.
fn augment_switch(values: &mut BTreeMap<String, Value>, done: &mut Vec<Renamed>) {
    if let Some(on) = values.remove("train.augment") {
        if on.to_bool() == Some(false) {
            let off = [
                ("hflip", Value::from(false)),
                ("vflip", Value::from(false)),
                ("rotate90", Value::from(false)),
                ("max_scale", Value::from(1.0)),
                ("brightness", Value::from(0.0)),
                ("contrast", Value::from(0.0)),
                ("rotate_degrees", Value::from(0.0)),
                ("saturation", Value::from(0.0)),
            ];
            let mut new = Vec::new();
            for (key, value) in off {
                let key = format!("train.augment.{key}");
                values.insert(key.clone(), value);
                new.push(key);
            }
            done.push(Renamed {
                old: "train.augment".into(),
                new,
                now: "augment = false is now [train.augment] with hflip, vflip, rotate90 = false, max_scale = 1 and brightness, contrast, rotate_degrees, saturation = 0".into(),
            });
        } else {
            done.push(dropped(
                "train.augment",
                "augmentation is on unless [train.augment] turns it off".into(),
            ));
        }
    }
}

/// `val_tta` and `val_tta_views`: the view count of `[train.tta]` (1 when it was off).
fn validation_tta(values: &mut BTreeMap<String, Value>, done: &mut Vec<Renamed>) {
    let validation = "train.tta.validation_views";
    match (
        values.remove("train.val_tta"),
        values.remove("train.val_tta_views"),
    ) {
        (None, None) => {}
        (on, views) => {
            let (had_on, had_views) = (on.is_some(), views.is_some());
            let off = on.as_ref().and_then(Value::to_bool) == Some(false);
            let views = match views {
                _ if off => Value::from(1i64),
                Some(views) => views,
                None => Value::from(2i64),
            };
            put(values, validation, views);
            done.extend(
                [
                    ("train.val_tta", had_on),
                    ("train.val_tta_views", had_views),
                ]
                .into_iter()
                .filter(|(_, had)| *had)
                .map(|(old, _)| moved(old, validation)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn old_flat_keys_become_the_nested_ones_and_each_is_named() {
        let mut values = layer(&[
            ("train.optimizer", Value::from("adamw")),
            ("train.weight_decay", Value::from(0.01)),
            ("train.lr_schedule", Value::from("cosine")),
            ("train.lr_min_factor", Value::from(0.02)),
            ("train.lr_step_every", Value::from(10)),
            ("train.val_tta", Value::from(true)),
            ("train.overlay_samples", Value::from(2)),
            ("train.epochs", Value::from(3)),
        ]);
        let done = translate(&mut values);
        let keys: Vec<&str> = values.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "mlflow.overlay_samples",
                "train.epochs",
                "train.optimizer.kind",
                "train.optimizer.weight_decay",
                "train.schedule.kind",
                "train.schedule.min_factor",
                "train.tta.validation_views",
            ]
        );
        assert_eq!(values["train.tta.validation_views"].to_i128(), Some(2));
        let step = done
            .iter()
            .find(|r| r.old == "train.lr_step_every")
            .expect("named");
        assert!(step.now.contains("dropped"), "{step:?}");
        let warning = done[0].warning("config file a.toml");
        assert!(
            warning.contains("train.optimizer (from config file a.toml)")
                && warning.contains("write train.optimizer.kind instead"),
            "{warning}"
        );
    }

    #[test]
    fn switches_that_were_off_stay_off() {
        let mut values = layer(&[
            ("train.augment", Value::from(false)),
            ("train.augment_scale", Value::from(1.5)),
            ("train.val_tta", Value::from(false)),
            ("train.val_tta_views", Value::from(8)),
        ]);
        translate(&mut values);
        assert_eq!(values["train.augment.max_scale"].to_f64(), Some(1.0));
        assert_eq!(values["train.augment.hflip"].to_bool(), Some(false));
        assert_eq!(values["train.tta.validation_views"].to_i128(), Some(1));
        // The new key of the same layer wins over the old one.
        let mut both = layer(&[
            ("train.lr_schedule", Value::from("step")),
            ("train.schedule.kind", Value::from("constant")),
        ]);
        translate(&mut both);
        assert_eq!(both["train.schedule.kind"].as_str(), Some("constant"));
    }
}
