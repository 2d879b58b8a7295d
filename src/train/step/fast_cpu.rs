//! The fast step on the CPU (`--kernels fast --device cpu`): the reference step's mathematics on
//! this crate's own kernels ([`crate::kernels`]) instead of libtorch's operators. Only the
//! rounding differs from the reference: the same `Net`, the same batches, the exact gradient of
//! the same mean cross-entropy, and PyTorch's `SGD(momentum)` update,
//!
//! ```python
//! buf = grad if first step else momentum * buf + grad;  p -= lr * buf
//! ```
//!
//! with the momentum buffers kept here (the same state, under the same names, as the reference's
//! optimizer saves). A step gives the same bits at any `--threads`, so a fast run resumes exactly.

use tch::{Device, Kind, Tensor};

use super::{Batch, Step, Tally};
use crate::{
    config::TrainConfig,
    error::{Error, Result},
    kernels::lenet::{self, BadBatch, LeNet},
    model::Net,
};

/// The fast CPU step (see the module doc).
#[derive(Debug)]
pub(crate) struct FastCpu {
    kernels: LeNet,
    lr: f64,
    momentum: f64,
    /// Per parameter (`Net::parameters()` order): trainable, and its momentum buffer once a step ran.
    trainable: [bool; 10],
    names: [&'static str; 10],
    shapes: [Vec<i64>; 10],
    buffers: [Option<Vec<f32>>; 10],
}

/// A libtorch error for a tensor the kernels cannot read.
fn unfit(what: &str, t: &Tensor, want: &str) -> Error {
    Error::Torch(tch::TchError::Kind(format!("fast CPU kernels: {what} is {:?} {:?} on {:?}, expected {want}", t.kind(), t.size(), t.device())))
}

/// `t` as a slice of `T`, after checking it is a contiguous CPU tensor of `kind`.
fn view<'a, T>(what: &str, t: &'a Tensor, kind: Kind) -> Result<&'a [T]> {
    if t.device() != Device::Cpu || t.kind() != kind || !t.is_contiguous() {
        return Err(unfit(what, t, &format!("a contiguous {kind:?} CPU tensor")));
    }
    // SAFETY: a contiguous CPU tensor of `kind` holds `numel` elements of `T` at `data_ptr`, and
    // lives as long as `t`.
    Ok(unsafe { std::slice::from_raw_parts(t.data_ptr().cast::<T>(), t.numel()) })
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
        let threads = (tch::get_num_threads().max(1) as usize).min(crate::device::logical_cpus().unwrap_or(1));
        let kernels = LeNet::new(classes, threads).map_err(|e| Error::Torch(tch::TchError::Kind(format!("fast CPU kernels: starting {threads} threads: {e}"))))?;
        tracing::debug!("fast CPU kernels: {} worker threads, AVX2+FMA: {}", kernels.threads(), crate::kernels::simd());
        Ok(FastCpu {
            kernels,
            lr: cfg.learning_rate,
            momentum: cfg.momentum,
            trainable: params.map(|(_, p)| p.requires_grad()),
            names: params.map(|(n, _)| n),
            shapes: params.map(|(_, p)| p.size()),
            buffers: Default::default(),
        })
    }
}

