//! Fine-tuning (`tch-cifar10 finetune --from CHECKPOINT`): start from trained weights instead of
//! PyTorch's initialisation, the way a PyTorch user would write
//!
//! ```python
//! net = Net(); net.load_state_dict(torch.load(path))
//! net.fc3 = nn.Linear(84, num_classes)                      # a new head for the new classes
//! for p in [*net.conv1.parameters(), *net.conv2.parameters()]: p.requires_grad_(False)  # --freeze features
//! ```
//!
//! `fc3` keeps the trained values only when the checkpoint's class names are the dataset's;
//! otherwise it keeps its fresh PyTorch initialisation, sized for the new classes.

use std::path::Path;

use crate::{
    checkpoint::model_file,
    config::Freeze,
    error::Result,
    model::Net,
};

/// Copies the weights saved at `from` into `net` (fresh, on the CPU), all but `fc3` when the
/// saved classes are not `classes`. Returns whether `fc3` is new (untrained).
///
/// # Errors
/// An unreadable or mismatched model file, named.
pub fn load_pretrained(net: &Net, from: &Path, classes: &[String]) -> Result<bool> {
    let path = crate::run_state::model_file(from)?;
    let file = model_file::read_model_file(&path)?;
    let same_head = file.classes.as_deref() == Some(classes);
    let mut kept = 0;
    tch::no_grad(|| {
        for ((name, p), (_, w)) in net.parameters().iter().zip(&file.tensors) {
            if name.starts_with("fc3.") && !same_head {
                continue;
            }
            p.shallow_clone().copy_(w);
            kept += 1;
        }
    });
    tracing::info!(
        "fine-tuning from {}: {kept} of 10 tensors loaded{}",
        path.display(),
        if same_head { "" } else { "; fc3 is new, for the dataset's classes" }
    );
    Ok(!same_head)
}

/// Stops gradients for the frozen parameters; libtorch's SGD then leaves them untouched.
pub fn freeze(net: &Net, freeze: Freeze) {
    if freeze == Freeze::Features {
        for (name, p) in net.parameters() {
            if name.starts_with("conv") {
                let _ = p.set_requires_grad(false);
            }
        }
    }
}
