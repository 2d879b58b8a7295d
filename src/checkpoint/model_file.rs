//! The model file, `model.safetensors`: the `Net` weights in the
//! [safetensors](https://huggingface.co/docs/safetensors) format (an 8-byte little-endian header
//! length, a JSON header naming each tensor's dtype, shape and byte range, then the raw
//! little-endian data), exactly as PyTorch's `safetensors.torch.save_file(net.state_dict(), path)`
//! writes it, so the file loads into the reference Python `Net` with
//! `net.load_state_dict(safetensors.torch.load_file(path), strict=True)`:
//!
//! * ten tensors named as PyTorch names them (`conv1.weight`, `conv1.bias`, ..., `fc3.bias`),
//!   float32, contiguous, CPU; `fc3.weight` is `[classes, 84]`;
//! * header metadata (string to string, as safetensors allows): `format` = `pt` (the convention
//!   of `safetensors.torch`), `classes` = the class names as a JSON array (index = label), and
//!   `tch_cifar10_version` = the crate version that wrote it; after `tch-cifar10 calibrate`,
//!   `temperature` = the fitted temperature T (a decimal number, finite and positive), which
//!   `eval` and `predict` divide the logits by before the softmax.
//!
//! The bytes written are a function of the content alone (the header's keys sorted), so two
//! saves of the same weights give identical files.
//!
//! Reading takes either format PyTorch users have, told apart by content (`sniff`): such a
//! safetensors file, or PyTorch's own `torch.save(net.state_dict(), path)` archive
//! (`checkpoint::pth`). Everything is checked before a variable is built: a file of any
//! other kind (saying what it looks like), a truncated file, a missing or extra tensor, an
//! integer dtype, a wrong shape, or a NaN or infinite value is an [`Error::BadModelFile`]
//! naming the file and the problem. float16, bfloat16 and float64 tensors are cast to float32,
//! as PyTorch's `load_state_dict` casts them. A plain PyTorch `state_dict` has no `classes`
//! metadata; then the class names are the caller's (`--classes`) or, for a 10-output `fc3`,
//! [`CIFAR10_CLASS_NAMES`].

use std::{collections::HashMap, path::Path};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use tch::{nn, Device, Kind, Tensor};

use super::pth;
use crate::{
    error::{Error, Result},
    model::Net,
    run_dir::write_atomic,
    safe_fs,
};

/// The model file's name in a run directory.
pub const MODEL_FILE: &str = "model.safetensors";

/// Class names used for a 10-output model whose file names none (a PyTorch `state_dict`): the
/// names of CIFAR-10's `batches.meta.txt`, which are also torchvision's `CIFAR10.classes` and
/// what `train` stores for CIFAR-10. (The tutorial's own tuple abbreviates two of them as
/// `plane` and `car`; pass `--classes` to use those.)
pub const CIFAR10_CLASS_NAMES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The model file that `path` names: itself, or [`MODEL_FILE`] inside a run directory. (The
/// commands use `run_state::model_file`, which also takes an unfinished run's checkpoint.)
pub fn model_path(path: &Path) -> std::path::PathBuf {
    if path.is_dir() { path.join(MODEL_FILE) } else { path.to_path_buf() }
}

/// Inputs of `fc3` (the width of `fc2`).
const FC3_INPUTS: usize = 84;

const KEY_FORMAT: &str = "format";
const KEY_CLASSES: &str = "classes";
const KEY_VERSION: &str = "tch_cifar10_version";
const KEY_TEMPERATURE: &str = "temperature";

/// Where a loaded model's class names came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassSource {
    /// The file's `classes` metadata.
    File,
    /// The caller (`--classes`), overriding or supplying the file's.
    User,
    /// [`CIFAR10_CLASS_NAMES`], for a 10-output file without class metadata.
    Cifar10Default,
}

/// A model read back from a model file.
#[derive(Debug)]
pub struct LoadedModel {
    /// The variables (`conv1.weight` ... `fc3.bias`) on the requested device.
    pub vs: nn::VarStore,
    /// The network, its `fc3` as wide as the file's.
    pub net: Net,
    /// Class names, indexed by output (label).
    pub classes: Vec<String>,
    /// Where `classes` came from.
    pub class_source: ClassSource,
    /// The `tch_cifar10_version` metadata: the crate version that wrote the file, if it was us.
    pub written_by: Option<String>,
    /// The `temperature` metadata (`tch-cifar10 calibrate`): divides the logits before the softmax.
    pub temperature: Option<f64>,
}

