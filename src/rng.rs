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

/// One draw of `torch.empty((), dtype=torch.int64).random_()` from the global generator (the
/// tests compare [`Mt19937`] with it).
#[cfg(test)]
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

/// libtorch's CPU generator, continued in Rust: `at::mt19937` (ATen/core/MT19937RNGEngine.h,
/// the 32-bit Mersenne Twister of Matsumoto and Nishimura, 1998) with libtorch's `left`/`next`
/// bookkeeping, and the transformations of ATen/core/DistributionsHelper.h and
/// TransformationHelper.h for the draws the reference program makes. Used where a run draws
/// from the global generator between libtorch calls faster than libtorch can be called: the
/// per-sample crop offsets and flips of data augmentation (`recipe::augment`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mt19937 {
    state: [u32; MT_N],
    left: i32,
    next: usize,
}

const MT_N: usize = 624;
const MT_M: usize = 397;

impl Mt19937 {
    /// The generator after `torch.manual_seed(seed)`: libtorch seeds MT19937 with the low 32 bits
    /// of the seed (`init_with_uint32`).
    pub fn new(seed: u64) -> Mt19937 {
        let mut state = [0u32; MT_N];
        state[0] = seed as u32;
        for j in 1..MT_N {
            state[j] = 1_812_433_253u32.wrapping_mul(state[j - 1] ^ (state[j - 1] >> 30)).wrapping_add(j as u32);
        }
        Mt19937 { state, left: 1, next: 0 }
    }

    /// The current state of libtorch's global CPU generator (read through the ops shim), so
    /// that this one continues exactly where libtorch stands. Hold [`lock_global_rng`] around
    /// the libtorch draws that come before.
    ///
    /// # Errors
    /// A libtorch error reading the generator.
    pub fn from_libtorch() -> crate::error::Result<Mt19937> {
        let mut state = [0u32; MT_N];
        let (left, next) = crate::ops::cpu_generator_state(&mut state)?;
        Ok(Mt19937 { state, left, next: next as usize })
    }

    /// One raw 32-bit draw (`CPUGeneratorImpl::random()`).
    pub fn next_u32(&mut self) -> u32 {
        self.left -= 1;
        if self.left == 0 {
            self.next_state();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn next_state(&mut self) {
        let twist = |u: u32, v: u32| (((u & 0x8000_0000) | (v & 0x7fff_ffff)) >> 1) ^ if v & 1 == 1 { 0x9908_b0df } else { 0 };
        for i in 0..MT_N {
            let m = self.state[(i + MT_M) % MT_N];
            self.state[i] = m ^ twist(self.state[i], self.state[(i + 1) % MT_N]);
        }
        self.left = MT_N as i32;
        self.next = 0;
    }

    /// `CPUGeneratorImpl::random64()`: two draws, the first the high word.
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32();
        let lo = self.next_u32();
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// `torch.empty((), dtype=torch.int64).random_()`: `random64() % 2^63` (the seeds a
    /// DataLoader iterator and a `RandomSampler` draw).
    pub fn draw_i64(&mut self) -> i64 {
        (self.next_u64() % (1u64 << 63)) as i64
    }

    /// `torch.randint(0, n, (1,)).item()` for `n` below 2^32: one draw, `random() % n`.
    pub fn randint(&mut self, n: u32) -> u32 {
        self.next_u32() % n
    }

    /// `torch.rand(1).item()` (float32): one draw, `(random() & (2^24 - 1)) * 2^-24`.
    pub fn rand_f32(&mut self) -> f32 {
        (self.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }
}
