//! The search space of a sweep and its expansion into settings: pure functions, no I/O.
//!
//! Each swept hyperparameter ([`Param`]) is either a list of values (a grid axis) or a
//! distribution drawn `--trials N` times: `uniform:A:B`, `loguniform:A:B` (uniform in `ln x`,
//! the usual prior for rates), `choice:A,B,...`. A parameter with named values (`optimizer`,
//! `lr-schedule`, `augment`, and the switches `hflip`, `nesterov`, `amsgrad`, `cycle-momentum`
//! with `false`, `true`) takes its names, as a list or a `choice:`; it is held as the index of the name. The settings are the cartesian product
//! of the grid axes crossed with the N draws (the same N draws for every grid point, so grid
//! values are compared on equal terms). The draws come from a ChaCha8 generator seeded with
//! `--sweep-seed` (`rand_chacha`, whose output is fixed for a given seed), in a fixed order
//! (draw by draw, parameters in [`Param::ALL`] order), so the same command gives the same trials.

use std::{collections::BTreeMap, fmt, path::Path};

use rand_chacha::{
    rand_core::{RngCore, SeedableRng},
    ChaCha8Rng,
};
use serde::{Deserialize, Serialize};

use crate::{
    config::TrainConfig,
    error::{Error, Result},
    recipe::{
        augment::{Augment, CROP_FLIP},
        optim::OptimizerKind,
        schedule::LrScheduleKind,
    },
};

/// A hyperparameter a sweep can vary, named as its `train` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Param {
    /// `--lr`, the initial learning rate.
    Lr,
    /// `--momentum`.
    Momentum,
    /// `--batch-size`.
    BatchSize,
    /// `--step-size`, StepLR's epochs between decays.
    StepSize,
    /// `--gamma`, StepLR's decay factor.
    Gamma,
    /// `--epochs`.
    Epochs,
    /// `--weight-decay`.
    WeightDecay,
    /// `--label-smoothing`.
    LabelSmoothing,
    /// `--dampening` (SGD).
    Dampening,
    /// `--eta-min` (cosine).
    EtaMin,
    /// `--warmup-epochs`.
    WarmupEpochs,
    /// `--random-crop`, the padding.
    RandomCrop,
    /// `--pct-start` (onecycle).
    PctStart,
    /// `--optimizer`: sgd, adam, adamw.
    Optimizer,
    /// `--lr-schedule`: step, multistep, cosine, onecycle, piecewise, constant.
    LrSchedule,
    /// `--augment`: none, crop-flip (`--random-crop 4 --hflip`).
    Augment,
    /// `--hflip`: false, true.
    Hflip,
    /// `--nesterov`: false, true.
    Nesterov,
    /// `--amsgrad`: false, true.
    Amsgrad,
    /// `--eps` (Adam).
    Eps,
    /// `--warmup-start-factor`.
    WarmupStartFactor,
    /// `--div-factor` (onecycle).
    DivFactor,
    /// `--final-div-factor` (onecycle).
    FinalDivFactor,
    /// `--cycle-momentum` (onecycle): false, true.
    CycleMomentum,
}

const OPTIMIZERS: [OptimizerKind; 3] = [OptimizerKind::Sgd, OptimizerKind::Adam, OptimizerKind::Adamw];
const SCHEDULES: [LrScheduleKind; 6] =
    [LrScheduleKind::Step, LrScheduleKind::Multistep, LrScheduleKind::Cosine, LrScheduleKind::Onecycle, LrScheduleKind::Piecewise, LrScheduleKind::Constant];

impl Param {
    /// Every parameter, in the order of ids, labels and random draws.
    pub const ALL: [Param; 24] = [
        Param::Lr,
        Param::Momentum,
        Param::BatchSize,
        Param::StepSize,
        Param::Gamma,
        Param::Epochs,
        Param::WeightDecay,
        Param::LabelSmoothing,
        Param::Dampening,
        Param::EtaMin,
        Param::WarmupEpochs,
        Param::RandomCrop,
        Param::PctStart,
        Param::Optimizer,
        Param::LrSchedule,
        Param::Augment,
        Param::Hflip,
        Param::Nesterov,
        Param::Amsgrad,
        Param::Eps,
        Param::WarmupStartFactor,
        Param::DivFactor,
        Param::FinalDivFactor,
        Param::CycleMomentum,
    ];