/// The validated contents of a model file, before any variable is built (for callers that
/// build their own `Net`, such as fine-tuning with a new `fc3`).
#[derive(Debug)]
pub struct ModelFile {
    /// The ten parameters in PyTorch's `named_parameters()` order, float32 on the CPU, each of
    /// the shape `Net::new(.., outputs)` gives it.
    pub tensors: Vec<(String, Tensor)>,
    /// Width of `fc3` (the number of classes).
    pub outputs: i64,
    /// The `classes` metadata, when the file has it (its length is `outputs`).
    pub classes: Option<Vec<String>>,
    /// The `tch_cifar10_version` metadata.
    pub written_by: Option<String>,
    /// The `temperature` metadata, finite and positive when present.
    pub temperature: Option<f64>,
}

/// Saves `net`'s parameters and the class names to `path` (see the module doc for the layout),
/// atomically: a temporary sibling is written and synced, then renamed over `path`.
///
/// # Errors
/// [`Error::InvalidConfig`] when `classes` does not have one name per `fc3` output;
/// [`Error::Io`] naming `path` when it cannot be written (an existing file is then untouched).
pub fn save_model(path: &Path, net: &Net, classes: &[String]) -> Result<()> {
    save_model_with_temperature(path, net, classes, None)
}

/// [`save_model`], with a `temperature` metadata entry when `temperature` is given.
///
/// # Errors
/// As [`save_model`]; [`Error::InvalidConfig`] for a temperature that is not finite and positive.
pub fn save_model_with_temperature(path: &Path, net: &Net, classes: &[String], temperature: Option<f64>) -> Result<()> {
    if let Some(t) = temperature.filter(|t| !(t.is_finite() && *t > 0.0)) {
        return Err(Error::InvalidConfig { field: "temperature", value: t.to_string(), expected: "a finite number above 0".into() });
    }
    let params = net.parameters();
    let outputs = params[9].1.size()[0];
    if classes.len() as i64 != outputs {
        return Err(Error::InvalidConfig {
            field: "classes",
            value: format!("{} names", classes.len()),
            expected: format!("one name per output of fc3 ({outputs})"),
        });
    }
    let mut metadata = HashMap::from([
        (KEY_FORMAT.to_string(), "pt".to_string()),
        (KEY_CLASSES.to_string(), serde_json::to_string(classes).expect("strings serialise to JSON")),
        (KEY_VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ]);
    if let Some(t) = temperature {
        metadata.insert(KEY_TEMPERATURE.to_string(), format!("{t:?}")); // shortest round-trip decimal
    }
    let params: Vec<(&str, Tensor)> = params.iter().map(|&(n, t)| (n, t.detach().to_kind(Kind::Float))).collect();
    let bytes = encode_tensors(params.iter().map(|(n, t)| (*n, t)), metadata)?;
    write_atomic(path, &bytes)
}

/// Loads the model in `path` onto `device`, with the file's class names, or
/// [`CIFAR10_CLASS_NAMES`] for a 10-output file without them.
///
/// # Errors
/// As [`load_model_with_classes`].
pub fn load_model(path: &Path, device: Device) -> Result<LoadedModel> {
    load_model_with_classes(path, device, None)
}

/// Loads the model in `path` onto `device`. `classes`, when given, names the outputs (and
/// overrides the file's names); otherwise the file's `classes` metadata does, or for a
/// 10-output file without it, [`CIFAR10_CLASS_NAMES`].
///
/// # Errors
/// [`Error::Io`] when `path` cannot be read; [`Error::BadModelFile`] when it is not a valid
/// model file (see [`read_model_file`]) or names no classes and `fc3` is not 10 wide;
/// [`Error::InvalidConfig`] when `classes` does not have one name per output.
pub fn load_model_with_classes(path: &Path, device: Device, classes: Option<&[String]>) -> Result<LoadedModel> {
    let file = read_model_file(path)?;
    let (classes, class_source) = match (classes, file.classes) {
        (Some(user), _) => {
            if user.len() as i64 != file.outputs {
                return Err(Error::InvalidConfig {
                    field: "classes",
                    value: user.join(","),
                    expected: format!("{} names, one per output of the model in {}", file.outputs, path.display()),
                });
            }
            (user.to_vec(), ClassSource::User)
        }
        (None, Some(names)) => (names, ClassSource::File),
        (None, None) if file.outputs == CIFAR10_CLASS_NAMES.len() as i64 => {
            (CIFAR10_CLASS_NAMES.map(String::from).to_vec(), ClassSource::Cifar10Default)
        }
        (None, None) => {
            return Err(Error::BadModelFile {
                path: path.to_path_buf(),
                reason: format!(
                    "the file names no classes (no `{KEY_CLASSES}` metadata) and its fc3 has {} outputs, \
                     not CIFAR-10's 10; pass --classes with {} names",
                    file.outputs, file.outputs
                ),
            })
        }
    };
    let vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), file.outputs);
    tch::no_grad(|| -> Result<()> {
        for ((name, var), (file_name, value)) in net.parameters().iter().zip(&file.tensors) {
            debug_assert_eq!(name, file_name, "read_model_file returns tensors in PyTorch order");
            var.shallow_clone().f_copy_(value)?;
        }
        Ok(())
    })?;
    Ok(LoadedModel { vs, net, classes, class_source, written_by: file.written_by, temperature: file.temperature })
}

