//! The training state of a run, `checkpoint.safetensors` in its run directory: everything needed
//! to continue exactly where it stopped. Tensors: the weights under PyTorch's names
//! (`conv1.weight` ...), the optimizer's state under PyTorch's names (SGD's
//! `momentum_buffer.<name>`; Adam's `exp_avg.<name>`, `exp_avg_sq.<name>`, `max_exp_avg_sq.<name>`
//! and the scalar `step.<name>`), and the early-stopping best weights, if any, as `best.<name>`. The metadata entry `tch_cifar10_state`
//! holds [`TrainState`] as JSON. Written atomically after every epoch (and on Ctrl-C, mid-epoch).

use std::{collections::HashMap, path::Path};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::model_file::{encode_tensors, tensor_from_view};
use crate::{
    config::TrainConfig,
    data::DataFingerprint,
    error::{Error, Result},
    report::EpochRecord,
    run_dir::write_atomic,
};

/// The file name inside a run directory.
pub const FILE: &str = "checkpoint.safetensors";
const META_KEY: &str = "tch_cifar10_state";
const FORMAT: u32 = 1;

/// Where a run stands, beside its tensors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Format version of this file.
    pub format: u32,
    /// Epochs completed.
    pub epoch: usize,
    /// Steps completed of epoch `epoch + 1` (non-zero only for a run interrupted mid-epoch).
    pub step: usize,
    /// The losses of those steps, to finish that epoch's mean loss exactly.
    pub partial_losses: Vec<f32>,
    /// Training images classified right in those steps.
    pub partial_correct: i64,
    /// Seconds spent in those steps.
    pub partial_seconds: f64,
    /// Seconds of training so far (all finished epochs).
    pub seconds: f64,
    /// Early stopping: the best epoch and its validation accuracy, if tracked.
    pub best: Option<(usize, f64)>,
    /// Early stopping: epochs since the best one.
    pub epochs_without_improvement: usize,
    /// The run's settings when this was saved: `--resume` refuses a `config.json` that differs
    /// (other than the device and thread count).
    #[serde(default)]
    pub config: Option<TrainConfig>,
    /// The `metrics.jsonl` line of epoch `epoch`, so that a run killed before that line reached
    /// the file gets it back on resume.
    #[serde(default)]
    pub last_record: Option<EpochRecord>,
    /// What the run trains on (image count, class names, a digest of the training tensor):
    /// `--resume` on other data is refused.
    #[serde(default)]
    pub data: Option<DataFingerprint>,
    /// libtorch's intra-op thread count the run computed with: the reference mode's sums on
    /// the CPU depend on it, so `--resume` keeps it there (`None` in checkpoints of earlier
    /// versions).
    #[serde(default)]
    pub threads: Option<usize>,
}

/// A checkpoint as read from disk.
#[derive(Debug)]
pub struct Checkpoint {
    /// Where the run stands.
    pub state: TrainState,
    /// Weights by PyTorch name (CPU).
    pub weights: Vec<(String, Tensor)>,
    /// The optimizer's state tensors by full name (`momentum_buffer.fc1.weight`, ...; see
    /// [`crate::recipe::optim`]), CPU; empty before the first step.
    pub optimizer: Vec<(String, Tensor)>,
    /// Best weights by parameter name (CPU), when early stopping tracks them.
    pub best: Vec<(String, Tensor)>,
}

/// Writes `ck` to `path` atomically.
///
/// # Errors
/// [`Error::Io`] naming the file; the previous checkpoint stays in place on failure.
pub fn save(path: &Path, ck: &Checkpoint) -> Result<()> {
    let groups = [("", &ck.weights), ("", &ck.optimizer), ("best.", &ck.best)];
    let named: Vec<(String, &Tensor)> = groups
        .iter()
        .flat_map(|(prefix, tensors)| tensors.iter().map(move |(name, t)| (format!("{prefix}{name}"), t)))
        .collect();
    let state = TrainState { format: FORMAT, ..ck.state.clone() };
    let meta = HashMap::from([(META_KEY.to_string(), serde_json::to_string(&state).expect("state serialises"))]);
    let bytes = encode_tensors(named.iter().map(|(n, t)| (n.as_str(), *t)), meta)?;
    write_atomic(path, &bytes)
}