    /// The flag's name without dashes (`lr`, `batch-size`).
    pub fn flag(self) -> &'static str {
        match self {
            Param::Lr => "lr",
            Param::Momentum => "momentum",
            Param::BatchSize => "batch-size",
            Param::StepSize => "step-size",
            Param::Gamma => "gamma",
            Param::Epochs => "epochs",
            Param::WeightDecay => "weight-decay",
            Param::LabelSmoothing => "label-smoothing",
            Param::Dampening => "dampening",
            Param::EtaMin => "eta-min",
            Param::WarmupEpochs => "warmup-epochs",
            Param::RandomCrop => "random-crop",
            Param::PctStart => "pct-start",
            Param::Optimizer => "optimizer",
            Param::LrSchedule => "lr-schedule",
            Param::Augment => "augment",
            Param::Hflip => "hflip",
            Param::Nesterov => "nesterov",
            Param::Amsgrad => "amsgrad",
            Param::Eps => "eps",
            Param::WarmupStartFactor => "warmup-start-factor",
            Param::DivFactor => "div-factor",
            Param::FinalDivFactor => "final-div-factor",
            Param::CycleMomentum => "cycle-momentum",
        }
    }

    /// The names of a parameter with named values, index = value; `None` for numbers.
    pub fn choices(self) -> Option<&'static [&'static str]> {
        const SWITCH: &[&str] = &["false", "true"];
        Some(match self {
            Param::Optimizer => &["sgd", "adam", "adamw"],
            Param::LrSchedule => &["step", "multistep", "cosine", "onecycle", "piecewise", "constant"],
            Param::Augment => &["none", "crop-flip"],
            Param::Hflip | Param::Nesterov | Param::Amsgrad | Param::CycleMomentum => SWITCH,
            _ => return None,
        })
    }

    /// A value as labels show it: the name of a named value, else [`short`].
    pub fn show(self, value: f64) -> String {
        self.show_digits(value, 3)
    }

    /// [`Param::show`] with `digits` significant digits for numbers ([`short_digits`]).
    pub fn show_digits(self, value: f64, digits: usize) -> String {
        match self.choices() {
            Some(names) => names.get(value as usize).copied().unwrap_or("?").to_string(),
            None => short_digits(value, digits),
        }
    }

    /// The parameter named `name` (`lr`, `batch-size` or `batch_size`).
    pub fn from_name(name: &str) -> Option<Param> {
        Param::ALL.into_iter().find(|p| p.flag() == name || p.flag().replace('-', "_") == name)
    }

    /// Whether values are whole numbers (batch size, step size, epochs, warm-up epochs, crop
    /// padding, and the indices of named values).
    pub fn is_integer(self) -> bool {
        matches!(self, Param::BatchSize | Param::StepSize | Param::Epochs | Param::WarmupEpochs | Param::RandomCrop) || self.choices().is_some()
    }

    /// Whether charts draw it on a logarithmic axis (rates and Adam's eps).
    pub fn log_axis(self) -> bool {
        matches!(self, Param::Lr | Param::Eps)
    }

    /// Its value in `cfg`.
    pub fn get(self, cfg: &TrainConfig) -> f64 {
        match self {
            Param::Lr => cfg.learning_rate,
            Param::Momentum => cfg.momentum,
            Param::BatchSize => cfg.batch_size as f64,
            Param::StepSize => cfg.step_size as f64,
            Param::Gamma => cfg.gamma,
            Param::Epochs => cfg.epochs as f64,
            Param::WeightDecay => cfg.recipe.weight_decay(),
            Param::LabelSmoothing => cfg.recipe.label_smoothing,
            Param::Dampening => cfg.recipe.dampening,
            Param::EtaMin => cfg.recipe.eta_min,
            Param::WarmupEpochs => cfg.recipe.warmup_epochs as f64,
            Param::RandomCrop => f64::from(cfg.recipe.random_crop.unwrap_or(0)),
            Param::PctStart => cfg.recipe.pct_start,
            Param::Optimizer => OPTIMIZERS.iter().position(|&o| o == cfg.recipe.optimizer).unwrap_or(0) as f64,
            Param::LrSchedule => SCHEDULES.iter().position(|&k| k == cfg.recipe.lr_schedule).unwrap_or(0) as f64,
            Param::Augment => f64::from(u8::from(cfg.recipe.augment() == CROP_FLIP)),
            Param::Hflip => f64::from(u8::from(cfg.recipe.hflip)),
            Param::Nesterov => f64::from(u8::from(cfg.recipe.nesterov)),
            Param::Amsgrad => f64::from(u8::from(cfg.recipe.amsgrad)),
            Param::Eps => cfg.recipe.eps,
            Param::WarmupStartFactor => cfg.recipe.warmup_start_factor,
            Param::DivFactor => cfg.recipe.div_factor,
            Param::FinalDivFactor => cfg.recipe.final_div_factor,
            Param::CycleMomentum => f64::from(u8::from(cfg.recipe.cycle_momentum)),
        }
    }

    /// Sets it in `cfg` (whole-number parameters take `value` rounded; it is one already).
    pub fn set(self, cfg: &mut TrainConfig, value: f64) {
        let whole = value.round().max(0.0) as usize;
        match self {
            Param::Lr => cfg.learning_rate = value,
            Param::Momentum => cfg.momentum = value,
            Param::BatchSize => cfg.batch_size = whole,
            Param::StepSize => cfg.step_size = whole,
            Param::Gamma => cfg.gamma = value,
            Param::Epochs => cfg.epochs = whole,
            Param::WeightDecay => cfg.recipe.weight_decay = Some(value),
            Param::LabelSmoothing => cfg.recipe.label_smoothing = value,
            Param::Dampening => cfg.recipe.dampening = value,
            Param::EtaMin => cfg.recipe.eta_min = value,
            Param::WarmupEpochs => cfg.recipe.warmup_epochs = whole,
            Param::RandomCrop => cfg.recipe.random_crop = Some(u32::try_from(whole).unwrap_or(u32::MAX)),
            Param::PctStart => cfg.recipe.pct_start = value,
            Param::Optimizer => cfg.recipe.optimizer = OPTIMIZERS[whole.min(OPTIMIZERS.len() - 1)],
            Param::LrSchedule => cfg.recipe.lr_schedule = SCHEDULES[whole.min(SCHEDULES.len() - 1)],
            Param::Augment => {
                let Augment { random_crop, hflip } = if whole == 1 { CROP_FLIP } else { Augment::default() };
                (cfg.recipe.random_crop, cfg.recipe.hflip) = (random_crop, hflip);
            }
            Param::Hflip => cfg.recipe.hflip = whole == 1,
            Param::Nesterov => cfg.recipe.nesterov = whole == 1,
            Param::Amsgrad => cfg.recipe.amsgrad = whole == 1,
            Param::Eps => cfg.recipe.eps = value,
            Param::WarmupStartFactor => cfg.recipe.warmup_start_factor = value,
            Param::DivFactor => cfg.recipe.div_factor = value,
            Param::FinalDivFactor => cfg.recipe.final_div_factor = value,
            Param::CycleMomentum => cfg.recipe.cycle_momentum = whole == 1,
        }
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag())
    }
}