/// What [`read_model_file`] accepts, for error messages.
const ACCEPTED: &str = "expected a model file: a run's model.safetensors or checkpoint.safetensors, a state_dict saved with safetensors \
     (`safetensors.torch.save_file(net.state_dict(), path)`), or one saved by PyTorch \
     (`torch.save(net.state_dict(), path)`)";

/// Reads and checks the model file at `path`, in either format PyTorch users have:
///
/// * safetensors: what [`save_model`] writes, or `safetensors.torch.save_file(net.state_dict(), path)`;
/// * PyTorch's own, `torch.save(net.state_dict(), path)` (the tutorial's `cifar_net.pth`; read
///   by `checkpoint::pth`).
///
/// `sniff` tells them apart by their first bytes, whatever the file's name. Either must hold
/// exactly the ten `Net` parameters under PyTorch's names, with `Net`'s shapes (`fc3` of any
/// width from 2), in a floating-point dtype: float32, or float16, bfloat16 or float64, which
/// are cast to float32 as `load_state_dict` casts them when it copies them into a float32
/// model (one log line says so). Every value must be finite. A safetensors file's `classes`
/// metadata, if present, must be a JSON array of one non-empty name per output.
///
/// # Errors
/// [`Error::Io`] when `path` cannot be read, is not a regular file, or is larger than
/// [`safe_fs::MAX_MODEL_FILE_BYTES`]; [`Error::BadModelFile`] naming `path` and the first
/// problem found: a file of another kind (saying what it looks like), a whole pickled module,
/// a truncated file, missing or unexpected tensors, an integer dtype, a wrong shape, NaN or
/// infinite values (naming the first such tensor), or bad `classes` metadata.
pub fn read_model_file(path: &Path) -> Result<ModelFile> {
    let bytes = safe_fs::read_regular(path, safe_fs::MAX_MODEL_FILE_BYTES)?;
    let bad = |reason: String| Error::BadModelFile { path: path.to_path_buf(), reason };
    let stored = match sniff(&bytes) {
        Format::Safetensors => training_checkpoint_weights(path, read_safetensors(&bytes).map_err(bad)?)?,
        Format::TorchSave => pth::read(path, &bytes)?,
        Format::Other(looks_like) => {
            return Err(bad(format!("not a safetensors file nor a PyTorch torch.save archive: it is {looks_like}; {ACCEPTED}")))
        }
    };
    check(path, &stored)
}

