//! What state a run folder is in, read from its own files (the shape of burn-train's summary
//! rebuilt from a folder), and the one command that works next: a state error says where the
//! folder stands and what to type, never only what is wrong.
//!
//! * no run file: empty, a new run may go there;
//! * `config.json` without `checkpoint.safetensors`: started, stopped before its first
//!   checkpoint (nothing to resume);
//! * a checkpoint and no `summary.json` (or one of fewer epochs than `config.json` now asks,
//!   while a run is being extended): unfinished, `train --resume` continues it;
//! * `summary.json` for as many epochs as `config.json` asks: finished (early stops included).
//!
//! It also finds the model file of a run folder for `eval`, `predict`, `export` and
//! `finetune --from`: `model.safetensors` when the run has finished, else the checkpoint's
//! weights (and the log says so).

use std::path::{Path, PathBuf};

use crate::{
    checkpoint::{self, state},
    error::{Error, Result},
    program,
    report::metrics::SUMMARY_FILE,
    run_dir::{RunDir, CONFIG_FILE},
    safe_fs,
};

/// Where a run folder stands.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    /// No run file: a new run may start here.
    Empty,
    /// Run files, but no checkpoint: the run stopped before its first checkpoint.
    NoCheckpoint {
        /// The run files present.
        files: Vec<&'static str>,
    },
    /// A checkpoint, and the run has not finished.
    Unfinished {
        /// Epochs completed at the checkpoint.
        epoch: usize,
        /// Steps of the next epoch completed (0 at an epoch's end).
        step: usize,
        /// Epochs the run asks for (`config.json`).
        epochs: usize,
    },
    /// `summary.json` is written for the run's length.
    Finished {
        /// Epochs trained.
        trained: usize,
        /// Epochs the run asked for; more than `trained` when early stopping ended it.
        epochs: usize,
    },
}

impl RunState {
    /// Reads the state of the folder `dir` from its files.
    ///
    /// # Errors
    /// [`Error::BadCheckpoint`] (or [`Error::Io`]) when the checkpoint or `summary.json` that
    /// decide the state cannot be read.
    pub fn of(dir: &RunDir) -> Result<RunState> {
        let files = dir.run_files();
        if files.is_empty() {
            return Ok(RunState::Empty);
        }
        let asked = read_json(&dir.file(CONFIG_FILE)).ok().and_then(|c| c.get("epochs")?.as_u64()).map(|e| e as usize);
        let summary = dir.file(SUMMARY_FILE);
        if summary.is_file() {
            let s = read_json(&summary)?;
            let trained = s.get("epochs").and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
            let epochs = s.get("config").and_then(|c| c.get("epochs")?.as_u64()).map_or(trained, |e| e as usize);
            // A run being extended has a config.json that asks for more than its summary.
            if asked.is_none_or(|asked| asked <= epochs) {
                return Ok(RunState::Finished { trained, epochs });
            }
        }
        let ck = dir.file(state::FILE);
        // Whatever is there (a link to a device, say) is read, and refused naming it.
        if ck.symlink_metadata().is_err() {
            return Ok(RunState::NoCheckpoint { files });
        }
        let st = state::read_state(&ck)?;
        let epochs = asked.or_else(|| st.config.as_ref().map(|c| c.epochs)).unwrap_or(st.epoch);
        Ok(RunState::Unfinished { epoch: st.epoch, step: st.step, epochs })
    }

    /// The state in words: "an unfinished run (checkpoint after epoch 3 of 10)".
    pub fn describe(&self) -> String {
        match self {
            RunState::Empty => "no run".to_string(),
            RunState::NoCheckpoint { files } => {
                format!("a run that stopped before its first checkpoint ({}, no {})", files.join(", "), state::FILE)
            }
            RunState::Unfinished { epoch, step: 0, epochs } => {
                format!("an unfinished run (its checkpoint is after epoch {epoch} of {epochs})")
            }
            RunState::Unfinished { epoch, step, epochs } => {
                format!("an unfinished run (its checkpoint is at epoch {} of {epochs}, step {step})", epoch + 1)
            }
            RunState::Finished { trained, epochs } if trained < epochs => {
                format!("a finished run (early stopping ended it after epoch {trained} of {epochs})")
            }
            RunState::Finished { trained, .. } => {
                format!("a finished run ({trained} epoch{})", if *trained == 1 { "" } else { "s" })
            }
        }
    }
}

