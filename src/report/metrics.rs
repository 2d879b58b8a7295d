//! The run directory's metric files, documented in the README ("Run directory and metrics"):
//!
//! * `metrics.jsonl`: one JSON object per line ([JSON Lines](https://jsonlines.org)), one line
//!   per epoch, appended as each epoch ends (with its evaluations), so a run can be watched or
//!   plotted while it trains. The PyTorch reference script writes the same fields, so runs of
//!   both can be plotted together; readers ignore fields they do not know.
//! * `summary.json`: the configuration, the final test figures, timings and versions, written
//!   once at the end.
//!
//! [`MetricsLog`] is the [`Reporter`] that writes `metrics.jsonl`; [`read_metrics`] reads it back.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{EpochMetrics, EvalMetrics, Reporter, TrainStart};
use crate::{
    config::TrainConfig,
    error::{Error, Result},
    run_dir::write_atomic,
};

/// The metrics file's name in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The summary file's name in a run directory.
pub const SUMMARY_FILE: &str = "summary.json";

/// One line of `metrics.jsonl`: the figures of one epoch. Losses are mean cross-entropy,
/// accuracies fractions in `[0, 1]`. A fine-tuning run starts with an epoch-0 line: the starting
/// model on the test set before any step, without training figures (no `train_loss`,
/// `train_acc`; `seconds` and `images_per_sec` 0; `lr` the first epoch's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch (0: the starting model of a fine-tuning run, before training).
    pub epoch: usize,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Mean over the epoch's steps of the batch-mean training loss (none at epoch 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    /// Fraction of training images classified right during the epoch, before each step's
    /// update (none at epoch 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_acc: Option<f64>,
    /// Validation loss after the epoch, when a validation split exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Validation accuracy after the epoch, when a validation split exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
    /// Test loss after the epoch, when the test set was evaluated then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    /// Test accuracy after the epoch, when the test set was evaluated then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_acc: Option<f64>,
    /// The epoch whose weights `test_loss` and `test_acc` measure, when not this one: on the
    /// last line of a run whose early stopping kept an earlier epoch's (best) weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_weights_epoch: Option<usize>,
    /// Wall-clock seconds of the epoch's training steps (evaluations not included).
    pub seconds: f64,
    /// Training images per second during the epoch.
    pub images_per_sec: f64,
    /// The device trained on, as PyTorch names it (`cpu`, `cuda:0`).
    pub device: String,
}

/// `Err` naming `field` unless `value` is finite and within `[lo, hi]`.
fn in_range(field: &str, value: f64, lo: f64, hi: f64) -> std::result::Result<(), String> {
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(format!("{field} = {value:?} is not a number within [{lo}, {hi}]"))
    }
}

impl EpochRecord {
    /// Checks that the figures are ones a run can produce: accuracies in `[0, 1]`, losses,
    /// seconds, images per second and the learning rate finite and not negative, the training
    /// figures present from epoch 1 on (so a crafted or damaged file cannot rank first or draw
    /// an infinite axis).
    ///
    /// # Errors
    /// The first field out of range, named, with its value.
    pub fn check(&self) -> std::result::Result<(), String> {
        self.check_training_figures()?;
        in_range("lr", self.lr, 0.0, f64::MAX)?;
        for (field, value) in [("val_loss", self.val_loss), ("test_loss", self.test_loss), ("train_loss", self.train_loss)] {
            value.map_or(Ok(()), |v| in_range(field, v, 0.0, f64::MAX))?;
        }
        for (field, value) in [("val_acc", self.val_acc), ("test_acc", self.test_acc), ("train_acc", self.train_acc)] {
            value.map_or(Ok(()), |v| in_range(field, v, 0.0, 1.0))?;
        }
        if let Some(w) = self.test_weights_epoch.filter(|w| !(1..=self.epoch).contains(w)) {
            return Err(format!("test_weights_epoch = {w} is not an epoch from 1 to this line's {}", self.epoch));
        }
        in_range("seconds", self.seconds, 0.0, f64::MAX)?;
        in_range("images_per_sec", self.images_per_sec, 0.0, f64::MAX)
    }

