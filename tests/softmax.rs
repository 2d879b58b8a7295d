//! The softmax head (src/softmax.rs) against its definition, libtorch, autograd and finite
//! differences. Logits are drawn from a seeded generator; nothing else is read.

use tch::{Device, Kind, Tensor};
use tch_cifar10::{
    softmax::{cross_entropy, log_softmax, softmax},
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn vec64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

/// Seeded logits `[n, k]`, standard normal times `scale`.
fn logits(seed: i64, n: i64, k: i64, scale: f64, kind: Kind) -> Tensor {
    let _rng = tch_cifar10::rng::lock_global_rng();
    tch::manual_seed(seed);
    Tensor::randn([n, k], (kind, Device::Cpu)) * scale
}

fn labels(seed: i64, n: i64, k: i64) -> Tensor {
    let _rng = tch_cifar10::rng::lock_global_rng();
    tch::manual_seed(seed);
    Tensor::randint(k, [n], (Kind::Int64, Device::Cpu))
}

#[test]
fn probabilities_are_non_negative_and_sum_to_one() {
    for (scale, kind, tol) in [(1.0, Kind::Float, 1e-6), (30.0, Kind::Float, 1e-6), (30.0, Kind::Double, 1e-14)] {
        let p = softmax(&logits(1, 64, 10, scale, kind));
        assert_eq!(p.kind(), kind);
        assert!(vec64(&p).iter().all(|&x| (0.0..=1.0).contains(&x)), "scale {scale}");
        let sums = vec64(&p.sum_dim_intlist(-1, false, Kind::Double));
        assert!(sums.iter().all(|s| (s - 1.0).abs() < tol), "scale {scale}: {sums:?}");
        // exp(log_softmax) is the same distribution.
        assert!(max_abs_diff(&log_softmax(&logits(1, 64, 10, scale, kind)).exp(), &p) < tol);
    }
}

#[test]
fn adding_a_constant_to_the_logits_changes_nothing() -> TestResult {
    // float64, and constants far beyond exp's range: without the max shift, exp(z + 800)
    // overflows to inf and the result would be NaN.
    let z = logits(2, 16, 10, 3.0, Kind::Double);
    let ys = labels(3, 16, 10);
    for c in [-800.0, -1.0, 0.5, 800.0] {
        let shifted = &z + c;
        assert!(max_abs_diff(&softmax(&shifted), &softmax(&z)) < 1e-12, "c = {c}");
        assert!(max_abs_diff(&log_softmax(&shifted), &log_softmax(&z)) < 1e-12, "c = {c}");
        let (a, b) = (cross_entropy(&shifted, &ys)?.double_value(&[]), cross_entropy(&z, &ys)?.double_value(&[]));
        assert!((a - b).abs() < 1e-12, "c = {c}: {a} vs {b}");
    }
    Ok(())
}

#[test]
fn extreme_logits_stay_finite() -> TestResult {
    let z = Tensor::from_slice(&[1e4f32, -1e4, 0.0, -1e4, 1e4, 1e4, 0.0, 0.0, -1e4]).view([3, 3]);
    let p = vec64(&softmax(&z));
    assert!(p.iter().all(|x| x.is_finite()), "{p:?}");
    // Row 0: all mass on the first class; row 1: split between the two at 1e4.
    assert_eq!(&p[..6], &[1.0, 0.0, 0.0, 0.0, 0.5, 0.5]);
    let lp = vec64(&log_softmax(&z));
    assert!(lp.iter().all(|x| x.is_finite()), "{lp:?}");
    // log_softmax of the losing class is exactly -2e4 (z - max), not -inf.
    assert_eq!(lp[1], -2e4);
    // Labels on the losing classes: the loss is large but finite.
    let loss = cross_entropy(&z, &Tensor::from_slice(&[1i64, 0, 2]))?.double_value(&[]);
    assert!(loss.is_finite() && loss > 1e4, "{loss}");
    Ok(())
}

#[test]
fn values_match_libtorchs_cross_entropy_and_softmax() -> TestResult {
    for (seed, n, k, scale) in [(4, 100, 10, 1.0), (5, 7, 3, 10.0), (6, 1, 256, 5.0)] {
        let z = logits(seed, n, k, scale, Kind::Float);
        let ys = labels(seed + 100, n, k);
        let ours = cross_entropy(&z, &ys)?.double_value(&[]);
        let theirs = z.cross_entropy_for_logits(&ys).double_value(&[]);
        assert!((ours - theirs).abs() <= 1e-6 * theirs.abs().max(1.0), "seed {seed}: {ours} vs {theirs}");
        assert!(max_abs_diff(&softmax(&z), &z.softmax(-1, Kind::Float)) < 1e-6);
        assert!(max_abs_diff(&log_softmax(&z), &z.log_softmax(-1, Kind::Float)) < 1e-5 * scale);
    }
    Ok(())
}

#[test]
fn autograd_gradient_is_softmax_minus_onehot_over_n() -> TestResult {
    let (n, k) = (32, 10);
    for kind in [Kind::Float, Kind::Double] {
        let z = logits(7, n, k, 2.0, kind).set_requires_grad(true);
        let ys = labels(8, n, k);
        cross_entropy(&z, &ys)?.backward();
        let expected = (softmax(&z.detach()) - ys.one_hot(k).to_kind(kind)) / n as f64;
        let tol = if kind == Kind::Float { 1e-8 } else { 1e-16 };
        let diff = max_abs_diff(&z.grad(), &expected);
        assert!(diff < tol, "{kind:?}: {diff}");
        // And the same as libtorch's F.cross_entropy = log_softmax + nll_loss (in the logits'
        // kind: tch's cross_entropy_for_logits would compute in float32).
        let z2 = z.detach().set_requires_grad(true);
        z2.log_softmax(-1, kind).nll_loss(&ys).backward();
        let diff = max_abs_diff(&z.grad(), &z2.grad());
        assert!(diff < tol, "{kind:?}: {diff} from libtorch's");
    }
    Ok(())
}

#[test]
fn gradient_matches_float64_finite_differences() -> TestResult {
    let (n, k) = (5, 4);
    let z = logits(9, n, k, 1.5, Kind::Double);
    let ys = labels(10, n, k);
    let zg = z.copy().set_requires_grad(true);
    cross_entropy(&zg, &ys)?.backward();
    let grad = vec64(&zg.grad());
    let base = vec64(&z);
    let h = 1e-6;
    let loss_at = |values: &[f64]| -> f64 {
        let t = Tensor::from_slice(values).view([n, k]);
        cross_entropy(&t, &ys).unwrap().double_value(&[])
    };
    for i in 0..base.len() {
        let (mut up, mut down) = (base.clone(), base.clone());
        up[i] += h;
        down[i] -= h;
        // Central difference: error O(h^2) ~ 1e-12 plus rounding ~ 1e-16 / h ~ 1e-10.
        let fd = (loss_at(&up) - loss_at(&down)) / (2.0 * h);
        assert!((fd - grad[i]).abs() < 1e-8, "element {i}: finite difference {fd} vs autograd {}", grad[i]);
    }
    // The /N of the batch mean is there: each row's gradient sums to 0 and the label's entry is
    // (p - 1)/N, so the largest magnitude is below 1/N.
    assert!(grad.iter().all(|g| g.abs() < 1.0 / n as f64));
    Ok(())
}
