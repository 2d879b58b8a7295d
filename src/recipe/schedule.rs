//! Learning-rate schedules as `torch.optim.lr_scheduler` computes them, float for float:
//! `StepLR` (the reference), `MultiStepLR`, `CosineAnnealingLR`, `LambdaLR` with a piecewise
//! factor (`piecewise`), `OneCycleLR` (stepped after every batch, cycling SGD's momentum or
//! Adam's `beta1` too), no schedule (`constant`), and a `LinearLR` warm-up in front of any but
//! OneCycle through `SequentialLR`:
//!
//! ```python
//! warmup = LinearLR(opt, start_factor, total_iters=W)           # --warmup-epochs W
//! main = StepLR(opt, step_size, gamma)                          # or MultiStepLR(opt, milestones, gamma),
//!                                                               # CosineAnnealingLR(opt, T_max=epochs - W, eta_min),
//!                                                               # LambdaLR(opt, lambda e: factors[bisect_right(milestones, e)])
//! scheduler = SequentialLR(opt, [warmup, main], milestones=[W])  # main alone without a warm-up
//! # OneCycleLR(opt, max_lr=lr, epochs=epochs, steps_per_epoch=len(loader), pct_start, div_factor, final_div_factor)
//! ```
//!
//! This is a port of PyTorch 2.11's `torch/optim/lr_scheduler.py` machinery, not of the closed
//! forms in its documentation: the schedulers read and write the optimizer's `lr` (a param
//! group, [`Group`]), their `step()` uses the recursive `get_lr()` (for example
//! `CosineAnnealingLR`'s ratio of cosines, which rounds differently from the closed form), and
//! `SequentialLR` switches with `_update_lr(0)`, which uses `_get_closed_form_lr` where the
//! class has one. Every rate is therefore the float PyTorch's scheduler computes (checked
//! against the venv's PyTorch in `tests/recipes.rs`). Milestones of the main schedule count
//! its own epochs, which start after the warm-up, as in `SequentialLR`.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use super::{optim::Rates, RecipeConfig};

/// `--lr-schedule`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrScheduleKind {
    /// `StepLR(step_size, gamma)` (the reference: 20, 0.1).
    #[default]
    Step,
    /// `MultiStepLR(milestones, gamma)`.
    Multistep,
    /// `CosineAnnealingLR(T_max=epochs - warm-up, eta_min)`.
    Cosine,
    /// `OneCycleLR(max_lr=lr, ...)`, stepped after every batch.
    Onecycle,
    /// `LambdaLR` with `factors[k]` from the k-th milestone on: `lr * factor`.
    Piecewise,
    /// No scheduler: `lr` throughout.
    Constant,
}

impl LrScheduleKind {
    /// Whether the schedule steps after every batch (OneCycleLR) rather than every epoch.
    pub fn per_step(self) -> bool {
        self == LrScheduleKind::Onecycle
    }

    /// Whether the rates depend on the run's length (cosine's `T_max`, OneCycle's total
    /// steps), so that a run extended with `--resume --epochs N` differs from one started
    /// with N epochs; the others are functions of the epoch (and step) alone.
    pub fn depends_on_length(self) -> bool {
        matches!(self, LrScheduleKind::Cosine | LrScheduleKind::Onecycle)
    }
}

/// Everything a schedule needs: the recipe's schedule settings (`lr_schedule`, `milestones`,
/// `lr_factors`, `eta_min`, the warm-up's and OneCycle's), and the run's rates and length.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleSpec {
    /// The recipe (only its schedule settings are read).
    pub recipe: RecipeConfig,
    /// The optimizer's `lr` (OneCycle: `max_lr`).
    pub lr: f64,
    /// The optimizer's momentum (SGD) or `beta1` (Adam), which OneCycle may cycle.
    pub momentum: f64,
    /// Passes over the data.
    pub epochs: usize,
    /// Batches per epoch (OneCycle's `steps_per_epoch`).
    pub steps_per_epoch: usize,
    /// StepLR's `step_size`.
    pub step_size: usize,
    /// StepLR's and MultiStepLR's `gamma`.
    pub gamma: f64,
}

/// OneCycleLR's `base_momentum` and `max_momentum` (PyTorch's defaults).
pub const ONECYCLE_MOMENTUM: (f64, f64) = (0.85, 0.95);

