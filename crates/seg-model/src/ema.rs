//! Weight EMA: an exponential moving average of a model's parameters and batch-norm
//! statistics, updated after every optimiser step and validated in place of the live model.
//! Averaging the last few hundred steps' weights smooths the noise of small-batch training.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

use crate::error::{Result, SegError};
use crate::model::UNet;

/// The averaged model and how far it has come.
#[derive(Debug)]
pub(crate) struct WeightEma {
    /// Largest decay (the horizon is about `1 / (1 - decay)` steps).
    decay: f64,
    /// The average (validation mode, its own batch-norm state).
    model: UNet,
    /// Updates so far.
    updates: usize,
}

impl WeightEma {
    /// Starts the average at `live`'s current weights.
    pub(crate) fn new(decay: f64, live: &UNet) -> Self {
        Self {
            decay,
            model: live.valid(),
            updates: 0,
        }
    }

    /// The decay of the next update: `min(decay, (1 + t) / (10 + t))` after `t` updates, so
    /// that the first steps' random weights leave the average quickly.
    fn next_decay(&self) -> f64 {
        let t = self.updates as f64;
        self.decay.min((1.0 + t) / (10.0 + t))
    }

    /// Moves the average towards `live`: `avg = d * avg + (1 - d) * live` for every parameter
    /// and running statistic.
    pub(crate) fn update(&mut self, live: &UNet) -> Result<()> {
        let d = self.next_decay();
        let mut current = Collect::default();
        live.valid().visit(&mut current);
        let mut blend = Blend {
            current: current.0,
            decay: d,
            missing: 0,
        };
        // `valid()` gives the average fresh running-state cells, so that no copy handed out by
        // `snapshot` is changed by this update.
        self.model = self.model.valid().map(&mut blend);
        if blend.missing > 0 || !blend.current.is_empty() {
            return Err(SegError::Backend(format!(
                "weight EMA: {} averaged tensors have no live counterpart and {} live tensors no average (the model changed shape)",
                blend.missing,
                blend.current.len()
            )));
        }
        self.updates += 1;
        Ok(())
    }

    /// A copy of the average (validation mode) that later updates leave alone.
    pub(crate) fn snapshot(&self) -> UNet {
        self.model.valid()
    }
}

/// Every float tensor of a module (parameters and running statistics), flattened, by id.
#[derive(Default)]
struct Collect(HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.insert(param.id, param.val().flatten::<1>(0, D - 1));
    }
}

/// Blends each tensor with the live one of the same id.
struct Blend {
    current: HashMap<ParamId, Tensor<1>>,
    decay: f64,
    missing: usize,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(live) = self.current.remove(&param.id) else {
            self.missing += 1;
            return param;
        };
        let d = self.decay;
        param.map(|avg| {
            let shape = avg.shape();
            avg.mul_scalar(d)
                .add(live.reshape(shape).mul_scalar(1.0 - d))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendKind;
    use crate::model::UNetConfig;

    /// Each float tensor's first value, in visiting order (the same for two models of one
    /// configuration).
    #[derive(Default)]
    struct FirstValues(Vec<f32>, Vec<ParamId>);

    impl ModuleVisitor for FirstValues {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let v = param.val().flatten::<1>(0, D - 1).into_data();
            self.0.push(v.try_into_vec::<f32>().expect("f32")[0]);
            self.1.push(param.id);
        }
    }

    fn first_values(model: &UNet) -> FirstValues {
        let mut v = FirstValues::default();
        model.visit(&mut v);
        v
    }

    #[test]
    fn the_average_follows_the_live_weights_by_the_decay_and_snapshots_stay_put() {
        let device = BackendKind::default_kind().device();
        let config = UNetConfig::new()
            .with_base_channels(4)
            .with_depth(1)
            .with_batch_norm(true);
        let a = config.init(&device).expect("model a");
        let b = config.init(&device).expect("model b");
        // `b`'s values under `a`'s ids: the same model after some training.
        let mut b_values = Collect::default();
        b.visit(&mut b_values);
        let (a_ids, b_ids) = (first_values(&a).1, first_values(&b).1);
        let mut set = Blend {
            current: a_ids
                .iter()
                .zip(&b_ids)
                .map(|(ia, ib)| (*ia, b_values.0[ib].clone()))
                .collect(),
            decay: 0.0,
            missing: 0,
        };
        let trained = a.valid().map(&mut set);
        let mut ema = WeightEma::new(0.9, &a);
        let before = ema.snapshot();
        // First update: decay min(0.9, 1/10) = 0.1.
        ema.update(&trained).expect("update");
        let (va, vb, vavg) = (
            first_values(&a).0,
            first_values(&trained).0,
            first_values(&ema.snapshot()).0,
        );
        assert_eq!(va.len(), vavg.len());
        assert!(va.iter().zip(&vb).any(|(x, y)| (x - y).abs() > 1e-6));
        for ((x, y), m) in va.iter().zip(&vb).zip(&vavg) {
            let want = 0.1 * x + 0.9 * y;
            assert!((m - want).abs() < 1e-5, "avg {m}, want {want}");
        }
        assert_eq!(
            first_values(&before).0,
            va,
            "a snapshot is not changed by later updates"
        );
        // The decay then grows towards its cap.
        assert!((ema.next_decay() - 2.0 / 11.0).abs() < 1e-12);
        ema.updates = 1000;
        assert_eq!(ema.next_decay(), 0.9);
        // Another model (other ids, other shapes) is an error, not a silent partial average.
        let other = UNetConfig::new()
            .with_base_channels(4)
            .with_depth(2)
            .init(&device)
            .expect("model");
        let err = ema.update(&other).expect_err("another model");
        assert!(err.to_string().contains("weight EMA"), "{err}");
    }
}