/// A run's training checkpoint (`checkpoint.safetensors`, see [`super::state`]) given where a
/// model file is expected: its current weights (the optimizer's state and any early-stopping
/// best weights are left out) and the class names it trained on. Any other file passes as it is.
///
/// # Errors
/// [`Error::BadCheckpoint`] when its training state cannot be read.
fn training_checkpoint_weights<'a>(path: &Path, mut stored: Stored<'a>) -> Result<Stored<'a>> {
    if !super::state::is_checkpoint(&stored.metadata) {
        return Ok(stored);
    }
    let st = super::state::state_of(path, Some(&stored.metadata))?;
    let names: Vec<&str> = {
        let vs = nn::VarStore::new(Device::Cpu);
        Net::new(&vs.root(), 10).parameters().iter().map(|&(n, _)| n).collect()
    };
    stored.tensors.retain(|t| names.contains(&t.name.as_str()));
    let at = match st.step {
        0 => format!("after epoch {}", st.epoch),
        step => format!("at epoch {}, step {step}", st.epoch + 1),
    };
    let of = st.config.as_ref().map_or(String::new(), |c| format!(" of {}", c.epochs));
    tracing::info!("{} is a training checkpoint: using its weights {at}{of}", path.display());
    let mut metadata = std::collections::HashMap::new();
    if let Some(classes) = st.data.map(|d| d.classes) {
        metadata.insert(KEY_CLASSES.to_string(), serde_json::to_string(&classes).expect("names serialise"));
    }
    metadata.insert(KEY_VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string());
    Ok(Stored { tensors: stored.tensors, metadata })
}

/// A model file's tensors as stored, before any check: what every format reader gives.
pub(crate) struct Stored<'a> {
    /// The tensors, in the file's order.
    pub tensors: Vec<StoredTensor<'a>>,
    /// String metadata (a safetensors header's `__metadata__`; none in a `torch.save` file).
    pub metadata: HashMap<String, String>,
}

/// One stored tensor: what the file says about it, and how to build it.
pub(crate) struct StoredTensor<'a> {
    /// Its name in the file (`conv1.weight`, ...).
    pub name: String,
    /// The stored element type, named as safetensors names it (`F32`, `BF16`, `I64`, ...).
    pub dtype: String,
    /// The tch kind of a floating-point dtype (`F32`, `F16`, `BF16`, `F64`); `None` otherwise.
    pub float: Option<Kind>,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Builds it as a contiguous CPU tensor of kind `float` (only called when that is `Some`).
    pub read: Box<dyn Fn() -> Result<Tensor> + 'a>,
}

/// The tch kind of a floating-point dtype that loads into the float32 `Net`.
fn float_kind(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

/// A safetensors file's tensors and metadata.
fn read_safetensors(bytes: &[u8]) -> std::result::Result<Stored<'_>, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file, or truncated ({e})"))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, view)| StoredTensor {
            name,
            dtype: view.dtype().to_string(),
            float: float_kind(view.dtype()),
            shape: view.shape().iter().map(|&d| d as i64).collect(),
            read: Box::new(move || tensor_from_view(&view, float_kind(view.dtype()).unwrap_or(Kind::Uint8))),
        })
        .collect();
    Ok(Stored { tensors, metadata: header.metadata().clone().unwrap_or_default() })
}