/// The optimizer's param group as the schedulers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// `lr`.
    pub lr: f64,
    /// `initial_lr` (set by the first scheduler, or by OneCycleLR).
    pub initial_lr: Option<f64>,
    /// `momentum` (SGD) or `betas[0]` (Adam).
    pub momentum: f64,
    /// OneCycleLR's `max_lr`, `min_lr`, `max_momentum`, `base_momentum`.
    pub max_lr: f64,
    min_lr: f64,
    max_momentum: f64,
    base_momentum: f64,
}

/// One OneCycleLR phase: `(end_step, start_lr, end_lr, start_momentum, end_momentum)`, the
/// group keys read by index (0 initial_lr, 1 max_lr, 2 min_lr; 0 max_momentum, 1 base_momentum).
type Phase = (f64, u8, u8, u8, u8);

#[derive(Clone, Debug, PartialEq)]
enum Rule {
    Step { step_size: i64, gamma: f64 },
    MultiStep { milestones: Vec<i64>, gamma: f64 },
    Cosine { t_max: i64, eta_min: f64 },
    Lambda { milestones: Vec<i64>, factors: Vec<f64> },
    Linear { start: f64, end: f64, total: i64 },
    OneCycle { phases: [Phase; 2], cycle_momentum: bool },
}

/// `bisect.bisect_right(sorted, x)`.
fn bisect_right(sorted: &[i64], x: i64) -> usize {
    sorted.partition_point(|&m| m <= x)
}

/// One `LRScheduler`: its rule and `base_lrs[0]`, `last_epoch`, `_step_count`, `_is_initial`.
#[derive(Clone, Debug, PartialEq)]
struct Scheduler {
    rule: Rule,
    base_lr: f64,
    last_epoch: i64,
    step_count: i64,
    is_initial: bool,
}

impl Scheduler {
    /// `LRScheduler.__init__(optimizer, last_epoch=-1)`: `initial_lr` defaults to the current
    /// `lr`, then `_initial_step()`.
    fn new(rule: Rule, g: &mut Group) -> Scheduler {
        let base_lr = *g.initial_lr.get_or_insert(g.lr);
        let mut s = Scheduler { rule, base_lr, last_epoch: -1, step_count: 0, is_initial: false };
        s.initial_step(g);
        s
    }

    fn initial_step(&mut self, g: &mut Group) {
        self.step_count = 0;
        self.is_initial = true;
        self.step(g);
        self.is_initial = false;
    }

    fn step(&mut self, g: &mut Group) {
        self.step_count += 1;
        self.update(None, g);
    }

    /// `_update_lr(epoch)`.
    fn update(&mut self, epoch: Option<i64>, g: &mut Group) {
        g.lr = match epoch {
            None => {
                self.last_epoch += 1;
                self.get_lr(g)
            }
            Some(e) => {
                self.last_epoch = e;
                self.closed_form().unwrap_or_else(|| self.get_lr(g))
            }
        };
    }

