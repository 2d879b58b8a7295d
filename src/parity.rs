//! Outputs for checking a run against the PyTorch reference (`scripts/pytorch_reference.py`,
//! compared by `scripts/compare-pytorch`): every step's loss and every epoch's figures as JSON
//! lines in that script's format, and the final parameters as safetensors under PyTorch's
//! `state_dict()` names. The binary exposes them as `train --steps-jsonl PATH --save-params PATH`.
//!
//! The JSON lines, one object a line, written at the end of each epoch (the losses are read
//! from the device once per epoch, as the loop keeps them):
//!
//! ```text
//! {"epoch":1,"step":1,"loss":2.3044...}        every step, 1-based, the loss as an exact f64
//! {"epoch":1,"lr":0.001,"train_loss":...,"train_acc":...,"seconds":...,"images_per_sec":...,
//!  "device":"cpu","test_loss":...,"test_acc":...} every epoch; test_* after a test pass
//! ```

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::atomic::AtomicBool,
};

use serde_json::{json, Value};

use crate::{
    config::TrainConfig,
    device::device_name,
    error::{Error, Result},
    report::{EpochMetrics, Reporter},
    train::{EvalMetrics, TrainOutcome},
    TrainRun,
};

/// Where to write the parity outputs; both optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParityOutputs {
    /// Per-step losses and per-epoch figures as JSON lines.
    pub steps_jsonl: Option<PathBuf>,
    /// The final parameters as safetensors.
    pub save_params: Option<PathBuf>,
}

/// A [`Reporter`] that writes the JSON lines described in the module doc and passes every
/// figure on to `inner`.
pub struct StepsJsonl<'a> {
    inner: &'a mut dyn Reporter,
    path: PathBuf,
    out: BufWriter<File>,
    device: String,
    /// The last epoch's record, held until its test figures (if any) are known.
    pending: Option<Value>,
    /// The first write error; reported by [`StepsJsonl::finish`].
    error: Option<std::io::Error>,
}

impl<'a> StepsJsonl<'a> {
    /// Creates (truncates) `path`; `device` is the name written in each epoch record.
    ///
    /// # Errors
    /// [`Error::Io`] when `path` cannot be created.
    pub fn create(path: &Path, device: String, inner: &'a mut dyn Reporter) -> Result<Self> {
        let out = BufWriter::new(File::create(path).map_err(Error::io(path))?);
        Ok(StepsJsonl { inner, path: path.to_path_buf(), out, device, pending: None, error: None })
    }

    fn write(&mut self, v: &Value) {
        if self.error.is_none() {
            if let Err(e) = writeln!(self.out, "{v}") {
                self.error = Some(e);
            }
        }
    }

    fn flush_pending(&mut self) {
        if let Some(v) = self.pending.take() {
            self.write(&v);
        }
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
            }
        }
    }

    /// Writes the last record and flushes the file.
    ///
    /// # Errors
    /// [`Error::Io`] for the first write that failed.
    pub fn finish(mut self) -> Result<()> {
        self.flush_pending();
        match self.error.take() {
            Some(e) => Err(Error::Io { path: self.path.clone(), source: e }),
            None => Ok(()),
        }
    }
}

impl Reporter for StepsJsonl<'_> {
    fn epoch_end(&mut self, m: &EpochMetrics) {
        self.flush_pending();
        for (step, &loss) in m.step_losses.iter().enumerate() {
            self.write(&json!({"epoch": m.epoch, "step": step + 1, "loss": f64::from(loss)}));
        }
        self.pending = Some(json!({
            "epoch": m.epoch, "lr": m.lr, "train_loss": m.train_loss, "train_acc": m.train_acc,
            "seconds": m.seconds, "images_per_sec": m.images_per_sec, "device": self.device,
        }));
        self.inner.epoch_end(m);
    }

    fn evaluated(&mut self, epoch: usize, m: &EvalMetrics) {
        if let Some(Value::Object(rec)) = &mut self.pending {
            if rec.get("epoch") == Some(&json!(epoch)) {
                rec.insert("test_loss".into(), json!(m.loss));
                rec.insert("test_acc".into(), json!(m.accuracy));
            }
        }
        self.flush_pending();
        self.inner.evaluated(epoch, m);
    }
}

/// Saves the trained parameters of `outcome` to `path` as safetensors (float32, on the CPU),
/// named as PyTorch's `Net().state_dict()`.
///
/// # Errors
/// [`Error::Torch`] when the file cannot be written.
pub fn save_params(outcome: &TrainOutcome, path: &Path) -> Result<()> {
    let params: Vec<_> =
        outcome.net.parameters().iter().map(|(name, t)| (*name, t.to_device(tch::Device::Cpu))).collect();
    tch::Tensor::write_safetensors(&params, path)?;
    Ok(())
}

/// [`crate::run_train`] with the parity outputs of `out` written beside the figures that go to
/// `reporter`.
///
/// # Errors
/// As [`crate::run_train`], and [`Error::Io`] or [`Error::Torch`] when an output cannot be written.
pub fn run_train(
    cfg: &TrainConfig,
    out: &ParityOutputs,
    reporter: &mut dyn Reporter,
    stop: Option<&AtomicBool>,
) -> Result<TrainRun> {
    let run = match &out.steps_jsonl {
        Some(path) => {
            cfg.validate()?;
            let device = device_name(cfg.device.resolve()?);
            let mut steps = StepsJsonl::create(path, device, reporter)?;
            let run = crate::run_train(cfg, &mut steps, stop);
            steps.finish()?;
            run?
        }
        None => crate::run_train(cfg, reporter, stop)?,
    };
    if let Some(path) = &out.save_params {
        save_params(&run.outcome, path)?;
    }
    Ok(run)
}