/// Why `train --out DIR` cannot start a new run in `dir`, in `state`, with the command that
/// works: continue it, extend it, or another folder.
pub fn out_taken(dir: &Path, state: &RunState) -> String {
    let d = dir.to_string_lossy();
    let next = match state {
        RunState::Empty => return String::new(),
        RunState::Unfinished { .. } => {
            format!("continue it with `{}`, or pick another --out", program::command(&["train", "--resume", &d]))
        }
        RunState::Finished { trained, epochs } if trained == epochs => format!(
            "pick another --out (to train this run for more epochs: `{}` with N above {epochs})",
            program::command(&["train", "--resume", &d, "--epochs", "N"])
        ),
        RunState::Finished { .. } => "pick another --out".to_string(),
        RunState::NoCheckpoint { .. } => format!(
            "start it again from its first step, with the settings its {CONFIG_FILE} records, with `{}`, or pick another --out",
            program::command(&["train", "--resume", &d])
        ),
    };
    format!("a new run directory: {d} holds {}; {next}", state.describe())
}

/// Why `train --resume DIR` cannot continue `dir`, finished in `state`, with the command that
/// works.
pub fn nothing_to_resume(dir: &Path, state: &RunState) -> String {
    let d = dir.to_string_lossy();
    let eval = program::command(&["eval", "--checkpoint", &d]);
    match state {
        RunState::Finished { trained, epochs } if trained == epochs => format!(
            "{d} holds {}, so there is nothing to resume (nothing was changed): train it for more epochs with `{}` \
             (N above {epochs}), or evaluate it with `{eval}`",
            state.describe(),
            program::command(&["train", "--resume", &d, "--epochs", "N"])
        ),
        RunState::Finished { .. } => format!(
            "{d} holds {}, so there is nothing to resume and no more epochs to train (nothing was changed); \
             evaluate it with `{eval}`",
            state.describe()
        ),
        RunState::NoCheckpoint { .. } => format!(
            "{d} holds {}, so it has no weights yet; `{}` starts it again from its first step with the settings its {CONFIG_FILE} records",
            state.describe(),
            program::command(&["train", "--resume", &d])
        ),
        RunState::Empty => format!(
            "{d} holds no run (no {CONFIG_FILE}); start one there with `{}`",
            program::command(&["train", "--out", &d])
        ),
        RunState::Unfinished { .. } => format!("{d} holds {}", state.describe()),
    }
}

/// The model file that `path` names, for `eval`, `predict`, `export` and `finetune --from`: a
/// file is itself; a run folder gives its `model.safetensors`, or, for a run that has not
/// finished, its `checkpoint.safetensors` (whose current weights are read; the log says so).
///
/// # Errors
/// [`Error::InvalidConfig`] for `checkpoint` when a folder holds neither file, saying what the
/// folder holds.
pub fn model_file(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let dir = RunDir::at(path);
    let model = dir.file(checkpoint::MODEL_FILE);
    if model.is_file() {
        return Ok(model);
    }
    let ck = dir.file(state::FILE);
    let st = RunState::of(&dir)?;
    if ck.is_file() {
        tracing::info!(
            "{} holds {} and no {} yet: using the weights of its {}",
            path.display(),
            st.describe(),
            checkpoint::MODEL_FILE,
            state::FILE
        );
        return Ok(ck);
    }
    Err(Error::InvalidConfig {
        field: "checkpoint",
        value: path.display().to_string(),
        expected: format!(
            "a model file, or a run folder holding {} or {}; this folder holds {}",
            checkpoint::MODEL_FILE,
            state::FILE,
            st.describe()
        ),
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = safe_fs::read_text(path, safe_fs::MAX_TEXT_FILE_BYTES)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::BadCheckpoint { path: path.to_path_buf(), reason: format!("not JSON ({e})") })
}