    /// `get_lr()` (the recursive forms), which may also set the group's momentum (OneCycle).
    fn get_lr(&self, g: &mut Group) -> f64 {
        let (e, base) = (self.last_epoch, self.base_lr);
        match &self.rule {
            Rule::Step { step_size, gamma } => match e == 0 || e % step_size != 0 {
                true => g.lr,
                false => g.lr * gamma,
            },
            Rule::MultiStep { milestones, gamma } => match milestones.iter().filter(|&&m| m == e).count() {
                0 => g.lr,
                k => g.lr * gamma.powf(k as f64),
            },
            Rule::Cosine { t_max, eta_min } => {
                let (t, eta) = (*t_max as f64, *eta_min);
                if self.is_initial {
                    g.lr
                } else if self.step_count == 1 && e > 0 {
                    eta + (base - eta) * (1.0 + (e as f64 * PI / t).cos()) / 2.0
                } else if (e - 1 - t_max).rem_euclid(2 * t_max) == 0 {
                    g.lr + (base - eta) * (1.0 - (PI / t).cos()) / 2.0
                } else {
                    (1.0 + (PI * e as f64 / t).cos()) / (1.0 + (PI * (e - 1) as f64 / t).cos()) * (g.lr - eta) + eta
                }
            }
            Rule::Lambda { milestones, factors } => base * factors[bisect_right(milestones, e)],
            Rule::Linear { start, end, total } => {
                if e == 0 {
                    g.lr * start
                } else if self.is_initial || e > *total {
                    g.lr
                } else {
                    g.lr * (1.0 + (end - start) / (*total as f64 * start + (e - 1) as f64 * (end - start)))
                }
            }
            Rule::OneCycle { phases, cycle_momentum } => {
                let anneal = |start: f64, end: f64, pct: f64| {
                    let cos_out = (PI * pct).cos() + 1.0;
                    end + (start - end) / 2.0 * cos_out
                };
                let lrs = [g.initial_lr.expect("OneCycleLR sets initial_lr"), g.max_lr, g.min_lr];
                let moms = [g.max_momentum, g.base_momentum];
                let mut start_step = 0.0;
                for (i, &(end_step, s_lr, e_lr, s_m, e_m)) in phases.iter().enumerate() {
                    if e as f64 <= end_step || i == phases.len() - 1 {
                        let pct = (e as f64 - start_step) / (end_step - start_step);
                        let lr = anneal(lrs[usize::from(s_lr)], lrs[usize::from(e_lr)], pct);
                        if *cycle_momentum {
                            g.momentum = anneal(moms[usize::from(s_m)], moms[usize::from(e_m)], pct);
                        }
                        return lr;
                    }
                    start_step = end_step;
                }
                unreachable!("the last phase always answers")
            }
        }
    }

    /// `_get_closed_form_lr()`, for the classes that have one.
    fn closed_form(&self) -> Option<f64> {
        let (e, base) = (self.last_epoch, self.base_lr);
        Some(match &self.rule {
            Rule::Step { step_size, gamma } => base * gamma.powf(e.div_euclid(*step_size) as f64),
            Rule::MultiStep { milestones, gamma } => base * gamma.powf(bisect_right(milestones, e) as f64),
            Rule::Cosine { t_max, eta_min } => eta_min + (base - eta_min) * (1.0 + (PI * e as f64 / *t_max as f64).cos()) / 2.0,
            Rule::Linear { start, end, total } => base * (start + (end - start) * (*total).min(e) as f64 / *total as f64),
            Rule::Lambda { .. } | Rule::OneCycle { .. } => return None,
        })
    }
}

/// The scheduler a run steps: none, one, or `SequentialLR([warm-up, main], [W])`.
#[derive(Clone, Debug, PartialEq)]
enum Top {
    None,
    One(Scheduler),
    Sequential { warmup: Scheduler, main: Scheduler, milestone: i64, last_epoch: i64 },
}

/// A run's schedule: the optimizer's rates now, and how they move after each step and epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    top: Top,
    group: Group,
    per_step: bool,
}

impl ScheduleSpec {
    /// What is wrong with the spec, as `(flag, value, expected)`; `None` when it can run.
    pub fn problem(&self) -> Option<(&'static str, String, String)> {
        let bad = |flag, value: String, expected: &str| Some((flag, value, expected.to_string()));
        let main_epochs = self.epochs.saturating_sub(self.recipe.warmup_epochs);
        if self.recipe.warmup_epochs > 0 && self.recipe.warmup_epochs >= self.epochs {
            return bad("warmup-epochs", self.recipe.warmup_epochs.to_string(), &format!("fewer epochs than the run's {} (the schedule needs one after the warm-up)", self.epochs));
        }
        let increasing = self.recipe.milestones.windows(2).all(|w| w[0] < w[1]);
        match self.recipe.lr_schedule {
            LrScheduleKind::Multistep | LrScheduleKind::Piecewise => {
                if self.recipe.milestones.is_empty() {
                    return bad("milestones", String::new(), "at least one epoch (for example --milestones 20,40)");
                }
                if !increasing || self.recipe.milestones[0] == 0 {
                    return bad("milestones", join(&self.recipe.milestones), "epochs in increasing order, each at least 1");
                }
                if let Some(&m) = self.recipe.milestones.iter().find(|&&m| m >= main_epochs) {
                    return bad("milestones", m.to_string(), &format!("epochs below {main_epochs}, the number of epochs the schedule runs (after any warm-up)"));
                }
            }
            _ => {}
        }
        if self.recipe.lr_schedule == LrScheduleKind::Piecewise && self.recipe.lr_factors.len() != self.recipe.milestones.len() + 1 {
            return bad("lr-factors", join(&self.recipe.lr_factors), &format!("{} factors: one more than the milestones", self.recipe.milestones.len() + 1));
        }
        if self.recipe.lr_schedule == LrScheduleKind::Onecycle {
            if self.recipe.warmup_epochs > 0 {
                return bad("warmup-epochs", self.recipe.warmup_epochs.to_string(), "none with --lr-schedule onecycle (its first phase is the warm-up; see --pct-start)");
            }
            let total = (self.epochs * self.steps_per_epoch) as f64;
            let end1 = self.recipe.pct_start * total - 1.0;
            if end1 <= 0.0 || end1 >= total - 1.0 {
                return bad(
                    "pct-start",
                    format!("{:?}", self.recipe.pct_start),
                    &format!("a fraction that leaves each of OneCycle's two phases a step; this run has only {total} steps (more --epochs or a smaller --batch-size give more)"),
                );
            }
        }
        None
    }