/// The values one parameter takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Spec {
    /// A grid axis: every value, in order (`1e-3,1e-2`; one value just sets it).
    Grid(Vec<f64>),
    /// Uniform on `[a, b]` (`uniform:A:B`).
    Uniform(f64, f64),
    /// Log-uniform on `[a, b]`, `0 < a < b` (`loguniform:A:B`).
    LogUniform(f64, f64),
    /// One of the values, each equally likely (`choice:A,B,...`).
    Choice(Vec<f64>),
}

impl Spec {
    /// Parses the command-line form of `param`'s values (see the module doc).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the flag and the text, saying what was expected.
    pub fn parse(param: Param, text: &str) -> Result<Spec> {
        if let Some(names) = param.choices() {
            return Spec::parse_named(param, names, text);
        }
        let bad = |why: String| Error::InvalidConfig {
            field: param.flag(),
            value: text.to_string(),
            expected: format!(
                "{why}; expected a comma-separated list of values (a grid), or uniform:A:B, loguniform:A:B or choice:A,B,..."
            ),
        };
        let number = |s: &str| -> Result<f64> {
            let x: f64 = s.trim().parse().map_err(|_| bad(format!("'{}' is not a number", s.trim())))?;
            if !x.is_finite() {
                return Err(bad(format!("'{}' is not a finite number", s.trim())));
            }
            Ok(x)
        };
        let list = |s: &str| -> Result<Vec<f64>> {
            let values = s.split(',').map(number).collect::<Result<Vec<_>>>()?;
            if param.is_integer() {
                if let Some(v) = values.iter().find(|v| v.fract() != 0.0 || **v < 0.0) {
                    return Err(bad(format!("--{param} takes whole numbers, not {v}")));
                }
            }
            Ok(values)
        };
        let bounds = |s: &str| -> Result<(f64, f64)> {
            let parts: Vec<&str> = s.split(':').collect();
            let [a, b] = parts[..] else { return Err(bad("a range needs two bounds, A:B".into())) };
            let (a, b) = (number(a)?, number(b)?);
            if a >= b {
                return Err(bad(format!("the lower bound {a} must be below the upper bound {b}")));
            }
            Ok((a, b))
        };
        let spec = if let Some(rest) = text.strip_prefix("uniform:") {
            let (a, b) = bounds(rest)?;
            Spec::Uniform(a, b)
        } else if let Some(rest) = text.strip_prefix("loguniform:") {
            let (a, b) = bounds(rest)?;
            if a <= 0.0 {
                return Err(bad(format!("loguniform needs a positive lower bound, not {a}")));
            }
            Spec::LogUniform(a, b)
        } else if let Some(rest) = text.strip_prefix("choice:") {
            Spec::Choice(list(rest)?)
        } else if text.contains(':') {
            return Err(bad(format!("unknown distribution '{}'", text.split(':').next().unwrap_or_default())));
        } else {
            Spec::Grid(list(text)?)
        };
        Ok(spec)
    }

    /// A parameter with named values: a list of its names, or `choice:` of them.
    fn parse_named(param: Param, names: &[&str], text: &str) -> Result<Spec> {
        let (random, list) = match text.strip_prefix("choice:") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let values = list
            .split(',')
            .map(|name| {
                names.iter().position(|n| *n == name.trim()).map(|i| i as f64).ok_or_else(|| Error::InvalidConfig {
                    field: param.flag(),
                    value: text.to_string(),
                    expected: format!("'{}' is not one of {}; expected a comma-separated list of them, or choice:A,B,...", name.trim(), names.join(", ")),
                })
            })
            .collect::<Result<Vec<f64>>>()?;
        Ok(if random { Spec::Choice(values) } else { Spec::Grid(values) })
    }

    /// Whether the values are drawn (`uniform`, `loguniform`, `choice`) rather than listed.
    pub fn is_random(&self) -> bool {
        !matches!(self, Spec::Grid(_))
    }

    /// A draw from `u` in `[0, 1)`; `None` for a grid axis.
    fn draw(&self, param: Param, u: f64) -> Option<f64> {
        let x = match self {
            Spec::Grid(_) => return None,
            Spec::Uniform(a, b) => a + u * (b - a),
            Spec::LogUniform(a, b) => (a.ln() + u * (b.ln() - a.ln())).exp(),
            Spec::Choice(values) => values[((u * values.len() as f64) as usize).min(values.len() - 1)],
        };
        Some(if param.is_integer() { x.round() } else { x })
    }
}

impl fmt::Display for Spec {
    /// The command-line form, which [`Spec::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |v: &[f64]| v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(",");
        match self {
            Spec::Grid(v) => f.write_str(&join(v)),
            Spec::Uniform(a, b) => write!(f, "uniform:{a:?}:{b:?}"),
            Spec::LogUniform(a, b) => write!(f, "loguniform:{a:?}:{b:?}"),
            Spec::Choice(v) => write!(f, "choice:{}", join(v)),
        }
    }
}

/// The parameters a sweep varies (or sets), each with its values; the others keep the base
/// configuration's value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Space(pub BTreeMap<Param, Spec>);

