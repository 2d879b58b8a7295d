//! The optimizers of `torch.optim`, update rule for update rule: `SGD` (momentum, dampening,
//! Nesterov, weight decay), `Adam` and `AdamW` (`betas`, `eps`, `amsgrad`, weight decay coupled
//! or decoupled), with state that is saved and restored exactly.
//!
//! [`TensorOptimizer`] runs on libtorch tensors with the very ATen ops of PyTorch's
//! single-tensor implementations (`_single_tensor_sgd` in `torch/optim/sgd.py`,
//! `_single_tensor_adam` in `torch/optim/adam.py`, PyTorch 2.11; what PyTorch runs on CPU
//! parameters, where it picks neither `foreach` nor `fused`), through [`crate::ops`] where tch
//! lacks an argument, so its numbers are PyTorch's to the bit:
//!
//! ```python
//! # SGD                                             # Adam / AdamW
//! g = grad + weight_decay * p   (add, alpha)        step += 1
//! buf = g.clone() on the first step, else           if AdamW: p.mul_(1 - lr * weight_decay)
//!       buf.mul_(momentum).add_(g, 1 - dampening)   else:     g = grad.add(p, alpha=weight_decay)
//! g = g.add(buf, alpha=momentum) if nesterov        m.lerp_(g, 1 - beta1)
//!     else buf                                      v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
//! p.add_(g, alpha=-lr)                              vmax = maximum(vmax, v) if amsgrad
//!                                                   denom = (v.sqrt() / (1 - beta2**step)**0.5).add_(eps)
//!                                                   p.addcdiv_(m, denom, value=-lr / (1 - beta1**step))
//! ```
//!
//! [`SliceOptimizer`] is the same mathematics on `f32` slices, for the fast CPU kernels (other
//! rounding; its Adam flushes subnormal floats to zero, see [`FlushSubnormals`]). Both keep their state under PyTorch's names: `momentum_buffer.<param>`,
//! `exp_avg.<param>`, `exp_avg_sq.<param>`, `max_exp_avg_sq.<param>` and `step.<param>` (a
//! float32 scalar, as PyTorch keeps it).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::ops;
use crate::error::{Error, Result};

/// Which `torch.optim` class trains the run (`--optimizer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.SGD` (the reference: momentum 0.9).
    #[default]
    Sgd,
    /// `torch.optim.Adam`.
    Adam,
    /// `torch.optim.AdamW` (decoupled weight decay, 0.01 by default).
    Adamw,
}

impl OptimizerKind {
    /// PyTorch's default `weight_decay` for the class.
    pub fn default_weight_decay(self) -> f64 {
        match self {
            OptimizerKind::Adamw => 0.01,
            _ => 0.0,
        }
    }

    /// The name PyTorch gives the class (`SGD`, `Adam`, `AdamW`).
    pub fn pytorch_name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "SGD",
            OptimizerKind::Adam => "Adam",
            OptimizerKind::Adamw => "AdamW",
        }
    }
}

/// The hyperparameters of one optimizer (a PyTorch param group's), as a run sets them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerSpec {
    /// The class.
    pub kind: OptimizerKind,
    /// `lr`, changed by the schedule.
    pub lr: f64,
    /// SGD's `momentum`, or Adam's `beta1` (a schedule may change either: OneCycleLR).
    pub momentum: f64,
    /// SGD's `dampening`.
    pub dampening: f64,
    /// SGD's `nesterov`.
    pub nesterov: bool,
    /// `weight_decay` (coupled for SGD and Adam, decoupled for AdamW).
    pub weight_decay: f64,
    /// Adam's `beta2`.
    pub beta2: f64,
    /// Adam's `eps`.
    pub eps: f64,
    /// Adam's `amsgrad`.
    pub amsgrad: bool,
}

/// The rates a schedule sets before a step: `lr`, and SGD's momentum or Adam's `beta1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    /// Learning rate.
    pub lr: f64,
    /// SGD's momentum or Adam's `beta1`.
    pub momentum: f64,
}

