//! libtorch's global generator: the lock that keeps a sequence of seed-and-draw operations
//! together, and the draws the reference program makes from it (PyTorch's `torch.manual_seed`,
//! `torch.empty((), dtype=torch.int64).random_()`, `torch.randperm`).

use std::sync::{Mutex, MutexGuard};

use tch::{Kind, Tensor};

static GLOBAL_RNG: Mutex<()> = Mutex::new(());

/// Holds libtorch's global generator for a sequence of seed-and-draw operations, so that runs on
/// several threads of one process (tests, library users) cannot interleave their draws.
pub fn lock_global_rng() -> MutexGuard<'static, ()> {
    GLOBAL_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One draw of `torch.empty((), dtype=torch.int64).random_()` from the global generator.
pub(crate) fn draw_i64() -> i64 {
    Tensor::empty([], (Kind::Int64, tch::Device::Cpu)).random_().int64_value(&[])
}

/// The reference's batch order for one epoch: `randperm(n)` from a generator seeded with `seed`
/// (`int64 [n]`, on the CPU). Reseeds the global generator, which is safe once
/// [`crate::train::schedule::shuffle_seeds`] has drawn everything.
pub fn epoch_permutation(seed: i64, n: usize) -> Tensor {
    let _rng = lock_global_rng();
    tch::manual_seed(seed);
    Tensor::randperm(n as i64, (Kind::Int64, tch::Device::Cpu))
}
