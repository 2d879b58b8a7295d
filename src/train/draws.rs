//! The draws a run makes from PyTorch's global generator after the weights, epoch by epoch, in
//! the order the reference program's DataLoaders make them: each epoch's training iterator
//! draws its base seed, its `RandomSampler` draws the seed of a fresh generator for
//! `randperm(n)`, then (with augmentation) the transforms draw for each sample in the
//! permutation's order (`recipe::augment`); each test evaluation between epochs creates a test
//! iterator, which draws one base seed too. Nothing else draws during training.
//!
//! The generator is libtorch's own, continued in Rust from its state after the weights
//! ([`Mt19937::from_libtorch`]), so the draws are the reference's whatever their number.

use crate::{
    config::TrainConfig,
    recipe::augment::{Augment, SampleDraw},
    rng::Mt19937,
};

/// One epoch's draws.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EpochDraws {
    /// The seed of the epoch's `randperm` ([`crate::rng::epoch_permutation`]).
    pub seed: i64,
    /// Each sample's augmentation, in the permutation's order (empty without augmentation).
    pub samples: Vec<SampleDraw>,
}

/// The run's draws, epoch after epoch (see the module doc).
#[derive(Clone, Debug)]
pub(crate) struct Draws {
    gen: Mt19937,
    augment: Augment,
    samples: usize,
    cfg: TrainConfig,
    epoch: usize,
}

impl Draws {
    /// The draws of a run of `cfg` over `samples` training images, from `gen` (the global
    /// generator right after the weights were drawn).
    pub(crate) fn new(cfg: &TrainConfig, samples: usize, gen: Mt19937) -> Draws {
        Draws { gen, augment: cfg.recipe.augment(), samples, cfg: cfg.clone(), epoch: 0 }
    }

    /// The next epoch's draws.
    pub(crate) fn next_epoch(&mut self) -> EpochDraws {
        let seed = self.seeds();
        let samples = if self.augment.is_none() { Vec::new() } else { self.augment.draw(&mut self.gen, self.samples) };
        self.after_epoch();
        EpochDraws { seed, samples }
    }

    /// Moves past the next epoch without keeping its draws (a resumed run's finished epochs).
    pub(crate) fn skip_epoch(&mut self) {
        self.seeds();
        for _ in 0..self.samples * self.augment.draws_per_sample() {
            self.gen.next_u32();
        }
        self.after_epoch();
    }

    /// The iterator's base seed, then the sampler's seed (returned).
    fn seeds(&mut self) -> i64 {
        let _base_seed = self.gen.draw_i64();
        self.gen.draw_i64()
    }

    fn after_epoch(&mut self) {
        self.epoch += 1;
        if self.cfg.evaluates_after(self.epoch) {
            let _test_base_seed = self.gen.draw_i64();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{draw_i64, epoch_permutation, lock_global_rng};

    fn libtorch_after(seed: i64) -> Mt19937 {
        tch::manual_seed(seed);
        Mt19937::from_libtorch().unwrap()
    }

    #[test]
    fn the_seeds_are_libtorchs_draws() {
        let rng = lock_global_rng();
        let cfg = TrainConfig { epochs: 3, eval_every: Some(2), ..TrainConfig::default() };
        let mut draws = Draws::new(&cfg, 10, libtorch_after(7));
        let got: Vec<i64> = (0..3).map(|_| draws.next_epoch().seed).collect();
        // What the reference's DataLoaders draw: base seed, sampler seed; a test pass after epoch 2.
        tch::manual_seed(7);
        let mut want = vec![];
        for epoch in 1..=3 {
            let _base = draw_i64();
            want.push(draw_i64());
            if epoch == 2 {
                let _test = draw_i64();
            }
        }
        assert_eq!(got, want);
        assert!(got.windows(2).all(|w| w[0] != w[1]));
        drop(rng); // epoch_permutation takes the lock itself
        let p = epoch_permutation(got[0], 10);
        let mut sorted = Vec::<i64>::try_from(&p.sort(0, false).0).unwrap();
        sorted.dedup();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn augmentation_draws_come_between_the_epochs_seeds() {
        let _rng = lock_global_rng();
        let cfg = TrainConfig { epochs: 2, recipe: crate::config::RecipeConfig { random_crop: Some(4), hflip: true, ..Default::default() }, ..TrainConfig::default() };
        let mut draws = Draws::new(&cfg, 5, libtorch_after(3));
        let (e1, e2) = (draws.next_epoch(), draws.next_epoch());
        assert_eq!(e1.samples.len(), 5);
        // By hand: two seeds, 5 x (randint, randint, rand), then the second epoch's two seeds.
        tch::manual_seed(3);
        let (_, s1) = (draw_i64(), draw_i64());
        let _ = tch::Tensor::randint(9, [15], (tch::Kind::Int64, tch::Device::Cpu));
        let (_, s2) = (draw_i64(), draw_i64());
        assert_eq!((e1.seed, e2.seed), (s1, s2));
        // Skipping an epoch lands where drawing it does.
        let mut skipped = Draws::new(&cfg, 5, libtorch_after(3));
        skipped.skip_epoch();
        assert_eq!(skipped.next_epoch(), e2);
        // A mid-run evaluation draws one more seed, which moves the next epoch.
        let evals = TrainConfig { eval_every: Some(1), ..cfg.clone() };
        let mut d = Draws::new(&evals, 5, libtorch_after(3));
        assert_eq!(d.next_epoch(), e1);
        assert_ne!(d.next_epoch().seed, e2.seed);
    }
}