/// One parameter's optimizer state.
#[derive(Debug, Default)]
struct State<T> {
    momentum_buffer: Option<T>,
    exp_avg: Option<T>,
    exp_avg_sq: Option<T>,
    max_exp_avg_sq: Option<T>,
    /// Adam's step count, a float32 as PyTorch keeps it.
    step: f32,
}

/// The names of the state tensors of parameter `name`, with the state's parts.
const PARTS: [&str; 4] = ["momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"];

impl<T> State<T> {
    fn parts(&self) -> [(&'static str, Option<&T>); 4] {
        [
            (PARTS[0], self.momentum_buffer.as_ref()),
            (PARTS[1], self.exp_avg.as_ref()),
            (PARTS[2], self.exp_avg_sq.as_ref()),
            (PARTS[3], self.max_exp_avg_sq.as_ref()),
        ]
    }

    fn part_mut(&mut self, part: &str) -> Option<&mut Option<T>> {
        match part {
            "momentum_buffer" => Some(&mut self.momentum_buffer),
            "exp_avg" => Some(&mut self.exp_avg),
            "exp_avg_sq" => Some(&mut self.exp_avg_sq),
            "max_exp_avg_sq" => Some(&mut self.max_exp_avg_sq),
            _ => None,
        }
    }
}

/// Whether `name` is an optimizer state tensor of a parameter (`exp_avg.fc1.weight`, ...), and
/// the shape it must have given the parameter's: `Some(true)` for the parameter's shape,
/// `Some(false)` for a scalar (`step.`), `None` for anything else.
pub fn state_entry(name: &str) -> Option<(&str, bool)> {
    let (part, param) = name.split_once('.')?;
    match part {
        "step" => Some((param, false)),
        p if PARTS.contains(&p) => Some((param, true)),
        _ => None,
    }
}

/// The state tensors of `states` under PyTorch's names; `tensor(i, t)` makes parameter `i`'s part.
fn named_state<T>(names: &[String], states: &[State<T>], tensor: impl Fn(usize, &T) -> Tensor) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (i, (name, st)) in names.iter().zip(states).enumerate() {
        for (part, t) in st.parts() {
            if let Some(t) = t {
                out.push((format!("{part}.{name}"), tensor(i, t)));
            }
        }
        if st.step > 0.0 {
            out.push((format!("step.{name}"), Tensor::from(st.step)));
        }
    }
    out
}

/// Installs `saved` (named as [`named_state`] names them) into `states`, checking each name and
/// shape against the parameters (`names`, `shapes`); `part(i, t)` converts a tensor for
/// parameter `i`.
fn restore_state<T>(
    names: &[String],
    shapes: &[Vec<i64>],
    states: &mut [State<T>],
    saved: &[(String, Tensor)],
    part: impl Fn(usize, Tensor) -> Result<T>,
) -> Result<()> {
    for (name, t) in saved {
        let (param, shaped) = state_entry(name).ok_or_else(|| unknown_state(name))?;
        let i = names.iter().position(|n| n == param).ok_or_else(|| unknown_state(name))?;
        let want = if shaped { shapes[i].clone() } else { vec![] };
        if t.size() != want {
            return Err(Error::Torch(tch::TchError::Shape(format!("optimizer state {name}: {:?}, expected {want:?}", t.size()))));
        }
        let t = t.to_kind(Kind::Float);
        match name.split_once('.').map(|(p, _)| p) {
            Some("step") => states[i].step = t.double_value(&[]) as f32,
            Some(p) => *states[i].part_mut(p).ok_or_else(|| unknown_state(name))? = Some(part(i, t)?),
            None => return Err(unknown_state(name)),
        }
    }
    Ok(())
}

fn unknown_state(name: &str) -> Error {
    Error::Torch(tch::TchError::Kind(format!("optimizer state {name}: not a state tensor of this model's parameters")))
}