impl Space {
    /// Reads a space file: a JSON object (`.json`) or TOML table (`.toml`) whose keys are the
    /// parameters ([`Param::flag`] names: `lr`, `momentum`, `batch-size` or `batch_size`,
    /// `weight-decay`, `optimizer`, ...) and whose values are a list of numbers (a grid axis),
    /// one number, a list of names for a parameter with named values (`optimizer = ["sgd",
    /// "adamw"]`, `hflip = [false, true]`), or a string in the command-line form
    /// (`"loguniform:1e-4:1e-1"`, `"1e-3,1e-2"`, `"choice:sgd,adamw"`).
    ///
    /// # Errors
    /// [`Error::BadSpaceFile`] naming the file: unreadable, another extension, not parseable,
    /// an unknown key or a value of the wrong kind (the key is named).
    pub fn from_file(path: &Path) -> Result<Space> {
        let bad = |reason: String| Error::BadSpaceFile { path: path.to_path_buf(), reason };
        let text = crate::safe_fs::read_text(path, crate::safe_fs::MAX_TEXT_FILE_BYTES)?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
        let table: BTreeMap<String, serde_json::Value> = match ext.as_str() {
            "json" => serde_json::from_str(&text).map_err(|e| bad(format!("not a JSON object of parameters: {e}")))?,
            "toml" => {
                let table: toml::Table = toml::from_str(&text).map_err(|e| bad(format!("not TOML: {e}")))?;
                let json = serde_json::to_value(table).map_err(|e| bad(e.to_string()))?;
                serde_json::from_value(json).map_err(|e| bad(e.to_string()))?
            }
            _ => return Err(bad("expected a .json or .toml file".to_string())),
        };
        let mut space = Space::default();
        for (key, value) in table {
            let Some(param) = Param::from_name(&key) else {
                let known = Param::ALL.map(Param::flag).join(", ");
                return Err(bad(format!("unknown parameter '{key}' (known: {known})")));
            };
            let text = match &value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Array(items) if items.iter().all(serde_json::Value::is_number) && !items.is_empty() => {
                    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
                }
                serde_json::Value::Array(items) if param.choices().is_some() && items.iter().all(|i| i.is_string() || i.is_boolean()) && !items.is_empty() => {
                    items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string)).collect::<Vec<_>>().join(",")
                }
                serde_json::Value::Bool(b) if param.choices().is_some() => b.to_string(),
                other => return Err(bad(format!("{key} = {other}: expected a list of numbers, a number or a string such as \"uniform:0.8:0.99\""))),
            };
            let spec = Spec::parse(param, &text).map_err(|e| bad(format!("{key}: {e}")))?;
            if space.0.insert(param, spec).is_some() {
                return Err(bad(format!("{key} is given twice")));
            }
        }
        Ok(space)
    }

    /// Checks that no two parameters set the same thing: `augment` is `random-crop` and
    /// `hflip` together (as `train` refuses `--augment` with either).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `augment`.
    pub fn check(&self) -> Result<()> {
        for other in [Param::RandomCrop, Param::Hflip] {
            if self.0.contains_key(&Param::Augment) && self.0.contains_key(&other) {
                return Err(Error::InvalidConfig {
                    field: "augment",
                    value: self.0[&Param::Augment].to_string(),
                    expected: format!("either --augment or --{other} (--augment crop-flip is --random-crop 4 --hflip; none is neither)"),
                });
            }
        }
        Ok(())
    }

    /// The parameters whose value changes from one setting to another: drawn ones and grid
    /// axes of two or more values.
    pub fn varying(&self) -> Vec<Param> {
        self.0.iter().filter(|(_, s)| !matches!(s, Spec::Grid(v) if v.len() < 2)).map(|(p, _)| *p).collect()
    }
}

/// One point of the space: a value for each parameter of the space, in [`Param`] order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setting(pub Vec<(Param, f64)>);

impl Setting {
    /// The value of `param`, if the space has it.
    pub fn get(&self, param: Param) -> Option<f64> {
        self.0.iter().find(|(p, _)| *p == param).map(|(_, v)| *v)
    }

    /// `base` with this setting's values.
    pub fn apply(&self, base: &TrainConfig) -> TrainConfig {
        let mut cfg = base.clone();
        for &(p, v) in &self.0 {
            p.set(&mut cfg, v);
        }
        cfg
    }

    /// `lr=1e-3 momentum=0.9` for the parameters in `shown` (see [`short`]). Labels of
    /// several settings that must stay apart come from [`labels`].
    pub fn label(&self, shown: &[Param]) -> Vec<String> {
        self.0.iter().filter(|(p, _)| shown.contains(p)).map(|(p, v)| format!("{p}={}", p.show(*v))).collect()
    }
}

/// The labels of `settings` (as [`Setting::label`]), each parameter shown with as many
/// significant digits (3 to 17) as it takes to tell its distinct values apart, so that two
/// different settings never share a label (`lr=1e-2` and `lr=1.00001e-2`, not `lr=1e-2` twice).
pub fn labels(settings: &[Setting], shown: &[Param]) -> Vec<Vec<String>> {
    let digits: Vec<(Param, usize)> = shown
        .iter()
        .map(|&p| {
            let mut values: Vec<f64> = settings.iter().filter_map(|s| s.get(p)).collect();
            values.sort_by(f64::total_cmp);
            values.dedup();
            let distinct = |d: usize| {
                let mut shown: Vec<String> = values.iter().map(|v| p.show_digits(*v, d)).collect();
                shown.sort();
                shown.dedup();
                shown.len() == values.len()
            };
            (p, (3..=17).find(|&d| distinct(d)).unwrap_or(17))
        })
        .collect();
    settings
        .iter()
        .map(|s| {
            s.0.iter()
                .filter_map(|(p, v)| digits.iter().find(|(q, _)| q == p).map(|(_, d)| format!("{p}={}", p.show_digits(*v, *d))))
                .collect()
        })
        .collect()
}

