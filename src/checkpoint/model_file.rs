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
//!   `tch_cifar10_version` = the crate version that wrote it.
//!
//! Reading checks everything before a variable is built: a file that is not safetensors, is
//! truncated, misses a tensor, holds an extra one, or has a wrong dtype or shape is an
//! [`Error::BadModelFile`] naming the file and the problem. A plain PyTorch `state_dict` saved
//! with safetensors has no `classes` metadata; then the class names are the caller's (`--classes`)
//! or, for a 10-output `fc3`, [`CIFAR10_CLASS_NAMES`].

use std::{collections::HashMap, path::Path};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use tch::{nn, Device, Kind, Tensor};

use crate::{
    error::{Error, Result},
    model::Net,
    run_dir::write_atomic,
};

/// The model file's name in a run directory.
pub const MODEL_FILE: &str = "model.safetensors";

/// Class names used for a 10-output model whose file names none (a PyTorch `state_dict`): the
/// names of CIFAR-10's `batches.meta.txt`, which are also torchvision's `CIFAR10.classes` and
/// what `train` stores for CIFAR-10. (The tutorial's own tuple abbreviates two of them as
/// `plane` and `car`; pass `--classes` to use those.)
pub const CIFAR10_CLASS_NAMES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The model file that `path` names: itself, or [`MODEL_FILE`] inside a run directory (what
/// `eval --checkpoint`, `predict --checkpoint` and `finetune --from` take).
pub fn model_path(path: &Path) -> std::path::PathBuf {
    if path.is_dir() { path.join(MODEL_FILE) } else { path.to_path_buf() }
}

/// Inputs of `fc3` (the width of `fc2`).
const FC3_INPUTS: usize = 84;

const KEY_FORMAT: &str = "format";
const KEY_CLASSES: &str = "classes";
const KEY_VERSION: &str = "tch_cifar10_version";

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
}

/// Saves `net`'s parameters and the class names to `path` (see the module doc for the layout),
/// atomically: a temporary sibling is written and synced, then renamed over `path`.
///
/// # Errors
/// [`Error::InvalidConfig`] when `classes` does not have one name per `fc3` output;
/// [`Error::Io`] naming `path` when it cannot be written (an existing file is then untouched).
pub fn save_model(path: &Path, net: &Net, classes: &[String]) -> Result<()> {
    let params = net.parameters();
    let outputs = params[9].1.size()[0];
    if classes.len() as i64 != outputs {
        return Err(Error::InvalidConfig {
            field: "classes",
            value: format!("{} names", classes.len()),
            expected: format!("one name per output of fc3 ({outputs})"),
        });
    }
    let metadata = HashMap::from([
        (KEY_FORMAT.to_string(), "pt".to_string()),
        (KEY_CLASSES.to_string(), serde_json::to_string(classes).expect("strings serialise to JSON")),
        (KEY_VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ]);
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
    Ok(LoadedModel { vs, net, classes, class_source, written_by: file.written_by })
}

/// Reads and checks the model file at `path`: a safetensors file holding exactly the ten `Net`
/// parameters, float32, with `Net`'s shapes (`fc3` of any width from 2), and, if present, a
/// `classes` metadata entry that is a JSON array of one non-empty name per output.
///
/// # Errors
/// [`Error::Io`] when `path` cannot be read; [`Error::BadModelFile`] naming `path` and the
/// first problem found: not safetensors or truncated, missing or unexpected tensors, a wrong
/// dtype or shape, or bad `classes` metadata.
pub fn read_model_file(path: &Path) -> Result<ModelFile> {
    let bytes = crate::safe_fs::read_regular(path, crate::safe_fs::MAX_MODEL_FILE_BYTES)?;
    let bad = |reason: String| Error::BadModelFile { path: path.to_path_buf(), reason };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a safetensors file, or truncated ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not a safetensors file ({e})")))?;

    // The shapes a Net of the file's width has; the width comes from fc3.weight `[outputs, 84]`
    // (its data then bounds `outputs` by the file size).
    let outputs = match st.tensor("fc3.weight") {
        Ok(t) if t.shape().len() == 2 && t.shape()[1] == FC3_INPUTS => t.shape()[0] as i64,
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
    let missing: Vec<&str> = expected.iter().map(|(n, _)| *n).filter(|n| st.tensor(n).is_err()).collect();
    let mut extra: Vec<String> = st.names().into_iter().filter(|n| !expected.iter().any(|(e, _)| e == n)).map(String::from).collect();
    extra.sort();
    if !missing.is_empty() || !extra.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing tensor(s) {}", missing.join(", ")));
        }
        if !extra.is_empty() {
            parts.push(format!("unexpected tensor(s) {}", extra.join(", ")));
        }
        return Err(bad(format!(
            "{}; expected exactly the Net parameters conv1.weight ... fc3.bias",
            parts.join("; ")
        )));
    }
    let mut tensors = Vec::with_capacity(expected.len());
    for (name, shape) in &expected {
        let view = st.tensor(name).expect("presence checked above");
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!("tensor {name} has dtype {}, expected F32 (float32)", view.dtype())));
        }
        let got: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        if &got != shape {
            return Err(bad(format!("tensor {name} has shape {got:?}, expected {shape:?}")));
        }
        tensors.push((name.to_string(), tensor_from_view(&view, Kind::Float)?));
    }

    let meta = header.metadata().clone().unwrap_or_default();
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
    Ok(ModelFile { tensors, outputs, classes, written_by: meta.get(KEY_VERSION).cloned() })
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
    Ok(safetensors::serialize(views, Some(metadata)).expect("header of a few named tensors serialises"))
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