/// The checks of [`read_model_file`], on any format's tensors.
fn check(path: &Path, stored: &Stored<'_>) -> Result<ModelFile> {
    let bad = |reason: String| Error::BadModelFile { path: path.to_path_buf(), reason };
    let find = |name: &str| stored.tensors.iter().find(|t| t.name == name);

    // The shapes a Net of the file's width has; the width comes from fc3.weight `[outputs, 84]`
    // (its data then bounds `outputs` by the file size).
    let outputs = match find("fc3.weight") {
        Some(t) if t.shape.len() == 2 && t.shape[1] == FC3_INPUTS as i64 => t.shape[0],
        _ => 10, // reported below as a missing tensor or a wrong shape
    };
    if outputs < 2 {
        return Err(bad(format!("fc3.weight has {outputs} output(s); a classifier needs at least 2")));
    }
    let expected: Vec<(&'static str, Vec<i64>)> = {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), outputs);
        net.parameters().iter().map(|&(n, t)| (n, t.size())).collect()
    };
    let missing: Vec<&str> = expected.iter().map(|(n, _)| *n).filter(|n| find(n).is_none()).collect();
    let mut extra: Vec<&str> =
        stored.tensors.iter().map(|t| t.name.as_str()).filter(|n| !expected.iter().any(|(e, _)| e == n)).collect();
    extra.sort();
    if !missing.is_empty() || !extra.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing tensor(s) {}", crate::report::escape::names(&missing)));
        }
        if !extra.is_empty() {
            let shown = crate::report::escape::names(extra.iter().take(12));
            let more = if extra.len() > 12 { format!(" and {} more", extra.len() - 12) } else { String::new() };
            parts.push(format!("unexpected tensor(s) {shown}{more}"));
        }
        let hint = prefix_hint(&expected, &extra);
        return Err(bad(format!("{}; expected exactly the Net parameters conv1.weight ... fc3.bias{hint}", parts.join("; "))));
    }

    let mut tensors = Vec::with_capacity(expected.len());
    let mut cast: Vec<&str> = Vec::new();
    for (name, shape) in &expected {
        let stored = find(name).expect("presence checked above");
        let Some(kind) = stored.float else {
            return Err(bad(format!(
                "tensor {name} has dtype {}, expected a floating-point dtype: F32 (float32), or F16, BF16 or F64 (cast to float32)",
                stored.dtype
            )));
        };
        if &stored.shape != shape {
            return Err(bad(format!("tensor {name} has shape {:?}, expected {shape:?}", stored.shape)));
        }
        let mut value = (stored.read)()?;
        if kind != Kind::Float {
            // As `load_state_dict` does: `param.copy_(input_param)` into the float32 parameter.
            value = value.f_to_kind(Kind::Float)?;
            if !cast.contains(&stored.dtype.as_str()) {
                cast.push(&stored.dtype);
            }
        }
        check_finite(name, &value, kind != Kind::Float).map_err(bad)?;
        tensors.push((name.to_string(), value));
    }
    if !cast.is_empty() {
        tracing::info!(
            "{}: tensors stored as {} cast to float32 (F32), as PyTorch's load_state_dict casts them",
            path.display(),
            cast.join(" and ")
        );
    }

    let meta = &stored.metadata;
    let classes = match meta.get(KEY_CLASSES) {
        None => None,
        Some(text) => {
            let names: Vec<String> = serde_json::from_str(text)
                .map_err(|e| bad(format!("metadata `{KEY_CLASSES}` is not a JSON array of strings ({e})")))?;
            if names.len() as i64 != outputs || names.iter().any(|n| n.trim().is_empty()) {
                return Err(bad(format!(
                    "metadata `{KEY_CLASSES}` has {} name(s) (blank ones not allowed) for the {outputs} outputs of fc3",
                    names.len()
                )));
            }
            Some(names)
        }
    };
    let temperature = match meta.get(KEY_TEMPERATURE) {
        None => None,
        Some(text) => match text.trim().parse::<f64>() {
            Ok(t) if t.is_finite() && t > 0.0 => Some(t),
            _ => return Err(bad(format!("metadata `{KEY_TEMPERATURE}` is {text:?}, not a finite number above 0"))),
        },
    };
    Ok(ModelFile { tensors, outputs, classes, written_by: meta.get(KEY_VERSION).cloned(), temperature })
}

/// When every expected name is present under one prefix (`module.` from `DataParallel`, or an
/// entry of a checkpoint dict), says so and how to save the `Net`'s own `state_dict`.
fn prefix_hint(expected: &[(&str, Vec<i64>)], extra: &[&str]) -> String {
    let first = expected[0].0;
    let prefixes = extra.iter().filter_map(|e| e.strip_suffix(first)).filter(|p| p.ends_with('.'));
    for prefix in prefixes {
        if expected.iter().all(|(n, _)| extra.contains(&format!("{prefix}{n}").as_str())) {
            let key = prefix.trim_end_matches('.');
            let strip = format!(
                "or strip the prefix: `torch.save({{k.removeprefix('{prefix}'): v for k, v in state_dict.items()}}, path)`"
            );
            let how = match key {
                "module" => format!("saved from a DataParallel or DistributedDataParallel wrapper: save `net.module.state_dict()` instead, {strip}"),
                "_orig_mod" => format!("saved from a `torch.compile`d module: save `net._orig_mod.state_dict()` instead, {strip}"),
                // One entry of a checkpoint dict (`{'model_state_dict': ..., 'epoch': 3}`).
                _ if !key.contains('.') => {
                    format!("a checkpoint holding more than the model: save that entry alone, e.g. `torch.save(checkpoint['{key}'], path)`")
                }
                // Nested wrappers (`model._orig_mod.`): one prefix to remove.
                _ => format!("names under a prefix: {}", strip.trim_start_matches("or ")),
            };
            return format!(". The file holds them under the prefix `{prefix}` ({how})");
        }
    }
    String::new()
}

