//! ONNX export of a checkpoint: the U-Net with the checkpoint's preprocessing and decision
//! inside the graph, so any ONNX runtime (onnxruntime, tract, MLflow's `onnx` flavor) gives the
//! same probabilities and masks as [`crate::Predictor`] without knowing seg-model.
//!
//! - Input [`INPUT`]: `uint8 [batch, height, width, channels]` (NHWC, RGB or greyscale), any
//!   height and width that are multiples of 2^depth, any batch.
//! - Output [`PROBABILITIES`]: `float32 [batch, classes, height, width]` (binary models: two
//!   channels, background and foreground, as `Predictor::probabilities`).
//! - Output [`MASK`]: `uint8 [batch, height, width]`, the class id per pixel (binary: foreground
//!   probability >= the checkpoint's threshold; multi-class: the first most probable class).
//!
//! The images are not resized: at the training size the results equal `Predictor`'s; callers
//! that want `infer`'s resizing resize before and after.

mod graph;

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::Tensor;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{Message, ModelProto, OperatorSetIdProto, StringStringEntryProto};

use crate::checkpoint::{Checkpoint, CheckpointMeta};
use crate::error::{Result, SegError};
use crate::model::{ConvBlock, UNet, UpBlock};
use graph::{Dim, Graph, float, int, ints, string, value_info};

/// Name of the graph's input (uint8 NHWC images).
pub const INPUT: &str = "image";
/// Name of the graph's class-probability output (float32 NCHW).
pub const PROBABILITIES: &str = "probabilities";
/// Name of the graph's class-id mask output (uint8 NHW).
pub const MASK: &str = "mask";
/// The ONNX operator set the graph uses.
pub const OPSET: i64 = 17;
/// The ONNX IR version written (the one that goes with opset 17).
pub const IR_VERSION: i64 = 8;

/// The checkpoint as an ONNX model (serialised protobuf bytes).
pub fn export(checkpoint: &Checkpoint) -> Result<Vec<u8>> {
    let model = model_proto(&checkpoint.model, &checkpoint.meta)?;
    model
        .write_to_bytes()
        .map_err(|e| SegError::Export(format!("protobuf encoding failed: {e}")))
}

/// Writes [`export`]'s bytes to `path` atomically (temporary file, fsync, rename).
pub fn export_file(checkpoint: &Checkpoint, path: &Path) -> Result<()> {
    let bytes = export(checkpoint)?;
    crate::checkpoint::write_atomically(path, &bytes)
}

/// The whole model message: graph, opset, producer and the checkpoint's facts as metadata.
fn model_proto(model: &UNet, meta: &CheckpointMeta) -> Result<ModelProto> {
    let mut g = Graph::default();
    let input = preprocess(&mut g, meta);
    let logits = unet(&mut g, model, input)?;
    decide(&mut g, meta, &logits);
    let classes = meta.model.task_classes() as i64;
    let channels = meta.model.in_channels as i64;
    let (batch, h, w) = (
        Dim::Named("batch"),
        Dim::Named("height"),
        Dim::Named("width"),
    );
    let graph = onnx_protobuf::GraphProto {
        name: "seg_model_unet".into(),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![value_info(
            INPUT,
            DataType::UINT8,
            &[batch.clone(), h.clone(), w.clone(), Dim::Fixed(channels)],
        )],
        output: vec![
            value_info(
                PROBABILITIES,
                DataType::FLOAT,
                &[batch.clone(), Dim::Fixed(classes), h.clone(), w.clone()],
            ),
            value_info(MASK, DataType::UINT8, &[batch, h, w]),
        ],
        ..onnx_protobuf::GraphProto::default()
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..OperatorSetIdProto::default()
        }],
        producer_name: "seg-model".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: "U-Net segmentation: uint8 NHWC images in; class probabilities (NCHW) and class-id masks (NHW) out".into(),
        graph: Some(graph).into(),
        metadata_props: metadata(meta)?,
        ..ModelProto::default()
    })
}

