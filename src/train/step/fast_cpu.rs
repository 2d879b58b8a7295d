//! The fast step on the CPU (`--kernels fast --device cpu`): the reference step's mathematics on
//! this crate's own kernels ([`crate::kernels`]) instead of libtorch's operators. Only the
//! rounding differs from the reference: the same `Net`, the same batches and augmentation (done
//! while the batch is gathered into the kernels' lanes), the exact gradient of the same mean
//! cross-entropy (with label smoothing), and the same optimizer update
//! ([`SliceOptimizer`]: SGD with momentum, dampening, Nesterov and weight decay, Adam, AdamW),
//! with its state kept here under the names the reference's optimizer saves. A step gives the
//! same bits at any `--threads`, so a fast run resumes exactly.

use tch::{Device, Kind, Tensor};

use super::{Batch, Step, Tally};
use crate::{
    config::TrainConfig,
    error::{Error, Result},
    kernels::lenet::{self, BadBatch, LeNet},
    data::Dataset,
    model::Net,
    recipe::{loss::Objective, optim::SliceOptimizer},
    report::EvalMetrics,
    train::evaluate::evaluate_on_kernels,
};

/// The fast CPU step (see the module doc).
#[derive(Debug)]
pub(crate) struct FastCpu {
    kernels: LeNet,
    opt: SliceOptimizer,
    objective: Objective,
    /// Per parameter (`Net::parameters()` order): trainable.
    trainable: [bool; 10],
}

/// A libtorch error for a tensor the kernels cannot read.
pub(crate) fn unfit(what: &str, t: &Tensor, want: &str) -> Error {
    Error::Torch(tch::TchError::Kind(format!("fast CPU kernels: {what} is {:?} {:?} on {:?}, expected {want}", t.kind(), t.size(), t.device())))
}

/// `t` as a slice of `T`, after checking it is a contiguous CPU tensor of `kind`.
pub(crate) fn view<'a, T>(what: &str, t: &'a Tensor, kind: Kind) -> Result<&'a [T]> {
    if t.device() != Device::Cpu || t.kind() != kind || !t.is_contiguous() {
        return Err(unfit(what, t, &format!("a contiguous {kind:?} CPU tensor")));
    }
    // SAFETY: a contiguous CPU tensor of `kind` holds `numel` elements of `T` at `data_ptr`, and
    // lives as long as `t`.
    Ok(unsafe { std::slice::from_raw_parts(t.data_ptr().cast::<T>(), t.numel()) })
}

/// `net`'s parameters as the kernels read them (`Net::parameters()` order).
///
/// # Errors
/// A parameter that is not a contiguous float32 CPU tensor.
pub(crate) fn weights(net: &Net) -> Result<[&[f32]; 10]> {
    let mut w = [&[][..]; 10];
    for (w, (name, p)) in w.iter_mut().zip(net.parameters()) {
        *w = view(name, p, Kind::Float)?;
    }
    Ok(w)
}

impl FastCpu {
    /// The step over `net`'s parameters (float32 CPU tensors, contiguous), on
    /// `tch::get_num_threads()` worker threads (`--threads`), at most one per CPU.
    ///
    /// # Errors
    /// A parameter the kernels cannot use, or threads that cannot be started.
    pub(crate) fn new(cfg: &TrainConfig, net: &Net) -> Result<FastCpu> {
        let params = net.parameters();
        let classes = params[9].1.size()[0] as usize;
        for ((name, p), n) in params.iter().zip(lenet::param_sizes(classes)) {
            if view::<f32>(name, p, Kind::Float)?.len() != n {
                return Err(unfit(name, p, &format!("{n} elements")));
            }
        }
        // More workers than CPUs only take turns (`--threads` may ask for up to 1,024).
        let threads = lenet::threads();
        let kernels = LeNet::new(classes, threads).map_err(|e| Error::Torch(tch::TchError::Kind(format!("fast CPU kernels: starting {threads} threads: {e}"))))?;
        tracing::debug!("fast CPU kernels: {} worker threads, AVX2+FMA: {}", kernels.threads(), crate::kernels::simd());
        let names = params.iter().map(|(n, _)| n.to_string()).collect();
        let shapes = params.iter().map(|(_, p)| p.size()).collect();
        Ok(FastCpu {
            kernels,
            opt: SliceOptimizer::new(cfg.optimizer_spec(), names, shapes),
            objective: cfg.recipe.objective(),
            trainable: params.map(|(_, p)| p.requires_grad()),
        })
    }
}