/// An error message when `value` (float32) holds NaN or infinite values.
fn check_finite(name: &str, value: &Tensor, cast: bool) -> std::result::Result<(), String> {
    match non_finite(name, value, if cast { " after the cast to float32" } else { "" }) {
        None => Ok(()),
        Some(what) => Err(format!("{what}; a model with non-finite weights gives meaningless outputs (did its training diverge?)")),
    }
}

/// `tensor NAME holds N NaN and M infinite value(s)NOTE (the first at flat index I)` when
/// `value` (a floating-point tensor) is not all finite.
pub(crate) fn non_finite(name: &str, value: &Tensor, note: &str) -> Option<String> {
    let finite = value.isfinite();
    if finite.all().int64_value(&[]) != 0 {
        return None;
    }
    let nan = value.isnan().sum(Kind::Int64).int64_value(&[]);
    let inf = value.isinf().sum(Kind::Int64).int64_value(&[]);
    let first = finite.flatten(0, -1).logical_not().nonzero().int64_value(&[0, 0]);
    Some(format!("tensor {name} holds {nan} NaN and {inf} infinite value(s){note} (the first at flat index {first})"))
}

/// The kind of a model file, from its first bytes.
pub(crate) enum Format {
    /// An 8-byte little-endian header length (at most 100 MB), then the header's `{`.
    Safetensors,
    /// A zip archive (`PK\x03\x04`): what `torch.save` writes since PyTorch 1.6.
    TorchSave,
    /// Anything else, with what it looks like.
    Other(String),
}

/// Tells a model file's format by its content (never by its name), and for any other file
/// says what it looks like: empty, a pickle, an old `torch.save` file, gzip, text, ...
pub(crate) fn sniff(bytes: &[u8]) -> Format {
    const MAX_SAFETENSORS_HEADER: u64 = 100_000_000; // the safetensors crate's own bound
    if let Some(len) = bytes.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)) {
        if len <= MAX_SAFETENSORS_HEADER && matches!(bytes.get(8), None | Some(b'{')) {
            return Format::Safetensors;
        }
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Format::TorchSave;
    }
    // torch.save's format before PyTorch 1.6: pickles that open with this magic number.
    const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    let head = &bytes[..bytes.len().min(64)];
    let looks_like = if bytes.is_empty() {
        "an empty file (0 bytes)".to_string()
    } else if head.windows(LEGACY_MAGIC.len()).any(|w| w == LEGACY_MAGIC) {
        "a torch.save file in the format of PyTorch before 1.6 (`_use_new_zipfile_serialization=False`); \
         load it with a current PyTorch and save it again"
            .to_string()
    } else if bytes[0] == 0x80 && matches!(bytes.get(1), Some(2..=5)) {
        "a Python pickle (pickle.dump), not the zip archive torch.save writes".to_string()
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        "gzip-compressed data; decompress it first".to_string()
    } else if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
        "an HDF5 file (a Keras .h5 model?)".to_string()
    } else if bytes.starts_with(b"\x89PNG") || bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        "an image, not a model".to_string()
    } else if let Some(text) = as_text(head) {
        format!("text, starting {text:?}")
    } else {
        let hex: String = head.iter().take(8).map(|b| format!("{b:02x} ")).collect();
        format!("{} bytes of unrecognised binary data, starting {}", bytes.len(), hex.trim_end())
    };
    Format::Other(looks_like)
}

/// The first line of `head` (up to 40 characters) when it reads as text.
fn as_text(head: &[u8]) -> Option<String> {
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?, // cut mid-character
        Err(_) => return None,
    };
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return None;
    }
    Some(text.lines().next().unwrap_or("").chars().take(40).collect())
}

/// The safetensors dtype of a tch kind, for the kinds checkpoints use.
pub(crate) fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        _ => return None,
    })
}

