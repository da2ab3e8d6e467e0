//! Every value with a range or a fixed set of choices, checked once by the crate that owns it
//! (seg-model for the model, training and data settings, rest-transport for retries, this
//! crate for servers, names and paths), and reported under its configuration key.

use lakefs_client::NameKind;
use seg_model::SegError;
use seg_model::data::Split;

use super::{ConfigError, Criterion, Loaded};

/// seg-model's names of model settings and their keys.
const MODEL_KEYS: &[(&str, &str)] = &[
    ("base_channels", "model.base_channels"),
    ("depth", "model.depth"),
    ("image_size", "train.image_size"),
];

/// seg-model's names of data settings and their keys.
const DATA_KEYS: &[(&str, &str)] = &[
    ("num_classes", "data.num_classes"),
    ("palette", "data.palette"),
    ("valid_fraction", "data.valid_fraction"),
];

/// seg-model's names of synthetic-data settings and their keys.
const SYNTHETIC_KEYS: &[(&str, &str)] = &[
    ("count", "data.synthetic_count"),
    ("width", "data.synthetic_size"),
    ("num_classes", "data.synthetic_classes"),
];

/// Largest training image side.
const MAX_IMAGE_SIZE: usize = 4096;

/// Checks the loaded configuration.
pub(super) fn check(loaded: &Loaded) -> Result<(), ConfigError> {
    let c = &loaded.config;
    let owned = |keys: &'static [(&'static str, &'static str)]| {
        move |e: SegError| from_seg_model(loaded, e, keys)
    };
    // seg-model names a training setting by its key in [train].
    c.train.validate().map_err(|e| match e {
        SegError::InvalidValue {
            field,
            value,
            allowed,
        } => invalid(loaded, &format!("train.{field}"), value, &allowed),
        other => ConfigError::Parse(other.to_string()),
    })?;
    let unet = c.model_config(3, 2);
    unet.validate().map_err(owned(MODEL_KEYS))?;
    let size = c.train.image_size;
    unet.check_input_size(size.height, size.width)
        .map_err(owned(MODEL_KEYS))?;
    if size.height.max(size.width) > MAX_IMAGE_SIZE {
        return Err(invalid(
            loaded,
            "train.image_size",
            format!("{}x{}", size.height, size.width),
            &format!("at most {MAX_IMAGE_SIZE} each way"),
        ));
    }
    c.mask_encoding().map_err(owned(DATA_KEYS))?;
    Split::check_fraction(c.data.valid_fraction).map_err(owned(DATA_KEYS))?;
    c.synthetic().validate().map_err(owned(SYNTHETIC_KEYS))?;
    for (i, text) in c.register.criteria.iter().enumerate() {
        Criterion::parse(text).map_err(|e| {
            invalid(
                loaded,
                &format!("register.criteria[{i}]"),
                format!("{text:?}"),
                &e,
            )
        })?;
    }
    check_services(loaded)?;
    check_infer(loaded)?;
    check_gate(loaded)?;
    for (key, value) in [
        ("http.connect_timeout", c.http.connect_timeout),
        ("http.request_timeout", c.http.request_timeout),
    ] {
        if value.is_zero() {
            return Err(invalid(
                loaded,
                key,
                "0s".into(),
                "a duration above 0, e.g. \"5s\"",
            ));
        }
    }
    c.retry
        .validate()
        .map_err(|e| invalid(loaded, "retry", format!("{:?}", c.retry), &e))
}

/// Why `path` cannot be a folder in the repository, if it cannot: relative, `/`-separated,
/// without `.` or `..` segments, backslashes or control characters.
fn folder_problem(path: &str) -> Option<&'static str> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Some("a folder in the repository, e.g. \"data/images\"");
    }
    if path.starts_with('/') {
        return Some("a relative folder in the repository (no leading '/')");
    }
    if trimmed
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Some("a folder in the repository without '.', '..' or empty segments");
    }
    if path.chars().any(|c| c == '\\' || c.is_control()) {
        return Some("a folder in the repository without backslashes or control characters");
    }
    None
}

