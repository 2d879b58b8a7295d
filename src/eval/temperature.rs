//! Temperature scaling (Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural
//! Networks", ICML 2017, section 4.2): one scalar `T > 0` divides every logit before the
//! softmax, `softmax(z / T)`, fitted on a validation split by minimising the negative
//! log-likelihood. The argmax, and so the accuracy, does not change.
//!
//! The fit ([`fit_temperature`]) is a golden-section search on `log T` over `[log T_MIN, log
//! T_MAX]`, to [`TOLERANCE`] in `log T`: the NLL of `z / T` is convex in `1 / T` (a log-sum-exp
//! of linear functions of `1 / T` minus a linear one), so it has one minimum along `log T` and the
//! search brackets it. The NLL is computed in `f64` on the host.

use tch::{Device, Kind, Tensor};

/// The smallest temperature searched.
pub const T_MIN: f64 = 0.01;
/// The largest temperature searched.
pub const T_MAX: f64 = 100.0;
/// The search stops when the bracket on `log T` is this narrow (a relative 1e-6 on T).
pub const TOLERANCE: f64 = 1e-6;

/// Mean negative log-likelihood of `labels` under `softmax(logits / t)`, in `f64`.
/// `logits`: `[N, K]` float, any device; `labels`: `int64 [N]`.
pub fn nll(logits: &Tensor, labels: &Tensor, t: f64) -> f64 {
    tch::no_grad(|| {
        let z = logits.to_device(Device::Cpu).to_kind(Kind::Double) / t;
        z.cross_entropy_for_logits(&labels.to_device(Device::Cpu)).double_value(&[])
    })
}

/// The temperature minimising [`nll`] on `logits` and `labels` (see the module doc), in
/// `[T_MIN, T_MAX]`; one at a bound means the minimum lies beyond it.
pub fn fit_temperature(logits: &Tensor, labels: &Tensor) -> f64 {
    let z = tch::no_grad(|| logits.to_device(Device::Cpu).to_kind(Kind::Double));
    let y = labels.to_device(Device::Cpu);
    let f = |log_t: f64| nll(&z, &y, log_t.exp());
    let ratio = (5f64.sqrt() - 1.0) / 2.0; // 1/phi
    let (mut a, mut b) = (T_MIN.ln(), T_MAX.ln());
    let (mut c, mut d) = (b - ratio * (b - a), a + ratio * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    while b - a > TOLERANCE {
        if fc <= fd {
            (b, d, fd) = (d, c, fc);
            c = b - ratio * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + ratio * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_minimises_the_nll() {
        tch::manual_seed(1);
        let logits = Tensor::randn([300, 4], (Kind::Float, Device::Cpu)) * 3.0;
        // Right on 60 % of the images and random on the others: the minimum is inside the range.
        let random = Tensor::randint(4, [300], (Kind::Int64, Device::Cpu));
        let labels = logits.argmax(-1, false).where_self(&Tensor::rand([300], (Kind::Float, Device::Cpu)).lt(0.6), &random);
        let t = fit_temperature(&logits, &labels);
        assert!(t > 1.01 * T_MIN && t < 0.99 * T_MAX, "{t}");
        let best = nll(&logits, &labels, t);
        for step in [0.9, 0.99, 1.01, 1.1] {
            assert!(nll(&logits, &labels, t * step) >= best, "T {t}, step {step}");
        }
        // Labels unrelated to the logits: the NLL falls all the way to the flat softmax, T_MAX.
        let t = fit_temperature(&logits, &random.roll([1], [0]));
        assert!(t > 0.99 * T_MAX || t > 5.0, "{t}");
    }
}
