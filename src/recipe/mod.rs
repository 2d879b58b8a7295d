//! Training recipes beyond the tutorial, each a pure piece the training loop and the steps call,
//! each computing what its PyTorch or torchvision counterpart computes (and mirrored by the
//! PyTorch side of the parity proof, `scripts/pytorch_reference.py`):
//!
//! * [`augment`]: `RandomCrop(32, padding)` and `RandomHorizontalFlip()`, with the reference's
//!   draws from the global generator;
//! * [`optim`]: `SGD` (momentum, dampening, Nesterov, weight decay), `Adam`, `AdamW`;
//! * [`schedule`]: `StepLR`, `MultiStepLR`, `CosineAnnealingLR`, `OneCycleLR`, a piecewise
//!   `LambdaLR`, and a `LinearLR` warm-up through `SequentialLR`;
//! * [`loss`]: cross-entropy with label smoothing.
//!
//! [`crate::config::TrainConfig`] holds the settings and builds each piece's spec; the loop
//! ([`crate::train`]) owns the draws and the schedule, the step kinds own the optimizer.

pub mod augment;
pub mod loss;
pub mod optim;
pub mod schedule;
