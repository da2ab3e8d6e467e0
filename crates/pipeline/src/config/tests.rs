//! Loading, layering and checking the configuration.

use super::sources::DEFAULTS;
use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

#[test]
fn defaults_mirror_the_original_config() {
    let c = load_with_env(None, Flags::new(), vars(&[]))
        .expect("defaults load")
        .config;
    assert_eq!(c.mlflow.tracking_uri, "http://localhost:5000");
    assert_eq!(c.mlflow.experiment, "Image Segmentation");
    assert_eq!(c.lakefs.endpoint, "http://localhost:8003");
    assert_eq!(c.lakefs.access_key_id, "AKIAIOSFOLKFSSAMPLES");
    assert_eq!(c.lakefs.repository, "image-segmentation-local-repo");
    assert_eq!(c.lakefs.images_path, "data/images");
    assert_eq!(c.train.learning_rate, 0.001);
    assert_eq!(c.train.batch_size, 16);
    assert_eq!(c.train.epochs, 10);
    assert_eq!(c.train.image_size, seg_model::ImageSize::square(64));
    assert_eq!(c.register.model_name, "image_segmentation_model");
    assert_eq!(c.retry.max_total, std::time::Duration::from_secs(120));
}

#[test]
fn layers_apply_in_order_and_errors_name_key_value_and_source() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("run.toml");
    std::fs::write(&file, "[train]\nepochs = 3\nbatch_size = 4\n").expect("write");
    let mut flags = Flags::new();
    flags.set("train.image_size", Some(32));
    let loaded =
        load_with_env(Some(&file), flags, vars(&[("SEG_TRAIN__BATCH_SIZE", "8")])).expect("load");
    assert_eq!(loaded.config.train.epochs, 3, "file over defaults");
    assert_eq!(loaded.config.train.batch_size, 8, "environment over file");
    assert_eq!(loaded.config.train.image_size.width, 32, "flags over all");
    assert!(loaded.source_of("train.epochs").contains("run.toml"));
    assert_eq!(
        loaded.source_of("train.batch_size"),
        "environment variable SEG_TRAIN__BATCH_SIZE"
    );
    assert_eq!(loaded.source_of("train.image_size"), "command-line flag");

    let text = load_with_env(
        Some(&file),
        Flags::new(),
        vars(&[("SEG_TRAIN__BATCH_SIZE", "0")]),
    )
    .expect_err("zero batch")
    .to_string();
    assert!(
        text.contains("train.batch_size = 0")
            && text.contains("SEG_TRAIN__BATCH_SIZE")
            && text.contains(">= 1"),
        "{text}"
    );
    let text = load_with_env(None, Flags::new(), vars(&[("SEG_TRAIN__EPOCHS", "many")]))
        .expect_err("not a number")
        .to_string();
    assert!(
        text.contains("many") && text.contains("SEG_TRAIN__EPOCHS"),
        "{text}"
    );

    let mut flags = Flags::new();
    flags.set("train.learning_rate", Some(-1.0));
    let text = load_with_env(None, flags, vars(&[]))
        .expect_err("negative rate")
        .to_string();
    assert!(
        text.contains("train.learning_rate = -1") && text.contains("command-line flag"),
        "{text}"
    );
    let mut flags = Flags::new();
    flags.set("train.backend", Some("cuda-magic"));
    let text = load_with_env(None, flags, vars(&[]))
        .expect_err("backend")
        .to_string();
    assert!(
        text.contains("train.backend") && text.contains("flex"),
        "{text}"
    );

    std::fs::write(&file, "[train]\nepoch = 3\n").expect("write");
    let text = load_with_env(Some(&file), Flags::new(), vars(&[]))
        .expect_err("unknown key")
        .to_string();
    assert!(
        text.contains("epoch") && text.contains("run.toml"),
        "{text}"
    );
    std::fs::write(&file, "[data]\nmask_encoding = \"rle\"\n").expect("write");
    let text = load_with_env(Some(&file), Flags::new(), vars(&[]))
        .expect_err("encoding")
        .to_string();
    assert!(text.contains("rle") && text.contains("binary"), "{text}");
    std::fs::write(&file, "this is not toml [").expect("write");
    let text = load_with_env(Some(&file), Flags::new(), vars(&[]))
        .expect_err("not toml")
        .to_string();
    assert!(text.contains("not valid TOML"), "{text}");
    let text = load_with_env(
        Some(&dir.path().join("missing.toml")),
        Flags::new(),
        vars(&[]),
    )
    .expect_err("missing")
    .to_string();
    assert!(text.contains("missing.toml"), "{text}");
}

