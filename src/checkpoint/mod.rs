//! Saved runs: the trained model as a PyTorch-compatible safetensors file ([`model_file`]:
//! `conv1.weight` ... `fc3.bias` plus the class names, loadable with `load_state_dict(strict=True)`),
//! and the training state that `train --resume` continues from ([`state`]). Both are written
//! atomically and read back with every tensor checked: a corrupt or mismatched file is a clear
//! error, never a panic.

pub mod model_file;
pub(crate) mod pth;
pub mod state;

pub use model_file::{
    load_model, load_model_with_classes, model_path, save_model, save_model_with_temperature, ClassSource, LoadedModel, MODEL_FILE,
};
