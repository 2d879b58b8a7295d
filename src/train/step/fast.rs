//! The fast step (`--kernels fast`): the reference step's mathematics with the fastest kernels
//! libtorch has for this network on a CPU. Only the rounding differs from the reference:
//!
//! * channels-last (NHWC) activations and convolution weights: oneDNN's convolutions then run
//!   without the layout reorders that NCHW costs them (tch has no `memory_format` argument; a
//!   permute-contiguous-permute gives the same strides, and libtorch picks kernels by strides);
//! * ReLU after each max-pool ([`Net::forward_pool_first`]), in place, on a quarter of the
//!   elements: the same function and gradient;
//! * `ToTensor()` + `Normalize(0.5, 0.5)` as `x * (2/255) - 1`, two in-place ops instead of three
//!   (the same affine map, rounded differently).
//!
//! The optimizer, the augmentation and the loss are the reference's ([`TensorOptimizer`],
//! [`crate::recipe`]), so checkpoints hold the same kind of state, and a fast run resumes
//! exactly within the fast mode.

use tch::{Kind, Tensor};

use super::{Batch, Step, Tally};
use crate::{
    config::TrainConfig,
    error::Result,
    model::Net,
    recipe::{loss::Objective, optim::TensorOptimizer},
};

/// `[B, C, H, W]` with channels-last strides: the same values, NHWC in memory.
pub(crate) fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// The fast step (see the module doc).
#[derive(Debug)]
pub(crate) struct Fast {
    opt: TensorOptimizer,
    objective: Objective,
}

impl Fast {
    /// Puts the convolution weights of `net` in channels-last layout (values unchanged) and
    /// builds the reference optimizer over them.
    pub(crate) fn new(cfg: &TrainConfig, net: &Net) -> Fast {
        tch::no_grad(|| {
            for (name, p) in net.parameters() {
                if name.starts_with("conv") && name.ends_with(".weight") {
                    p.shallow_clone().set_data(&channels_last(p));
                }
            }
        });
        Fast { opt: TensorOptimizer::new(cfg.optimizer_spec(), &net.parameters()), objective: cfg.recipe.objective() }
    }
}

impl Step for Fast {
    fn name(&self) -> &'static str {
        "fast"
    }

    fn begin_epoch(&mut self, _epoch: usize, _lr: f64) -> Result<()> {
        Ok(())
    }

    fn step(&mut self, net: &Net, b: &Batch<'_>, tally: &mut Tally) -> Result<()> {
        // uint8 NCHW rows -> uint8 NHWC (300 KB a batch) -> float32, normalised in place.
        let xs = channels_last(&b.images_u8()?).to_kind(Kind::Float).g_mul_scalar_(2.0 / 255.0).g_sub_scalar_(1.0);
        let ys = b.labels.index_select(0, b.index);
        let logits = net.forward_pool_first(&xs);
        let loss = self.objective.loss(&logits, &ys)?;
        self.opt.set_rates(b.rates);
        self.opt.backward_step(&loss)?;
        tally.record(b.step, &loss, &logits, &ys);
        Ok(())
    }

    fn optimizer_state(&self) -> Vec<(String, Tensor)> {
        self.opt.state()
    }

    fn restore_optimizer_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        self.opt.restore(state)
    }
}

#[cfg(test)]
mod tests {
    use tch::{nn, nn::Module, Device};

    use super::*;
    use crate::data::normalize;

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let t = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let cl = channels_last(&t);
        assert!(cl.equal(&t));
        assert_eq!(cl.stride(), [60, 1, 15, 3]);
    }

    #[test]
    fn the_fast_forward_is_the_reference_function() {
        let _rng = crate::rng::lock_global_rng();
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), 10);
        net.init_pytorch();
        let bytes = Tensor::randint(256, [8, 3, 32, 32], (Kind::Uint8, Device::Cpu));
        let reference = net.forward(&normalize(&bytes));
        let fast_in = channels_last(&bytes).to_kind(Kind::Float).g_mul_scalar_(2.0 / 255.0).g_sub_scalar_(1.0);
        let fast = net.forward_pool_first(&fast_in);
        let diff = (&reference - &fast).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "largest logit difference {diff}");
        // Normalisation: the same affine map, within a float32 rounding.
        let d = (normalize(&bytes) - &fast_in).abs().max().double_value(&[]);
        assert!(d < 1e-6, "{d}");
    }
}
