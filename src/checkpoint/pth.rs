//! PyTorch's own weights files: `torch.save(net.state_dict(), 'cifar_net.pth')`, as the
//! tutorial saves them. Since PyTorch 1.6 such a file is a zip archive holding, under one root
//! folder, `data.pkl` (the pickled `state_dict`, an `OrderedDict` of name to tensor, with a
//! `_metadata` attribute) and one entry per tensor storage under `data/` (raw little-endian
//! bytes); see `torch/serialization.py`.
//!
//! libtorch's own unpickler (`Tensor::loadz_multi`) fails on the `OrderedDict` that
//! `state_dict()` returns, so the archive is read with
//! [pytorch-reader](https://crates.io/crates/pytorch-reader), Burn's reader of PyTorch
//! checkpoints: it interprets the pickle without running any of it, resolves each tensor's
//! storage, offset and strides, and checks every length against the file. Before that, the
//! root object of `data.pkl` is looked at, so that an archive holding something other than a
//! `state_dict` is refused with what it holds: a whole pickled module (`torch.save(net)`), a
//! TorchScript archive (`torch.jit.save`), a lone tensor, ...

use std::{
    collections::HashMap,
    io::{Cursor, Read},
    path::Path,
};

use pytorch_reader::{DType, PytorchReader};
use tch::{Kind, Tensor};

use super::model_file::{Stored, StoredTensor};
use crate::error::{Error, Result};

/// How to save what we read, for messages.
const SAVE_STATE_DICT: &str = "in Python, save the model's weights with `torch.save(net.state_dict(), path)`";

/// The tensors of the `torch.save` archive at `path`, whose bytes are `bytes`.
///
/// # Errors
/// [`Error::BadModelFile`] naming `path`: a zip archive that is not a `torch.save` file (no
/// `data.pkl`), a TorchScript archive, a whole pickled module, anything but a dict at the root
/// of `data.pkl`, or an archive that does not read (truncated, a storage missing).
pub(crate) fn read(path: &Path, bytes: &[u8]) -> Result<Stored<'static>> {
    let bad = |reason: String| Error::BadModelFile { path: path.to_path_buf(), reason };
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("a zip archive (as torch.save writes) that cannot be read: {e}")))?;
    let names: Vec<String> = (0..zip.len())
        .filter_map(|i| zip.by_index_raw(i).ok().and_then(|f| f.name().ok().map(|n| n.to_string())))
        .collect();
    // torch.save puts every entry under one root folder (`cifar_net/data.pkl`, ...).
    let Some(root) = names
        .iter()
        .filter_map(|n| n.strip_suffix("data.pkl"))
        .filter(|r| r.is_empty() || r.ends_with('/'))
        .min_by_key(|r| r.len())
        .map(str::to_string)
    else {
        let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
        return Err(bad(format!(
            "a zip archive, but not one torch.save wrote: it has no data.pkl (its {} entries: {}{})",
            names.len(),
            crate::report::escape::names(&shown),
            if names.len() > shown.len() { ", ..." } else { "" }
        )));
    };
    if names.iter().any(|n| n == &format!("{root}constants.pkl") || n.starts_with(&format!("{root}code/"))) {
        return Err(bad(format!(
            "a TorchScript archive (torch.jit.save), not a state_dict. If `tch-cifar10 export` wrote it, its weights \
             are constants of the traced graph (its state_dict is empty): use the model file it was exported from \
             (the run's model.safetensors). Otherwise, in Python, \
             `torch.save(torch.jit.load(path).state_dict(), 'net.pth')` gives a state_dict when the module keeps its \
             weights as parameters"
        )));
    }
    let mut pickle = Vec::new();
    zip.by_name(&format!("{root}data.pkl"))
        .and_then(|f| Ok(f.take(bytes.len() as u64 * 2 + 1024).read_to_end(&mut pickle)?))
        .map_err(|e| bad(format!("a torch.save archive whose data.pkl cannot be read: {e}")))?;
    crate::pickle_guard::check(&pickle).map_err(|reason| bad(format!("a torch.save archive whose data.pkl is not a state_dict's: {reason}")))?;
    match root_object(&pickle) {
        Root::Dict => {}
        Root::Class(class) if class == "collections.OrderedDict" => {}
        Root::Class(class) if class.starts_with("torch._utils._rebuild_") => {
            return Err(bad(format!("a torch.save archive holding a tensor, not a state_dict (a dict of tensors); {SAVE_STATE_DICT}")))
        }
        Root::Class(class) if is_module(&class, &pickle) => {
            return Err(bad(format!(
                "a whole pickled module (`torch.save(net)`, of class `{class}`), not a state_dict; {SAVE_STATE_DICT}"
            )))
        }
        Root::Class(class) => {
            return Err(bad(format!(
                "a torch.save archive holding a `{class}`, not a state_dict (a dict of tensors); {SAVE_STATE_DICT}"
            )))
        }
        Root::Other(what) => {
            return Err(bad(format!(
                "a torch.save archive holding {what}, not a state_dict (a dict of tensors); {SAVE_STATE_DICT}"
            )))
        }
    }

    let reader = PytorchReader::new(path).map_err(|e| bad(format!("a torch.save archive that does not read: {e}")))?;
    let mut tensors: Vec<StoredTensor<'static>> = reader
        .into_tensors()
        .into_values()
        .map(|t| {
            let (name, dtype, shape, read) = t.into_parts();
            let float = float_kind(dtype);
            let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            let (path, tensor_name, dims_read) = (path.to_path_buf(), name.clone(), dims.clone());
            StoredTensor {
                name,
                dtype: dtype_name(dtype).to_string(),
                float,
                shape: dims,
                read: Box::new(move || {
                    let bad = |reason: String| Error::BadModelFile { path: path.clone(), reason };
                    let kind = float.ok_or_else(|| bad(format!("tensor {tensor_name} is not floating-point")))?;
                    // Contiguous, row-major, native-endian (little-endian: every platform
                    // libtorch supports) whatever the strides and offset in the file.
                    let bytes = read().map_err(|e| bad(format!("a torch.save archive that does not read: {e}")))?;
                    Ok(Tensor::f_from_data_size(&bytes, &dims_read, kind)?)
                }),
            }
        })
        .collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Stored { tensors, metadata: HashMap::new() })
}

