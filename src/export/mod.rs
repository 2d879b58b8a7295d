//! `tch-cifar10 export`: a saved model as a file that runs without this program, as TorchScript
//! ([`torchscript`], for `torch.jit.load` in Python and `torch::jit::load` in C++) or ONNX
//! ([`onnx`], for onnxruntime and other ONNX runtimes).
//!
//! Both files compute exactly `Net.forward` (see [`crate::model`]) and take what PyTorch's `Net`
//! takes:
//!
//! * input `input`: float32 `[batch, 3, 32, 32]`, RGB, **normalised as in training**:
//!   `(x / 255 - 0.5) / 0.5` for bytes `x`, i.e. torchvision's `ToTensor()` then
//!   `Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))` (see [`crate::data::normalize`]). The
//!   normalisation is not part of the exported graph, so the files are interchangeable with a
//!   `torch.jit.trace` / `torch.onnx.export` of the PyTorch `Net` loaded with the same weights;
//! * output `logits`: float32 `[batch, classes]`, before softmax;
//! * the batch size is free (ONNX: dimension parameter `batch`), whatever size was traced.
//!
//! The ONNX file carries the class names (`metadata_props["classes"]`, a JSON array in label
//! order, as in the model file). The TorchScript file does not: tch 0.24's `CModule::save` writes
//! no extra files; read them from the model file or the ONNX metadata.
//!
//! The output file is never half-written and never replaced by accident: when something exists
//! at `--out`, export refuses before doing any work unless `force` is set (and `force` replaces
//! only a regular file: never a folder, link, device or FIFO); the file is written
//! into a temporary folder beside `--out`, synced, and only then moved to `--out` (without
//! `force`, by a link that fails if a file appeared there meanwhile), so a failed export leaves
//! `--out` as it was, and no temporary behind.

pub mod onnx;
pub mod torchscript;

use std::{
    fmt,
    fs::{self, File},
    io::{self, ErrorKind},
    path::{Path, PathBuf},
};

use tch::Device;

use crate::{
    checkpoint::{load_model_with_classes, ClassSource},
    error::{Error, Result},
};

/// The format of an exported model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// A TorchScript archive (a traced forward), for torch.jit.load (Python) or torch::jit::load (C++).
    Torchscript,
    /// An ONNX model, for onnxruntime and other ONNX runtimes.
    Onnx,
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Torchscript => "TorchScript",
            ExportFormat::Onnx => "ONNX",
        })
    }
}

/// What `export` exports, and where.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// A model file (as `eval` and `predict` take), or a run directory holding `model.safetensors`.
    pub checkpoint: PathBuf,
    /// The file format to write.
    pub format: ExportFormat,
    /// The file to write.
    pub out: PathBuf,
    /// Replace a file that exists at `out`.
    pub force: bool,
    /// Class names overriding (or supplying) the model file's.
    pub classes: Option<Vec<String>>,
    /// Export a calibrated model (one whose file holds a temperature) without its temperature:
    /// the raw logits. Without it such a model is refused rather than exported without it.
    pub no_temperature: bool,
}

/// A finished export.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The model file read.
    pub model_file: PathBuf,
    /// The file written.
    pub out: PathBuf,
    /// Its format.
    pub format: ExportFormat,
    /// The class names stored with it, in label order.
    pub classes: Vec<String>,
}

/// Runs `export`: loads the model (on the CPU) and writes it to `opts.out` in `opts.format`.
///
/// # Errors
/// [`Error::InvalidConfig`] (field `out`) when something exists at `opts.out` and `opts.force`
/// is not set, or `opts.out` is a directory; [`Error::Io`] naming `opts.out` when its folder
/// does not exist or it cannot be written (`opts.out` is then as it was); everything
/// [`load_model_with_classes`] returns for a missing or bad model file or bad `classes`;
/// [`Error::Torch`] when libtorch cannot trace the model; [`Error::InvalidConfig`] (field
/// `checkpoint`) for a calibrated model unless `opts.no_temperature`.
pub fn run_export(opts: &ExportOptions) -> Result<Exported> {
    check_out(&opts.out, opts.force)?;
    let model_file = crate::run_state::model_file(&opts.checkpoint)?;
    let mut model = load_model_with_classes(&model_file, Device::Cpu, opts.classes.as_deref())?;
    if model.class_source == ClassSource::Cifar10Default {
        tracing::info!("{} names no classes; storing CIFAR-10's ({})", model_file.display(), crate::report::escape::names(&model.classes));
    }
    if let Some(t) = model.temperature.filter(|_| !opts.no_temperature) {
        return Err(Error::InvalidConfig {
            field: "checkpoint",
            value: model_file.display().to_string(),
            expected: format!(
                "a model without a temperature: this one is calibrated (temperature {t}), and the exported graph \
                 returns raw logits; pass --no-temperature to export them anyway (then divide them by {t} before the \
                 softmax; the argmax is the same) (nothing was written)"
            ),
        });
    }
    // Traced weights become constants of the graph, which must not require gradients.
    model.vs.freeze();

    let staging = Staging::create(&opts.out)?;
    let tmp = &staging.file;
    match opts.format {
        ExportFormat::Torchscript => torchscript::save(&model.net, tmp, &opts.out)?,
        ExportFormat::Onnx => fs::write(tmp, onnx::encode(&model.net, &model.classes)?).map_err(Error::io(&opts.out))?,
    }
    File::open(tmp).and_then(|f| f.sync_all()).map_err(Error::io(&opts.out))?;
    commit(tmp, &opts.out, opts.force)?;
    drop(staging);
    tracing::info!("exported {} ({} classes) as {} to {}", model_file.display(), model.classes.len(), opts.format, opts.out.display());
    Ok(Exported { model_file, out: opts.out.clone(), format: opts.format, classes: model.classes })
}