    /// Checks that a trained epoch (not epoch 0, the starting model) has its training figures.
    ///
    /// # Errors
    /// Which epoch lacks them.
    fn check_training_figures(&self) -> std::result::Result<(), String> {
        if self.epoch > 0 && (self.train_loss.is_none() || self.train_acc.is_none()) {
            return Err(format!("epoch {} has no train_loss or train_acc (only epoch 0, before training, may lack them)", self.epoch));
        }
        Ok(())
    }

    /// The epoch-0 record of a fine-tuning run: the starting model's test figures, before any
    /// step; `lr` is the first epoch's.
    pub fn before_training(test: &EvalMetrics, lr: f64, device: &str) -> EpochRecord {
        EpochRecord {
            epoch: 0,
            lr,
            train_loss: None,
            train_acc: None,
            val_loss: None,
            val_acc: None,
            test_loss: Some(test.loss),
            test_acc: Some(test.accuracy),
            test_weights_epoch: None,
            seconds: 0.0,
            images_per_sec: 0.0,
            device: device.to_string(),
        }
    }

    /// The record of a finished training epoch, before any evaluation.
    pub fn new(m: &EpochMetrics, device: &str) -> EpochRecord {
        EpochRecord {
            epoch: m.epoch,
            lr: m.lr,
            train_loss: Some(m.train_loss),
            train_acc: Some(m.train_acc),
            val_loss: None,
            val_acc: None,
            test_loss: None,
            test_acc: None,
            test_weights_epoch: None,
            seconds: m.seconds,
            images_per_sec: m.images_per_sec,
            device: device.to_string(),
        }
    }
}

/// Versions of the software that produced a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// This crate's version.
    pub tch_cifar10: String,
    /// The libtorch version (`torch.__version__` of the build linked).
    pub libtorch: String,
    /// The CUDA runtime libtorch was built with (`major.minor`), `null` without its CUDA library.
    pub cuda: Option<String>,
    /// The cuDNN version, `null` without libtorch's CUDA library.
    pub cudnn: Option<String>,
}

impl Versions {
    /// The versions of this process.
    pub fn current() -> Versions {
        let info = crate::info::info();
        Versions { tch_cifar10: info.version.to_string(), libtorch: info.libtorch.to_string(), cuda: info.cudart, cudnn: info.cudnn }
    }
}

/// `summary.json`: what a finished run produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The configuration the run used (as in `config.json`).
    pub config: TrainConfig,
    /// The device trained on (`cpu`, `cuda:0`).
    pub device: String,
    /// Epochs trained.
    pub epochs: usize,
    /// A fine-tuning run: the starting model's test accuracy before training (its epoch-0 line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_test_acc: Option<f64>,
    /// A fine-tuning run: the starting model's mean test loss before training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_test_loss: Option<f64>,
    /// Final mean test loss.
    pub test_loss: f64,
    /// Final test accuracy, a fraction.
    pub test_acc: f64,
    /// Test images evaluated.
    pub test_images: usize,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// Final test accuracy of each class, indexed by label, as fractions.
    pub per_class_accuracy: Vec<f64>,
    /// Wall-clock seconds of the whole run (training and evaluations, not data loading).
    pub total_seconds: f64,
    /// Mean wall-clock seconds of an epoch's training steps.
    pub seconds_per_epoch: f64,
    /// Mean training images per second over the epochs.
    pub images_per_sec: f64,
    /// Versions of this crate, libtorch and CUDA.
    pub versions: Versions,
}

impl Summary {
    /// Checks the figures as [`EpochRecord::check`] does: test accuracy and per-class
    /// accuracies in `[0, 1]`, the loss and timings finite and not negative.
    ///
    /// # Errors
    /// The first field out of range, named, with its value.
    pub fn check(&self) -> std::result::Result<(), String> {
        in_range("test_loss", self.test_loss, 0.0, f64::MAX)?;
        in_range("test_acc", self.test_acc, 0.0, 1.0)?;
        for (i, a) in self.per_class_accuracy.iter().enumerate() {
            in_range(&format!("per_class_accuracy[{i}]"), *a, 0.0, 1.0)?;
        }
        in_range("total_seconds", self.total_seconds, 0.0, f64::MAX)?;
        in_range("seconds_per_epoch", self.seconds_per_epoch, 0.0, f64::MAX)?;
        in_range("images_per_sec", self.images_per_sec, 0.0, f64::MAX)
    }