/// A number as ids and labels show it: whole numbers below a million as such, others with 3
/// significant digits, in exponent form below 0.1 and from a million (`1e-3`, `3.46e-4`,
/// `5e-2`, `0.95`, `100`, `1e30`).
pub fn short(x: f64) -> String {
    short_digits(x, 3)
}

/// [`short`] with `digits` (at least 1) significant digits instead of 3.
pub fn short_digits(x: f64, digits: usize) -> String {
    if x == x.trunc() && x.abs() < 1e6 {
        return format!("{x:.0}");
    }
    let sig = format!("{x:.prec$e}", prec = digits.max(1) - 1); // 3 digits: "3.46e-4", "1.00e-3"
    let (mantissa, exp) = sig.split_once('e').unwrap_or((&sig, "0"));
    let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
    if x.abs() < 0.1 || x.abs() >= 1e6 {
        format!("{mantissa}e{exp}")
    } else {
        let rounded: f64 = format!("{mantissa}e{exp}").parse().unwrap_or(x);
        format!("{rounded}")
    }
}

/// A uniform draw in `[0, 1)` from the top 53 bits of the generator's next word.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The most trials one sweep holds: its settings times its seeds. A trial is a training run
/// (seconds to hours), so a larger sweep is almost surely a typo in a grid or `--trials`, and
/// the plan of a billion trials alone would take gigabytes of memory before the first one
/// starts. [`expand`], [`parse_seeds`] and the sweep's plan check it before building anything.
pub const MAX_TRIALS: usize = 10_000;

/// The number of grid points of `space` (the product of its grid axes' lengths), `None` when
/// it exceeds `usize`.
pub fn grid_size(space: &Space) -> Option<usize> {
    space.0.iter().try_fold(1usize, |n, (_, spec)| match spec {
        Spec::Grid(values) => n.checked_mul(values.len()),
        _ => Some(n),
    })
}

/// [`Error::InvalidConfig`] for a sweep of `size` trials (`None`: beyond counting), naming
/// `field` and how the size came about.
pub fn too_large(field: &'static str, value: String, size: Option<usize>, how: &str) -> Error {
    let size = size.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
    Error::InvalidConfig {
        field,
        value,
        expected: format!("the sweep would have {size} trials ({how}); at most {MAX_TRIALS} are allowed: use fewer values, trials or seeds"),
    }
}

/// How many distinct values a random spec can draw: `None` for a continuous distribution.
fn support(param: Param, spec: &Spec) -> Option<usize> {
    match spec {
        Spec::Grid(values) | Spec::Choice(values) => {
            let mut v = values.clone();
            v.sort_by(f64::total_cmp);
            v.dedup();
            Some(v.len())
        }
        Spec::Uniform(a, b) | Spec::LogUniform(a, b) if param.is_integer() => {
            // Draws are rounded: every whole number from round(a) to round(b) can come out.
            Some((b.round() - a.round()) as usize + 1)
        }
        Spec::Uniform(..) | Spec::LogUniform(..) => None,
    }
}

/// The settings of `space`: the grid axes' cartesian product (the last parameter varying
/// fastest), each crossed with `trials` distinct draws of the distributions from `sweep_seed`.
///
/// A draw that repeats an earlier one is skipped (the same trial never runs twice); where the
/// distributions have fewer distinct points than `trials` (choices and whole-number ranges),
/// every point is drawn once and a warning says how many there are.
///
/// # Errors
/// [`Error::InvalidConfig`]: distributions without `--trials`, `--trials` without any
/// distribution, `--trials 0`, parameters that set the same thing ([`Space::check`]), or more
/// than [`MAX_TRIALS`] settings (checked before anything is built).
pub fn expand(space: &Space, trials: Option<usize>, sweep_seed: u64) -> Result<Vec<Setting>> {
    space.check()?;
    let random: Vec<(Param, &Spec)> = space.0.iter().filter(|(_, s)| s.is_random()).map(|(p, s)| (*p, s)).collect();
    let grid_points = grid_size(space);
    match grid_points {
        Some(n) if n <= MAX_TRIALS => {}
        n => {
            let sizes: Vec<String> = space.0.iter().filter_map(|(p, s)| match s {
                Spec::Grid(v) if v.len() > 1 => Some(format!("--{p}: {}", v.len())),
                _ => None,
            }).collect();
            return Err(too_large("sweep grid", format!("{} values", sizes.join(" x ")), n, "the grid's values multiplied"));
        }
    }
    let grid_points = grid_points.unwrap_or(1);
    let draws: Vec<Vec<(Param, f64)>> = match (trials, random.first()) {
        (None, None) => vec![Vec::new()],
        (None, Some((p, s))) => {
            return Err(Error::InvalidConfig {
                field: p.flag(),
                value: s.to_string(),
                expected: "a distribution is drawn --trials N times: give --trials".into(),
            })
        }
        (Some(n), None) => {
            return Err(Error::InvalidConfig {
                field: "trials",
                value: n.to_string(),
                expected: "--trials draws from distributions (uniform:A:B, loguniform:A:B, choice:A,B,...); no parameter has one".into(),
            })
        }
        (Some(0), Some(_)) => return Err(Error::InvalidConfig { field: "trials", value: "0".into(), expected: "at least 1".into() }),
        (Some(n), Some(_)) => {
            let total = grid_points.checked_mul(n);
            if total.is_none_or(|t| t > MAX_TRIALS) {
                let how = if grid_points > 1 { format!("{grid_points} grid points x {n} draws") } else { format!("{n} draws") };
                return Err(too_large("trials", n.to_string(), total, &how));
            }
            let points = random.iter().try_fold(1usize, |acc, (p, s)| support(*p, s).and_then(|k| acc.checked_mul(k)));
            let wanted = points.map_or(n, |k| k.min(n));
            // Enough attempts to collect every point of a small discrete space (the coupon
            // collector needs about k ln k draws) and never loop forever.
            let attempts = n.saturating_mul(64).max(10_000);
            let mut rng = ChaCha8Rng::seed_from_u64(sweep_seed);
            let mut drawn: Vec<Vec<(Param, f64)>> = Vec::with_capacity(wanted);
            let mut seen = std::collections::HashSet::new();
            for _ in 0..attempts {
                if drawn.len() == wanted {
                    break;
                }
                let draw: Vec<(Param, f64)> =
                    random.iter().map(|(p, s)| (*p, s.draw(*p, unit(&mut rng)).expect("random specs draw"))).collect();
                if seen.insert(draw.iter().map(|(_, v)| v.to_bits()).collect::<Vec<u64>>()) {
                    drawn.push(draw);
                }
            }
            if drawn.len() < n {
                tracing::warn!(
                    "--trials {n}: the distributions have only {} distinct points; running each once ({} trials per seed{})",
                    drawn.len(),
                    drawn.len() * grid_points,
                    if grid_points > 1 { format!(", {grid_points} grid points x {} draws", drawn.len()) } else { String::new() }
                );
            }
            drawn
        }
    };
    let mut grid: Vec<Vec<(Param, f64)>> = vec![Vec::new()];
    for (p, spec) in &space.0 {
        if let Spec::Grid(values) = spec {
            grid = grid.into_iter().flat_map(|point| values.iter().map(move |&v| [point.clone(), vec![(*p, v)]].concat())).collect();
        }
    }
    Ok(grid
        .iter()
        .flat_map(|point| {
            draws.iter().map(move |draw| {
                let mut values = [point.clone(), draw.clone()].concat();
                values.sort_by_key(|(p, _)| *p);
                Setting(values)
            })
        })
        .collect())
}