    /// The spec's schedule, positioned before the first step.
    ///
    /// # Panics
    /// A spec with a [`ScheduleSpec::problem`] (the configuration is validated first).
    pub fn schedule(&self) -> Schedule {
        assert!(self.problem().is_none(), "schedule spec validated: {:?}", self.problem());
        let mut g = Group {
            lr: self.lr,
            initial_lr: None,
            momentum: self.momentum,
            max_lr: self.lr,
            min_lr: 0.0,
            max_momentum: ONECYCLE_MOMENTUM.1,
            base_momentum: ONECYCLE_MOMENTUM.0,
        };
        let main_epochs = (self.epochs - self.recipe.warmup_epochs) as i64;
        let milestones = || self.recipe.milestones.iter().map(|&m| m as i64).collect::<Vec<_>>();
        let rule = match self.recipe.lr_schedule {
            LrScheduleKind::Constant => None,
            LrScheduleKind::Step => Some(Rule::Step { step_size: self.step_size as i64, gamma: self.gamma }),
            LrScheduleKind::Multistep => Some(Rule::MultiStep { milestones: milestones(), gamma: self.gamma }),
            LrScheduleKind::Cosine => Some(Rule::Cosine { t_max: main_epochs, eta_min: self.recipe.eta_min }),
            LrScheduleKind::Piecewise => Some(Rule::Lambda { milestones: milestones(), factors: self.recipe.lr_factors.clone() }),
            LrScheduleKind::Onecycle => {
                // OneCycleLR.__init__: the group's initial/max/min lr, and the momentum at its max.
                let total = (self.epochs * self.steps_per_epoch) as f64;
                g.initial_lr = Some(self.lr / self.recipe.div_factor);
                g.min_lr = self.lr / self.recipe.div_factor / self.recipe.final_div_factor;
                if self.recipe.cycle_momentum {
                    g.momentum = g.max_momentum;
                }
                let phases = [(self.recipe.pct_start * total - 1.0, 0, 1, 0, 1), (total - 1.0, 1, 2, 1, 0)];
                Some(Rule::OneCycle { phases, cycle_momentum: self.recipe.cycle_momentum })
            }
        };
        let top = match (rule, self.recipe.warmup_epochs) {
            (None, 0) => Top::None,
            (Some(rule), 0) => Top::One(Scheduler::new(rule, &mut g)),
            (rule, w) => {
                // warmup = LinearLR(...); main = ...(opt); SequentialLR(opt, [warmup, main], [w]).
                // `constant` after a warm-up is LambdaLR(lambda e: 1.0).
                let warm_rule = Rule::Linear { start: self.recipe.warmup_start_factor, end: 1.0, total: w as i64 };
                let rule = rule.unwrap_or(Rule::Lambda { milestones: vec![], factors: vec![1.0] });
                let mut warmup = Scheduler::new(warm_rule, &mut g);
                let mut main = Scheduler::new(rule, &mut g);
                g.lr = g.initial_lr.expect("set by the first scheduler");
                warmup.last_epoch -= 1;
                main.last_epoch -= 1;
                warmup.initial_step(&mut g);
                Top::Sequential { warmup, main, milestone: w as i64, last_epoch: 0 }
            }
        };
        Schedule { top, group: g, per_step: self.recipe.lr_schedule.per_step() }
    }
}

