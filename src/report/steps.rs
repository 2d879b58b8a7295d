//! Every step's loss as a [`Reporter`], for checking a run against the PyTorch reference
//! (`scripts/pytorch_reference.py --steps-jsonl`, compared by `scripts/compare-pytorch`): the
//! binary's hidden `train --steps-jsonl PATH`. The epoch figures and final weights to compare are
//! the run directory's own `metrics.jsonl` and `model.safetensors`.
//!
//! One JSON object a line, `{"epoch":1,"step":1,"loss":2.3044...}` (both 1-based; the loss is
//! the float32 step loss as an exact f64), written at the end of each epoch: the loop reads the
//! losses from the device once per epoch.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use serde_json::json;

use super::{EpochMetrics, Reporter};
use crate::error::{Error, Result};

/// A [`Reporter`] writing every step's loss as JSON lines (see the module doc).
pub struct StepsJsonl {
    path: PathBuf,
    out: BufWriter<File>,
    /// The first write error; reported by [`StepsJsonl::finish`].
    error: Option<std::io::Error>,
}

impl StepsJsonl {
    /// Creates (truncates) `path`.
    ///
    /// # Errors
    /// [`Error::Io`] when `path` cannot be created.
    pub fn create(path: &Path) -> Result<Self> {
        let out = BufWriter::new(File::create(path).map_err(Error::io(path))?);
        Ok(StepsJsonl { path: path.to_path_buf(), out, error: None })
    }

    /// Flushes the file.
    ///
    /// # Errors
    /// [`Error::Io`] for the first write that failed.
    pub fn finish(mut self) -> Result<()> {
        let flushed = self.out.flush();
        match self.error.take().map_or(flushed, Err) {
            Err(cause) => Err(Error::Io { path: self.path.clone(), cause }),
            Ok(()) => Ok(()),
        }
    }
}

impl Reporter for StepsJsonl {
    fn epoch_end(&mut self, m: &EpochMetrics) {
        if self.error.is_some() {
            return;
        }
        let written = m
            .step_losses
            .iter()
            .enumerate()
            .try_for_each(|(i, &loss)| writeln!(self.out, "{}", json!({"epoch": m.epoch, "step": i + 1, "loss": f64::from(loss)})))
            .and_then(|()| self.out.flush());
        self.error = written.err();
    }
}
