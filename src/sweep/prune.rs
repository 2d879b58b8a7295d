//! Early pruning (`sweep --prune`): the median stopping rule, as a pure decision.
//!
//! After epoch E (`--prune-after E`), a trial whose best validation accuracy over epochs 1..=E
//! is below the median of the same figure of the other trials that reached epoch E (finished,
//! pruned or still running; at least [`MIN_PEERS`] of them) is stopped. This is the median
//! stopping rule of Google Vizier (Golovin et al., KDD 2017), on best-so-far values and at one
//! epoch, as Optuna's `MedianPruner` with `n_warmup_steps = E`. With `--jobs` above 1, which
//! trials have reached epoch E when another is judged depends on timing.

use serde::{Deserialize, Serialize};

/// Trials that must have reached the epoch before any trial is judged against them.
pub const MIN_PEERS: usize = 3;

/// When trials are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneRule {
    /// The epoch after which each trial is judged once (1-based).
    pub after_epoch: usize,
}

/// What to do with a trial.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Let it run.
    Continue,
    /// Stop it, for the reason given.
    Prune(String),
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Judges a trial whose best validation accuracy up to `rule.after_epoch` is `value` against
/// `peers`, the same figure of the other trials that reached that epoch.
pub fn decide(rule: &PruneRule, value: f64, peers: &[f64]) -> Verdict {
    if peers.len() < MIN_PEERS {
        return Verdict::Continue;
    }
    match median(peers) {
        Some(m) if value < m => Verdict::Prune(format!(
            "best validation accuracy {:.2} % by epoch {}, below the median {:.2} % of {} other trials",
            100.0 * value,
            rule.after_epoch,
            100.0 * m,
            peers.len()
        )),
        _ => Verdict::Continue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn the_median_rule() {
        let rule = PruneRule { after_epoch: 2 };
        let prune = |value: f64, peers: &[f64]| matches!(decide(&rule, value, peers), Verdict::Prune(_));
        // (value, peers, pruned): worked by hand from the rule in the module doc.
        let table: [(f64, &[f64], bool); 7] = [
            (0.10, &[0.5, 0.6], false),           // too few peers to judge
            (0.10, &[0.5, 0.6, 0.7], true),       // below the median 0.6
            (0.60, &[0.5, 0.6, 0.7], false),     // at the median: not behind
            (0.65, &[0.5, 0.6, 0.7], false),     // above
            (0.54, &[0.5, 0.6, 0.7, 0.9], true), // below the median 0.65 of an even count
            (0.70, &[0.5, 0.6, 0.7, 0.9], false),
            (0.00, &[0.0, 0.0, 0.0], false),     // all equal: nobody is behind
        ];
        for (value, peers, pruned) in table {
            assert_eq!(prune(value, peers), pruned, "{value} against {peers:?}");
        }
        let Verdict::Prune(why) = decide(&rule, 0.1, &[0.5, 0.6, 0.7]) else { panic!() };
        assert_eq!(why, "best validation accuracy 10.00 % by epoch 2, below the median 60.00 % of 3 other trials");
    }
}