/// The error for an `out` that is taken.
fn exists(out: &Path) -> Error {
    Error::InvalidConfig {
        field: "out",
        value: out.display().to_string(),
        expected: "a path where no file exists yet (this one does; pass --force to replace it)".into(),
    }
}

/// Checks, before any work, that `out` can be written: its folder exists, and nothing is at
/// `out` unless `force` (then only a regular file: never a folder, link, device, FIFO or socket).
fn check_out(out: &Path, force: bool) -> Result<()> {
    let folder = folder_of(out);
    match fs::metadata(folder) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(io_error(out, ErrorKind::NotADirectory, format!("{} is not a folder", folder.display()))),
        Err(e) => return Err(io_error(out, e.kind(), format!("cannot use the folder {} ({e})", folder.display()))),
    }
    match fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() => Err(Error::InvalidConfig {
            field: "out",
            value: out.display().to_string(),
            expected: "a file path (this is a directory)".into(),
        }),
        Ok(_) if !force => Err(exists(out)),
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) => Err(Error::InvalidConfig {
            field: "out",
            value: out.display().to_string(),
            expected: format!(
                "a file path: this is {}, which --force never replaces (it replaces only a regular file)",
                crate::safe_fs::file_type_name(&m.file_type())
            ),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { path: out.to_path_buf(), cause: e }),
    }
}

/// The folder `out` goes in (`.` for a bare file name).
fn folder_of(out: &Path) -> &Path {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn io_error(path: &Path, kind: ErrorKind, message: String) -> Error {
    Error::Io { path: path.to_path_buf(), cause: io::Error::new(kind, message) }
}

/// A temporary folder beside the output, `.NAME.tmp-XXXXXX/`, holding the file being written
/// under the output's own name (a TorchScript archive names its inner folder after the file, as
/// `torch.jit.save` does). Dropping it removes the folder and whatever is still in it.
struct Staging {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl Staging {
    /// Creates the folder, so that an unwritable folder is an error naming `out` before any work.
    fn create(out: &Path) -> Result<Staging> {
        let name = out.file_name().map_or_else(|| "export".into(), |n| n.to_os_string());
        let prefix = format!(".{}.tmp-", name.to_string_lossy());
        let dir = tempfile::Builder::new().prefix(&prefix).tempdir_in(folder_of(out)).map_err(Error::io(out))?;
        Ok(Staging { file: dir.path().join(name), _dir: dir })
    }
}

/// Moves the finished `tmp` to `out`: a rename when `force`; otherwise a hard link, which fails
/// when a file appeared at `out` since [`check_out`] (where links are unsupported, a rename
/// after a second check).
fn commit(tmp: &Path, out: &Path, force: bool) -> Result<()> {
    if !force {
        match fs::hard_link(tmp, out) {
            Ok(()) => return Ok(()), // the staging folder, dropped, takes the other name
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(exists(out)),
            Err(_) if fs::symlink_metadata(out).is_ok() => return Err(exists(out)),
            Err(_) => {} // no hard links on this file system
        }
    }
    fs::rename(tmp, out).map_err(Error::io(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_is_checked_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.onnx");
        assert!(check_out(&file, false).is_ok());
        fs::write(&file, b"keep").unwrap();
        let err = check_out(&file, false).unwrap_err().to_string();
        assert!(err.contains(&file.display().to_string()) && err.contains("--force"), "{err}");
        assert!(check_out(&file, true).is_ok());
        let err = check_out(dir.path(), true).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
        let err = check_out(&dir.path().join("absent/m.onnx"), false).unwrap_err().to_string();
        assert!(err.contains("absent/m.onnx") && err.contains("cannot use the folder"), "{err}");
        let err = check_out(&file.join("m.onnx"), false).unwrap_err().to_string();
        assert!(err.contains("is not a folder"), "{err}");
    }

    #[test]
    fn commit_without_force_never_replaces_and_staging_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m.pt");
        fs::write(&out, b"old").unwrap();
        let staging = Staging::create(&out).unwrap();
        assert_eq!(staging.file.file_name(), out.file_name(), "the archive is named as the output");
        fs::write(&staging.file, b"new").unwrap();
        assert!(matches!(commit(&staging.file, &out, false), Err(Error::InvalidConfig { field: "out", .. })));
        assert_eq!(fs::read(&out).unwrap(), b"old");
        commit(&staging.file, &out, true).unwrap();
        drop(staging);
        assert_eq!(fs::read(&out).unwrap(), b"new");

        let fresh = dir.path().join("fresh.onnx");
        let staging = Staging::create(&fresh).unwrap();
        fs::write(&staging.file, b"newer").unwrap();
        commit(&staging.file, &fresh, false).unwrap();
        drop(staging);
        assert_eq!(fs::read(&fresh).unwrap(), b"newer");
        let mut names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["fresh.onnx", "m.pt"]);
    }
}
