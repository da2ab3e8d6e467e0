//! The ONNX export, run by tract (a Rust ONNX runtime), agrees with `Predictor` for every kind
//! of U-Net the configuration can make: probabilities within 1e-4, identical masks.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Distribution, Tensor};
use image::{DynamicImage, GrayImage, RgbImage};
use seg_model::data::{MaskEncoding, Preprocess};
use seg_model::{BackendKind, Checkpoint, CheckpointMeta, Predictor, UNetConfig, UpsampleMode};
use tract_onnx::prelude::*;

/// Gives every 1-D tensor (biases, batch-norm scale, shift and running statistics) random
/// values in [0.5, 1.5]: a fresh model's zeros and ones would hide a mixed-up parameter.
struct Perturb;

impl ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D != 1 {
            return param;
        }
        let (id, tensor, _) = param.consume();
        let noise = Tensor::<D>::random(
            tensor.dims(),
            Distribution::Uniform(0.5, 1.5),
            &tensor.device(),
        );
        Param::initialized(id, noise)
    }
}

/// A small deterministic pseudo-random byte stream.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

fn checkpoint(config: UNetConfig, size: usize, seed: u64) -> Checkpoint {
    let device = BackendKind::default_kind().device();
    device.seed(seed);
    let model = config
        .init(&device)
        .expect("model")
        .map(&mut Perturb)
        .valid();
    let c = config.in_channels;
    let mut preprocess = Preprocess::unnormalized(size, size, c);
    preprocess.mean = (0..c).map(|i| 0.3 + 0.1 * i as f32).collect();
    preprocess.std = (0..c).map(|i| 0.2 + 0.05 * i as f32).collect();
    let encoding = if config.num_classes == 1 {
        MaskEncoding::default()
    } else {
        MaskEncoding::Index {
            num_classes: config.num_classes,
        }
    };
    let meta = CheckpointMeta::new(config, encoding, preprocess, BTreeMap::new(), 1);
    Checkpoint { model, meta }
}

fn image(pixels: &[u8], size: u32, channels: usize) -> DynamicImage {
    if channels == 1 {
        DynamicImage::ImageLuma8(GrayImage::from_raw(size, size, pixels.to_vec()).expect("grey"))
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(size, size, pixels.to_vec()).expect("rgb"))
    }
}

/// Runs the exported bytes on `pixels` (`[n, size, size, channels]`) with tract.
fn run_tract(onnx: &[u8], pixels: Vec<u8>, shape: [usize; 4]) -> (Vec<f32>, Vec<u8>, Vec<usize>) {
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(onnx))
        .expect("tract reads the export")
        .with_input_fact(0, u8::fact(shape).into())
        .expect("input fact")
        .into_optimized()
        .expect("tract optimises the export")
        .into_runnable()
        .expect("runnable");
    let input = tract_ndarray::Array4::from_shape_vec(shape, pixels).expect("shape");
    let out = model
        .run(tvec!(tract_onnx::prelude::Tensor::from(input).into()))
        .expect("tract runs the export");
    let probs = out[0]
        .to_plain_array_view::<f32>()
        .expect("f32 probabilities");
    let dims = probs.shape().to_vec();
    let probs = probs.iter().copied().collect();
    let mask = out[1]
        .to_plain_array_view::<u8>()
        .expect("u8 mask")
        .iter()
        .copied()
        .collect();
    (probs, mask, dims)
}

/// One exported variant with its inputs and `Predictor`'s answers.
struct Case {
    label: String,
    onnx: Vec<u8>,
    pixels: Vec<u8>,
    shape: [usize; 4],
    probabilities: Vec<f32>,
    mask: Vec<u8>,
}

/// Exports `config` and asks `Predictor` for a batch of 2 images at the training size.
fn case(config: UNetConfig, seed: u64) -> Case {
    let label = format!("{config:?}");
    let size = 4usize << config.depth;
    let c = config.in_channels;
    let checkpoint = checkpoint(config, size, seed);
    let onnx = seg_model::onnx::export(&checkpoint).expect("export");
    let pixels = bytes(seed, 2 * size * size * c);
    let pre = checkpoint.meta.preprocess.clone();
    let device = BackendKind::default_kind().device();
    let predictor = Predictor::new(checkpoint, device, 2);
    let per_image = size * size * c;
    let inputs: Vec<f32> = pixels
        .chunks(per_image)
        .flat_map(|p| pre.normalize_hwc(p, 0.0, 1.0))
        .collect();
    let probabilities = predictor.probabilities(inputs, 2).expect("predictor");
    let images: Vec<DynamicImage> = pixels
        .chunks(per_image)
        .map(|p| image(p, size as u32, c))
        .collect();
    let mask = predictor
        .predict(&images)
        .expect("predict")
        .iter()
        .flat_map(|p| p.mask.as_raw().clone())
        .collect();
    Case {
        label,
        onnx,
        pixels,
        shape: [2, size, size, c],
        probabilities,
        mask,
    }
}

