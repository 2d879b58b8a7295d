//! The classifier head's mathematics, from tensor primitives: a numerically stable softmax,
//! log-softmax, and the mean cross-entropy that `nn.CrossEntropyLoss()` (and tch's
//! `cross_entropy_for_logits`) computes. `predict` takes its probabilities from here; training
//! keeps libtorch's fused `cross_entropy_for_logits`, which the tests show equal to these.
//!
//! For logits `z` of shape `[N, K]` (N examples, K classes) and labels `y` in `0..K`:
//!
//! ```text
//! softmax(z)_ik     = exp(z_ik - m_i) / sum_j exp(z_ij - m_i),       m_i = max_j z_ij
//! log_softmax(z)_ik = (z_ik - m_i) - log sum_j exp(z_ij - m_i)
//! L(z, y)           = -(1/N) sum_i log_softmax(z)_{i, y_i}           (mean over the batch)
//! dL/dz_ik          = (softmax(z)_ik - [k = y_i]) / N                 = (softmax(z) - onehot(y)) / N
//! ```
//!
//! Subtracting the row maximum `m_i` changes nothing mathematically (numerator and denominator
//! both gain the factor `exp(-m_i)`), but keeps every `exp` argument at most 0: no overflow for
//! large logits, and the largest term is exactly 1, so the sum never underflows to 0 and the
//! log stays finite. The gradient follows from `d log_softmax(z)_{iy}/dz_ik = [k = y] -
//! softmax(z)_ik`, with the `1/N` of the batch mean.
//!
//! The tutorial text this program ports gets both wrong: its loss divides the sum by the number
//! of classes K (`-1/K sum ...`) where `nn.CrossEntropyLoss` averages over the N examples of the
//! batch (so its figures would be K times too small), and the gradients it writes down are not
//! the derivative of its loss. The forms above are the ones PyTorch computes; the tests check
//! them against tch's `cross_entropy_for_logits`, autograd, and float64 finite differences.
//!
//! **Label smoothing** (`--label-smoothing eps`, PyTorch's `CrossEntropyLoss(label_smoothing=eps)`,
//! after Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision"):
//! the target is the soft distribution `q_ik = (1 - eps) [k = y_i] + eps / K` instead of the
//! one-hot label, and the loss is its cross-entropy with the softmax,
//!
//! ```text
//! L_eps(z, y) = -(1/N) sum_i sum_k q_ik log_softmax(z)_ik
//!             = (1 - eps) L(z, y) + (eps / K) (1/N) sum_i sum_k -log_softmax(z)_ik
//! dL_eps/dz_ik = (softmax(z)_ik - q_ik) / N
//! ```
//!
//! which is how ATen's `cross_entropy_loss_label_smoothing` computes it (the second form:
//! `(1 - eps) * nll_loss + smooth_loss.mean() * (eps / K)`, `aten/src/ATen/native/LossNLL.cpp`);
//! `eps = 0` is the plain loss. [`cross_entropy_smoothed`] computes the first form from the
//! primitives here; `tests/softmax.rs` checks it against libtorch.

use tch::{Kind, Tensor};

use crate::error::Result;

/// Softmax over the last dimension, stable for any finite logits: every row of the result is
/// non-negative and sums to 1. Keeps the input's kind and device.
pub fn softmax(logits: &Tensor) -> Tensor {
    let shifted = shift_by_max(logits);
    let exp = shifted.exp();
    let sum = exp.sum_dim_intlist(-1, true, None::<Kind>);
    exp / sum
}

/// Log-softmax over the last dimension: `(z - max z) - log(sum exp(z - max z))`, finite for any
/// finite logits. Keeps the input's kind and device.
pub fn log_softmax(logits: &Tensor) -> Tensor {
    let shifted = shift_by_max(logits);
    let log_sum = shifted.exp().sum_dim_intlist(-1, true, None::<Kind>).log();
    shifted - log_sum
}

/// Mean cross-entropy of `logits` `[N, K]` (float) against `labels` `[N]` (int64, each in
/// `0..K`): `-(1/N) sum_i log_softmax(logits)_{i, labels_i}`, a scalar of the logits' kind.
///
/// # Errors
/// [`crate::Error::Torch`] when the shapes disagree or a label is outside `0..K`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let picked = log_softmax(logits).f_gather(-1, &labels.f_unsqueeze(-1)?, false)?;
    Ok(picked.f_mean(None::<Kind>)?.f_neg()?)
}

/// Mean cross-entropy with label smoothing `eps` (see the module doc): `-(1/N) sum_i sum_k q_ik
/// log_softmax(logits)_ik` with `q_ik = (1 - eps) [k = labels_i] + eps / K`, for `logits`
/// `[N, K]` (float) and `labels` `[N]` (int64 in `0..K`); a scalar of the logits' kind.
///
/// # Errors
/// [`crate::Error::Torch`] when the shapes disagree or a label is outside `0..K`.
pub fn cross_entropy_smoothed(logits: &Tensor, labels: &Tensor, eps: f64) -> Result<Tensor> {
    let k = logits.size().last().copied().unwrap_or(1);
    let onehot = labels.f_one_hot(k)?.to_kind(logits.kind());
    let q = onehot * (1.0 - eps) + eps / k as f64;
    Ok((q * log_softmax(logits)).f_sum_dim_intlist(-1, false, None::<Kind>)?.f_mean(None::<Kind>)?.f_neg()?)
}

/// `z - max(z)` along the last dimension. The maximum is detached: the shift cancels in
/// (log-)softmax, so its gradient is exactly zero, and leaving it out of the graph keeps
/// autograd's result the plain `softmax - onehot`.
fn shift_by_max(logits: &Tensor) -> Tensor {
    logits - logits.amax(-1, true).detach()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_logits_give_the_uniform_distribution_and_loss_ln_k() {
        // Hand derivation: softmax of K equal logits is 1/K each, so the loss is ln K for every
        // example and its batch mean is ln K (the reference text's "/K" would give ln(K)/K).
        let z = Tensor::zeros([3, 4], (Kind::Double, tch::Device::Cpu));
        let p = Vec::<f64>::try_from(softmax(&z).flatten(0, -1)).unwrap();
        assert!(p.iter().all(|&x| x == 0.25), "{p:?}");
        let loss = cross_entropy(&z, &Tensor::from_slice(&[0i64, 3, 1])).unwrap().double_value(&[]);
        assert!((loss - 4f64.ln()).abs() < 1e-15, "{loss}");
    }

    #[test]
    fn a_label_out_of_range_is_an_error() {
        let z = Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu));
        assert!(cross_entropy(&z, &Tensor::from_slice(&[0i64, 3])).is_err());
    }
}