impl Step for FastCpu {
    fn name(&self) -> &'static str {
        "fast"
    }

    fn begin_epoch(&mut self, _epoch: usize, _lr: f64) -> Result<()> {
        Ok(())
    }

    fn step(&mut self, net: &Net, b: &Batch<'_>, tally: &mut Tally) -> Result<()> {
        let params = net.parameters();
        let (images, labels, index) = (b.images, b.labels, b.index);
        if images.size()[1..] != [3, 32, 32] {
            return Err(unfit("the training images", images, "[N, 3, 32, 32]"));
        }
        let index = index.contiguous();
        let inp = lenet::Inputs {
            images: view("the training images", images, Kind::Uint8)?,
            labels: view("the training labels", labels, Kind::Int64)?,
            index: view("the batch index", &index, Kind::Int64)?,
            augment: b.augment,
            objective: self.objective,
        };
        if let Some((_, draws)) = b.augment.filter(|(_, d)| d.len() != inp.index.len()) {
            return Err(unfit("the augmentation draws", &Tensor::from_slice(&[draws.len() as i64]), &format!("one per row of the batch ({})", inp.index.len())));
        }
        let mut w = [&[][..]; 10];
        for (w, (name, p)) in w.iter_mut().zip(&params) {
            *w = view(name, p, Kind::Float)?;
        }
        let features = self.trainable[..4].iter().any(|&t| t);
        let (loss_sum, correct) = self.kernels.gradients(&w, &inp, features).map_err(|bad| match bad {
            BadBatch::Row { row, rows } => {
                Error::InvalidConfig { field: "batch index", value: row.to_string(), expected: format!("a row of the {rows} training images") }
            }
            BadBatch::Label { label, classes } => {
                Error::InvalidConfig { field: "classes", value: classes.to_string(), expected: format!("more than the label {label}") }
            }
        })?;
        // optimizer.step(), parameter by parameter.
        self.opt.set_rates(b.rates);
        for (i, (_, p)) in params.iter().enumerate().filter(|(i, _)| self.trainable[*i]) {
            let g = &self.kernels.grads[i];
            // SAFETY: `view` checked `p` is a contiguous float32 CPU tensor of `g.len()`
            // elements; no other reference to its data is alive during the update.
            let p = unsafe { std::slice::from_raw_parts_mut(p.data_ptr().cast::<f32>(), g.len()) };
            self.opt.update(i, p, g);
        }
        let _ = tally.losses.get(b.step as i64).fill_((loss_sum / index.size()[0] as f64) as f32 as f64);
        let _ = tally.correct.g_add_scalar_(correct as i64);
        Ok(())
    }

    fn evaluate(&mut self, net: &Net, data: &Dataset, batch_size: usize) -> Result<EvalMetrics> {
        Ok(evaluate_on_kernels(&mut self.kernels, net, data, batch_size)?.0)
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
    use tch::nn;

    use super::*;
    use crate::{
        config::RecipeConfig,
        recipe::{
            augment::SampleDraw,
            optim::{OptimizerKind, Rates},
        },
        train::step::reference::Reference,
    };

    fn setup() -> (nn::VarStore, Net) {
        let _rng = crate::rng::lock_global_rng();
        tch::manual_seed(11);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), 10);
        net.init_pytorch();
        (vs, net)
    }

    /// Runs `steps` steps of batches of 12 from 30 random images under `cfg` (its rates, and its
    /// augmentation with fixed draws); returns the per-step losses.
    fn run(step: &mut dyn Step, net: &Net, steps: usize, cfg: &TrainConfig) -> Vec<f32> {
        let images = Tensor::arange(30 * 3072, (Kind::Int64, Device::Cpu)).remainder(251).to_kind(Kind::Uint8).view([30, 3, 32, 32]);
        let labels = Tensor::arange(30, (Kind::Int64, Device::Cpu)).remainder(10);
        let spec = cfg.optimizer_spec();
        let rates = Rates { lr: spec.lr, momentum: spec.momentum };
        let aug = cfg.recipe.augment();
        let draws: Vec<SampleDraw> = (0..12).map(|i| SampleDraw { top: (i * 5 % 9) as u8, left: (i * 7 % 9) as u8, flip: i % 3 == 0 }).collect();
        let mut tally = Tally::new(steps, Device::Cpu);
        for s in 0..steps {
            let index = Tensor::arange_start(s as i64 * 5, s as i64 * 5 + 12, (Kind::Int64, Device::Cpu));
            let augment = (!aug.is_none()).then_some((aug, &draws[..]));
            step.step(net, &Batch { images: &images, labels: &labels, index: &index, step: s, rates, augment }, &mut tally).unwrap();
        }
        Vec::<f32>::try_from(&tally.losses).unwrap()
    }

    fn cfg() -> TrainConfig {
        TrainConfig { learning_rate: 0.05, ..TrainConfig::default() }
    }

    /// The recipes the fast step must follow: the reference, SGD with every option and
    /// augmentation and label smoothing, Adam, AdamW with AMSGrad.
    fn recipes() -> Vec<(&'static str, TrainConfig)> {
        let recipe = |r: RecipeConfig| TrainConfig { recipe: r, ..cfg() };
        vec![
            ("sgd", cfg()),
            (
                "sgd+",
                recipe(RecipeConfig { random_crop: Some(4), hflip: true, weight_decay: Some(5e-3), nesterov: true, label_smoothing: 0.1, ..Default::default() }),
            ),
            ("sgd dampening", recipe(RecipeConfig { dampening: 0.3, weight_decay: Some(1e-2), ..Default::default() })),
            ("adam", TrainConfig { learning_rate: 1e-3, momentum: 0.9, ..recipe(RecipeConfig { optimizer: OptimizerKind::Adam, weight_decay: Some(1e-2), ..Default::default() }) }),
            ("adamw", TrainConfig { learning_rate: 1e-3, ..recipe(RecipeConfig { optimizer: OptimizerKind::Adamw, amsgrad: true, ..Default::default() }) }),
        ]
    }

    #[test]
    fn three_steps_follow_the_reference_step_for_every_recipe() {
        for (what, cfg) in recipes() {
            let ((_, net_r), (_vs, net_f)) = (setup(), setup());
            let mut reference = Reference::new(&cfg, &net_r);
            let mut fast = FastCpu::new(&cfg, &net_f).unwrap();
            let (lr, lf) = (run(&mut reference, &net_r, 3, &cfg), run(&mut fast, &net_f, 3, &cfg));
            for (a, b) in lr.iter().zip(&lf) {
                assert!((a - b).abs() < 1e-5, "{what}: losses {lr:?} against {lf:?}");
            }
            let (_, net0) = setup();
            // Adam divides by the root of the second moment, so a rounding in a tiny gradient can
            // move one weight by up to `lr`: compare the whole update (L2), not the worst element.
            let tolerance = if what.starts_with("adam") { 1e-2 } else { 1e-3 };
            let norm = |t: &Tensor| t.norm().double_value(&[]);
            for (((name, r), (_, f)), (_, p0)) in net_r.parameters().iter().zip(net_f.parameters()).zip(net0.parameters()) {
                // How far the reference moved the parameter, and how far apart the two ended.
                let (moved, apart) = (norm(&(*r - p0)), norm(&(*r - f)));
                assert!(moved > 0.0 && apart < tolerance * moved, "{what}: {name}: moved {moved}, apart {apart}");
            }
            let (br, bf) = (reference.optimizer_state(), fast.optimizer_state());
            assert_eq!(br.iter().map(|(n, _)| n).collect::<Vec<_>>(), bf.iter().map(|(n, _)| n).collect::<Vec<_>>(), "{what}");
            for ((name, r), (_, f)) in br.iter().zip(&bf) {
                let scale = norm(r);
                assert!(scale > 0.0 && norm(&(r - f)) < tolerance * scale, "{what}: {name}");
            }
        }
    }

    #[test]
    fn frozen_features_stay_and_get_no_state_and_the_state_restores() {
        for (what, cfg) in recipes() {
            let (_vs, net) = setup();
            for (name, p) in net.parameters() {
                if name.starts_with("conv") {
                    let _ = p.shallow_clone().set_requires_grad(false);
                }
            }
            let before: Vec<Tensor> = net.parameters().iter().map(|(_, p)| p.copy()).collect();
            let mut fast = FastCpu::new(&cfg, &net).unwrap();
            run(&mut fast, &net, 2, &cfg);
            for ((name, p), b) in net.parameters().iter().zip(&before) {
                assert_eq!(p.equal(b), name.starts_with("conv"), "{what}: {name}");
            }
            let state = fast.optimizer_state();
            assert!(state.iter().all(|(n, _)| n.contains(".fc")), "{what}: {:?}", state.iter().map(|(n, _)| n).collect::<Vec<_>>());
            // A step restored from the state continues as the one that kept it.
            let mut restored = FastCpu::new(&cfg, &net).unwrap();
            restored.restore_optimizer_state(&state).unwrap();
            let snapshot: Vec<Tensor> = net.parameters().iter().map(|(_, p)| p.copy()).collect();
            run(&mut fast, &net, 1, &cfg);
            let after: Vec<Tensor> = net.parameters().iter().map(|(_, p)| p.copy()).collect();
            tch::no_grad(|| net.parameters().iter().zip(&snapshot).for_each(|((_, p), s)| p.shallow_clone().copy_(s)));
            run(&mut restored, &net, 1, &cfg);
            for ((name, p), a) in net.parameters().iter().zip(&after) {
                assert!(p.equal(a), "{what}: {name} differs after the restore");
            }
            let bad = [(state[0].0.clone(), Tensor::zeros([3], (Kind::Float, Device::Cpu)))];
            assert!(restored.restore_optimizer_state(&bad).is_err());
            let unknown = [("velocity.fc1.weight".to_string(), Tensor::zeros([3], (Kind::Float, Device::Cpu)))];
            assert!(restored.restore_optimizer_state(&unknown).is_err());
        }
    }
}
