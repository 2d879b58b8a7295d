//! `F.max_pool2d(x, 2)` followed by ReLU on one chunk (`[C][H][W][L]`, H and W even), and its
//! gradient. ReLU after the pool is the reference's pool after ReLU, value and gradient (see
//! [`crate::model::Net::forward_pool_first`]).
//!
//! Like PyTorch's CPU kernel (`val > max || isnan(val)`, scanning the window row by row), the
//! gradient goes to the first maximum of a window, and a NaN wins.

use super::{ld, st, L};

/// `y[c][i][j] = relu(max(x[c][2i][2j], x[c][2i][2j+1], x[c][2i+1][2j], x[c][2i+1][2j+1]))` and
/// `arg` the window position (0 to 3, in that order) of the maximum taken.
///
/// `x`: `[c_n][h][w][L]`; `y`: `[c_n][h/2][w/2][L]` and `arg` (same size, bytes), written.
///
/// # Safety
/// The buffers have those sizes.
#[inline(always)]
pub(crate) unsafe fn forward(x: *const f32, (c_n, h, w): (usize, usize, usize), y: *mut f32, arg: *mut u8) {
    let (hp, wp) = (h / 2, w / 2);
    for c in 0..c_n {
        for i in 0..hp {
            for j in 0..wp {
                let top = x.add(((c * h + 2 * i) * w + 2 * j) * L);
                let win = [ld(top), ld(top.add(L)), ld(top.add(w * L)), ld(top.add((w + 1) * L))];
                let (mut m, mut a) = (win[0], [0u8; L]);
                for (d, v) in win.iter().enumerate().skip(1) {
                    for l in 0..L {
                        if v[l] > m[l] || v[l].is_nan() {
                            m[l] = v[l];
                            a[l] = d as u8;
                        }
                    }
                }
                for v in &mut m {
                    if *v < 0.0 {
                        *v = 0.0;
                    }
                }
                let o = ((c * hp + i) * wp + j) * L;
                st(y.add(o), m);
                std::ptr::copy_nonoverlapping(a.as_ptr(), arg.add(o), L);
            }
        }
    }
}

/// The gradient of [`forward`]: `dx` is `dy` at each window's chosen position unless the output
/// was `<= 0` (ReLU's gradient as `threshold_backward` computes it), zero elsewhere.
///
/// `dy`, `y`, `arg`: `[c_n][h/2][w/2][L]`; `dx`: `[c_n][h][w][L]`, written.
///
/// # Safety
/// The buffers have those sizes.
#[inline(always)]
pub(crate) unsafe fn backward(dy: *const f32, y: *const f32, arg: *const u8, (c_n, h, w): (usize, usize, usize), dx: *mut f32) {
    let (hp, wp) = (h / 2, w / 2);
    for c in 0..c_n {
        for i in 0..hp {
            for j in 0..wp {
                let o = ((c * hp + i) * wp + j) * L;
                let (g, v) = (ld(dy.add(o)), ld(y.add(o)));
                let a = std::slice::from_raw_parts(arg.add(o), L);
                let top = dx.add(((c * h + 2 * i) * w + 2 * j) * L);
                for (d, at) in [top, top.add(L), top.add(w * L), top.add((w + 1) * L)].into_iter().enumerate() {
                    st(at, std::array::from_fn(|l| if usize::from(a[l]) == d && !(v[l] <= 0.0) { g[l] } else { 0.0 }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::*;

    /// `[L, C, H, W]` (images first) to the chunk layout `[C][H][W][L]`, and back.
    fn to_lanes(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.permute([1, 2, 3, 0]).contiguous().view(-1)).unwrap()
    }

    #[test]
    fn pooling_and_its_gradient_equal_libtorch_with_ties_and_nans() {
        let _rng = crate::rng::lock_global_rng();
        tch::manual_seed(1);
        // Small integers: many windows hold equal maxima, and many are all negative.
        let x = (Tensor::randint(5, [L as i64, 2, 6, 4], (Kind::Float, Device::Cpu)) - 2.0).set_requires_grad(true);
        let g = Tensor::randn([L as i64, 2, 3, 2], (Kind::Float, Device::Cpu));
        let nan = tch::no_grad(|| {
            let _ = x.get(0).get(0).get(0).get(1).fill_(f64::NAN);
            x.isnan().any().int64_value(&[])
        });
        assert_eq!(nan, 1);
        let y = x.max_pool2d_default(2).relu();
        (&y * &g).sum(Kind::Float).backward(); // d/dy sum(y * g) = g exactly
        let (xs, gs) = (to_lanes(&x.detach()), to_lanes(&g));
        let (mut ys, mut arg, mut dx) = (vec![0f32; gs.len()], vec![0u8; gs.len()], vec![7f32; xs.len()]);
        // SAFETY: the buffers have the sizes the functions document.
        unsafe {
            forward(xs.as_ptr(), (2, 6, 4), ys.as_mut_ptr(), arg.as_mut_ptr());
            backward(gs.as_ptr(), ys.as_ptr(), arg.as_ptr(), (2, 6, 4), dx.as_mut_ptr());
        }
        let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
        assert!(same(&ys, &to_lanes(&y.detach())));
        assert!(same(&dx, &to_lanes(&x.grad())));
        assert!(arg.iter().any(|&a| a > 0) && ys.iter().any(|y| y.is_nan()));
    }
}
