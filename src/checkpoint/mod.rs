//! What a run leaves on disk to be used later: the trained model as a PyTorch-compatible
//! safetensors file ([`model_file`]: `conv1.weight` ... `fc3.bias` plus the class names), written
//! atomically and read back with every tensor checked, so a corrupt or mismatched file is a clear
//! error and never a panic.

pub mod model_file;

pub use model_file::{load_model, load_model_with_classes, save_model, ClassSource, LoadedModel, MODEL_FILE};
