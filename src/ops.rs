//! The few ATen calls tch 0.24 cannot make, through the ops shim (`csrc/ops.cpp`, linked
//! statically): `add_`/`add` with `alpha`, `addcmul_` and `addcdiv_` with `value` (tch's
//! generated API drops those Scalar arguments, and ATen's vectorised `add` with `alpha` is a
//! fused multiply-add that no sequence of other ops reproduces), a gradient set to None, and the
//! state of libtorch's CPU generator (for [`crate::rng::Mt19937`]). Each is the very ATen function torch.optim calls, so
//! [`crate::recipe::optim`] computes PyTorch's bits.

use std::ffi::{c_char, CStr};

use tch::Tensor;
use torch_sys::C_tensor;

use crate::error::{Error, Result};

extern "C" {
    fn tcx_add_(t: *mut C_tensor, other: *const C_tensor, alpha: f64) -> *mut c_char;
    fn tcx_add(out: *mut *mut C_tensor, t: *const C_tensor, other: *const C_tensor, alpha: f64) -> *mut c_char;
    fn tcx_addcmul_(t: *mut C_tensor, t1: *const C_tensor, t2: *const C_tensor, value: f64) -> *mut c_char;
    fn tcx_addcdiv_(t: *mut C_tensor, t1: *const C_tensor, t2: *const C_tensor, value: f64) -> *mut c_char;
    fn tcx_set_grad_none(t: *mut C_tensor) -> *mut c_char;
    fn tcx_cpu_generator_state(state: *mut u32, left: *mut i32, next: *mut u32) -> *mut c_char;
    fn tcx_free(message: *mut c_char);
}

/// Turns the shim's answer (null, or a message it allocated) into a result.
fn check(message: *mut c_char) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null answer is a NUL-terminated string from strdup, freed once here.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { tcx_free(message) };
    Err(Error::Torch(tch::TchError::Torch(text)))
}

/// `t.add_(other, alpha=alpha)`.
///
/// # Errors
/// libtorch's error (shapes that do not broadcast, ...).
pub fn add_(t: &mut Tensor, other: &Tensor, alpha: f64) -> Result<()> {
    // SAFETY: both pointers are live tensors for the call.
    check(unsafe { tcx_add_(t.as_mut_ptr(), other.as_ptr(), alpha) })
}

/// `t.add(other, alpha=alpha)`, a new tensor.
///
/// # Errors
/// libtorch's error.
pub fn add(t: &Tensor, other: &Tensor, alpha: f64) -> Result<Tensor> {
    let mut out = std::ptr::null_mut();
    // SAFETY: both inputs are live tensors; on success `out` is a new tensor we now own.
    check(unsafe { tcx_add(&mut out, t.as_ptr(), other.as_ptr(), alpha) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// `t.addcmul_(t1, t2, value=value)`: `t + value * t1 * t2`.
///
/// # Errors
/// libtorch's error.
pub fn addcmul_(t: &mut Tensor, t1: &Tensor, t2: &Tensor, value: f64) -> Result<()> {
    // SAFETY: live tensors for the call.
    check(unsafe { tcx_addcmul_(t.as_mut_ptr(), t1.as_ptr(), t2.as_ptr(), value) })
}

/// `t.addcdiv_(t1, t2, value=value)`: `t + value * t1 / t2`.
///
/// # Errors
/// libtorch's error.
pub fn addcdiv_(t: &mut Tensor, t1: &Tensor, t2: &Tensor, value: f64) -> Result<()> {
    // SAFETY: live tensors for the call.
    check(unsafe { tcx_addcdiv_(t.as_mut_ptr(), t1.as_ptr(), t2.as_ptr(), value) })
}

/// `t.grad = None` (what `optimizer.zero_grad()` does since PyTorch 2.0).
///
/// # Errors
/// libtorch's error.
pub fn set_grad_none(t: &mut Tensor) -> Result<()> {
    // SAFETY: a live tensor.
    check(unsafe { tcx_set_grad_none(t.as_mut_ptr()) })
}

/// Copies libtorch's default CPU generator's 624 state words into `state`; returns its `left`
/// and `next` counters (`at::mt19937_data_pod`).
///
/// # Errors
/// libtorch's error.
pub(crate) fn cpu_generator_state(state: &mut [u32; 624]) -> Result<(i32, u32)> {
    let (mut left, mut next) = (0i32, 0u32);
    // SAFETY: `state` has room for the 624 words the shim writes.
    check(unsafe { tcx_cpu_generator_state(state.as_mut_ptr(), &mut left, &mut next) })?;
    Ok((left, next))
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn alpha_and_value_reach_aten() {
        let mut a = Tensor::from_slice(&[1f32, 2.0, 3.0]);
        let b = Tensor::from_slice(&[10f32, 20.0, 30.0]);
        add_(&mut a, &b, -0.5).unwrap();
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), [-4.0, -8.0, -12.0]);
        let c = add(&a, &b, 2.0).unwrap();
        assert_eq!(Vec::<f32>::try_from(&c).unwrap(), [16.0, 32.0, 48.0]);
        addcmul_(&mut a, &b, &b, 1.0 / 32.0).unwrap();
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), [-0.875, 4.5, 16.125]);
        addcdiv_(&mut a, &b, &b, 3.0).unwrap();
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), [2.125, 7.5, 19.125]);
        let err = add_(&mut a, &Tensor::zeros([2], (Kind::Float, Device::Cpu)), 1.0).unwrap_err();
        assert!(err.to_string().contains("size"), "{err}");
    }

    #[test]
    fn a_gradient_set_to_none_is_undefined() {
        let mut p = Tensor::from_slice(&[1f32, 2.0]).set_requires_grad(true);
        (&p * &p).sum(Kind::Float).backward();
        assert!(p.grad().defined());
        set_grad_none(&mut p).unwrap();
        assert!(!p.grad().defined());
    }
}