    /// The summary of a run from its configuration, epoch records and final test figures.
    pub fn new(
        config: &TrainConfig,
        records: &[EpochRecord],
        test: &EvalMetrics,
        classes: &[String],
        total_seconds: f64,
        device: &str,
    ) -> Summary {
        let before = records.iter().find(|r| r.epoch == 0);
        let records: Vec<&EpochRecord> = records.iter().filter(|r| r.epoch > 0).collect();
        let epochs = records.len().max(1) as f64;
        Summary {
            config: config.clone(),
            device: device.to_string(),
            epochs: records.len(),
            before_test_acc: before.and_then(|r| r.test_acc),
            before_test_loss: before.and_then(|r| r.test_loss),
            test_loss: test.loss,
            test_acc: test.accuracy,
            test_images: test.images,
            classes: classes.to_vec(),
            per_class_accuracy: test.per_class_accuracy.clone(),
            total_seconds,
            seconds_per_epoch: records.iter().map(|r| r.seconds).sum::<f64>() / epochs,
            images_per_sec: records.iter().map(|r| r.images_per_sec).sum::<f64>() / epochs,
            versions: Versions::current(),
        }
    }
}

/// Reads a `metrics.jsonl` (blank lines skipped; unknown fields ignored).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::BadMetrics`] naming the line that is
/// not an epoch record, or when the file holds none.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRecord>> {
    let text = crate::safe_fs::read_text(path, crate::safe_fs::MAX_METRICS_FILE_BYTES)?;
    let bad = |line: Option<usize>, reason: String| Error::BadMetrics { path: path.to_path_buf(), line, reason };
    let records = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let r = parse_record(l).map_err(|e| bad(Some(i + 1), e))?;
            r.check().map_err(|e| bad(Some(i + 1), e))?;
            Ok(r)
        })
        .collect::<Result<Vec<_>>>()?;
    if records.is_empty() {
        return Err(bad(None, "no epoch records".to_string()));
    }
    Ok(records)
}

/// One line of `metrics.jsonl`: an epoch after the first (1 and up) must have its training figures.
fn parse_record(line: &str) -> std::result::Result<EpochRecord, String> {
    let r: EpochRecord = serde_json::from_str(line).map_err(|e| e.to_string())?;
    r.check_training_figures()?;
    Ok(r)
}

/// The records of a `metrics.jsonl` being resumed: every line that parses, in order; each line
/// that does not (a line torn by a crash) is dropped with a warning naming it.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
fn read_good_records(path: &Path) -> Result<Vec<EpochRecord>> {
    let text = crate::safe_fs::read_text(path, crate::safe_fs::MAX_TEXT_FILE_BYTES)?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match parse_record(line) {
            Ok(r) => records.push(r),
            Err(e) => tracing::warn!("{}, line {}: dropped, not an epoch record ({e}); the other lines are kept", path.display(), i + 1),
        }
    }
    Ok(records)
}

/// Writes `metrics.jsonl` as a run goes: each epoch's line is appended once the epoch's
/// evaluations are in (at the next epoch's start, or at the end of training).
///
/// Reporter methods cannot fail, so the first write error is logged at once and kept;
/// [`MetricsLog::finish`] returns it.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: Option<File>,
    device: String,
    pending: Option<EpochRecord>,
    records: Vec<EpochRecord>,
    error: Option<Error>,
}

impl MetricsLog {
    /// A log writing to `path` (nothing is touched before training starts).
    pub fn new(path: impl Into<PathBuf>) -> MetricsLog {
        MetricsLog { path: path.into(), file: None, device: String::new(), pending: None, records: Vec::new(), error: None }
    }

    /// Every record written so far, in order (including those kept from a run resumed).
    pub fn records(&self) -> &[EpochRecord] {
        &self.records
    }