/// The checkpoint's facts a reader of the ONNX file may want (classes, threshold, training
/// size, the depth that sizes must divide by).
fn metadata(meta: &CheckpointMeta) -> Result<Vec<StringStringEntryProto>> {
    let entries = [
        ("seg_model.classes", json(&meta.classes)?),
        ("seg_model.threshold", meta.threshold.to_string()),
        ("seg_model.model", json(&meta.model)?),
        ("seg_model.preprocess", json(&meta.preprocess)?),
        (
            "seg_model.size_multiple",
            (1usize << meta.model.depth).to_string(),
        ),
        ("seg_model.epoch", meta.epoch.to_string()),
        ("seg_model.weights_sha256", meta.weights_sha256.clone()),
    ];
    Ok(entries
        .into_iter()
        .map(|(key, value)| StringStringEntryProto {
            key: key.into(),
            value,
            ..StringStringEntryProto::default()
        })
        .collect())
}

/// A metadata value as JSON.
fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| SegError::Export(e.to_string()))
}

/// uint8 NHWC -> float NCHW, scaled to [0, 1] and normalised with the checkpoint's mean and
/// std, in the order `Preprocess::normalize_hwc` computes it (so the values are identical).
fn preprocess(g: &mut Graph, meta: &CheckpointMeta) -> String {
    let pre = &meta.preprocess;
    let c = pre.channels;
    let x = g.node("Cast", &[INPUT], vec![int("to", DataType::FLOAT as i64)]);
    let x = g.node("Transpose", &[&x], vec![ints("perm", &[0, 3, 1, 2])]);
    let scale = g.floats("scale", &[], vec![255.0]);
    let x = g.node("Div", &[&x, &scale], vec![]);
    let mean = g.floats("mean", &[1, c, 1, 1], pre.mean.clone());
    let inv_std = g.floats(
        "inv_std",
        &[1, c, 1, 1],
        pre.std.iter().map(|s| 1.0 / s).collect(),
    );
    let x = g.node("Sub", &[&x, &mean], vec![]);
    g.node("Mul", &[&x, &inv_std], vec![])
}

/// The U-Net's layers, as `UNet::forward` runs them; returns the logits.
fn unet(g: &mut Graph, model: &UNet, input: String) -> Result<String> {
    let mut x = conv_block(g, &model.inc, &input)?;
    let mut skips = Vec::with_capacity(model.downs.len());
    for down in &model.downs {
        skips.push(x.clone());
        let pooled = g.node(
            "MaxPool",
            &[&x],
            vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
        );
        x = conv_block(g, down, &pooled)?;
    }
    for (up, skip) in model.ups.iter().zip(skips.iter().rev()) {
        x = up_block(g, up, &x, skip)?;
    }
    conv(g, &model.head, &x)
}

/// `conv3x3 -> [BatchNorm] -> ReLU`, twice.
fn conv_block(g: &mut Graph, block: &ConvBlock, x: &str) -> Result<String> {
    let mut x = x.to_string();
    for (c, n) in [
        (&block.conv1, block.norm1.as_ref()),
        (&block.conv2, block.norm2.as_ref()),
    ] {
        x = conv(g, c, &x)?;
        if let Some(n) = n {
            x = batch_norm(g, n, &x)?;
        }
        x = g.node("Relu", &[&x], vec![]);
    }
    Ok(x)
}

/// Up-sampling (transposed conv, or bilinear resize + 1x1 conv), `concat(skip, x)`, conv block.
fn up_block(g: &mut Graph, up: &UpBlock, x: &str, skip: &str) -> Result<String> {
    let x = match (&up.transpose, &up.reduce) {
        (Some(t), _) => conv_transpose(g, t, x)?,
        (None, Some(reduce)) => {
            // burn's bilinear interpolation without aligned corners is ONNX's half_pixel.
            let scales = g.floats("scales", &[4], vec![1.0, 1.0, 2.0, 2.0]);
            let resized = g.node(
                "Resize",
                &[x, "", &scales],
                vec![
                    string("mode", "linear"),
                    string("coordinate_transformation_mode", "half_pixel"),
                ],
            );
            conv(g, reduce, &resized)?
        }
        (None, None) => {
            return Err(SegError::Export(
                "an up-sampling block has neither a transposed conv nor a 1x1 conv".into(),
            ));
        }
    };
    let joined = g.node("Concat", &[skip, &x], vec![int("axis", 1)]);
    conv_block(g, &up.block, &joined)
}

