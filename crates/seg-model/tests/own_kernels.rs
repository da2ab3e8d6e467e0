//! seg-model's own kernels (`set_own_kernels`, on by default): on libtorch, training runs
//! conv blocks through libtorch's own autograd kernels; on flex, convolutions, transposed
//! convolutions and batch norm + ReLU run on seg-model's im2col + gemm kernels with
//! hand-written backward steps. They must compute what burn's generic autodiff computes: same
//! logits, loss, every parameter gradient and batch-norm running statistics, for both
//! up-sampling modes and with and without batch norm, and (flex) the same inference logits.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Tensor};
use seg_model::loss::{LossConfig, LossTargets, segmentation_loss};
use seg_model::{BackendKind, UNetConfig, UpsampleMode, set_own_kernels};

/// Every float parameter's gradient (or value, when `grads` is None), flattened, in visit order.
struct Collect<'a> {
    grads: Option<&'a burn::tensor::Gradients>,
    out: Vec<Vec<f32>>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = match self.grads {
            Some(grads) => match param.val().grad(grads) {
                Some(g) => g,
                None => return,
            },
            None => param.val(),
        };
        let data = value.into_data().convert::<f32>();
        self.out.push(data.try_to_vec::<f32>().expect("f32 data"));
    }
}

struct Outcome {
    logits: Vec<f32>,
    loss: f32,
    grads: Vec<Vec<f32>>,
    /// Parameters after the forward pass: includes the batch-norm running statistics.
    state: Vec<Vec<f32>>,
    /// Logits of the model in inference mode on a second input.
    inference: Vec<f32>,
}

/// Input side: 64, so that the top level's rows are wide enough for the direct convolution
/// and the direct weight gradient (64+), the next level's for the direct convolution only.
const SIZE: usize = 64;

fn run(config: &UNetConfig, own: bool, kind: BackendKind) -> Outcome {
    set_own_kernels(own);
    let device: Device = kind.training_device();
    device.seed(3);
    let model = config.init(&device).expect("model");
    let x = Tensor::<4>::random([2, 3, SIZE, SIZE], Distribution::Normal(0.0, 1.0), &device);
    let masks: Vec<u8> = (0..2 * SIZE * SIZE).map(|i| u8::from(i % 5 < 2)).collect();
    let outputs = config.num_classes;
    let masks: Vec<u8> = if outputs > 1 {
        (0..2 * SIZE * SIZE)
            .map(|i| u8::try_from(i % outputs).unwrap_or(0))
            .collect()
    } else {
        masks
    };
    let targets =
        LossTargets::from_masks(&masks, 2, SIZE, SIZE, outputs, &device).expect("targets");
    let logits = model.forward(x);
    let loss = segmentation_loss(&LossConfig::default(), logits.clone(), &targets);
    let grads = loss.backward();
    let mut collect = Collect {
        grads: Some(&grads),
        out: Vec::new(),
    };
    model.visit(&mut collect);
    let grads = collect.out;
    let mut collect = Collect {
        grads: None,
        out: Vec::new(),
    };
    model.visit(&mut collect);
    // Inference (batch norm with running statistics) on the device without autodiff.
    let eval = model.valid();
    let x = Tensor::<4>::random(
        [2, 3, SIZE, SIZE],
        Distribution::Normal(0.0, 1.0),
        &kind.device(),
    );
    let inference = eval
        .forward(x)
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .expect("f32");
    set_own_kernels(true);
    Outcome {
        inference,
        logits: logits
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .expect("f32"),
        loss: loss.into_scalar(),
        grads,
        state: collect.out,
    }
}

fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        worst <= 2e-4 * scale + 1e-6,
        "{what}: max |own kernels - burn| = {worst:e} (max |value| {scale:e})"
    );
}

fn compare(config: UNetConfig, kind: BackendKind) {
    let own = run(&config, true, kind);
    let burn = run(&config, false, kind);
    assert_close("logits", &own.logits, &burn.logits);
    assert_close("loss", &[own.loss], &[burn.loss]);
    assert_eq!(own.grads.len(), burn.grads.len(), "gradient count");
    assert!(!own.grads.is_empty(), "no gradients collected");
    for (i, (a, b)) in own.grads.iter().zip(&burn.grads).enumerate() {
        assert_close(&format!("gradient of parameter {i}"), a, b);
    }
    assert_eq!(own.state.len(), burn.state.len());
    for (i, (a, b)) in own.state.iter().zip(&burn.state).enumerate() {
        assert_close(&format!("parameter/running statistic {i}"), a, b);
    }
    assert_close("inference logits", &own.inference, &burn.inference);
}

/// The five configurations on one backend (the switch is per thread: each test sets its own).
/// Base 8 too, so that every level's products have more than a handful of channels.
fn compare_all(kind: BackendKind) {
    let base = UNetConfig::new().with_base_channels(4).with_depth(2);
    compare(base.clone(), kind);
    compare(base.clone().with_base_channels(8), kind);
    compare(base.clone().with_batch_norm(false), kind);
    compare(base.clone().with_upsample(UpsampleMode::Bilinear), kind);
    compare(base.with_num_classes(3), kind);
}

#[cfg(feature = "tch")]
#[test]
fn own_libtorch_kernels_match_burn_autodiff() {
    compare_all(BackendKind::TchCpu);
}

#[cfg(feature = "flex")]
#[test]
fn flex_kernels_match_burn_autodiff() {
    compare_all(BackendKind::Flex);
}