/// The tch kind of a floating-point dtype that loads into the float32 `Net`.
fn float_kind(dtype: DType) -> Option<Kind> {
    Some(match dtype {
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::F64 => Kind::Double,
        _ => return None,
    })
}

/// The dtype as safetensors names it, so that messages read alike for both formats.
fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F64 => "F64",
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::I64 => "I64",
        DType::I32 => "I32",
        DType::I16 => "I16",
        DType::I8 => "I8",
        DType::U64 => "U64",
        DType::U32 => "U32",
        DType::U16 => "U16",
        DType::U8 => "U8",
        DType::Bool => "BOOL",
    }
}

/// What a pickle builds at its root.
#[derive(Debug, PartialEq, Eq)]
enum Root {
    /// A plain `dict` (`EMPTY_DICT` first).
    Dict,
    /// An object of a class, `module.name` (the first global the pickle loads: the root
    /// object's class, or the function that rebuilds it).
    Class(String),
    /// Something else, in words.
    Other(&'static str),
}

/// The root object of a pickle, from its first opcodes (pickletools' names; protocols 2 to 5,
/// which is what torch.save writes). Only the opening is read: the class of the root object
/// is loaded before anything inside it.
fn root_object(pickle: &[u8]) -> Root {
    let mut at = 0;
    let mut strings: Vec<String> = Vec::new(); // for STACK_GLOBAL
    let byte = |i: usize| pickle.get(i).copied();
    let u32_at = |i: usize| pickle.get(i..i + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
    while let Some(op) = byte(at) {
        at += 1;
        match op {
            0x80 => at += 1,                 // PROTO n
            0x95 => at += 8,                 // FRAME len
            0x94 => {}                       // MEMOIZE
            b'q' => at += 1,                 // BINPUT
            b'r' => at += 4,                 // LONG_BINPUT
            b'}' => return Root::Dict,       // EMPTY_DICT
            b']' => return Root::Other("a list"),
            b')' => return Root::Other("a tuple"),
            b'c' => {
                // GLOBAL "module\nname\n"
                let mut lines = pickle[at..].splitn(3, |&b| b == b'\n');
                let (Some(module), Some(name)) = (lines.next(), lines.next()) else { break };
                return Root::Class(format!("{}.{}", String::from_utf8_lossy(module), String::from_utf8_lossy(name)));
            }
            0x8c | b'X' => {
                // SHORT_BINUNICODE (1-byte length) / BINUNICODE (4-byte length)
                let (len, start) = if op == 0x8c { (byte(at).map(usize::from), at + 1) } else { (u32_at(at), at + 4) };
                let Some(text) = len.and_then(|len| pickle.get(start..start + len)) else { break };
                strings.push(String::from_utf8_lossy(text).into_owned());
                at = start + text.len();
            }
            0x93 if strings.len() >= 2 => {
                // STACK_GLOBAL: module and name pushed just before
                let name = strings.pop().expect("two strings");
                return Root::Class(format!("{}.{name}", strings.pop().expect("two strings")));
            }
            _ => break,
        }
    }
    Root::Other("an object that is not a dict")
}

/// Whether a pickled object of `class` is a `torch.nn.Module`: a class of `torch.nn`, or one
/// (`__main__.Net`) whose pickle carries a module's tables.
fn is_module(class: &str, pickle: &[u8]) -> bool {
    let has = |needle: &[u8]| pickle.windows(needle.len()).any(|w| w == needle);
    class.starts_with("torch.nn.") || (has(b"_modules") && has(b"_parameters"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_objects_of_the_pickles_torch_save_writes() {
        // pickle.dumps(OrderedDict(), protocol=2) and protocol=4.
        assert_eq!(root_object(b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01."), Root::Class("collections.OrderedDict".into()));
        assert_eq!(
            root_object(b"\x80\x04\x95\x23\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94."),
            Root::Class("collections.OrderedDict".into())
        );
        // pickle.dumps({}, protocol=2); a module (`__main__.Net`); a list.
        assert_eq!(root_object(b"\x80\x02}q\x00."), Root::Dict);
        assert_eq!(root_object(b"\x80\x02c__main__\nNet\nq\x00)\x81q\x01}"), Root::Class("__main__.Net".into()));
        assert_eq!(root_object(b"\x80\x02]q\x00."), Root::Other("a list"));
        // Garbage and truncation: never a panic.
        assert_eq!(root_object(b""), Root::Other("an object that is not a dict"));
        assert_eq!(root_object(b"\x80\x04\x95\x01"), Root::Other("an object that is not a dict"));
        assert_eq!(root_object(b"\x80\x04\x8c\xff"), Root::Other("an object that is not a dict"));
        assert_eq!(root_object(b"\x80\x02cnoline"), Root::Other("an object that is not a dict"));
    }
}