impl Step for FastCpu {
    fn name(&self) -> &'static str {
        "fast"
    }

    fn begin_epoch(&mut self, _epoch: usize, lr: f64) -> Result<()> {
        self.lr = lr;
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
        };
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
        // optimizer.step(): torch.optim.SGD(momentum, dampening 0), parameter by parameter.
        let (lr, m) = (self.lr as f32, self.momentum as f32);
        for (i, (_, p)) in params.iter().enumerate().filter(|(i, _)| self.trainable[*i]) {
            let g = &self.kernels.grads[i];
            // SAFETY: `view` checked `p` is a contiguous float32 CPU tensor of `g.len()`
            // elements; no other reference to its data is alive during the update.
            let p = unsafe { std::slice::from_raw_parts_mut(p.data_ptr().cast::<f32>(), g.len()) };
            let first = self.buffers[i].is_none();
            let buf = self.buffers[i].get_or_insert_with(|| vec![0.0; g.len()]);
            for ((p, buf), &g) in p.iter_mut().zip(buf.iter_mut()).zip(g) {
                *buf = if first { g } else { m * *buf + g }; // buf.mul_(momentum).add_(grad)
                *p += -lr * *buf; // p.add_(buf, alpha=-lr)
            }
        }
        let _ = tally.losses.get(b.step as i64).fill_((loss_sum / index.size()[0] as f64) as f32 as f64);
        let _ = tally.correct.g_add_scalar_(correct as i64);
        Ok(())
    }

    fn momentum_buffers(&self) -> Vec<(String, Tensor)> {
        self.names.iter().zip(&self.shapes).zip(&self.buffers)
            .filter_map(|((n, shape), b)| b.as_ref().map(|b| (n.to_string(), Tensor::from_slice(b).view(shape.as_slice()))))
            .collect()
    }

    fn restore_momentum(&mut self, buffers: &[(String, Tensor)], lr: f64) -> Result<()> {
        for (i, name) in self.names.iter().enumerate() {
            if let Some((_, b)) = buffers.iter().find(|(n, _)| n == name) {
                if b.size() != self.shapes[i] {
                    return Err(Error::Torch(tch::TchError::Shape(format!("momentum buffer {name}: {:?}, expected {:?}", b.size(), self.shapes[i]))));
                }
                self.buffers[i] = Some(Vec::<f32>::try_from(b.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view(-1))?);
            }
        }
        self.lr = lr;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tch::nn;

    use super::*;
    use crate::train::step::reference::Reference;

    fn setup() -> (nn::VarStore, Net) {
        let _rng = crate::rng::lock_global_rng();
        tch::manual_seed(11);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), 10);
        net.init_pytorch();
        (vs, net)
    }

    /// Runs `steps` steps of batches of 12 from 30 random images; returns the per-step losses.
    fn run(step: &mut dyn Step, net: &Net, steps: usize) -> Vec<f32> {
        let images = Tensor::arange(30 * 3072, (Kind::Int64, Device::Cpu)).remainder(251).to_kind(Kind::Uint8).view([30, 3, 32, 32]);
        let labels = Tensor::arange(30, (Kind::Int64, Device::Cpu)).remainder(10);
        let mut tally = Tally::new(steps, Device::Cpu);
        for s in 0..steps {
            let index = Tensor::arange_start(s as i64 * 5, s as i64 * 5 + 12, (Kind::Int64, Device::Cpu));
            step.step(net, &Batch { images: &images, labels: &labels, index: &index, step: s }, &mut tally).unwrap();
        }
        Vec::<f32>::try_from(&tally.losses).unwrap()
    }

    fn cfg() -> TrainConfig {
        TrainConfig { learning_rate: 0.05, ..TrainConfig::default() }
    }

    #[test]
    fn three_steps_follow_the_reference_sgd_with_momentum() {
        let ((vs_r, net_r), (_vs, net_f)) = (setup(), setup());
        let mut reference = Reference::new(&cfg(), &vs_r, &net_r).unwrap();
        let mut fast = FastCpu::new(&cfg(), &net_f).unwrap();
        let (lr, lf) = (run(&mut reference, &net_r, 3), run(&mut fast, &net_f, 3));
        for (a, b) in lr.iter().zip(&lf) {
            assert!((a - b).abs() < 1e-5, "losses {lr:?} against {lf:?}");
        }
        let (_, net0) = setup();
        for (((name, r), (_, f)), (_, p0)) in net_r.parameters().iter().zip(net_f.parameters()).zip(net0.parameters()) {
            // How far the reference moved the parameter, and how far apart the two ended.
            let moved = (*r - p0).abs().max().double_value(&[]);
            let apart = (*r - f).abs().max().double_value(&[]);
            assert!(moved > 0.0 && apart < 1e-3 * moved, "{name}: moved {moved}, apart {apart}");
        }
        let (br, bf) = (reference.momentum_buffers(), fast.momentum_buffers());
        assert_eq!(br.iter().map(|(n, _)| n).collect::<Vec<_>>(), bf.iter().map(|(n, _)| n).collect::<Vec<_>>());
        for ((name, r), (_, f)) in br.iter().zip(&bf) {
            let scale = r.abs().max().double_value(&[]);
            assert!(scale > 0.0 && (r - f).abs().max().double_value(&[]) < 1e-4 * scale, "momentum of {name}");
        }
    }

    #[test]
    fn frozen_features_stay_and_get_no_momentum_and_buffers_restore() {
        let (_vs, net) = setup();
        for (name, p) in net.parameters() {
            if name.starts_with("conv") {
                let _ = p.shallow_clone().set_requires_grad(false);
            }
        }
        let before: Vec<Tensor> = net.parameters().iter().map(|(_, p)| p.copy()).collect();
        let mut fast = FastCpu::new(&cfg(), &net).unwrap();
        run(&mut fast, &net, 2);
        for ((name, p), b) in net.parameters().iter().zip(&before) {
            assert_eq!(p.equal(b), name.starts_with("conv"), "{name}");
        }
        let buffers = fast.momentum_buffers();
        assert_eq!(buffers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]);
        // A step restored from the buffers continues as the one that kept them.
        let mut restored = FastCpu::new(&cfg(), &net).unwrap();
        restored.restore_momentum(&buffers, cfg().learning_rate).unwrap();
        let snapshot: Vec<Tensor> = net.parameters().iter().map(|(_, p)| p.copy()).collect();
        run(&mut fast, &net, 1);
        let after: Vec<Tensor> = net.parameters().iter().map(|(_, p)| p.copy()).collect();
        tch::no_grad(|| net.parameters().iter().zip(&snapshot).for_each(|((_, p), s)| p.shallow_clone().copy_(s)));
        run(&mut restored, &net, 1);
        for ((name, p), a) in net.parameters().iter().zip(&after) {
            assert!(p.equal(a), "{name} differs after the restore");
        }
        let bad = [("fc1.weight".to_string(), Tensor::zeros([3], (Kind::Float, Device::Cpu)))];
        assert!(restored.restore_momentum(&bad, 0.1).is_err());
    }
}
