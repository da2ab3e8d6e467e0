//! Checkpoints that do not fit are refused with a clear error, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use seg_model::data::{MaskEncoding, Preprocess};
use seg_model::{BackendKind, CheckpointMeta, UNetConfig, checkpoint};

fn saved(dir: &Path) -> (std::path::PathBuf, checkpoint::SavedCheckpoint) {
    let device = BackendKind::default_kind().device();
    let config = UNetConfig::new().with_base_channels(4).with_depth(2);
    let model = config.init(&device).expect("init");
    let meta = CheckpointMeta::new(
        config,
        MaskEncoding::default(),
        Preprocess::unnormalized(32, 32, 3),
        BTreeMap::from([("valid_mean_iou".to_string(), 0.5)]),
        3,
    );
    let path = dir.join("model.segm");
    let info = checkpoint::save(&path, model, meta).expect("save");
    (path, info)
}

/// Rewrites the metadata JSON of a checkpoint file with `edit`, keeping the weights.
fn rewrite_meta(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).expect("read");
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")) as usize;
    let mut meta: serde_json::Value = serde_json::from_slice(&bytes[20..20 + len]).expect("json");
    edit(&mut meta);
    let json = serde_json::to_vec(&meta).expect("json");
    let mut out = bytes[..12].to_vec();
    out.extend((json.len() as u64).to_le_bytes());
    out.extend(json);
    out.extend(&bytes[20 + len..]);
    std::fs::write(path, out).expect("write");
}

#[test]
fn round_trip_keeps_metadata() {
    let dir = tempfile::tempdir().expect("tmp");
    let (path, info) = saved(dir.path());
    let device = BackendKind::default_kind().device();
    let ck = checkpoint::load_verified(&path, &info.sha256, &device).expect("load");
    assert_eq!(ck.meta.epoch, 3);
    assert_eq!(
        ck.meta.burn_version,
        burn_in_lockfile(),
        "the burn that is linked"
    );
    assert_eq!(ck.meta.metrics["valid_mean_iou"], 0.5);
    assert_eq!(checkpoint::read_meta(&path).expect("meta"), ck.meta);
}

#[test]
fn tampered_weights_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let (path, info) = saved(dir.path());
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 10;
    bytes[last] ^= 0x55;
    std::fs::write(&path, bytes).expect("write");
    let device = BackendKind::default_kind().device();
    let msg = checkpoint::load(&path, &device)
        .expect_err("tampered")
        .to_string();
    assert!(msg.contains("sha256") && msg.contains("modified"), "{msg}");
    let msg = checkpoint::load_verified(&path, &info.sha256, &device)
        .expect_err("hash differs")
        .to_string();
    assert!(msg.contains("does not match the expected"), "{msg}");
}

#[test]
fn mismatched_architecture_and_versions_are_refused() {
    let device = BackendKind::default_kind().device();
    let dir = tempfile::tempdir().expect("tmp");
    let (path, _) = saved(dir.path());
    rewrite_meta(&path, |m| m["model"]["depth"] = 3.into());
    let msg = checkpoint::load(&path, &device)
        .expect_err("depth 3 vs 2")
        .to_string();
    assert!(
        msg.contains("do not fit the recorded architecture"),
        "{msg}"
    );

    let (path, _) = saved(dir.path());
    rewrite_meta(&path, |m| m["model"]["base_channels"] = 8.into());
    let msg = checkpoint::load(&path, &device)
        .expect_err("width")
        .to_string();
    assert!(msg.contains("do not fit"), "{msg}");

    let (path, _) = saved(dir.path());
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[8] = 9;
    std::fs::write(&path, &bytes).expect("write");
    let msg = checkpoint::load(&path, &device)
        .expect_err("version")
        .to_string();
    assert!(msg.contains("format version 9"), "{msg}");

    std::fs::write(&path, b"not a model at all").expect("write");
    let msg = checkpoint::load(&path, &device)
        .expect_err("magic")
        .to_string();
    assert!(msg.contains("not a seg-model checkpoint"), "{msg}");
}

/// The version of the `burn` package the workspace's Cargo.lock resolved.
fn burn_in_lockfile() -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
        .expect("read the workspace's Cargo.lock");
    let at = lock
        .find("\nname = \"burn\"\n")
        .expect("burn in Cargo.lock");
    lock[at..]
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("burn's version line")
        .to_string()
}
