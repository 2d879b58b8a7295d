//! Valid (unpadded, stride 1) 2-D convolutions on one chunk, `[C][H][W][L]` activations and
//! PyTorch's `[O][C][K][K]` weights (`torch.nn.Conv2d`): forward, input gradient, weight and bias
//! gradients. Every output is a fused multiply-add chain; register blocks (`OB` outputs by `XB`
//! columns) only choose which chains run side by side, never the order within one.
//!
//! All functions take raw pointers and sizes; the caller ([`super::lenet`]) owns buffers of
//! exactly the sizes given in each doc.

use super::{addv, fma, fmav, hsum, ld, st, L, V};

/// `y[o][i][j] = bias[o] + sum_{c,p,q} w[o][c][p][q] * x[c][i+p][j+q]` (`F.conv2d`, no padding).
///
/// `x`: `[c_n][h][w][L]`; `w`: `[o_n][c_n][K][K]`; `bias`: `[o_n]`; `y`: `[o_n][h-K+1][w-K+1][L]`.
///
/// # Safety
/// The buffers have those sizes; `o_n % OB == 0` and `(w-K+1) % XB == 0`.
#[inline(always)]
pub(crate) unsafe fn forward<const OB: usize, const XB: usize, const K: usize, const C: usize, const H: usize, const W: usize, const O: usize>(
    x: *const f32,
    wt: *const f32,
    bias: *const f32,
    y: *mut f32,
) {
    let (c_n, h, w, o_n) = (C, H, W, O);
    let (k, ho, wo, per_o) = (K, h - K + 1, w - K + 1, c_n * K * K);
    debug_assert!(o_n % OB == 0 && wo % XB == 0);
    for o0 in (0..o_n).step_by(OB) {
        for i in 0..ho {
            for j0 in (0..wo).step_by(XB) {
                let mut acc: [[V; XB]; OB] = std::array::from_fn(|ob| [[*bias.add(o0 + ob); L]; XB]);
                for c in 0..c_n {
                    for p in 0..k {
                        let row = x.add(((c * h + i + p) * w + j0) * L);
                        let wrow = wt.add(o0 * per_o + (c * k + p) * k);
                        for q in 0..k {
                            let xs: [V; XB] = std::array::from_fn(|t| ld(row.add((t + q) * L)));
                            for (ob, acc) in acc.iter_mut().enumerate() {
                                let wv = *wrow.add(ob * per_o + q);
                                for (a, xv) in acc.iter_mut().zip(&xs) {
                                    fma(a, wv, xv);
                                }
                            }
                        }
                    }
                }
                for (ob, acc) in acc.iter().enumerate() {
                    for (t, a) in acc.iter().enumerate() {
                        st(y.add((((o0 + ob) * ho + i) * wo + j0 + t) * L), *a);
                    }
                }
            }
        }
    }
}

/// The input gradient of [`forward`]: `dx[c][i][j] = sum_{o,p,q} w[o][c][p][q] * dy[o][i-p][j-q]`
/// over the taps that exist (a transposed convolution, computed without padding, so no work on
/// zeros).
///
/// `dy`: `[o_n][ho][wo][L]`; `w`: `[o_n][CN][K][K]`; `dx`: `[CN][ho+K-1][wo+K-1][L]`, written.
///
/// # Safety
/// The buffers have those sizes.
#[inline(always)]
pub(crate) unsafe fn input_grad<const CN: usize, const K: usize, const O: usize, const HO: usize, const WO: usize>(dy: *const f32, wt: *const f32, dx: *mut f32) {
    let (o_n, ho, wo) = (O, HO, WO);
    let (k, h, w, kk) = (K, ho + K - 1, wo + K - 1, K * K);
    for i in 0..h {
        let (p_lo, p_hi) = ((i + 1).saturating_sub(ho), i.min(k - 1));
        for j in 0..w {
            let (q_lo, q_hi) = ((j + 1).saturating_sub(wo), j.min(k - 1));
            let mut acc = [[0f32; L]; CN];
            for o in 0..o_n {
                for p in p_lo..=p_hi {
                    let grow = dy.add(((o * ho + i - p) * wo + j) * L);
                    let wrow = wt.add(o * CN * kk + p * k);
                    for q in q_lo..=q_hi {
                        let g = ld(grow.sub(q * L));
                        for (c, a) in acc.iter_mut().enumerate() {
                            fma(a, *wrow.add(c * kk + q), &g);
                        }
                    }
                }
            }
            for (c, a) in acc.iter().enumerate() {
                st(dx.add(((c * h + i) * w + j) * L), *a);
            }
        }
    }
}

/// The weight and bias gradients of [`forward`], summed over positions and then lanes:
/// `dw[o][c][p][q] = sum_{i,j,lanes} dy[o][i][j] * x[c][i+p][j+q]`, `db[o] = sum_{i,j,lanes} dy[o][i][j]`.
///
/// `dy`: `[O][ho][wo][L]`; `x`: `[C][H][W][L]`; `dw`: `[O][C][K][K]` and `db`: `[O]`, of which
/// the rows `outputs` are written.
///
/// # Safety
/// The buffers have those sizes; `outputs` lies in `0..O` and holds a multiple of `OB`.
#[inline(always)]
pub(crate) unsafe fn weight_grad<const OB: usize, const K: usize, const C: usize, const H: usize, const W: usize, const O: usize>(
    dy: *const f32,
    x: *const f32,
    outputs: std::ops::Range<usize>,
    dw: *mut f32,
    db: *mut f32,
) {
    let (c_n, h, w) = (C, H, W);
    let (ho, wo) = (h - K + 1, w - K + 1);
    debug_assert!(outputs.len() % OB == 0 && outputs.end <= O);
    for o0 in outputs.clone().step_by(OB) {
        for c in 0..c_n {
            for p in 0..K {
                let mut acc = [[[0f32; L]; K]; OB];
                for i in 0..ho {
                    let xrow = x.add((c * h + i + p) * w * L);
                    for j in 0..wo {
                        let g: [V; OB] = std::array::from_fn(|ob| ld(dy.add((((o0 + ob) * ho + i) * wo + j) * L)));
                        for q in 0..K {
                            let xv = ld(xrow.add((j + q) * L));
                            for (a, g) in acc.iter_mut().zip(&g) {
                                fmav(&mut a[q], g, &xv);
                            }
                        }
                    }
                }
                for (ob, a) in acc.iter().enumerate() {
                    for (q, v) in a.iter().enumerate() {
                        *dw.add((((o0 + ob) * c_n + c) * K + p) * K + q) = hsum(v);
                    }
                }
            }
        }
    }
    for o in outputs {
        let mut s = [0f32; L];
        for e in 0..ho * wo {
            addv(&mut s, &ld(dy.add((o * ho * wo + e) * L)));
        }
        *db.add(o) = hsum(&s);
    }
}
