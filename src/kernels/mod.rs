//! Hand-written CPU kernels for `--kernels fast`: one SGD step of [`crate::model::Net`] (forward,
//! cross-entropy, backward, SGD with momentum) without libtorch's per-operator dispatch, layout
//! reorders or threading per operator.
//!
//! # Layout: the batch in the lanes
//! A batch is cut into chunks of [`L`] = 8 images (the last one padded with zero images whose
//! loss gradient is zero). Within a chunk every activation is stored `[C][H][W][L]`: the 8 images
//! of one pixel of one channel are one 256-bit vector. Every operation of the network then
//! becomes "scalar weight times a vector of 8 images", the same few lines for all of them:
//!
//! | operation | formula (per image, lanes implicit) | kernel |
//! |---|---|---|
//! | convolution, forward | `y[o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] x[c,i+p,j+q]` | [`conv::forward`] |
//! | convolution, input gradient | `dx[c,i,j] = sum_{o,p,q} w[o,c,p,q] dy[o,i-p,j-q]` | [`conv::input_grad`] |
//! | convolution, weight gradient | `dw[o,c,p,q] = sum_{i,j} dy[o,i,j] x[c,i+p,j+q]` | [`conv::weight_grad`] |
//! | max-pool 2x2 then ReLU | `y = relu(max of 4)`, gradient to the first maximum | [`pool`] |
//! | linear layers | a 1x1 convolution on a 1x1 image | [`dense`] |
//!
//! # Threads and determinism
//! A step has two parallel phases and nothing else to wait for: (1) each chunk, on whichever
//! thread takes it, runs the whole forward and backward pass and writes its own partial conv2
//! gradients; (2) small tasks compute the linear layers' weight gradients by rows (each summing
//! over chunks and lanes in a fixed order) and conv1's partial gradients by chunk and output pair
//! (a fifth of a chunk's work, which evens out the threads: 13 chunks of a batch of 100 would
//! otherwise split 7 to 6); then the chunks' partial sums are added in chunk order.
//! No sum depends on which thread did what, every product-sum is a fused multiply-add
//! (`f32::mul_add`: the AVX2/FMA instruction where the CPU has it, the exactly-rounded library
//! function elsewhere), and so a step gives the same bits at any `--threads`, with or without
//! AVX2 (the softmax's `exp` and `ln` are the C library's, which another platform may round
//! differently).
//!
//! # Cost
//! Per image, multiply-adds: conv1 forward 6·28·28·75 = 352,800 and weight gradient the same
//! (no input gradient is needed); conv2 forward, weight gradient and input gradient 16·10·10·150
//! = 240,000 each; fc1 400·120 = 48,000, fc2 120·84 = 10,080, fc3 84·10 = 840, each three
//! times. In all 1,603,760 multiply-adds, 3.2 MFLOP an image, 160.4 GFLOP a 50,000-image epoch.

pub(crate) mod conv;
pub(crate) mod dense;
pub(crate) mod lenet;
pub(crate) mod pool;

use std::sync::atomic::{AtomicBool, Ordering};

/// Images per vector: 8 `f32` lanes, one AVX2 register.
pub(crate) const L: usize = 8;

/// One pixel of one channel for the [`L`] images of a chunk.
pub(crate) type V = [f32; L];

/// Tests set this to run the portable code on a CPU that has AVX2 and FMA, to show both give
/// the same bits.
static PORTABLE_ONLY: AtomicBool = AtomicBool::new(false);

/// Makes every later kernel call use (`true`) or stop forcing (`false`) the portable code path.
#[cfg(test)]
pub(crate) fn force_portable(on: bool) {
    PORTABLE_ONLY.store(on, Ordering::SeqCst);
}

/// Whether the AVX2 + FMA versions of the kernels run on this CPU.
pub(crate) fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !PORTABLE_ONLY.load(Ordering::Relaxed) && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn $name(args)` that runs `$body` compiled for AVX2 + FMA where [`simd`] says the
/// CPU has them, else compiled for the baseline CPU. Every function `$body` calls must be
/// `#[inline(always)]` so that it is compiled into both versions.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis unsafe fn $name($($arg: $ty),*) {
            #[inline(always)]
            unsafe fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) { unsafe { body($($arg),*) } }
                if $crate::kernels::simd() {
                    return unsafe { avx2($($arg),*) };
                }
            }
            unsafe { body($($arg),*) }
        }
    };
}
pub(crate) use multiversion;

/// Reads 8 lanes at `p`.
///
/// # Safety
/// `p..p+8` is readable.
#[inline(always)]
pub(crate) unsafe fn ld(p: *const f32) -> V {
    unsafe { std::ptr::read_unaligned(p.cast::<V>()) }
}

/// Writes 8 lanes at `p`.
///
/// # Safety
/// `p..p+8` is writable.
#[inline(always)]
pub(crate) unsafe fn st(p: *mut f32, v: V) {
    unsafe { std::ptr::write_unaligned(p.cast::<V>(), v) }
}

/// `acc += w * x`, lane by lane, fused.
#[inline(always)]
pub(crate) fn fma(acc: &mut V, w: f32, x: &V) {
    for l in 0..L {
        acc[l] = w.mul_add(x[l], acc[l]);
    }
}

/// `acc += a * b`, lane by lane, fused.
#[inline(always)]
pub(crate) fn fmav(acc: &mut V, a: &V, b: &V) {
    for l in 0..L {
        acc[l] = a[l].mul_add(b[l], acc[l]);
    }
}

/// `acc += x`, lane by lane.
#[inline(always)]
pub(crate) fn addv(acc: &mut V, x: &V) {
    for l in 0..L {
        acc[l] += x[l];
    }
}

/// The sum of the 8 lanes, always in the same order (a pairwise tree).
#[inline(always)]
pub(crate) fn hsum(v: &V) -> f32 {
    ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))
}

/// A raw pointer that may cross to the worker threads: each thread writes only its own part
/// (see the callers).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendPtr<T>(pub *mut T);
// SAFETY: the callers give each thread disjoint memory to write and only read shared memory.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}
