//! The held-out validation split (`--val-size N`): the same split as PyTorch's
//!
//! ```python
//! train, val = torch.utils.data.random_split(train, [n - N, N], generator=torch.Generator().manual_seed(seed))
//! ```
//!
//! `random_split` takes `randperm(n)` from its own generator; the first `n - N` indices (in that
//! order) are the training subset and the last `N` the validation subset.

use tch::{Kind, Tensor};

use super::Dataset;
use crate::error::{Error, Result};

/// Checks that holding out `val_size` of `n` training images leaves some (0: no split).
///
/// # Errors
/// [`Error::InvalidConfig`] for `--val-size` unless `val_size < n`.
pub fn check_size(val_size: usize, n: usize) -> Result<()> {
    if val_size >= n {
        return Err(bad_size(val_size, n));
    }
    Ok(())
}

fn bad_size(val_size: usize, n: usize) -> Error {
    Error::InvalidConfig {
        field: "val-size",
        value: val_size.to_string(),
        expected: format!("between 1 and {} (below the {n} training images)", n.saturating_sub(1)),
    }
}

/// Splits `data` into (training, validation) subsets, `val_size` images held out, as
/// `random_split` with a generator seeded by `seed`.
///
/// This seeds libtorch's global generator (a fresh `Generator().manual_seed(seed)` and the
/// seeded global one draw the same `randperm`), so call it before the run's own
/// `manual_seed`, as the training loop does; it is only called when a split is asked for.
///
/// # Errors
/// [`Error::InvalidConfig`] for `--val-size` unless `1 <= val_size < data.len()`.
pub fn holdout(data: &Dataset, val_size: usize, seed: i64) -> Result<(Dataset, Dataset)> {
    let n = data.len();
    if val_size == 0 {
        return Err(bad_size(0, n));
    }
    check_size(val_size, n)?;
    let rng = crate::rng::lock_global_rng();
    tch::manual_seed(seed);
    let perm = Tensor::randperm(n as i64, (Kind::Int64, tch::Device::Cpu)).to_device(data.images.device());
    drop(rng);
    let keep = (n - val_size) as i64;
    let subset = |idx: &Tensor| Dataset {
        images: data.images.index_select(0, idx),
        labels: data.labels.index_select(0, idx),
        classes: data.classes.clone(),
    };
    Ok((subset(&perm.narrow(0, 0, keep)), subset(&perm.narrow(0, keep, val_size as i64))))
}