    /// Flushes the last epoch and returns every record, or the first write error.
    ///
    /// # Errors
    /// [`Error::Io`] naming the metrics file.
    pub fn finish(mut self) -> Result<Vec<EpochRecord>> {
        self.flush_pending();
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut self.records)),
        }
    }

    fn fail(&mut self, e: Error) {
        if self.error.is_none() {
            tracing::error!("cannot write metrics: {e}");
            self.error = Some(e);
        }
    }

    /// Starts the file: keeps the records of epochs before `first_epoch` (a resumed run), drops
    /// the rest (a fresh run in a reused directory starts empty), then opens it for appending.
    /// A line that is not a record (torn by a crash mid-write) is dropped with a warning; every
    /// good line is kept. `last_record` (a resumed run's last epoch, from its checkpoint) takes
    /// the place of that epoch's line, or restores it when a kill lost it.
    fn open(&mut self, first_epoch: usize, last_record: Option<&EpochRecord>) -> Result<()> {
        let mut kept: Vec<EpochRecord> = match std::fs::metadata(&self.path) {
            Ok(_) => read_good_records(&self.path)?.into_iter().filter(|r| r.epoch < first_epoch).collect(),
            Err(_) => Vec::new(),
        };
        if let Some(r) = last_record {
            kept.retain(|k| k.epoch != r.epoch);
            self.pending = Some(r.clone());
        }
        let mut text = Vec::new();
        for r in &kept {
            text.extend(serde_json::to_vec(r).expect("epoch records serialise to JSON"));
            text.push(b'\n');
        }
        write_atomic(&self.path, &text)?;
        self.records = kept;
        self.file = Some(OpenOptions::new().append(true).open(&self.path).map_err(Error::io(&self.path))?);
        Ok(())
    }

    fn flush_pending(&mut self) {
        let Some(record) = self.pending.take() else { return };
        let mut line = serde_json::to_vec(&record).expect("epoch records serialise to JSON");
        line.push(b'\n');
        if let Some(file) = self.file.as_mut() {
            if let Err(e) = file.write_all(&line).and_then(|()| file.flush()) {
                let path = self.path.clone();
                self.fail(Error::Io { path, cause: e });
            }
        }
        self.records.push(record);
    }

    fn pending_for(&mut self, epoch: usize) -> Option<&mut EpochRecord> {
        self.pending.as_mut().filter(|r| r.epoch == epoch)
    }
}

impl Drop for MetricsLog {
    /// Writes the last epoch's line even when training stops with an error before its end.
    fn drop(&mut self) {
        self.flush_pending();
    }
}

impl Reporter for MetricsLog {
    fn train_start(&mut self, s: &TrainStart) {
        self.device = s.device.clone();
        if let Err(e) = self.open(s.first_epoch, s.last_record.as_ref()) {
            self.fail(e);
        }
    }

    fn epoch_start(&mut self, _epoch: usize, _lr: f64) {
        self.flush_pending();
    }

    fn epoch_end(&mut self, m: &EpochMetrics) {
        self.flush_pending();
        self.pending = Some(EpochRecord::new(m, &self.device));
    }

    fn validated(&mut self, epoch: usize, m: &EvalMetrics) {
        if let Some(r) = self.pending_for(epoch) {
            (r.val_loss, r.val_acc) = (Some(m.loss), Some(m.accuracy));
        }
    }

    fn before_training(&mut self, m: &EvalMetrics, lr: f64) {
        self.flush_pending();
        self.pending = Some(EpochRecord::before_training(m, lr, &self.device));
    }

    fn evaluated(&mut self, epoch: usize, m: &EvalMetrics) {
        if let Some(r) = self.pending_for(epoch) {
            (r.test_loss, r.test_acc) = (Some(m.loss), Some(m.accuracy));
        }
    }

    fn weights_restored(&mut self, last: usize, weights_epoch: usize) {
        if let Some(r) = self.pending_for(last) {
            r.test_weights_epoch = Some(weights_epoch);
        }
    }

    fn train_end(&mut self) {
        self.flush_pending();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: usize) -> EpochMetrics {
        EpochMetrics {
            epoch,
            lr: 0.1,
            train_loss: 2.0 / epoch as f64,
            train_acc: 0.25,
            seconds: 1.5,
            images_per_sec: 100.0,
            step_losses: vec![],
        }
    }

    fn start(first_epoch: usize) -> TrainStart {
        TrainStart { first_epoch, last_record: None, epochs: 3, steps_per_epoch: 2, batch_size: 10, train_images: 20, device: "cpu".into() }
    }