fn bad(path: &Path, reason: String) -> Error {
    Error::BadCheckpoint { path: path.to_path_buf(), reason }
}

/// The training state alone (the metadata) of the checkpoint at `path`: where a run stands,
/// without building its tensors.
///
/// # Errors
/// [`Error::Io`] when it cannot be read; [`Error::BadCheckpoint`] when it is not a tch-cifar10
/// training checkpoint.
pub fn read_state(path: &Path) -> Result<TrainState> {
    let bytes = crate::safe_fs::read_regular(path, crate::safe_fs::MAX_CHECKPOINT_BYTES)?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(path, format!("not a readable safetensors file ({e})")))?;
    state_of(path, meta.metadata().as_ref())
}

/// The [`TrainState`] in a safetensors header's metadata, if it is a training checkpoint's.
///
/// # Errors
/// [`Error::BadCheckpoint`] when the metadata has no state, or an unreadable one.
pub(crate) fn state_of(path: &Path, meta: Option<&HashMap<String, String>>) -> Result<TrainState> {
    let json = meta
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| bad(path, format!("no `{META_KEY}` metadata: not a tch-cifar10 training checkpoint")))?;
    let state: TrainState =
        serde_json::from_str(json).map_err(|e| bad(path, format!("unreadable training state ({e})")))?;
    if state.format != FORMAT {
        return Err(bad(path, format!("format {} (this build reads format {FORMAT})", state.format)));
    }
    Ok(state)
}

/// Whether safetensors metadata is a training checkpoint's (it holds the training state).
pub(crate) fn is_checkpoint(meta: &HashMap<String, String>) -> bool {
    meta.contains_key(META_KEY)
}

/// Reads a checkpoint and checks it against the parameters the model expects
/// (`(name, shape)` in order).
///
/// # Errors
/// [`Error::Io`] when it cannot be read; [`Error::BadCheckpoint`] naming the file and the
/// problem when it is not a safetensors file, lacks the state, or does not fit the model.
pub fn load(path: &Path, expected: &[(&str, Vec<i64>)]) -> Result<Checkpoint> {
    let bytes = crate::safe_fs::read_regular(path, crate::safe_fs::MAX_CHECKPOINT_BYTES)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(path, format!("not a readable safetensors file ({e})")))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(path, format!("not a readable safetensors file ({e})")))?;
    let state = state_of(path, meta.metadata().as_ref())?;
    let read = |name: &str, shape: &[i64]| -> Result<Option<Tensor>> {
        let view = match st.tensor(name) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(bad(path, format!("tensor {name} is {:?}, expected F32", view.dtype())));
        }
        let got: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        if got != shape {
            return Err(bad(path, format!("tensor {name} has shape {got:?}, the model expects {shape:?}")));
        }
        let t = tensor_from_view(&view, Kind::Float)?;
        if let Some(what) = super::model_file::non_finite(name, &t, "") {
            // A run saves only finite weights and optimizer state.
            return Err(bad(path, format!("{what}; a run never saves such values, so the file was damaged or edited: restore it from a copy")));
        }
        Ok(Some(t))
    };
    let mut ck = Checkpoint { state, weights: vec![], optimizer: vec![], best: vec![] };
    for (name, shape) in expected {
        let w = read(name, shape)?.ok_or_else(|| bad(path, format!("tensor {name} is missing")))?;
        ck.weights.push((name.to_string(), w));
        if let Some(b) = read(&format!("best.{name}"), shape)? {
            ck.best.push((name.to_string(), b));
        }
    }
    // The optimizer's state: every tensor named `<part>.<parameter>` for a state part.
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    for full in names {
        let Some((param, shaped)) = crate::recipe::optim::state_entry(full) else { continue };
        let Some((_, shape)) = expected.iter().find(|(n, _)| *n == param) else { continue };
        let want: &[i64] = if shaped { shape } else { &[] };
        if let Some(t) = read(full, want)? {
            ck.optimizer.push((full.to_string(), t));
        }
    }
    let known = st.names().len();
    let used = ck.weights.len() + ck.optimizer.len() + ck.best.len();
    if known != used {
        return Err(bad(path, format!("{} unexpected tensor(s): not this model's checkpoint", known - used)));
    }
    Ok(ck)
}