/// Every kind of U-Net the configuration can make: both up-samplings, with and without batch
/// norm, binary and multi-class, greyscale and RGB (depth 1-3 and widths 2-4 in turn).
fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut seed = 1;
    for upsample in [UpsampleMode::Transpose, UpsampleMode::Bilinear] {
        for batch_norm in [true, false] {
            for num_classes in [1, 3] {
                for in_channels in [1, 3] {
                    let config = UNetConfig::new()
                        .with_in_channels(in_channels)
                        .with_num_classes(num_classes)
                        .with_base_channels(2 + seed as usize % 3)
                        .with_depth(1 + seed as usize % 3)
                        .with_batch_norm(batch_norm)
                        .with_upsample(upsample);
                    out.push(case(config, seed));
                    seed += 1;
                }
            }
        }
    }
    out
}

#[test]
fn every_unet_variant_agrees_with_the_predictor_in_tract() {
    let cases = cases();
    assert_eq!(cases.len(), 16);
    for c in cases {
        let (probs, mask, dims) = run_tract(&c.onnx, c.pixels.clone(), c.shape);
        assert_eq!(dims[0], c.shape[0], "{}", c.label);
        assert_eq!(dims[2..], c.shape[1..3], "{}", c.label);
        let worst = probs
            .iter()
            .zip(&c.probabilities)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert_eq!(probs.len(), c.probabilities.len(), "{}", c.label);
        assert!(
            worst <= 1e-4,
            "{}: probabilities differ by {worst}",
            c.label
        );
        assert_eq!(mask, c.mask, "{}: masks differ", c.label);
    }
}

/// The Python of the pinned venv with onnxruntime (`MODEL_TEST_PYTHON`, else
/// `scripts/model-python.sh` installs it once).
fn onnxruntime_python() -> String {
    if let Ok(p) = std::env::var("MODEL_TEST_PYTHON") {
        return p;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/model-python.sh");
    let out = std::process::Command::new(script)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn every_unet_variant_agrees_with_the_predictor_in_onnxruntime() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases = cases();
    let mut index = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let name = |ext: &str| dir.path().join(format!("case{i}.{ext}"));
        std::fs::write(name("onnx"), &c.onnx).expect("write");
        std::fs::write(name("input"), &c.pixels).expect("write");
        let probs: Vec<u8> = c
            .probabilities
            .iter()
            .flat_map(|p| p.to_le_bytes())
            .collect();
        std::fs::write(name("probabilities"), probs).expect("write");
        std::fs::write(name("mask"), &c.mask).expect("write");
        index.push(
            serde_json::json!({ "name": format!("case{i}"), "label": c.label, "shape": c.shape }),
        );
    }
    std::fs::write(
        dir.path().join("cases.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("write");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/onnxruntime_check.py"
    );
    let out = std::process::Command::new(onnxruntime_python())
        .arg(script)
        .arg(dir.path())
        .output()
        .expect("run the onnxruntime check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "onnxruntime disagrees:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let facts: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a JSON line")).expect("JSON");
    println!("onnxruntime: {facts}");
    assert_eq!(facts["cases"], 16, "{facts}");
    assert!(facts["worst"].as_f64().expect("worst") <= 1e-4, "{facts}");
}

#[test]
fn any_batch_and_any_size_that_divides_by_two_to_the_depth() {
    let config = UNetConfig::new().with_base_channels(3).with_depth(2);
    let checkpoint = checkpoint(config, 16, 42);
    let onnx = seg_model::onnx::export(&checkpoint).expect("export");
    for shape in [[1, 8, 12, 3], [3, 20, 4, 3]] {
        let n: usize = shape.iter().product();
        let (probs, mask, dims) = run_tract(&onnx, bytes(7, n), shape);
        assert_eq!(dims, [shape[0], 2, shape[1], shape[2]]);
        assert_eq!(mask.len(), shape[0] * shape[1] * shape[2]);
        assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)));
    }
}

#[test]
fn the_export_names_its_inputs_outputs_and_facts() {
    let checkpoint = checkpoint(UNetConfig::new().with_base_channels(2).with_depth(1), 8, 3);
    let onnx = seg_model::onnx::export(&checkpoint).expect("export");
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut std::io::Cursor::new(&onnx))
        .expect("protobuf");
    let graph = proto.graph.expect("graph");
    let names =
        |v: &[tract_onnx::pb::ValueInfoProto]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&graph.input), [seg_model::onnx::INPUT]);
    assert_eq!(
        names(&graph.output),
        [seg_model::onnx::PROBABILITIES, seg_model::onnx::MASK]
    );
    assert_eq!(proto.opset_import[0].version, seg_model::onnx::OPSET);
    let meta: BTreeMap<_, _> = proto
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(meta["seg_model.size_multiple"], "2");
    assert!(meta["seg_model.classes"].contains("foreground"), "{meta:?}");
}