/// A 2D convolution with the layer's kernel, stride and padding.
fn conv(g: &mut Graph, layer: &Conv2d, x: &str) -> Result<String> {
    let inputs = weighted(g, x, &layer.weight, layer.bias.as_ref())?;
    let pads = match layer.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Same => {
            return Err(SegError::Export(
                "\"same\" padding is not used by the U-Net".into(),
            ));
        }
    };
    Ok(g.node(
        "Conv",
        &inputs.iter().map(String::as_str).collect::<Vec<_>>(),
        vec![
            ints("kernel_shape", &to_i64(&layer.kernel_size)),
            ints("strides", &to_i64(&layer.stride)),
            ints("dilations", &to_i64(&layer.dilation)),
            int("group", layer.groups as i64),
            ints("pads", &to_i64(&pads)),
        ],
    ))
}

/// A transposed convolution (burn's and ONNX's weight layout agree: `[in, out/groups, kh, kw]`).
fn conv_transpose(g: &mut Graph, layer: &ConvTranspose2d, x: &str) -> Result<String> {
    let inputs = weighted(g, x, &layer.weight, layer.bias.as_ref())?;
    let [ph, pw] = layer.padding;
    Ok(g.node(
        "ConvTranspose",
        &inputs.iter().map(String::as_str).collect::<Vec<_>>(),
        vec![
            ints("kernel_shape", &to_i64(&layer.kernel_size)),
            ints("strides", &to_i64(&layer.stride)),
            ints("dilations", &to_i64(&layer.dilation)),
            int("group", layer.groups as i64),
            ints("pads", &to_i64(&[ph, pw, ph, pw])),
            ints("output_padding", &to_i64(&layer.padding_out)),
        ],
    ))
}

/// The inputs of a (transposed) convolution: `x`, the weight as an initialiser, and the bias
/// when the layer has one.
fn weighted(
    g: &mut Graph,
    x: &str,
    weight: &Param<Tensor<4>>,
    bias: Option<&Param<Tensor<1>>>,
) -> Result<Vec<String>> {
    let w = g.floats("weight", &weight.val().dims(), param(weight)?);
    let mut inputs = vec![x.to_string(), w];
    if let Some(b) = bias {
        inputs.push(g.floats("bias", &b.val().dims(), param(b)?));
    }
    Ok(inputs)
}

/// Inference-mode batch normalisation with the running statistics.
fn batch_norm(g: &mut Graph, norm: &BatchNorm, x: &str) -> Result<String> {
    let n = norm.gamma.val().dims()[0];
    let scale = g.floats("bn_scale", &[n], param(&norm.gamma)?);
    let bias = g.floats("bn_bias", &[n], param(&norm.beta)?);
    let mean = g.floats("bn_mean", &[n], values(norm.running_mean.value())?);
    let var = g.floats("bn_var", &[n], values(norm.running_var.value())?);
    Ok(g.node(
        "BatchNormalization",
        &[x, &scale, &bias, &mean, &var],
        vec![float("epsilon", norm.epsilon as f32)],
    ))
}

/// Logits -> the [`PROBABILITIES`] and [`MASK`] outputs, decided as `Predictor` decides.
fn decide(g: &mut Graph, meta: &CheckpointMeta, logits: &str) {
    let to_u8 = || vec![int("to", DataType::UINT8 as i64)];
    if meta.model.num_classes == 1 {
        let fg = g.node("Sigmoid", &[logits], vec![]);
        let one = g.floats("one", &[], vec![1.0]);
        let bg = g.node("Sub", &[&one, &fg], vec![]);
        g.node_to("Concat", &[&bg, &fg], vec![int("axis", 1)], PROBABILITIES);
        let threshold = g.floats("threshold", &[], vec![meta.threshold]);
        let on = g.node("GreaterOrEqual", &[&fg, &threshold], vec![]);
        let ids = g.node("Cast", &[&on], to_u8());
        let axes = g.ints("axes", &[1]);
        g.node_to("Squeeze", &[&ids, &axes], vec![], MASK);
    } else {
        g.node_to("Softmax", &[logits], vec![int("axis", 1)], PROBABILITIES);
        let ids = g.node(
            "ArgMax",
            &[PROBABILITIES],
            vec![int("axis", 1), int("keepdims", 0)],
        );
        g.node_to("Cast", &[&ids], to_u8(), MASK);
    }
}

/// A parameter's values, row-major.
fn param<const D: usize>(p: &Param<Tensor<D>>) -> Result<Vec<f32>> {
    values(p.val())
}

/// A tensor's values, row-major.
fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| SegError::Export(format!("cannot read a weight tensor: {e:?}")))
}

fn to_i64(values: &[usize]) -> Vec<i64> {
    values.iter().map(|&v| v as i64).collect()
}
