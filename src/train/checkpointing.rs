//! When the training state is saved, as a pure decision ([`due`]), apart from the writing
//! ([`save`]): after every `--checkpoint-every` epochs, after the last, and when early stopping
//! ends the run (a stop request saves mid-epoch, in the loop).

use tch::Tensor;

use super::step::Step;
use crate::{
    checkpoint::state::{self, Checkpoint, TrainState},
    config::TrainConfig,
    error::Result,
    model::Net,
    run_dir::RunDir,
};

/// Whether the state is saved after `epoch` (1-based) of a run of `epochs`, saving every
/// `every` epochs; `early_stopped`: early stopping ends the run after this epoch.
pub(crate) fn due(epoch: usize, epochs: usize, every: usize, early_stopped: bool) -> bool {
    early_stopped || epoch.is_multiple_of(every) || epoch == epochs
}

/// Writes the training state (`checkpoint.safetensors`) into `dir`: `net`'s weights, the step's
/// optimizer state, `state` with the run's settings `cfg`, and the early-stopping weights `best`.
///
/// # Errors
/// [`crate::Error::Io`] naming the file; the previous checkpoint stays in place then.
pub(crate) fn save(dir: &RunDir, cfg: &TrainConfig, net: &Net, step: &dyn Step, state: &TrainState, best: Vec<(String, Tensor)>) -> Result<()> {
    let weights = net.parameters().iter().map(|(n, p)| (n.to_string(), p.shallow_clone())).collect();
    let threads = Some(tch::get_num_threads().max(1) as usize);
    let state = TrainState { config: Some(cfg.clone()), threads, ..state.clone() };
    let ck = Checkpoint { state, weights, optimizer: step.optimizer_state(), best };
    state::save(&dir.file(state::FILE), &ck)
}

#[cfg(test)]
mod tests {
    use super::due;

    #[test]
    fn saves_every_n_after_the_last_and_on_an_early_stop() {
        // (epoch, epochs, every, early_stopped) -> due
        let table = [
            ((1, 5, 1, false), true),
            ((1, 5, 2, false), false),
            ((2, 5, 2, false), true),
            ((3, 5, 2, false), false),
            ((5, 5, 2, false), true),  // the last epoch, though not a multiple of 2
            ((3, 5, 10, true), true),  // early stopping ends the run here
            ((4, 10, 3, false), false),
            ((6, 10, 3, false), true),
        ];
        for ((epoch, epochs, every, stopped), want) in table {
            assert_eq!(due(epoch, epochs, every, stopped), want, "epoch {epoch} of {epochs}, every {every}, stopped {stopped}");
        }
    }
}
