//! The pure schedule pieces of the reference loop: `StepLR` as a function of the epoch, and the
//! per-epoch shuffle seeds that `DataLoader(shuffle=True)` draws from the global generator
//! (through [`crate::rng`]).

use crate::{config::TrainConfig, rng::draw_i64};

/// The learning rate used during `epoch` (1-based) under
/// `StepLR(optimizer, step_size, gamma)` stepped once after each epoch.
///
/// PyTorch multiplies the current rate by `gamma` at each boundary (`lr * gamma`, repeatedly),
/// so this does the same in f64 rather than `lr * gamma.powi(k)`, to give the same bits.
pub fn step_lr(cfg: &TrainConfig, epoch: usize) -> f64 {
    let decays = (epoch.max(1) - 1) / cfg.step_size;
    (0..decays).fold(cfg.learning_rate, |lr, _| lr * cfg.gamma)
}

/// The seed of each epoch's `randperm`, drawn from the global generator exactly as the reference
/// program's `DataLoader`s draw: each epoch's training iterator draws its base seed, then its
/// `RandomSampler` draws the seed of a fresh generator for `randperm(n)`; each test evaluation
/// between epochs creates a test iterator, which draws one base seed too. Nothing else draws
/// during training, so all seeds are drawn up front, right after the weights are initialised.
pub fn shuffle_seeds(cfg: &TrainConfig) -> Vec<i64> {
    (1..=cfg.epochs)
        .map(|epoch| {
            let _base_seed = draw_i64();
            let sampler_seed = draw_i64();
            if cfg.evaluates_after(epoch) {
                let _test_base_seed = draw_i64();
            }
            sampler_seed
        })
        .collect()
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{epoch_permutation, lock_global_rng};

    #[test]
    fn step_lr_is_the_reference_schedule() {
        let cfg = TrainConfig::default();
        let lr = |e| step_lr(&cfg, e);
        // StepLR(step_size=20, gamma=0.1) after SGD(lr=0.001): 1e-3 for epochs 1-20, then 1e-4, 1e-5.
        assert_eq!([lr(1), lr(20)], [1e-3, 1e-3]);
        assert_eq!([lr(21), lr(40)], [1e-3 * 0.1; 2]);
        assert_eq!([lr(41), lr(50)], [1e-3 * 0.1 * 0.1; 2]);
        assert!((lr(41) - 1e-5).abs() < 1e-20);
    }

    #[test]
    fn shuffle_seeds_are_reproducible_and_distinct() {
        let _rng = lock_global_rng();
        let cfg = TrainConfig { epochs: 4, ..TrainConfig::default() };
        tch::manual_seed(7);
        let a = shuffle_seeds(&cfg);
        tch::manual_seed(7);
        let b = shuffle_seeds(&cfg);
        assert_eq!(a, b);
        assert_eq!(a.len(), 4);
        assert!(a.windows(2).all(|w| w[0] != w[1]));
        drop(_rng);
        let p = epoch_permutation(a[0], 10);
        let mut sorted = Vec::<i64>::try_from(&p.sort(0, false).0).unwrap();
        sorted.dedup();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_mid_run_evaluation_draws_one_more_seed() {
        let plain = TrainConfig { epochs: 3, ..TrainConfig::default() };
        let evals = TrainConfig { eval_every: Some(1), ..plain.clone() };
        let _rng = lock_global_rng();
        tch::manual_seed(1);
        let a = shuffle_seeds(&plain);
        tch::manual_seed(1);
        let b = shuffle_seeds(&evals);
        assert_eq!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
    }
}
