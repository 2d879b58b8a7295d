//! The library's one error type. Every variant a user can cause names the file, flag or value
//! at fault and says what was expected; the binary adds context with `anyhow` at its edge.

use std::path::PathBuf;

/// Errors from loading data, validating a configuration, and training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory (or the CIFAR-10 files in it) could not be found.
    #[error("CIFAR-10 binary data not found: looked for {wanted} in {}; {hint}",
            looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and "))]
    DataNotFound { wanted: String, looked: Vec<PathBuf>, hint: String },

    /// A data file exists but its contents are malformed.
    #[error("{}: {reason} (at byte offset {offset})", path.display())]
    BadDataFile { path: PathBuf, offset: u64, reason: String },

    /// An image-folder dataset is laid out wrongly (a missing split, an empty class folder,
    /// test classes that are not the training classes).
    #[error("{}: {reason}", path.display())]
    BadDataset { path: PathBuf, reason: String },

    /// A download failed (HTTP status, timeout, connection cut), after any retries.
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },

    /// A downloaded file does not have the expected checksum.
    #[error("{}: {algorithm} checksum mismatch: expected {expected}, got {actual} (the file was removed; check --url and --sha256/--md5)", path.display())]
    Checksum { path: PathBuf, algorithm: &'static str, expected: String, actual: String },

    /// A downloaded archive (its checksum verified) does not hold the expected files.
    #[error("{}: {reason}", path.display())]
    BadArchive { path: PathBuf, reason: String },

    /// The download target exists but is not a complete dataset, so it is left alone.
    #[error("{} exists but is not a complete copy ({reason}); move it away or delete it, then run again (nothing was downloaded)", path.display())]
    IncompleteData { path: PathBuf, reason: String },

    /// An I/O error on a named file.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, #[source] source: std::io::Error },

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

    /// A checkpoint that cannot be used: unreadable, or not this model's.
    #[error("checkpoint {}: {reason}", path.display())]
    BadCheckpoint { path: PathBuf, reason: String },

    /// Training was interrupted (Ctrl-C) and its state saved.
    #[error("interrupted at epoch {epoch}, step {step}; the state is saved: resume with `tch-cifar10 train --resume {}`", run_dir.display())]
    Interrupted { epoch: usize, step: usize, run_dir: PathBuf },

    /// A model file (safetensors) is unreadable, corrupt, or does not hold the `Net` parameters.
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

    /// A sweep was interrupted (Ctrl-C); its running trials saved their state.
    #[error("sweep interrupted: finished trials are kept and running ones saved their state; run the same command again to continue (in {})", dir.display())]
    SweepInterrupted { dir: PathBuf },

    /// An error reported by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