#[test]
fn tool_variables_set_their_keys_and_secrets_are_redacted() {
    let loaded = load_with_env(
        None,
        Flags::new(),
        vars(&[
            ("LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY", "s3cr3t-from-env"),
            ("MLFLOW_TRACKING_TOKEN", "12345"),
            ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999"),
        ]),
    )
    .expect("load");
    let c = &loaded.config;
    assert_eq!(c.lakefs.secret_access_key, "s3cr3t-from-env");
    assert_eq!(
        c.mlflow.token.as_deref(),
        Some("12345"),
        "a numeric token stays text"
    );
    assert_eq!(c.mlflow.tracking_uri, "http://127.0.0.1:5999");
    assert_eq!(
        loaded.source_of("mlflow.tracking_uri"),
        "environment variable MLFLOW_TRACKING_URI"
    );
    let shown = c.redacted_toml().expect("render");
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("12345"),
        "{shown}"
    );
    assert!(shown.contains(REDACTED));
}

#[test]
fn unknown_enum_values_are_refused_naming_key_value_source_and_choices() {
    let text = load_with_env(
        None,
        Flags::new(),
        vars(&[("SEG_MODEL__UPSAMPLE", "bilinar")]),
    )
    .expect_err("a misspelt up-sampling mode")
    .to_string();
    for want in [
        "model.upsample",
        "bilinar",
        "environment variable SEG_MODEL__UPSAMPLE",
        "transpose",
        "bilinear",
    ] {
        assert!(text.contains(want), "{want:?} missing from {text}");
    }
    for (var, value, key, choice) in [
        (
            "SEG_TRAIN__SCHEDULE__KIND",
            "cosin",
            "train.schedule.kind",
            "cosine",
        ),
        (
            "SEG_TRAIN__SELECTION_METRIC",
            "iou",
            "train.selection_metric",
            "val_iou",
        ),
        (
            "SEG_DATA__MASK_ENCODING",
            "rgb",
            "data.mask_encoding",
            "palette",
        ),
        ("SEG_INFER__BACKEND", "gpu", "infer.backend", "flex"),
    ] {
        let text = load_with_env(None, Flags::new(), vars(&[(var, value)]))
            .expect_err(var)
            .to_string();
        assert!(
            text.contains(key)
                && text.contains(value)
                && text.contains(var)
                && text.contains(choice),
            "{text}"
        );
    }
}

#[test]
fn seg_model_checks_are_reported_under_their_keys() {
    for (var, value, key) in [
        (
            "SEG_TRAIN__SCHEDULE__MIN_FACTOR",
            "2.0",
            "train.schedule.min_factor",
        ),
        ("SEG_MODEL__DEPTH", "9", "model.depth"),
        ("SEG_TRAIN__IMAGE_SIZE", "60", "train.image_size"),
        ("SEG_DATA__VALID_FRACTION", "1.5", "data.valid_fraction"),
        ("SEG_DATA__SYNTHETIC_COUNT", "2", "data.synthetic_count"),
        ("SEG_TRAIN__EPOCHS", "0", "train.epochs"),
        ("SEG_TRAIN__EMA_DECAY", "1.0", "train.ema_decay"),
        (
            "SEG_TRAIN__AUGMENT__ROTATE_DEGREES",
            "200",
            "train.augment.rotate_degrees",
        ),
        (
            "SEG_TRAIN__AUGMENT__MAX_SCALE",
            "0.5",
            "train.augment.max_scale",
        ),
        ("SEG_TRAIN__AUGMENT__HUE", "0.7", "train.augment.hue"),
        (
            "SEG_TRAIN__OPTIMIZER__WEIGHT_DECAY",
            "-1",
            "train.optimizer.weight_decay",
        ),
        ("SEG_TRAIN__LOSS__CE_WEIGHT", "-1", "train.loss.ce_weight"),
        (
            "SEG_TRAIN__LOSS__DICE_WEIGHT",
            "-0.5",
            "train.loss.dice_weight",
        ),
        // An old key is checked under its new name, and its variable is still named.
        (
            "SEG_TRAIN__LR_MIN_FACTOR",
            "2.0",
            "train.schedule.min_factor",
        ),
        ("SEG_TRAIN__AUGMENT_SCALE", "0.5", "train.augment.max_scale"),
        ("SEG_INFER__TTA_VIEWS", "6", "infer.tta_views"),
    ] {
        let text = load_with_env(None, Flags::new(), vars(&[(var, value)]))
            .expect_err(var)
            .to_string();
        assert!(
            text.contains(&format!("{key} = ")) && text.contains(var),
            "{var}: {text}"
        );
    }
    let jpeg = vars(&[("SEG_TRAIN__AUGMENT__JPEG_QUALITY", "30")]);
    let loaded = load_with_env(None, Flags::new(), jpeg).expect("an integer from a variable");
    assert_eq!(loaded.config.train.augment.jpeg_quality, 30);
    let loaded = load_with_env(None, Flags::new(), vars(&[])).expect("defaults");
    assert_eq!(loaded.source_of("train.epochs"), DEFAULTS);
    // The defaults are seg-model's own: the file restates them, and nothing else.
    assert_eq!(
        loaded.config.train,
        seg_model::TrainConfig {
            epochs: 10,
            batch_size: 16,
            image_size: seg_model::ImageSize::square(64),
            ..seg_model::TrainConfig::default()
        }
    );
    assert_eq!(loaded.config.train.selection_metric, seg_model::Metric::Iou);
    assert_eq!(loaded.config.infer.tta().expect("tta"), seg_model::Tta::Off);
    let eight = vars(&[("SEG_INFER__TTA", "true"), ("SEG_INFER__TTA_VIEWS", "8")]);
    let loaded = load_with_env(None, Flags::new(), eight).expect("8 views");
    assert_eq!(
        loaded.config.infer.tta().expect("tta"),
        seg_model::Tta::Dihedral
    );
    assert_eq!(
        loaded.config.model.upsample,
        seg_model::UpsampleMode::Transpose
    );
}

