//! Linear layers (`torch.nn.Linear`, weight `[n_out][n_in]`): the forward pass and the input
//! gradient on one chunk (`[n][L]` activations), and the weight and bias gradients summed over
//! every chunk of the batch, by rows of the weight (phase 2 of a step, see [`super`]).

use super::{fma, ld, st, L, V};

/// `y[o] = b[o] + sum_i w[o][i] * x[i]`, then ReLU if `relu`.
///
/// `x`: `[n_in][L]`; `w`: `[n_out][n_in]`; `b`: `[n_out]`; `y`: `[n_out][L]`, written.
///
/// # Safety
/// The buffers have those sizes.
#[inline(always)]
pub(crate) unsafe fn forward(x: *const f32, n_in: usize, wt: *const f32, b: *const f32, n_out: usize, relu: bool, y: *mut f32) {
    let main = n_out / 8 * 8;
    forward_rows::<8>(x, n_in, wt, b, 0..main, relu, y);
    forward_rows::<1>(x, n_in, wt, b, main..n_out, relu, y);
}

#[inline(always)]
unsafe fn forward_rows<const OB: usize>(x: *const f32, n_in: usize, wt: *const f32, b: *const f32, rows: std::ops::Range<usize>, relu: bool, y: *mut f32) {
    for o0 in rows.step_by(OB) {
        let mut acc: [V; OB] = std::array::from_fn(|ob| [*b.add(o0 + ob); L]);
        for i in 0..n_in {
            let xv = ld(x.add(i * L));
            for (ob, a) in acc.iter_mut().enumerate() {
                fma(a, *wt.add((o0 + ob) * n_in + i), &xv);
            }
        }
        for (ob, mut a) in acc.into_iter().enumerate() {
            if relu {
                for v in &mut a {
                    if *v < 0.0 {
                        *v = 0.0;
                    }
                }
            }
            st(y.add((o0 + ob) * L), a);
        }
    }
}

/// `dx[i] = sum_o w[o][i] * dy[o]`, zeroed where `x[i] <= 0` (ReLU's gradient) if `relu_out` is the
/// layer's input `x` (itself a ReLU's output), unmasked where it is `None`.
///
/// `dy`: `[n_out][L]`; `w`: `[n_out][n_in]`; `relu_out`: `[n_in][L]`; `dx`: `[n_in][L]`, written.
///
/// # Safety
/// The buffers have those sizes.
#[inline(always)]
pub(crate) unsafe fn input_grad(dy: *const f32, n_out: usize, wt: *const f32, n_in: usize, relu_out: Option<*const f32>, dx: *mut f32) {
    let main = n_in / 8 * 8;
    input_grad_cols::<8>(dy, n_out, wt, n_in, 0..main, relu_out, dx);
    input_grad_cols::<1>(dy, n_out, wt, n_in, main..n_in, relu_out, dx);
}

#[inline(always)]
unsafe fn input_grad_cols<const IB: usize>(
    dy: *const f32,
    n_out: usize,
    wt: *const f32,
    n_in: usize,
    cols: std::ops::Range<usize>,
    relu_out: Option<*const f32>,
    dx: *mut f32,
) {
    for i0 in cols.step_by(IB) {
        let mut acc = [[0f32; L]; IB];
        for o in 0..n_out {
            let g = ld(dy.add(o * L));
            let wrow = wt.add(o * n_in + i0);
            for (ib, a) in acc.iter_mut().enumerate() {
                fma(a, *wrow.add(ib), &g);
            }
        }
        for (ib, mut a) in acc.into_iter().enumerate() {
            if let Some(x) = relu_out {
                let x = ld(x.add((i0 + ib) * L));
                for l in 0..L {
                    if x[l] <= 0.0 {
                        a[l] = 0.0;
                    }
                }
            }
            st(dx.add((i0 + ib) * L), a);
        }
    }
}

/// One chunk's share of a linear layer's weight gradient: its output gradient `dy`
/// (`[n_out][L]`), its input transposed `xt` (`[L][n_in]`), and how many lanes are images.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Part {
    pub dy: *const f32,
    pub xt: *const f32,
    pub lanes: usize,
}

// SAFETY: a part is only read, during phase 2, from chunk buffers that no thread writes then.
unsafe impl Send for Part {}
// SAFETY: as above.
unsafe impl Sync for Part {}

/// Rows `rows` of the weight and bias gradients over all `parts`:
/// `dw[o][i] = sum_{parts, lanes} dy[o] * x[i]`, `db[o] = sum_{parts, lanes} dy[o]`, each a
/// chain in the order of `parts` and then lanes.
///
/// `dw`: `[n_out][n_in]`, `db`: `[n_out]`; only rows `rows` are written.
///
/// # Safety
/// Every part's buffers have the sizes above; `rows` lie within `n_out`.
#[inline(always)]
pub(crate) unsafe fn weight_grad(parts: &[Part], n_in: usize, rows: std::ops::Range<usize>, dw: *mut f32, db: *mut f32) {
    let main = rows.start + (rows.len() / 4) * 4;
    weight_grad_rows::<4>(parts, n_in, rows.start..main, dw);
    weight_grad_rows::<1>(parts, n_in, main..rows.end, dw);
    for o in rows {
        let mut s = 0f32;
        for p in parts {
            for l in 0..p.lanes {
                s += *p.dy.add(o * L + l);
            }
        }
        *db.add(o) = s;
    }
}

#[inline(always)]
unsafe fn weight_grad_rows<const OB: usize>(parts: &[Part], n_in: usize, rows: std::ops::Range<usize>, dw: *mut f32) {
    let vecs = n_in / L;
    for o0 in rows.step_by(OB) {
        let mut i = 0;
        while i + 2 <= vecs {
            weight_grad_block::<OB, 2>(parts, n_in, o0, i * L, dw);
            i += 2;
        }
        if i < vecs {
            weight_grad_block::<OB, 1>(parts, n_in, o0, i * L, dw);
        }
        for col in vecs * L..n_in {
            for ob in 0..OB {
                let mut s = 0f32;
                for p in parts {
                    for l in 0..p.lanes {
                        s = (*p.dy.add((o0 + ob) * L + l)).mul_add(*p.xt.add(l * n_in + col), s);
                    }
                }
                *dw.add((o0 + ob) * n_in + col) = s;
            }
        }
    }
}

#[inline(always)]
unsafe fn weight_grad_block<const OB: usize, const IB: usize>(parts: &[Part], n_in: usize, o0: usize, i0: usize, dw: *mut f32) {
    let mut acc = [[[0f32; L]; IB]; OB];
    for p in parts {
        for l in 0..p.lanes {
            let xs: [V; IB] = std::array::from_fn(|ib| ld(p.xt.add(l * n_in + i0 + ib * L)));
            for (ob, a) in acc.iter_mut().enumerate() {
                let g = *p.dy.add((o0 + ob) * L + l);
                for (a, x) in a.iter_mut().zip(&xs) {
                    fma(a, g, x);
                }
            }
        }
    }
    for (ob, a) in acc.iter().enumerate() {
        for (ib, v) in a.iter().enumerate() {
            st(dw.add((o0 + ob) * n_in + i0 + ib * L), *v);
        }
    }
}