/// `torch.optim.SGD`/`Adam`/`AdamW` over libtorch tensors, op for op (see the module doc).
#[derive(Debug)]
pub struct TensorOptimizer {
    spec: OptimizerSpec,
    params: Vec<(String, Tensor)>,
    state: Vec<State<Tensor>>,
}

impl TensorOptimizer {
    /// An optimizer over `params` (PyTorch's names, `named_parameters()` order).
    pub fn new(spec: OptimizerSpec, params: &[(&str, &Tensor)]) -> TensorOptimizer {
        let params: Vec<(String, Tensor)> = params.iter().map(|(n, p)| (n.to_string(), p.shallow_clone())).collect();
        let state = params.iter().map(|_| State::default()).collect();
        TensorOptimizer { spec, params, state }
    }

    /// Sets the learning rate and momentum (or `beta1`) for the next steps.
    pub fn set_rates(&mut self, rates: Rates) {
        (self.spec.lr, self.spec.momentum) = (rates.lr, rates.momentum);
    }

    /// `optimizer.zero_grad(); loss.backward(); optimizer.step()`.
    ///
    /// # Errors
    /// A libtorch error.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        for (_, p) in &mut self.params {
            ops::set_grad_none(p)?;
        }
        loss.f_backward()?;
        tch::no_grad(|| self.step())
    }

    /// `optimizer.step()` over the parameters that have a gradient.
    fn step(&mut self) -> Result<()> {
        let s = self.spec;
        for ((_, p), st) in self.params.iter_mut().zip(&mut self.state) {
            let grad = p.grad();
            if !grad.defined() {
                continue; // frozen: no gradient, as PyTorch skips it
            }
            match s.kind {
                OptimizerKind::Sgd => {
                    let mut g = if s.weight_decay != 0.0 { ops::add(&grad, p, s.weight_decay)? } else { grad };
                    if s.momentum != 0.0 {
                        let buf = match st.momentum_buffer.as_mut() {
                            None => st.momentum_buffer.insert(g.detach().copy()),
                            Some(buf) => {
                                let _ = buf.f_mul_scalar_(s.momentum)?;
                                ops::add_(buf, &g, 1.0 - s.dampening)?;
                                buf
                            }
                        };
                        g = if s.nesterov { ops::add(&g, buf, s.momentum)? } else { buf.shallow_clone() };
                    }
                    ops::add_(p, &g, -s.lr)?;
                }
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    if st.exp_avg.is_none() {
                        // state["exp_avg"] = torch.zeros_like(p), and the others, on the first step.
                        st.exp_avg = Some(p.zeros_like());
                        st.exp_avg_sq = Some(p.zeros_like());
                        st.max_exp_avg_sq = s.amsgrad.then(|| p.zeros_like());
                    }
                    let (Some(exp_avg), Some(exp_avg_sq)) = (st.exp_avg.as_mut(), st.exp_avg_sq.as_mut()) else {
                        unreachable!("set above")
                    };
                    st.step += 1.0;
                    let mut g = grad;
                    if s.weight_decay != 0.0 {
                        if s.kind == OptimizerKind::Adamw {
                            let _ = p.f_mul_scalar_(1.0 - s.lr * s.weight_decay)?;
                        } else {
                            g = ops::add(&g, p, s.weight_decay)?;
                        }
                    }
                    let beta1 = s.momentum;
                    let _ = exp_avg.f_lerp_(&g, 1.0 - beta1)?;
                    let _ = exp_avg_sq.f_mul_scalar_(s.beta2)?;
                    ops::addcmul_(exp_avg_sq, &g, &g, 1.0 - s.beta2)?;
                    let step = f64::from(st.step);
                    let bias_correction1 = 1.0 - beta1.powf(step);
                    let bias_correction2 = 1.0 - s.beta2.powf(step);
                    let step_size = s.lr / bias_correction1;
                    let bias_correction2_sqrt = bias_correction2.powf(0.5);
                    let v: &Tensor = match st.max_exp_avg_sq.as_ref() {
                        Some(max) if s.amsgrad => {
                            let _ = max.f_maximum_out(max, exp_avg_sq)?; // torch.maximum(max, v, out=max)
                            max
                        }
                        _ => exp_avg_sq,
                    };
                    let mut denom = v.f_sqrt()?.f_div_scalar(bias_correction2_sqrt)?;
                    let _ = denom.f_add_scalar_(s.eps)?;
                    ops::addcdiv_(p, exp_avg, &denom, -step_size)?;
                }
            }
        }
        Ok(())
    }

    /// The state tensors under PyTorch's names (none before the first step).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let names: Vec<String> = self.params.iter().map(|(n, _)| n.clone()).collect();
        named_state(&names, &self.state, |_, t| t.shallow_clone())
    }

    /// Installs saved state (see [`TensorOptimizer::state`]); parameters are unchanged.
    ///
    /// # Errors
    /// A name that is not this optimizer's state, or a tensor of the wrong shape.
    pub fn restore(&mut self, saved: &[(String, Tensor)]) -> Result<()> {
        let names: Vec<String> = self.params.iter().map(|(n, _)| n.clone()).collect();
        let shapes: Vec<Vec<i64>> = self.params.iter().map(|(_, p)| p.size()).collect();
        let devices: Vec<tch::Device> = self.params.iter().map(|(_, p)| p.device()).collect();
        restore_state(&names, &shapes, &mut self.state, saved, |i, t| Ok(t.to_device(devices[i]).detach().copy()))
    }
}