#[test]
fn a_config_file_that_is_not_toml_names_line_and_column() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[train]\nepochs = 3\nbatch_size = = 4\n").expect("write");
    let text = load_with_env(Some(&file), Flags::new(), vars(&[]))
        .expect_err("not toml")
        .to_string();
    assert!(text.contains("line 3"), "{text}");
}

#[test]
fn folders_and_branches_are_checked_before_any_call() {
    for (var, value, key) in [
        (
            "SEG_LAKEFS__IMAGES_PATH",
            "../../../../tmp/escape",
            "lakefs.images_path",
        ),
        ("SEG_LAKEFS__MASKS_PATH", "/abs/masks", "lakefs.masks_path"),
        (
            "SEG_LAKEFS__MODELS_PATH",
            "models/./x",
            "lakefs.models_path",
        ),
        (
            "SEG_INFER__PREDICTIONS_PATH",
            "a\\b",
            "infer.predictions_path",
        ),
        ("SEG_LAKEFS__BRANCH", "feature/x", "lakefs.branch"),
        ("SEG_LAKEFS__BRANCH", "-x", "lakefs.branch"),
    ] {
        let text = load_with_env(None, Flags::new(), vars(&[(var, value)]))
            .expect_err(var)
            .to_string();
        assert!(
            text.contains(&format!("{key} = ")) && text.contains(var),
            "{var}={value}: {text}"
        );
    }
    let ok = load_with_env(
        None,
        Flags::new(),
        vars(&[("SEG_LAKEFS__BRANCH", "dev_2-x")]),
    );
    assert!(ok.is_ok(), "a valid branch name");
}

#[test]
fn credentials_in_the_tracking_uri_move_out_of_it() {
    let loaded = load_with_env(
        None,
        Flags::new(),
        vars(&[(
            "MLFLOW_TRACKING_URI",
            "http://alice:s%40cret@127.0.0.1:5999/",
        )]),
    )
    .expect("load");
    let m = &loaded.config.mlflow;
    assert_eq!(m.tracking_uri, "http://127.0.0.1:5999");
    assert_eq!(m.username.as_deref(), Some("alice"));
    assert_eq!(m.password.as_deref(), Some("s@cret"));
    let shown = loaded.config.redacted_toml().expect("render");
    assert!(
        !shown.contains("s@cret") && !shown.contains("s%40cret"),
        "{shown}"
    );
}

#[test]
fn a_plus_in_a_url_password_is_a_plus_and_percent_escapes_are_decoded() {
    let loaded = load_with_env(
        None,
        Flags::new(),
        vars(&[(
            "MLFLOW_TRACKING_URI",
            "http://alice:a+b%2Bc%20d@127.0.0.1:5999",
        )]),
    )
    .expect("load");
    assert_eq!(loaded.config.mlflow.password.as_deref(), Some("a+b+c d"));
}