/// The repository, branch and folder names, and the two server URLs.
fn check_services(loaded: &Loaded) -> Result<(), ConfigError> {
    let c = &loaded.config;
    for (key, name, kind) in [
        ("lakefs.branch", &c.lakefs.branch, NameKind::Branch),
        (
            "lakefs.repository",
            &c.lakefs.repository,
            NameKind::Repository,
        ),
    ] {
        if !kind.accepts(name) {
            let allowed = format!("a lakeFS {} name: {}", kind.word(), kind.rule());
            return Err(invalid(loaded, key, format!("{name:?}"), &allowed));
        }
    }
    for (key, path) in [
        ("lakefs.images_path", &c.lakefs.images_path),
        ("lakefs.masks_path", &c.lakefs.masks_path),
        ("lakefs.models_path", &c.lakefs.models_path),
        ("lakefs.holdout_path", &c.lakefs.holdout_path),
        ("infer.predictions_path", &c.infer.predictions_path),
    ] {
        if let Some(allowed) = folder_problem(path) {
            return Err(invalid(loaded, key, format!("{path:?}"), allowed));
        }
    }
    check_names(loaded)?;
    if !(0.0..0.5).contains(&c.data.holdout_fraction) {
        return Err(invalid(
            loaded,
            "data.holdout_fraction",
            c.data.holdout_fraction.to_string(),
            "0 (none) up to below 0.5 (e.g. 0.1)",
        ));
    }
    if c.data.max_image_pixels == 0 {
        return Err(invalid(
            loaded,
            "data.max_image_pixels",
            "0".into(),
            "at least 1 (width x height of the largest image to decode)",
        ));
    }
    for (key, url) in [
        ("mlflow.tracking_uri", &c.mlflow.tracking_uri),
        ("lakefs.endpoint", &c.lakefs.endpoint),
    ] {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                loaded,
                key,
                format!("{url:?}"),
                "must be an http:// or https:// URL",
            ));
        }
    }
    Ok(())
}

/// The experiment's and the registered model's names.
fn check_names(loaded: &Loaded) -> Result<(), ConfigError> {
    let c = &loaded.config;
    for (key, name) in [
        ("mlflow.experiment", &c.mlflow.experiment),
        ("register.model_name", &c.register.model_name),
    ] {
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            return Err(invalid(
                loaded,
                key,
                format!("{name:?}"),
                "a name that is not empty (and has no control characters)",
            ));
        }
    }
    // The model's name goes into MLflow search filters (`name='...'`), which have no escape.
    let model = &c.register.model_name;
    if model.contains(['\'', '"', '`']) {
        return Err(invalid(
            loaded,
            "register.model_name",
            format!("{model:?}"),
            "a name without quotes or backticks (MLflow's search filters cannot hold them)",
        ));
    }
    Ok(())
}

/// `register.evaluation_data` and `register.gate.*`.
fn check_gate(loaded: &Loaded) -> Result<(), ConfigError> {
    let r = &loaded.config.register;
    if !r.evaluation_data.is_empty() {
        let problem = match r.evaluation_data.parse::<lakefs_client::LakeFsUri>() {
            Ok(uri) if uri.path.is_empty() => Some(
                "a folder under the ref (lakefs://repo/ref/eval/), not the whole ref".to_string(),
            ),
            Ok(_) => None,
            Err(e) => Some(format!(
                "a lakeFS folder with images/ and masks/ (lakefs://repo/ref/eval/): {e}"
            )),
        };
        if let Some(allowed) = problem {
            return Err(invalid(
                loaded,
                "register.evaluation_data",
                format!("{:?}", r.evaluation_data),
                &allowed,
            ));
        }
    }
    let g = &r.gate;
    for (key, value) in [
        ("register.gate.min_absolute_change", g.min_absolute_change),
        ("register.gate.min_relative_change", g.min_relative_change),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            return Err(invalid(loaded, key, value.to_string(), "a number >= 0"));
        }
    }
    if !(g.confidence > 0.0 && g.confidence < 1.0) {
        return Err(invalid(
            loaded,
            "register.gate.confidence",
            g.confidence.to_string(),
            "between 0 and 1 (0.95 for 95 %)",
        ));
    }
    if !(100..=1_000_000).contains(&g.resamples) {
        return Err(invalid(
            loaded,
            "register.gate.resamples",
            g.resamples.to_string(),
            "100 to 1000000 (10000 is usual)",
        ));
    }
    Ok(())
}

/// `infer.*` values.
fn check_infer(loaded: &Loaded) -> Result<(), ConfigError> {
    let i = &loaded.config.infer;
    if i.batch_size == 0 {
        return Err(invalid(
            loaded,
            "infer.batch_size",
            "0".into(),
            "must be >= 1",
        ));
    }
    i.tta()
        .map_err(|e| from_seg_model(loaded, e, &[("tta_views", "infer.tta_views")]))?;
    Ok(())
}

fn invalid(loaded: &Loaded, key: &str, value: String, allowed: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value,
        origin: loaded.source_of(key),
        allowed: allowed.to_string(),
    }
}

/// A seg-model check's error under the configuration key of the setting it names.
fn from_seg_model(loaded: &Loaded, e: SegError, keys: &[(&str, &str)]) -> ConfigError {
    match e {
        SegError::InvalidValue {
            field,
            value,
            allowed,
        } => match keys.iter().find(|(f, _)| *f == field) {
            Some((_, key)) => invalid(loaded, key, value, &allowed),
            None => ConfigError::Parse(format!("{field} = {value}: {allowed}")),
        },
        other => ConfigError::Parse(other.to_string()),
    }
}