/// Flush-to-zero and denormals-are-zero (x86's MXCSR FTZ and DAZ bits) on this thread while it
/// lives; the previous mode comes back on drop. Does nothing on other architectures.
struct FlushSubnormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

impl FlushSubnormals {
    /// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    #[cfg(target_arch = "x86_64")]
    const BITS: u32 = 0x8040;

    fn new() -> FlushSubnormals {
        #[cfg(target_arch = "x86_64")]
        {
            #[allow(deprecated)] // the replacement is inline assembly; these are the intrinsics' documented use
            // SAFETY: reading and setting MXCSR's FTZ/DAZ bits changes only how this thread rounds subnormals.
            let saved = unsafe {
                let saved = std::arch::x86_64::_mm_getcsr();
                std::arch::x86_64::_mm_setcsr(saved | Self::BITS);
                saved
            };
            FlushSubnormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushSubnormals {}
    }
}

impl Drop for FlushSubnormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        #[allow(deprecated)]
        // SAFETY: restores the mode read in `new`.
        unsafe {
            std::arch::x86_64::_mm_setcsr(self.saved)
        };
    }
}

/// The same update rules on `f32` slices, element by element (the fast CPU kernels' optimizer:
/// the same mathematics as [`TensorOptimizer`], other rounding).
#[derive(Debug)]
pub struct SliceOptimizer {
    spec: OptimizerSpec,
    names: Vec<String>,
    shapes: Vec<Vec<i64>>,
    state: Vec<State<Vec<f32>>>,
}

impl SliceOptimizer {
    /// An optimizer for parameters named `names` of `shapes`.
    pub fn new(spec: OptimizerSpec, names: Vec<String>, shapes: Vec<Vec<i64>>) -> SliceOptimizer {
        let state = names.iter().map(|_| State::default()).collect();
        SliceOptimizer { spec, names, shapes, state }
    }

    /// Sets the learning rate and momentum (or `beta1`) for the next steps.
    pub fn set_rates(&mut self, rates: Rates) {
        (self.spec.lr, self.spec.momentum) = (rates.lr, rates.momentum);
    }