/// Serialises named tensors (any device; copied to the CPU, made contiguous) with `metadata`
/// into the bytes of a safetensors file. Names must be unique.
///
/// # Errors
/// [`Error::Torch`] for a tensor kind safetensors cannot hold or a failed copy.
pub(crate) fn encode_tensors<'a>(
    named: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut owned: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in named {
        let t = t.to_device(Device::Cpu).contiguous();
        let kind = t.f_kind()?;
        let dtype = dtype_of(kind)
            .ok_or_else(|| tch::TchError::Kind(format!("tensor {name}: kind {kind:?} has no safetensors dtype")))?;
        let numel = t.numel();
        let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel)?;
        owned.push((name, dtype, t.size().iter().map(|&d| d as usize).collect(), data));
    }
    let views = owned
        .iter()
        .map(|(name, dtype, shape, data)| {
            let view = TensorView::new(*dtype, shape.clone(), data).expect("byte length is numel * element size");
            (*name, view)
        })
        .collect::<Vec<_>>();
    let bytes = safetensors::serialize(views, Some(metadata)).expect("header of a few named tensors serialises");
    Ok(canonical_header(bytes))
}

/// The same safetensors file with its JSON header's keys in sorted order, so that the bytes
/// are a function of the content: `safetensors::serialize` lays out the tensors in a fixed
/// order (by dtype, then name) but writes the metadata map in its hash order, which differs
/// from one run to the next. The data section does not move (offsets are relative to its
/// start); the header keeps the format's 8-byte alignment, padded with spaces as the crate
/// pads it.
fn canonical_header(bytes: Vec<u8>) -> Vec<u8> {
    fn sorted(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            other => other,
        }
    }
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).expect("the crate wrote valid JSON");
    let mut text = serde_json::to_vec(&sorted(header)).expect("JSON values serialise");
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - len);
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text);
    out.extend(&bytes[8 + len..]);
    out
}

/// A CPU tensor holding a copy of a validated safetensors view. safetensors data is
/// little-endian, as every platform libtorch supports.
pub(crate) fn tensor_from_view(view: &TensorView<'_>, kind: Kind) -> Result<Tensor> {
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    let numel: i64 = shape.iter().product();
    // TensorView::new and SafeTensors::deserialize guarantee this; libtorch would read past
    // the buffer otherwise, so it is checked again here.
    assert_eq!(view.data().len() as i64, numel * kind.elt_size_in_bytes() as i64, "safetensors view length");
    Ok(Tensor::f_from_data_size(view.data(), &shape, kind)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_checkpoint_kind_maps_to_a_dtype_of_its_size() {
        for kind in [Kind::Float, Kind::Double, Kind::Half, Kind::BFloat16, Kind::Int64, Kind::Int, Kind::Uint8, Kind::Bool] {
            let dtype = dtype_of(kind).unwrap();
            assert_eq!(dtype.bitsize(), 8 * kind.elt_size_in_bytes(), "{kind:?}");
        }
    }

    #[test]
    fn encoded_bytes_are_a_function_of_the_content() {
        let t = Tensor::from_slice(&[1f32, 2.0]);
        let u = Tensor::from_slice(&[3i64]);
        let encode = || {
            // A fresh map each time, as every save builds one: its hash order differs.
            let meta: HashMap<String, String> = (0..6).map(|i| (format!("key{i}"), format!("value {i}"))).collect();
            encode_tensors([("b", &t), ("a", &u), ("c", &t)], meta).unwrap()
        };
        let first = encode();
        for _ in 0..20 {
            assert_eq!(encode(), first);
        }
        let st = SafeTensors::deserialize(&first).unwrap();
        assert_eq!(st.tensor("a").unwrap().data(), 3i64.to_le_bytes());
        let (_, header) = SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(header.metadata().as_ref().unwrap()["key5"], "value 5");
    }

    #[test]
    fn encoded_tensors_decode_bit_for_bit() {
        let t = Tensor::from_slice(&[1.5f32, -0.0, f32::MIN_POSITIVE, 3.0e38, -7.25, 0.1]).view([2, 3]);
        let bytes = encode_tensors([("x", &t)], HashMap::new()).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let view = st.tensor("x").unwrap();
        assert_eq!((view.dtype(), view.shape()), (Dtype::F32, &[2usize, 3][..]));
        let back = tensor_from_view(&view, Kind::Float).unwrap();
        let (a, b) = (Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(), Vec::<f32>::try_from(back.flatten(0, -1)).unwrap());
        assert_eq!(a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), b.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }
}