fn join<T: ToString>(xs: &[T]) -> String {
    xs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

impl Schedule {
    /// The rates of the next step.
    pub fn rates(&self) -> Rates {
        Rates { lr: self.group.lr, momentum: self.group.momentum }
    }

    /// `scheduler.step()`.
    fn step(&mut self) {
        let g = &mut self.group;
        match &mut self.top {
            Top::None => {}
            Top::One(s) => s.step(g),
            Top::Sequential { warmup, main, milestone, last_epoch } => {
                *last_epoch += 1;
                if *last_epoch < *milestone {
                    warmup.step(g);
                } else if *last_epoch == *milestone {
                    main.update(Some(0), g);
                } else {
                    main.step(g);
                }
            }
        }
    }

    /// After each training step: OneCycleLR steps.
    pub fn after_step(&mut self) {
        if self.per_step {
            self.step();
        }
    }

    /// After each epoch: the per-epoch schedulers step.
    pub fn after_epoch(&mut self) {
        if !self.per_step {
            self.step();
        }
    }

    /// This schedule moved past `epochs` whole epochs of `steps_per_epoch` steps and `steps`
    /// steps more (to resume a run where it stopped).
    pub fn advanced(mut self, epochs: usize, steps_per_epoch: usize, steps: usize) -> Schedule {
        for _ in 0..epochs {
            for _ in 0..steps_per_epoch {
                self.after_step();
            }
            self.after_epoch();
        }
        for _ in 0..steps {
            self.after_step();
        }
        self
    }

    /// The learning rate of every epoch's first step, `lrs[epoch - 1]`, for `epochs` epochs.
    pub fn epoch_lrs(&self, epochs: usize, steps_per_epoch: usize) -> Vec<f64> {
        let mut s = self.clone();
        (0..epochs)
            .map(|_| {
                let lr = s.rates().lr;
                s = s.clone().advanced(1, steps_per_epoch, 0);
                lr
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference run's spec with schedule `kind`.
    pub(crate) fn spec(kind: LrScheduleKind) -> ScheduleSpec {
        with(RecipeConfig { lr_schedule: kind, ..RecipeConfig::default() })
    }

    /// The reference run's spec with `recipe`.
    fn with(recipe: RecipeConfig) -> ScheduleSpec {
        ScheduleSpec { recipe, lr: 1e-3, momentum: 0.9, epochs: 50, steps_per_epoch: 500, step_size: 20, gamma: 0.1 }
    }

    /// The default recipe with schedule `kind`.
    fn kind(kind: LrScheduleKind) -> RecipeConfig {
        RecipeConfig { lr_schedule: kind, ..RecipeConfig::default() }
    }

    #[test]
    fn step_lr_multiplies_the_current_rate_as_pytorch_does() {
        let lrs = spec(LrScheduleKind::Step).schedule().epoch_lrs(50, 1);
        assert_eq!(&lrs[..20], &[1e-3; 20]);
        assert_eq!(&lrs[20..40], &[1e-3 * 0.1; 20]);
        assert_eq!(&lrs[40..], &[1e-3 * 0.1 * 0.1; 10]);
    }

    #[test]
    fn the_tutorials_piecewise_function() {
        // 0.001 before epoch 20, 0.01 before 40, then 0.001: LambdaLR with factors 1, 10, 1.
        let s = with(RecipeConfig { milestones: vec![20, 40], lr_factors: vec![1.0, 10.0, 1.0], ..kind(LrScheduleKind::Piecewise) });
        let lrs = s.schedule().epoch_lrs(50, 1);
        assert_eq!((lrs[0], lrs[19], lrs[20], lrs[39], lrs[40], lrs[49]), (1e-3, 1e-3, 1e-3 * 10.0, 1e-3 * 10.0, 1e-3, 1e-3));
    }

    #[test]
    fn cosine_follows_the_recursive_form_not_the_closed_one() {
        let s = ScheduleSpec { lr: 0.1, epochs: 30, ..spec(LrScheduleKind::Cosine) };
        let lrs = s.schedule().epoch_lrs(30, 1);
        let closed = |e: usize| 0.1 * (1.0 + (PI * e as f64 / 30.0).cos()) / 2.0;
        assert_eq!(lrs[0], 0.1);
        assert!(lrs.iter().enumerate().all(|(e, lr)| (lr - closed(e)).abs() < 1e-15));
        // ... but not always the same float (the recursion rounds at every epoch).
        assert!(lrs.iter().enumerate().any(|(e, &lr)| lr != closed(e)));
    }

    #[test]
    fn warmup_rises_linearly_then_hands_over() {
        let s = ScheduleSpec { lr: 0.1, epochs: 20, ..with(RecipeConfig { warmup_epochs: 5, warmup_start_factor: 0.1, ..kind(LrScheduleKind::Cosine) }) };
        let lrs = s.schedule().epoch_lrs(20, 1);
        assert!((lrs[0] - 0.01).abs() < 1e-12);
        assert!(lrs[..5].windows(2).all(|w| w[0] < w[1]), "{lrs:?}");
        assert_eq!(lrs[5], 0.1, "SequentialLR starts the main schedule at its closed form for epoch 0");
        assert!(lrs[5..].windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn onecycle_steps_per_batch_and_cycles_momentum() {
        let s = ScheduleSpec { lr: 0.1, epochs: 2, steps_per_epoch: 50, ..spec(LrScheduleKind::Onecycle) };
        let mut sched = s.schedule();
        let mut seen = vec![];
        for _ in 0..100 {
            seen.push(sched.rates());
            sched.after_step();
        }
        assert!((seen[0].lr - 0.1 / 25.0).abs() < 1e-15 && seen[0].momentum == 0.95);
        let peak = seen.iter().map(|r| r.lr).fold(0.0, f64::max);
        assert!((peak - 0.1).abs() < 1e-12 && (seen[29].lr - 0.1).abs() < 1e-12, "{peak}");
        assert!((seen[29].momentum - 0.85).abs() < 1e-12);
        assert!(seen[99].lr < 1e-4 && seen[99].lr > 0.0);
        sched.after_epoch(); // per-step schedules ignore epochs
        assert_eq!(sched.rates(), s.schedule().advanced(2, 50, 0).rates());
    }

    #[test]
    fn resume_positions_match_a_straight_run() {
        let s = with(RecipeConfig { milestones: vec![2, 5], ..kind(LrScheduleKind::Multistep) });
        let straight = s.schedule().advanced(3, 4, 2);
        let mut stepped = s.schedule();
        for _ in 0..3 {
            stepped.after_epoch();
        }
        assert_eq!(straight.rates(), stepped.rates());
        assert_eq!(straight.rates().lr, 1e-3 * 0.1);
    }

    #[test]
    fn bad_specs_name_the_flag() {
        let cases: Vec<(ScheduleSpec, &str)> = vec![
            (with(RecipeConfig { milestones: vec![30, 20], ..kind(LrScheduleKind::Multistep) }), "milestones"),
            (with(RecipeConfig { milestones: vec![], ..kind(LrScheduleKind::Multistep) }), "milestones"),
            (with(RecipeConfig { milestones: vec![50], ..kind(LrScheduleKind::Multistep) }), "milestones"),
            (with(RecipeConfig { milestones: vec![0, 3], ..kind(LrScheduleKind::Multistep) }), "milestones"),
            (with(RecipeConfig { milestones: vec![20], lr_factors: vec![1.0], ..kind(LrScheduleKind::Piecewise) }), "lr-factors"),
            (with(RecipeConfig { warmup_epochs: 50, ..kind(LrScheduleKind::Cosine) }), "warmup-epochs"),
            (with(RecipeConfig { warmup_epochs: 2, ..kind(LrScheduleKind::Onecycle) }), "warmup-epochs"),
            (ScheduleSpec { epochs: 1, steps_per_epoch: 2, ..spec(LrScheduleKind::Onecycle) }, "pct-start"),
        ];
        for (s, flag) in cases {
            assert_eq!(s.problem().map(|p| p.0), Some(flag), "{s:?}");
        }
        assert_eq!(spec(LrScheduleKind::Cosine).problem(), None);
    }
}
