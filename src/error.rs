//! The library's one error type. Every variant a user can cause names the file, flag or value
//! at fault and says what was expected; the binary adds context with `anyhow` at its edge.
//!
//! Each variant's message is whole: it includes its cause (the I/O error, libtorch's message)
//! and reports no separate [`std::error::Error::source`], so printing the chain (`{:#}` in
//! `anyhow`) says every cause once.

use std::path::PathBuf;

/// Errors from loading data, validating a configuration, and training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory (or the CIFAR-10 files in it, in either layout) could not be found.
    #[error("CIFAR-10 data not found: looked for {wanted} in {}; {hint}",
            looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and "))]
    DataNotFound { wanted: String, looked: Vec<PathBuf>, hint: String },

    /// A data file exists but its contents are malformed.
    #[error("{}: {reason} (at byte offset {offset})", path.display())]
    BadDataFile { path: PathBuf, offset: u64, reason: String },

    /// A dataset is laid out wrongly (an image folder with a missing split, an empty class
    /// folder, test classes that are not the training classes), or a file of it is malformed
    /// where no byte offset says where (a pickled CIFAR-10 batch).
    #[error("{}: {reason}", path.display())]
    BadDataset { path: PathBuf, reason: String },

    /// A download failed (HTTP status, timeout, connection cut), after any retries.
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },

    /// A downloaded file does not have the expected checksum.
    /// `kept`: the file is the user's own archive (`--archive`, `file://`, or one found in the
    /// data folder), which is left in place; a downloaded one is removed.
    #[error("{}: {algorithm} checksum mismatch: expected {expected}, got {actual} ({})", path.display(), if *kept {
        "the archive was left as it is; give its own checksum with --sha256/--md5 if it is a copy of your own"
    } else {
        "the file was removed; check --url and --sha256/--md5"
    })]
    Checksum { path: PathBuf, algorithm: &'static str, expected: String, actual: String, kept: bool },

    /// A downloaded archive (its checksum verified) does not hold the expected files.
    #[error("{}: {reason}", path.display())]
    BadArchive { path: PathBuf, reason: String },

    /// The download target exists but is not a complete dataset, so it is left alone.
    #[error("{} exists but is not a complete copy ({reason}); move it away or delete it, then run again (nothing was downloaded)", path.display())]
    IncompleteData { path: PathBuf, reason: String },

    /// An I/O error on a named file. The cause is part of the message, not a separate source
    /// (see the module documentation).
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },

    /// Another process holds the run folder's lock; `host` is that process's host and the lock
    /// file to delete if it is gone, where the folder is locked with a lock file (a filesystem
    /// without `flock`).
    #[error("{} is in use by {}{}", path.display(), match pid {
        Some(pid) => format!("process {pid}"),
        None => "another process".to_string(),
    }, match host {
        None => ": wait for that run to end, or pick another --out".to_string(),
        Some((host, file)) => format!(
            " on {host} (its lock file {}): wait for that run to end, or pick another --out; if that process is gone (killed on another machine), delete {}",
            file.display(), file.display()
        ),
    })]
    RunInUse { path: PathBuf, pid: Option<u32>, host: Option<(String, PathBuf)> },

    /// A configuration value is out of range.
    #[error("invalid {field} = {value}: {expected}")]
    InvalidConfig { field: &'static str, value: String, expected: String },

    /// A metrics file (`metrics.jsonl`) holds a line that is not an epoch record, or none.
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    BadMetrics { path: PathBuf, line: Option<usize>, reason: String },

    /// A chart could not be drawn.
    #[error("cannot draw chart {}: {reason}", path.display())]
    Chart { path: PathBuf, reason: String },

    /// The requested device is not available.
    #[error("device {requested} is not available: {reason}")]
    DeviceUnavailable { requested: String, reason: String },

    /// Training diverged.
    #[error("non-finite training loss at epoch {epoch}, step {step} (1-based); lower --lr or check the data")]
    NonFiniteLoss { epoch: usize, step: usize },

    /// The weights or the test figures of a run became NaN or infinite; nothing non-finite was
    /// saved (the last good checkpoint stays).
    #[error("{what} after epoch {epoch} is not finite (NaN or infinite); nothing was saved from this epoch on (the last good checkpoint stays); lower --lr or check the data")]
    NonFinite { epoch: usize, what: String },

    /// A checkpoint that cannot be used: unreadable, or not this model's.
    #[error("checkpoint {}: {reason}", path.display())]
    BadCheckpoint { path: PathBuf, reason: String },

    /// Training was interrupted (Ctrl-C or a stop flag); with a run directory, its state was
    /// saved there.
    #[error("interrupted at epoch {epoch}, step {step}; {}", match run_dir {
        Some(dir) => format!("the state is saved: resume with `{}`", crate::program::command(&["train", "--resume", &dir.to_string_lossy()])),
        None => "nothing was saved (no run directory)".to_string(),
    })]
    Interrupted { epoch: usize, step: usize, run_dir: Option<PathBuf> },

    /// A model whose weights are finite gives NaN or infinite outputs (logits that overflow
    /// float32): `eval` and `predict` report no accuracy or probability from them.
    #[error("{}: the model's outputs are not finite ({what}): its weights are finite but the logits overflow float32, so no probability, loss or accuracy can be computed from them; check how the model was trained or edited", path.display())]
    NonFiniteOutput { path: PathBuf, what: String },

    /// An image in a layout this program does not read (a YCbCr or 4-bit TIFF): a dataset skips
    /// it with a warning; `predict` refuses it.
    #[error("{}: cannot use this image: {reason}", path.display())]
    UnsupportedImage { path: PathBuf, reason: String },

    /// A model file (safetensors or `torch.save`) is unreadable, corrupt, of another kind, or
    /// does not hold the `Net` parameters (all finite, in a floating-point dtype).
    #[error("{}: not a usable model file: {reason}", path.display())]
    BadModelFile { path: PathBuf, reason: String },

    /// An image (given to `predict`, or in an image-folder dataset) cannot be read or decoded.
    #[error("{}: cannot use this image: {reason}", path.display())]
    BadImage { path: PathBuf, reason: String },

    /// A sweep's space file (`sweep --space FILE`) cannot be used.
    #[error("space file {}: {reason}", path.display())]
    BadSpaceFile { path: PathBuf, reason: String },

    /// A sweep folder holds another sweep (`sweep.json` records a different space or options).
    #[error("{} holds another sweep; its sweep.json differs from this command in:\n  {}\nrerun with the same settings to continue it, or pick another --out", dir.display(), differences.join("\n  "))]
    SweepMismatch { dir: PathBuf, differences: Vec<String> },

    /// A sweep folder or one of its files cannot be used (`sweep.json`, a trial's files).
    #[error("{}: {reason}", path.display())]
    BadSweep { path: PathBuf, reason: String },

    /// A Slurm command (`sbatch`, `squeue`) of `sweep --slurm` is missing or failed, or the
    /// sweep is already queued; the reason holds the command's standard error.
    #[error("{command}: {reason} (nothing was submitted)")]
    Slurm { command: String, reason: String },

    /// A sweep was interrupted (Ctrl-C); its running trials saved their state.
    #[error("sweep interrupted: finished trials are kept and running ones saved their state; run the same command again to continue (in {})", dir.display())]
    SweepInterrupted { dir: PathBuf },

    /// A call into the CUDA shim (CUDA graphs, streams, cuDNN switches) failed, or the shim is
    /// not loaded (see `tch-cifar10 info`).
    #[error("CUDA shim: {call}: {reason}")]
    CudaShim { call: &'static str, reason: String },

    /// An error reported by libtorch (its message is part of this one, not a separate source).
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Error {
        Error::Torch(e)
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |cause| Error::Io { path, cause }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `anyhow`'s `{:#}` prints: the message, then each source's.
    fn chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = e.to_string();
        let mut next = e.source();
        while let Some(s) = next {
            out += &format!(": {s}");
            next = s.source();
        }
        out
    }

    #[test]
    fn causes_are_said_once() {
        let cause = std::io::Error::from_raw_os_error(21);
        let e = Error::io("/some/dir")(cause);
        let text = chain(&e);
        assert_eq!(text.matches("os error 21").count(), 1, "{text}");
        assert!(text.starts_with("/some/dir: "), "{text}");
        let e = Error::from(tch::TchError::Shape("bad shape".into()));
        let text = chain(&e);
        assert_eq!(text, "libtorch: invalid shape: bad shape");
    }
}