#[test]
fn credentials_in_the_lakefs_endpoint_move_out_of_it_and_are_never_shown() {
    let loaded = load_with_env(
        None,
        Flags::new(),
        vars(&[(
            "LAKECTL_SERVER_ENDPOINT_URL",
            "http://AKIAURLKEY:url+se%2Fcret@127.0.0.1:8000/",
        )]),
    )
    .expect("load");
    let l = &loaded.config.lakefs;
    assert_eq!(l.endpoint, "http://127.0.0.1:8000");
    assert_eq!(l.access_key_id, "AKIAURLKEY");
    assert_eq!(l.secret_access_key, "url+se/cret");
    let shown = loaded.config.redacted_toml().expect("render");
    assert!(
        !shown.contains("se/cret") && !shown.contains("se%2Fcret"),
        "{shown}"
    );
    // A key set elsewhere that differs from the URL's is refused, the secret not shown.
    let err = load_with_env(
        None,
        Flags::new(),
        vars(&[
            (
                "LAKECTL_SERVER_ENDPOINT_URL",
                "http://AKIAURLKEY:topsecret@127.0.0.1:8000",
            ),
            ("LAKECTL_CREDENTIALS_ACCESS_KEY_ID", "AKIAOTHER"),
        ]),
    )
    .expect_err("two keys");
    let text = err.to_string();
    assert!(
        text.contains("lakefs.endpoint = http://***@127.0.0.1:8000")
            && text.contains("LAKECTL_CREDENTIALS_ACCESS_KEY_ID")
            && !text.contains("topsecret"),
        "{text}"
    );
}

#[test]
fn a_storage_namespace_ending_in_a_slash_is_a_prefix_for_every_repository() {
    let namespace = |value: &str| {
        load_with_env(
            None,
            Flags::new(),
            vars(&[
                ("SEG_LAKEFS__REPOSITORY", "polyps"),
                ("SEG_LAKEFS__STORAGE_NAMESPACE", value),
            ]),
        )
        .expect("load")
        .config
        .storage_namespace()
    };
    assert_eq!(namespace(""), "local://polyps");
    assert_eq!(namespace("s3://lakefs/"), "s3://lakefs/polyps");
    assert_eq!(namespace("s3://lakefs/team/"), "s3://lakefs/team/polyps");
    assert_eq!(namespace("s3://lakefs/exact"), "s3://lakefs/exact");
}

#[test]
fn a_flat_train_table_of_the_last_release_loads_as_the_nested_one_with_a_warning_per_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let old = dir.path().join("old.toml");
    std::fs::write(
        &old,
        "[train]\nimage_size = 128\nbatch_size = 8\nepochs = 42\noptimizer = \"adamw\"\n\
         weight_decay = 0.0001\nwarmup_epochs = 2\nlr_schedule = \"cosine\"\n\
         lr_min_factor = 0.02\nlr_step_every = 10\nlr_step_gamma = 0.5\n\
         selection_metric = \"val_dice\"\ntime_budget_secs = 1740.0\nema_decay = 0.995\nnegative_fraction = 0.2\n\
         augment = true\naugment_rotate = 20.0\naugment_saturation = 0.15\n\
         val_tta = true\nfinal_tta_views = 8\noverlay_samples = 4\n\
         [model]\ndepth = 5\n[infer]\ntta = true\ntta_views = 8\n",
    )
    .expect("write");
    let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/kvasir.toml");
    // The recipe, less the keys the last release did not have.
    let since = [
        ("SEG_TRAIN__AUGMENT__HUE", "0"),
        ("SEG_TRAIN__AUGMENT__GAMMA", "0"),
    ];
    let new = load_with_env(Some(&recipe), Flags::new(), vars(&since)).expect("the recipe");
    assert!(new.warnings.is_empty(), "{:?}", new.warnings);
    let translated = load_with_env(Some(&old), Flags::new(), vars(&[])).expect("old keys");
    assert_eq!(translated.config.train, new.config.train);
    assert_eq!(translated.config.mlflow.overlay_samples, 4);
    assert_eq!(translated.warnings.len(), 12, "{:#?}", translated.warnings);
    for warning in &translated.warnings {
        assert!(
            warning.contains("old.toml") && warning.contains("next release"),
            "{warning}"
        );
    }
    assert!(
        translated
            .warnings
            .iter()
            .any(|w| w.starts_with("train.lr_min_factor")
                && w.contains("write train.schedule.min_factor instead"))
    );
    // The new key is where a value is looked up, and its source is still the file.
    assert!(
        translated
            .source_of("train.schedule.min_factor")
            .contains("old.toml")
    );
}

#[test]
fn a_view_count_is_refused_when_read_naming_key_and_variable() {
    for (var, key) in [
        (
            "SEG_TRAIN__TTA__VALIDATION_VIEWS",
            "train.tta.validation_views",
        ),
        ("SEG_TRAIN__TTA__FINAL_VIEWS", "train.tta.final_views"),
        ("SEG_TRAIN__VAL_TTA_VIEWS", "train.tta.validation_views"),
    ] {
        let text = load_with_env(None, Flags::new(), vars(&[(var, "3")]))
            .expect_err(var)
            .to_string();
        assert!(
            text.contains(key) && text.contains(var) && text.contains("8 (mirrors"),
            "{var}: {text}"
        );
    }
}