/// Parses `--seeds`: `0,1,2` or a half-open range `0..5` (0 to 4).
///
/// # Errors
/// [`Error::InvalidConfig`] naming `seeds` for anything else, a negative seed, an empty range
/// or a repeated seed.
pub fn parse_seeds(text: &str) -> Result<Vec<i64>> {
    let bad = |why: &str| Error::InvalidConfig {
        field: "seeds",
        value: text.to_string(),
        expected: format!("{why}; expected non-negative seeds, as a list (0,1,2) or a range (0..5, meaning 0 to 4)"),
    };
    let seed = |s: &str| s.trim().parse::<i64>().ok().filter(|s| *s >= 0).ok_or_else(|| bad(&format!("'{}' is not a seed", s.trim())));
    let seeds: Vec<i64> = match text.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (seed(a)?, seed(b)?);
            if a >= b {
                return Err(bad("an empty range"));
            }
            if (b - a) as u64 > MAX_TRIALS as u64 {
                return Err(too_large("seeds", text.to_string(), usize::try_from(b - a).ok(), &format!("{} seeds", b - a)));
            }
            (a..b).collect()
        }
        None => {
            let n = text.split(',').count();
            if n > MAX_TRIALS {
                return Err(too_large("seeds", format!("{n} seeds"), Some(n), "one trial per seed"));
            }
            text.split(',').map(seed).collect::<Result<_>>()?
        }
    };
    let mut sorted = seeds.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(bad("a seed is repeated"));
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(specs: &[(Param, &str)]) -> Space {
        Space(specs.iter().map(|(p, s)| (*p, Spec::parse(*p, s).unwrap())).collect())
    }

    #[test]
    fn parses_lists_and_distributions_and_prints_them_back() {
        let cases = [
            (Param::Lr, "1e-3,1e-2", Spec::Grid(vec![1e-3, 1e-2])),
            (Param::Momentum, "uniform:0.8:0.99", Spec::Uniform(0.8, 0.99)),
            (Param::Lr, "loguniform:1e-4:1e-1", Spec::LogUniform(1e-4, 1e-1)),
            (Param::BatchSize, "choice:50,100", Spec::Choice(vec![50.0, 100.0])),
            (Param::Epochs, "5", Spec::Grid(vec![5.0])),
        ];
        for (p, text, want) in cases {
            let spec = Spec::parse(p, text).unwrap();
            assert_eq!(spec, want, "{text}");
            assert_eq!(Spec::parse(p, &spec.to_string()).unwrap(), want, "{spec}");
        }
    }

    #[test]
    fn bad_values_name_the_flag_and_say_why() {
        let cases = [
            (Param::Lr, "fast", "'fast' is not a number"),
            (Param::Lr, "1e-3,,1e-2", "'' is not a number"),
            (Param::Lr, "loguniform:0:1", "positive lower bound"),
            (Param::Momentum, "uniform:0.9:0.8", "must be below"),
            (Param::Momentum, "uniform:0.9", "two bounds"),
            (Param::Gamma, "normal:0:1", "unknown distribution 'normal'"),
            (Param::BatchSize, "10.5", "whole numbers"),
            (Param::Epochs, "inf", "finite"),
        ];
        for (p, text, needle) in cases {
            let err = Spec::parse(p, text).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid {} = {text}:", p.flag())) && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn a_grid_is_the_cartesian_product_last_parameter_fastest() {
        let s = space(&[(Param::Lr, "1e-3,1e-2"), (Param::BatchSize, "50,100,200"), (Param::Gamma, "0.5")]);
        let settings = expand(&s, None, 0).unwrap();
        let pairs: Vec<(f64, f64)> = settings.iter().map(|s| (s.get(Param::Lr).unwrap(), s.get(Param::BatchSize).unwrap())).collect();
        assert_eq!(pairs, [(1e-3, 50.0), (1e-3, 100.0), (1e-3, 200.0), (1e-2, 50.0), (1e-2, 100.0), (1e-2, 200.0)]);
        assert!(settings.iter().all(|s| s.get(Param::Gamma) == Some(0.5)));
        assert_eq!(s.varying(), [Param::Lr, Param::BatchSize]);
        assert_eq!(expand(&Space::default(), None, 0).unwrap(), [Setting(vec![])]);
    }

    #[test]
    fn random_draws_are_deterministic_in_range_and_crossed_with_the_grid() {
        let s = space(&[
            (Param::Lr, "loguniform:1e-4:1e-1"),
            (Param::Momentum, "uniform:0.8:0.99"),
            (Param::BatchSize, "choice:50,100"),
            (Param::Epochs, "2,3"),
        ]);
        let a = expand(&s, Some(4), 7).unwrap();
        assert_eq!(a, expand(&s, Some(4), 7).unwrap(), "the same seed gives the same trials");
        assert_ne!(a, expand(&s, Some(4), 8).unwrap(), "another seed, other trials");
        assert_eq!(a.len(), 8);
        // The same four draws for each grid value.
        assert_eq!(a[..4].iter().map(|s| s.get(Param::Lr)).collect::<Vec<_>>(), a[4..].iter().map(|s| s.get(Param::Lr)).collect::<Vec<_>>());
        for s in &a {
            let (lr, m, b) = (s.get(Param::Lr).unwrap(), s.get(Param::Momentum).unwrap(), s.get(Param::BatchSize).unwrap());
            assert!((1e-4..=1e-1).contains(&lr) && (0.8..=0.99).contains(&m) && (b == 50.0 || b == 100.0), "{s:?}");
        }
        // Recorded from this function (a change of generator or draw order shows here); each
        // value is within its bounds above.
        let first: Vec<String> = a[0].0.iter().map(|(p, v)| format!("{p}={}", short(*v))).collect();
        assert_eq!(first, FIRST_DRAW);
    }

    #[test]
    fn labels_keep_different_settings_apart() {
        let s = space(&[(Param::Lr, "0.01,0.0100001,0.02"), (Param::Momentum, "0.9")]);
        let settings = expand(&s, None, 0).unwrap();
        let l = labels(&settings, &s.varying());
        assert_eq!(l, [vec!["lr=1e-2"], vec!["lr=1.00001e-2"], vec!["lr=2e-2"]]);
        // Values 3 digits tell apart keep the short form.
        let t = space(&[(Param::Lr, "1e-3,3.46e-4")]);
        assert_eq!(labels(&expand(&t, None, 0).unwrap(), &t.varying()), [vec!["lr=1e-3"], vec!["lr=3.46e-4"]]);
    }

    #[test]
    fn a_sweep_too_large_is_refused_before_anything_is_built() {
        // 6 parameters x 100 values: 10^12 grid points.
        let hundred = (1..=100).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let params = [Param::Lr, Param::Momentum, Param::BatchSize, Param::StepSize, Param::Gamma, Param::Epochs];
        let big = Space(params.iter().map(|p| (*p, Spec::parse(*p, &hundred).unwrap())).collect());
        let err = expand(&big, None, 0).unwrap_err().to_string();
        assert!(err.contains("1000000000000 trials") && err.contains(&format!("at most {MAX_TRIALS}")), "{err}");
        // --trials alone, and --trials times the grid.
        let random = space(&[(Param::Lr, "loguniform:1e-4:1e-1")]);
        for n in [MAX_TRIALS + 1, 1_000_000, 1_000_000_000_000] {
            let err = expand(&random, Some(n), 0).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid trials = {n}:")) && err.contains("at most"), "{err}");
        }
        let crossed = space(&[(Param::Lr, "loguniform:1e-4:1e-1"), (Param::Epochs, "1,2,3")]);
        let err = expand(&crossed, Some(MAX_TRIALS / 2), 0).unwrap_err().to_string();
        assert!(err.contains("3 grid points x 5000 draws"), "{err}");
        assert_eq!(expand(&crossed, Some(MAX_TRIALS / 3), 0).unwrap().len(), 3 * (MAX_TRIALS / 3));
        // Seeds: a range is counted, never collected.
        let err = parse_seeds("0..1000000000000").unwrap_err().to_string();
        assert!(err.starts_with("invalid seeds = 0..1000000000000:") && err.contains("1000000000000 trials"), "{err}");
        assert_eq!(parse_seeds(&format!("0..{MAX_TRIALS}")).unwrap().len(), MAX_TRIALS);
    }

    #[test]
    fn random_search_never_repeats_a_draw_and_stops_at_the_space_size() {
        // 2 x 2 distinct points (a choice and a whole-number range of 2): six trials ask for more.
        let s = space(&[(Param::BatchSize, "choice:50,100"), (Param::Epochs, "uniform:1:2")]);
        let a = expand(&s, Some(6), 0).unwrap();
        assert_eq!(a.len(), 4, "{a:?}");
        let mut keys: Vec<String> = a.iter().map(|s| format!("{:?}", s.0)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 4, "every point once");
        // A choice with a repeated value has one point per distinct value.
        assert_eq!(expand(&space(&[(Param::BatchSize, "choice:50,50,100")]), Some(3), 0).unwrap().len(), 2);
        // Continuous draws: all distinct, as many as asked.
        assert_eq!(expand(&space(&[(Param::Lr, "uniform:0.1:0.2")]), Some(50), 0).unwrap().len(), 50);
    }

    /// The first setting of `random_draws_are_deterministic_in_range_and_crossed_with_the_grid`.
    const FIRST_DRAW: [&str; 4] = ["lr=2.97e-4", "momentum=0.832", "batch-size=100", "epochs=2"];

    #[test]
    fn trials_and_distributions_go_together() {
        let grid = space(&[(Param::Lr, "1e-3")]);
        assert!(expand(&grid, Some(3), 0).unwrap_err().to_string().contains("no parameter has one"));
        let random = space(&[(Param::Momentum, "uniform:0.8:0.99")]);
        assert!(expand(&random, None, 0).unwrap_err().to_string().contains("give --trials"));
        assert!(expand(&random, Some(0), 0).unwrap_err().to_string().contains("at least 1"));
    }

    #[test]
    fn seeds_are_lists_or_ranges() {
        assert_eq!(parse_seeds("0,1,2").unwrap(), [0, 1, 2]);
        assert_eq!(parse_seeds("0..5").unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(parse_seeds("7").unwrap(), [7]);
        for bad in ["", "a", "-1", "3..3", "1,1", "0..x"] {
            let err = parse_seeds(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid seeds ="), "{err}");
        }
    }

    #[test]
    fn named_values_parse_set_and_show_by_name() {
        let s = space(&[(Param::Optimizer, "sgd,adamw"), (Param::Augment, "crop-flip"), (Param::LrSchedule, "choice:cosine,onecycle")]);
        assert_eq!(s.0[&Param::Optimizer], Spec::Grid(vec![0.0, 2.0]));
        assert_eq!(s.0[&Param::LrSchedule], Spec::Choice(vec![2.0, 3.0]));
        // Two schedules to choose from: two distinct draws, whatever --trials asks for.
        let settings = expand(&s, Some(4), 1).unwrap();
        assert_eq!(settings.len(), 4);
        let cfg = settings[1].apply(&TrainConfig::default());
        assert_eq!(cfg.recipe.optimizer, OptimizerKind::Sgd);
        assert_eq!((cfg.recipe.random_crop, cfg.recipe.hflip), (Some(4), true));
        assert!(matches!(cfg.recipe.lr_schedule, LrScheduleKind::Cosine | LrScheduleKind::Onecycle));
        let label = settings[3].label(&[Param::Optimizer, Param::Augment, Param::LrSchedule]).join(" ");
        assert!(label.starts_with("optimizer=adamw") && label.contains("augment=crop-flip"), "{label}");
        for p in [Param::Optimizer, Param::LrSchedule, Param::Augment, Param::Nesterov] {
            assert_eq!(p.get(&settings[2].apply(&TrainConfig::default())), settings[2].get(p).unwrap_or(p.get(&TrainConfig::default())));
        }
        let err = Spec::parse(Param::Optimizer, "sgd,rmsprop").unwrap_err().to_string();
        assert!(err.contains("optimizer") && err.contains("'rmsprop' is not one of sgd, adam, adamw"), "{err}");
        assert!(Spec::parse(Param::Hflip, "uniform:0:1").is_err());
        let t = space(&[(Param::WeightDecay, "0,5e-4"), (Param::WarmupEpochs, "0,5")]);
        let cfg = expand(&t, None, 0).unwrap()[3].apply(&TrainConfig::default());
        assert_eq!((cfg.recipe.weight_decay, cfg.recipe.warmup_epochs), (Some(5e-4), 5));
        assert!(Spec::parse(Param::WarmupEpochs, "1.5").is_err());
        let both = space(&[(Param::Augment, "none,crop-flip"), (Param::Hflip, "true")]);
        let err = expand(&both, None, 0).unwrap_err().to_string();
        assert!(err.contains("augment") && err.contains("either --augment or --hflip"), "{err}");
    }

    #[test]
    fn short_numbers() {
        let cases = [(1e-3, "1e-3"), (0.00034567, "3.46e-4"), (0.01, "1e-2"), (0.05, "5e-2"), (0.95, "0.95"), (0.123456, "0.123"), (100.0, "100"), (0.9, "0.9"), (1e30, "1e30"), (2.5e6, "2.5e6")];
        for (x, want) in cases {
            assert_eq!(short(x), want, "{x}");
        }
    }

    #[test]
    fn space_files_in_json_and_toml() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("s.json");
        std::fs::write(&json, r#"{"lr": [0.001, 0.01], "momentum": "uniform:0.8:0.99", "batch_size": 50}"#).unwrap();
        let toml = dir.path().join("s.toml");
        std::fs::write(&toml, "lr = [0.001, 0.01]\nmomentum = \"uniform:0.8:0.99\"\nbatch-size = 50\n").unwrap();
        let want = space(&[(Param::Lr, "0.001,0.01"), (Param::Momentum, "uniform:0.8:0.99"), (Param::BatchSize, "50")]);
        assert_eq!(Space::from_file(&json).unwrap(), want);
        assert_eq!(Space::from_file(&toml).unwrap(), want);
        for (name, text, needle) in [
            ("a.json", r#"{"learning_rate": [1]}"#, "unknown parameter 'learning_rate'"),
            ("b.json", r#"{"lr": {"min": 1}}"#, "expected a list of numbers"),
            ("c.json", r#"{"lr": "loguniform:0:1"}"#, "positive lower bound"),
            ("d.toml", "lr = [", "not TOML"),
            ("e.yaml", "lr: 1", "expected a .json or .toml file"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = Space::from_file(&path).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(needle), "{err}");
        }
    }
}