    /// One update of parameter `i` (`p`) with its gradient `g`.
    pub fn update(&mut self, i: usize, p: &mut [f32], g: &[f32]) {
        let s = self.spec;
        let st = &mut self.state[i];
        let (lr, wd) = (s.lr as f32, s.weight_decay as f32);
        match s.kind {
            OptimizerKind::Sgd => {
                let (m, damp) = (s.momentum as f32, 1.0 - s.dampening as f32);
                let first = st.momentum_buffer.is_none();
                let mut none = Vec::new();
                let buf = if s.momentum != 0.0 { st.momentum_buffer.get_or_insert_with(|| vec![0.0; g.len()]) } else { &mut none };
                for (k, (p, &g)) in p.iter_mut().zip(g).enumerate() {
                    let g = if wd != 0.0 { g + wd * *p } else { g };
                    let d = if s.momentum != 0.0 {
                        let b = &mut buf[k];
                        *b = if first { g } else { m * *b + damp * g };
                        if s.nesterov { g + m * *b } else { *b }
                    } else {
                        g
                    };
                    *p += -lr * d;
                }
            }
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                // Adam's second moments decay geometrically (beta2 = 0.999) towards subnormal
                // floats for rarely-moving weights, where x86 arithmetic is many times slower
                // (measured: the update 7x slower after two epochs); flushing them to zero is a
                // rounding of values below 1.2e-38, as the fast mode may round.
                let _flush = FlushSubnormals::new();
                st.step += 1.0;
                let step = f64::from(st.step);
                let (beta1, beta2) = (s.momentum, s.beta2);
                let step_size = (s.lr / (1.0 - beta1.powf(step))) as f32;
                let bc2_sqrt = (1.0 - beta2.powf(step)).powf(0.5) as f32;
                let (b1, b2, eps) = (beta1 as f32, beta2 as f32, s.eps as f32);
                let decay = (1.0 - s.lr * s.weight_decay) as f32;
                let n = g.len();
                let m = st.exp_avg.get_or_insert_with(|| vec![0.0; n]);
                let v = st.exp_avg_sq.get_or_insert_with(|| vec![0.0; n]);
                let mut none = Vec::new();
                let vmax = if s.amsgrad { st.max_exp_avg_sq.get_or_insert_with(|| vec![0.0; n]) } else { &mut none };
                for k in 0..n {
                    let mut g = g[k];
                    if s.weight_decay != 0.0 {
                        if s.kind == OptimizerKind::Adamw {
                            p[k] *= decay;
                        } else {
                            g += wd * p[k];
                        }
                    }
                    m[k] += (1.0 - b1) * (g - m[k]);
                    v[k] = b2 * v[k] + (1.0 - b2) * g * g;
                    let second = if s.amsgrad {
                        vmax[k] = vmax[k].max(v[k]);
                        vmax[k]
                    } else {
                        v[k]
                    };
                    p[k] += -step_size * m[k] / (second.sqrt() / bc2_sqrt + eps);
                }
            }
        }
    }

    /// The state tensors under PyTorch's names (see [`TensorOptimizer::state`]).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        named_state(&self.names, &self.state, |i, t| Tensor::from_slice(t).view(self.shapes[i].as_slice()))
    }

    /// Installs saved state (see [`TensorOptimizer::restore`]).
    ///
    /// # Errors
    /// A name that is not this optimizer's state, or a tensor of the wrong shape.
    pub fn restore(&mut self, saved: &[(String, Tensor)]) -> Result<()> {
        restore_state(&self.names, &self.shapes, &mut self.state, saved, |_, t| {
            Ok(Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).contiguous().view(-1))?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnormals_flush_to_zero_only_inside_the_guard() {
        let half = |x: f32| std::hint::black_box(x) / std::hint::black_box(2.0f32);
        let tiny = f32::MIN_POSITIVE; // the smallest normal float; half of it is subnormal
        assert!(half(tiny) > 0.0);
        {
            let _flush = FlushSubnormals::new();
            if cfg!(target_arch = "x86_64") {
                assert_eq!(half(tiny), 0.0);
            }
        }
        assert!(half(tiny) > 0.0, "the mode is restored");
    }
}
