//! Early stopping on validation accuracy (`--early-stop-patience P`): stop when accuracy on the
//! held-out split has not improved for `P` epochs in a row, and keep the best epoch's weights
//! (a copy taken on each improvement, restored at the end).

use tch::{nn, Tensor};

/// What one epoch's validation accuracy means for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A new best (strictly higher than every earlier epoch): its weights are kept.
    Improved,
    /// No improvement yet, fewer than `patience` epochs in a row.
    Wait,
    /// `patience` epochs in a row without improvement: stop training.
    Stop,
}

/// Tracks the best validation accuracy and the weights that reached it.
#[derive(Debug)]
pub struct EarlyStopping {
    patience: usize,
    best: Option<(usize, f64)>,
    stale: usize,
    weights: Vec<(String, Tensor)>,
}

impl EarlyStopping {
    /// Stops after `patience` epochs without improvement.
    pub fn new(patience: usize) -> EarlyStopping {
        EarlyStopping { patience, best: None, stale: 0, weights: Vec::new() }
    }

    /// Continues from a saved state: the best epoch and accuracy, the epochs since, and the
    /// best weights by variable name.
    pub fn resume(patience: usize, best: Option<(usize, f64)>, stale: usize, weights: Vec<(String, Tensor)>) -> EarlyStopping {
        EarlyStopping { patience, best, stale, weights }
    }

    /// Records `epoch`'s validation accuracy.
    pub fn observe(&mut self, epoch: usize, accuracy: f64) -> Verdict {
        if self.best.is_none_or(|(_, best)| accuracy > best) {
            self.best = Some((epoch, accuracy));
            self.stale = 0;
            Verdict::Improved
        } else {
            self.stale += 1;
            if self.stale >= self.patience {
                Verdict::Stop
            } else {
                Verdict::Wait
            }
        }
    }

    /// Epochs without improvement that stop the run.
    pub fn patience(&self) -> usize {
        self.patience
    }

    /// The best epoch so far and its accuracy.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.best
    }

    /// Epochs since the best one.
    pub fn stale(&self) -> usize {
        self.stale
    }

    /// Whether `patience` epochs have passed without improvement.
    pub fn stopped(&self) -> bool {
        self.best.is_some() && self.stale >= self.patience
    }

    /// The kept weights by variable name (sorted), sharing storage with the copy.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        self.weights.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    /// Keeps a copy of every variable in `vs` (on its device).
    pub fn save(&mut self, vs: &nn::VarStore) {
        let mut weights: Vec<_> = tch::no_grad(|| vs.variables().into_iter().map(|(name, t)| (name, t.detach().copy())).collect());
        weights.sort_by(|a: &(String, Tensor), b| a.0.cmp(&b.0));
        self.weights = weights;
    }

    /// Writes the kept copy back into `vs`.
    pub fn restore(&self, vs: &nn::VarStore) {
        let mut vars = vs.variables();
        tch::no_grad(|| {
            for (name, saved) in &self.weights {
                let var = vars.get_mut(name).expect("the kept weights come from this VarStore");
                var.copy_(saved);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_patience_epochs_without_a_strict_improvement() {
        let mut es = EarlyStopping::new(2);
        let verdicts: Vec<_> = [0.3, 0.5, 0.5, 0.6, 0.4, 0.6].iter().enumerate().map(|(i, &a)| es.observe(i + 1, a)).collect();
        use Verdict::*;
        // A tie (epoch 3, epoch 6) is not an improvement.
        assert_eq!(verdicts, [Improved, Improved, Wait, Improved, Wait, Stop]);
        assert_eq!(es.best(), Some((4, 0.6)));
        assert!(es.stopped());
        // Resumed from its state, it goes on as it would have.
        let mut again = EarlyStopping::resume(2, Some((4, 0.6)), 1, vec![]);
        assert!(!again.stopped());
        assert_eq!(again.observe(6, 0.6), Stop);
    }

    #[test]
    fn restore_brings_back_the_saved_weights() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().zeros("w", &[3]);
        let mut es = EarlyStopping::new(1);
        es.save(&vs);
        let _ = tch::no_grad(|| w.shallow_clone().fill_(2.0));
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), [2.0; 3]);
        es.restore(&vs);
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), [0.0; 3]);
    }
}
