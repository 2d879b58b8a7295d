//! A run's start, in the order the reference program draws from PyTorch's global generator:
//!
//! ```python
//! train, val = random_split(train, [n - v, v], generator=torch.Generator().manual_seed(seed))  # --val-size
//! torch.manual_seed(seed); net = Net()            # the weights, drawn on the CPU
//! # each epoch's DataLoader then draws its seeds (and the transforms theirs): continued from the
//! # generator's state here (draws::Draws)
//! ```
//!
//! then what is not drawn: trained weights for fine-tuning, a resumed run's weights and state,
//! frozen layers, the move to the device. A resumed run draws the weights too, so that the
//! shuffle seeds drawn after them are the same.

use tch::{nn, Device};

use super::{draws::Draws, finetune, validation::Validation, Session};
use crate::{
    checkpoint::state::TrainState,
    config::TrainConfig,
    data::Dataset,
    error::Result,
    model::Net,
    rng,
};

/// What the loop starts from.
pub(crate) struct Start {
    /// The variables (on the training device).
    pub vs: nn::VarStore,
    /// The model over `vs`.
    pub net: Net,
    /// The draws of each epoch (shuffle seeds, augmentation), from the first.
    pub draws: Draws,
    /// Where the run stands (the default for a new run).
    pub state: TrainState,
    /// The validation split and early stopping, with `--val-size`.
    pub val: Option<Validation>,
    /// A new fine-tuning run (not a resumed one): whether its `fc3` is new (untrained).
    pub finetune: Option<bool>,
}

/// Builds the start of a run on `train` (before any validation split is taken out of it).
///
/// # Errors
/// A `--val-size` that leaves no training image, unreadable fine-tuning weights.
pub(crate) fn start(cfg: &TrainConfig, train: &Dataset, device: Device, session: &Session) -> Result<Start> {
    // --val-size: the split seeds the global generator itself, so it comes before manual_seed.
    let val = Validation::new(cfg, train, device, session.resume.as_ref())?;
    let train_split = val.as_ref().map_or(train, |v| &v.train);
    let classes = train_split.classes.len() as i64;

    // torch.manual_seed(seed); net = Net(): drawn on the CPU in PyTorch's order, then moved.
    let lock = rng::lock_global_rng();
    tch::manual_seed(cfg.seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), classes);
    net.init_pytorch();
    let draws = Draws::new(cfg, train_split.len(), rng::Mt19937::from_libtorch()?);
    drop(lock);

    let mut state = TrainState::default();
    let mut finetune = None;
    match &session.resume {
        Some(ck) => {
            tch::no_grad(|| {
                for ((_, p), (_, w)) in net.parameters().iter().zip(&ck.weights) {
                    p.shallow_clone().copy_(w);
                }
            });
            state = ck.state.clone();
        }
        None => {
            if let Some(from) = &cfg.init_from {
                let classes = &val.as_ref().map_or(train, |v| &v.train).classes;
                finetune = Some(finetune::load_pretrained(&net, from, classes)?);
            }
        }
    }
    vs.set_device(device);
    finetune::freeze(&net, cfg.freeze);
    Ok(Start { vs, net, draws, state, val, finetune })
}