    fn eval(loss: f64) -> EvalMetrics {
        EvalMetrics { loss, accuracy: 0.5, per_class_accuracy: vec![0.5, 0.5], images: 4 }
    }

    #[test]
    fn evaluations_join_their_epoch_line() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let mut log = MetricsLog::new(&path);
        log.train_start(&start(1));
        for e in 1..=3 {
            log.epoch_start(e, 0.1);
            log.epoch_end(&epoch(e));
            if e >= 2 {
                log.evaluated(e, &eval(e as f64));
            }
            if e == 2 {
                // Not yet flushed: the line waits for the epoch's evaluations.
                assert_eq!(read_metrics(&path)?.len(), 1);
            }
        }
        log.evaluated(1, &eval(9.0)); // an epoch already written: ignored
        log.train_end();
        let records = log.finish()?;
        assert_eq!(read_metrics(&path)?, records);
        assert_eq!(records.iter().map(|r| r.test_loss).collect::<Vec<_>>(), [None, Some(2.0), Some(3.0)]);
        assert!(records.iter().all(|r| r.val_loss.is_none() && r.device == "cpu"));
        Ok(())
    }

    #[test]
    fn a_resumed_run_keeps_earlier_epochs_and_a_fresh_one_starts_empty() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let run = |first: usize, last: usize| -> Result<Vec<EpochRecord>> {
            let mut log = MetricsLog::new(&path);
            log.train_start(&start(first));
            for e in first..=last {
                log.epoch_start(e, 0.1);
                log.epoch_end(&epoch(e));
            }
            log.train_end();
            log.finish()
        };
        run(1, 3)?;
        let resumed = run(3, 4)?; // resumed from the checkpoint after epoch 2
        assert_eq!(resumed.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(read_metrics(&path)?, resumed);
        run(1, 1)?;
        assert_eq!(read_metrics(&path)?.len(), 1);
        Ok(())
    }

    #[test]
    fn an_interrupted_run_keeps_its_last_epoch() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        {
            let mut log = MetricsLog::new(&path);
            log.train_start(&start(1));
            log.epoch_start(1, 0.1);
            log.epoch_end(&epoch(1));
            // The loop fails here (a non-finite loss): no train_end, no finish.
        }
        assert_eq!(read_metrics(&path)?.len(), 1);
        Ok(())
    }

    #[test]
    fn a_torn_last_line_loses_only_itself_on_resume() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let lines: Vec<String> = (1..=3).map(|e| serde_json::to_string(&EpochRecord::new(&epoch(e), "cpu")).unwrap()).collect();
        // Epochs 1 and 2 whole, epoch 3 torn mid-write by a crash.
        std::fs::write(&path, format!("{}\n{}\n{}", lines[0], lines[1], &lines[2][..20])).unwrap();
        let mut log = MetricsLog::new(&path);
        log.train_start(&start(3));
        log.train_end();
        assert_eq!(log.finish()?.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(read_metrics(&path)?.len(), 2);
        Ok(())
    }

    #[test]
    fn the_checkpoints_last_record_restores_a_lost_line() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        // Killed during the final evaluation: the checkpoint says 2 epochs, the file has 1.
        std::fs::write(&path, format!("{}\n", serde_json::to_string(&EpochRecord::new(&epoch(1), "cpu")).unwrap())).unwrap();
        let last = EpochRecord::new(&epoch(2), "cpu");
        let mut log = MetricsLog::new(&path);
        log.train_start(&TrainStart { last_record: Some(last.clone()), ..start(3) });
        log.evaluated(2, &eval(0.7)); // the final test evaluation, after resuming
        log.train_end();
        let records = log.finish()?;
        assert_eq!(records.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(records[1], EpochRecord { test_loss: Some(0.7), test_acc: Some(0.5), ..last });
        assert_eq!(read_metrics(&path)?, records);
        Ok(())
    }

    #[test]
    fn bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        std::fs::write(&path, "{\"epoch\": 1}\n").unwrap();
        let err = read_metrics(&path).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl") && err.contains("line 1") && err.contains("lr"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_metrics(&path).unwrap_err().to_string().contains("no epoch records"));
    }
}
