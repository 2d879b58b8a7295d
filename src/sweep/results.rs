//! A sweep's results, rebuilt from its trial folders' own files (`summary.json`,
//! `metrics.jsonl`, and the sweep's `pruned.json` / `failed.json` markers): `results.csv` and
//! `results.jsonl` (one [`Row`] per trial), the table grouped by setting (mean ± standard
//! deviation over seeds, best first), and the charts `top-curves.png` and
//! `val-acc-vs-<param>.png`.
//!
//! Ranking is by the best validation accuracy of each trial when the sweep has a validation
//! split (`--val-size`), with the final test accuracy beside it; without one it is by the final
//! test accuracy, and the table says so.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{space::Param, Trial};
use crate::{
    checkpoint,
    error::{Error, Result},
    report::{
        chart::{self, RunCurves, Scatter},
        metrics::{EpochRecord, Summary, METRICS_FILE, SUMMARY_FILE},
    },
    run_dir::write_atomic,
    safe_fs::{self, MAX_TEXT_FILE_BYTES},
};

/// The marker the sweep leaves in a trial folder it pruned: `{"reason": ..., "epoch": E}`.
pub const PRUNED_FILE: &str = "pruned.json";
/// The marker the sweep leaves in a trial folder whose run failed: `{"reason": ...}` (removed
/// when the trial runs again).
pub const FAILED_FILE: &str = "failed.json";
/// The trial's log: its `train` process's stdout and stderr.
pub const LOG_FILE: &str = "train.log";
/// `results.csv` in the sweep folder.
pub const CSV_FILE: &str = "results.csv";
/// `results.jsonl` in the sweep folder.
pub const JSONL_FILE: &str = "results.jsonl";
/// The overlaid curves of the best settings.
pub const TOP_CURVES_FILE: &str = "top-curves.png";
/// How many settings `top-curves.png` overlays.
pub const TOP_SETTINGS: usize = 5;

/// What became of a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Finished: `summary.json` is there.
    Done,
    /// Stopped by `--prune` (`pruned.json`).
    Pruned,
    /// Its run failed (`failed.json`); a rerun of the sweep tries it again.
    Failed,
    /// Stopped with its state saved (`checkpoint.safetensors`); a rerun resumes it.
    Interrupted,
    /// Not started.
    Pending,
}

/// A marker file's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// Why the trial was pruned or failed.
    pub reason: String,
    /// The epoch it was judged after (pruned trials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<usize>,
}

/// A trial's status and its reason, from the files in `dir`.
pub fn status(dir: &Path) -> (Status, String) {
    let marker = |name: &str| -> String {
        let path = dir.join(name);
        match safe_fs::read_text(&path, MAX_TEXT_FILE_BYTES).map(|t| serde_json::from_str::<Marker>(&t)) {
            Ok(Ok(m)) => m.reason,
            Ok(Err(e)) => format!("unreadable {name}: {e}"),
            Err(e) => format!("unreadable {name}: {e}"),
        }
    };
    if dir.join(SUMMARY_FILE).is_file() {
        (Status::Done, String::new())
    } else if dir.join(PRUNED_FILE).is_file() {
        (Status::Pruned, marker(PRUNED_FILE))
    } else if dir.join(FAILED_FILE).is_file() {
        (Status::Failed, marker(FAILED_FILE))
    } else if dir.join(checkpoint::state::FILE).is_file() {
        (Status::Interrupted, String::new())
    } else {
        (Status::Pending, String::new())
    }
}

/// The epoch records in `dir/metrics.jsonl` so far: every complete line that parses (a run
/// appends to it while it trains, so the last line may be half-written); none when the file is
/// missing.
pub fn read_records(dir: &Path) -> Vec<EpochRecord> {
    read_checked_records(dir).0
}

/// [`read_records`], and the first line whose figures are out of range
/// ([`EpochRecord::check`]), named with its file and line; such lines are left out.
pub fn read_checked_records(dir: &Path) -> (Vec<EpochRecord>, Option<String>) {
    let path = dir.join(METRICS_FILE);
    let Ok(text) = safe_fs::read_text(&path, MAX_TEXT_FILE_BYTES) else { return (Vec::new(), None) };
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    let mut bad = None;
    let mut records = Vec::new();
    for (i, line) in complete.lines().enumerate() {
        let Ok(record) = serde_json::from_str::<EpochRecord>(line) else { continue };
        match record.check() {
            Ok(()) => records.push(record),
            Err(e) => {
                bad.get_or_insert_with(|| format!("{}, line {}: {e}", path.display(), i + 1));
            }
        }
    }
    (records, bad)
}

/// The best validation accuracy over epochs `1..=epoch`, once the run has reached `epoch`
/// (`None` before, or without a validation split).
pub fn best_val_up_to(records: &[EpochRecord], epoch: usize) -> Option<f64> {
    if !records.iter().any(|r| r.epoch >= epoch) {
        return None;
    }
    records.iter().filter(|r| r.epoch <= epoch).filter_map(|r| r.val_acc).reduce(f64::max)
}

/// One line of `results.csv` and `results.jsonl`: a trial's parameters and figures. Accuracies
/// are fractions, losses mean cross-entropy; a figure the trial does not have is empty (CSV) or
/// `null` (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The trial's id, its folder's name under `trials/`.
    pub id: String,
    /// The values of the swept parameters (`lr=1e-3 momentum=0.9`), the same for every seed.
    pub setting: String,
    /// done, pruned, failed, interrupted or pending.
    pub status: Status,
    /// Why it was pruned or failed.
    pub reason: String,
    /// `--seed`.
    pub seed: i64,
    /// `--lr`.
    pub lr: f64,
    /// `--momentum`.
    pub momentum: f64,
    /// `--batch-size`.
    pub batch_size: usize,
    /// `--step-size`.
    pub step_size: usize,
    /// `--gamma`.
    pub gamma: f64,
    /// `--epochs` (planned).
    pub epochs: usize,
    /// `--optimizer` (`sgd`, `adam`, `adamw`).
    pub optimizer: String,
    /// `--lr-schedule`.
    pub lr_schedule: String,
    /// `--weight-decay` in force (the optimizer's default when not given).
    pub weight_decay: f64,
    /// `--label-smoothing`.
    pub label_smoothing: f64,
    /// `--random-crop` padding (empty: no crop).
    pub random_crop: Option<u32>,
    /// `--hflip`.
    pub hflip: bool,
    /// `--warmup-epochs`.
    pub warmup_epochs: usize,
    /// The best validation accuracy over the epochs run.
    pub best_val_acc: Option<f64>,
    /// The epoch of `best_val_acc` (the first, on a tie).
    pub best_val_epoch: Option<usize>,
    /// The validation accuracy after the last epoch run.
    pub final_val_acc: Option<f64>,
    /// The validation loss after the last epoch run.
    pub final_val_loss: Option<f64>,
    /// The final test accuracy (finished trials: `summary.json`).
    pub final_test_acc: Option<f64>,
    /// The final test loss.
    pub final_test_loss: Option<f64>,
    /// Epochs run so far.
    pub epochs_run: usize,
    /// Seconds: the run's total (`summary.json`) when finished, else the sum of its epochs'
    /// training seconds.
    pub seconds: f64,
}

impl Row {
    /// The figure the sweep ranks by: best validation accuracy, or final test accuracy.
    pub fn rank_value(&self, by_val: bool) -> Option<f64> {
        if by_val { self.best_val_acc } else { self.final_test_acc }
    }
}

/// The row of `trial`, from its folder.
///
/// A `summary.json` that cannot be read makes the row `failed`, with the reason.
pub fn row(trial: &Trial) -> Row {
    let (mut status, mut reason) = status(&trial.dir);
    let (records, bad_record) = read_checked_records(&trial.dir);
    let mut summary: Option<Summary> = None;
    if status == Status::Done {
        let path = trial.dir.join(SUMMARY_FILE);
        match safe_fs::read_text(&path, MAX_TEXT_FILE_BYTES).and_then(|t| {
            let s: Summary =
                serde_json::from_str(&t).map_err(|e| Error::BadSweep { path: path.clone(), reason: format!("not a run summary: {e}") })?;
            s.check().map_err(|e| Error::BadSweep { path: path.clone(), reason: e })?;
            Ok(s)
        }) {
            Ok(s) => summary = Some(s),
            Err(e) => (status, reason) = (Status::Failed, e.to_string()),
        }
    }
    if let Some(bad) = bad_record {
        // Figures no run writes: the trial's results cannot be believed.
        (status, reason, summary) = (Status::Failed, bad, None);
    }
    let best = records.iter().filter_map(|r| r.val_acc.map(|a| (r.epoch, a))).fold(None, |best: Option<(usize, f64)>, (e, a)| match best {
        Some((_, b)) if b >= a => best,
        _ => Some((e, a)),
    });
    let last = records.last();
    let cfg = &trial.cfg;
    Row {
        id: trial.id.clone(),
        setting: trial.setting_label.clone(),
        status,
        reason,
        seed: cfg.seed,
        lr: cfg.learning_rate,
        momentum: cfg.momentum,
        batch_size: cfg.batch_size,
        step_size: cfg.step_size,
        gamma: cfg.gamma,
        epochs: cfg.epochs,
        optimizer: crate::config::value_name(&cfg.recipe.optimizer),
        lr_schedule: crate::config::value_name(&cfg.recipe.lr_schedule),
        weight_decay: cfg.recipe.weight_decay(),
        label_smoothing: cfg.recipe.label_smoothing,
        random_crop: cfg.recipe.random_crop,
        hflip: cfg.recipe.hflip,
        warmup_epochs: cfg.recipe.warmup_epochs,
        best_val_acc: best.map(|b| b.1),
        best_val_epoch: best.map(|b| b.0),
        final_val_acc: last.and_then(|r| r.val_acc),
        final_val_loss: last.and_then(|r| r.val_loss),
        final_test_acc: summary.as_ref().map(|s| s.test_acc),
        final_test_loss: summary.as_ref().map(|s| s.test_loss),
        epochs_run: records.len(),
        // `+ 0.0` turns the empty sum's -0.0 (a trial with no epoch yet) into 0.
        seconds: summary.as_ref().map_or_else(|| records.iter().map(|r| r.seconds).sum::<f64>() + 0.0, |s| s.total_seconds),
    }
}

/// Writes `dir/results.csv` and `dir/results.jsonl` (atomically) and returns their paths.
///
/// # Errors
/// [`Error::Io`] naming the file that cannot be written.
pub fn write_rows(dir: &Path, rows: &[Row]) -> Result<Vec<PathBuf>> {
    let csv_path = dir.join(CSV_FILE);
    let mut csv = csv::Writer::from_writer(Vec::new());
    for r in rows {
        csv.serialize(r).map_err(|e| Error::BadSweep { path: csv_path.clone(), reason: e.to_string() })?;
    }
    let bytes = csv.into_inner().map_err(|e| Error::BadSweep { path: csv_path.clone(), reason: e.to_string() })?;
    write_atomic(&csv_path, &bytes)?;
    let jsonl_path = dir.join(JSONL_FILE);
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r).expect("rows serialise to JSON"));
        text.push('\n');
    }
    write_atomic(&jsonl_path, text.as_bytes())?;
    Ok(vec![csv_path, jsonl_path])
}

/// The mean and sample standard deviation (`n - 1`; 0 for one value) of `values`.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = if n > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
    Some((mean, var.sqrt()))
}

/// The trials of one setting, summarised.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The setting's label (`lr=1e-3`).
    pub setting: String,
    /// The indices of its rows.
    pub rows: Vec<usize>,
    /// Mean and standard deviation of the ranking figure over its finished trials.
    pub rank: Option<(f64, f64)>,
    /// Mean and standard deviation of the final test accuracy over its finished trials.
    pub test: Option<(f64, f64)>,
    /// Finished trials (the seeds the means are over).
    pub done: usize,
    /// Pruned trials.
    pub pruned: usize,
}

/// The rows grouped by setting, best first (settings without a finished trial last, in plan
/// order).
pub fn groups(rows: &[Row], by_val: bool) -> Vec<Group> {
    let mut order: Vec<String> = Vec::new();
    let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if !members.contains_key(r.setting.as_str()) {
            order.push(r.setting.clone());
        }
        members.entry(&r.setting).or_default().push(i);
    }
    let mut groups: Vec<Group> = order
        .into_iter()
        .map(|setting| {
            let idx = members[setting.as_str()].clone();
            let done: Vec<&Row> = idx.iter().map(|&i| &rows[i]).filter(|r| r.status == Status::Done).collect();
            let rank: Vec<f64> = done.iter().filter_map(|r| r.rank_value(by_val)).collect();
            let test: Vec<f64> = done.iter().filter_map(|r| r.final_test_acc).collect();
            let pruned = idx.iter().filter(|&&i| rows[i].status == Status::Pruned).count();
            Group { setting, done: done.len(), pruned, rank: mean_std(&rank), test: mean_std(&test), rows: idx }
        })
        .collect();
    // Stable: equal means keep plan order.
    groups.sort_by(|a, b| match (a.rank, b.rank) {
        (Some(x), Some(y)) => y.0.total_cmp(&x.0),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    groups
}

/// `61.23 ± 0.41 %` (percent), or `-`.
fn pct(v: Option<(f64, f64)>, n: usize) -> String {
    match v {
        Some((m, s)) if n > 1 => format!("{:.2} ± {:.2} %", 100.0 * m, 100.0 * s),
        Some((m, _)) => format!("{:.2} %", 100.0 * m),
        None => "-".to_string(),
    }
}

/// The printed table: one line per setting, best first, with the mean ± standard deviation over
/// its finished seeds and their count; then the trials that did not finish.
pub fn table(rows: &[Row], by_val: bool) -> String {
    let groups = groups(rows, by_val);
    let mut out = String::new();
    let _ = if by_val {
        writeln!(out, "Settings ranked by best validation accuracy (mean ± std over seeds); final test accuracy beside it.")
    } else {
        writeln!(out, "Settings ranked by final TEST accuracy (mean ± std over seeds): there is no validation split (--val-size), so the test set chooses and its figure is optimistic.")
    };
    let rank_head = if by_val { "best val acc" } else { "test acc" };
    let width = groups.iter().map(|g| g.setting.chars().count()).max().unwrap_or(0).max("setting".len());
    // Without a validation split the ranking figure is the test accuracy: one column, not two.
    let test_head = if by_val { format!("  {:>18}", "test acc") } else { String::new() };
    let _ = writeln!(out, "{:>4}  {:width$}  {:>5}  {:>18}{test_head}  {:>6}", "rank", "setting", "seeds", rank_head, "pruned");
    for (i, g) in groups.iter().enumerate() {
        let rank = if g.rank.is_some() { (i + 1).to_string() } else { "-".to_string() };
        let setting = if g.setting.is_empty() { "(one setting)" } else { &g.setting };
        let test = if by_val { format!("  {:>18}", pct(g.test, g.done)) } else { String::new() };
        let _ = writeln!(out, "{rank:>4}  {setting:width$}  {:>5}  {:>18}{test}  {:>6}", g.done, pct(g.rank, g.done), g.pruned);
    }
    let unfinished: Vec<&Row> = rows.iter().filter(|r| !matches!(r.status, Status::Done | Status::Pruned)).collect();
    if !unfinished.is_empty() {
        let _ = writeln!(out, "\nNot finished:");
        for r in unfinished {
            let status = serde_json::to_value(r.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            let reason = if r.reason.is_empty() { String::new() } else { format!(": {}", r.reason) };
            let _ = writeln!(out, "  {}  {status} after {} epochs{reason}", r.id, r.epochs_run);
        }
    }
    out
}

/// The mean record of each epoch over `runs` (the figures each run has at that epoch).
fn mean_records(runs: &[Vec<EpochRecord>]) -> Vec<EpochRecord> {
    let epochs = runs.iter().map(Vec::len).max().unwrap_or(0);
    (0..epochs)
        .filter_map(|e| {
            let at: Vec<&EpochRecord> = runs.iter().filter_map(|r| r.get(e)).collect();
            let first = *at.first()?;
            let mean = |f: fn(&EpochRecord) -> f64| at.iter().map(|r| f(r)).sum::<f64>() / at.len() as f64;
            let opt = |f: fn(&EpochRecord) -> Option<f64>| {
                let v: Vec<f64> = at.iter().filter_map(|r| f(r)).collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            Some(EpochRecord {
                epoch: first.epoch,
                lr: first.lr,
                train_loss: opt(|r| r.train_loss),
                train_acc: opt(|r| r.train_acc),
                val_loss: opt(|r| r.val_loss),
                val_acc: opt(|r| r.val_acc),
                test_loss: opt(|r| r.test_loss),
                test_acc: opt(|r| r.test_acc),
                test_weights_epoch: None,
                seconds: mean(|r| r.seconds),
                images_per_sec: mean(|r| r.images_per_sec),
                device: first.device.clone(),
            })
        })
        .collect()
}

/// The chart of the ranking figure against `param`: `val-acc-vs-lr.png` (`test-acc-vs-...`
/// without a validation split).
pub fn param_chart_name(param: Param, by_val: bool) -> String {
    format!("{}-acc-vs-{}.png", if by_val { "val" } else { "test" }, param.flag())
}

/// Draws `top-curves.png` (the mean curves over seeds of the [`TOP_SETTINGS`] best settings)
/// and, for each swept parameter, the ranking figure of each finished trial against it. Returns
/// the files drawn; a chart that cannot be drawn is logged and skipped.
pub fn charts(dir: &Path, trials: &[Trial], rows: &[Row], varying: &[Param], by_val: bool) -> Vec<PathBuf> {
    let mut drawn = Vec::new();
    let top: Vec<RunCurves> = groups(rows, by_val)
        .into_iter()
        .filter(|g| g.rank.is_some())
        .take(TOP_SETTINGS)
        .map(|g| {
            let runs: Vec<Vec<EpochRecord>> =
                g.rows.iter().filter(|&&i| rows[i].status == Status::Done).map(|&i| read_records(&trials[i].dir)).collect();
            let name = if g.setting.is_empty() { "all" } else { &g.setting };
            let label = if runs.len() > 1 { format!("{name} (mean of {})", runs.len()) } else { name.to_string() };
            RunCurves { label, records: mean_records(&runs) }
        })
        .collect();
    let mut draw = |path: PathBuf, result: Result<()>| match result {
        Ok(()) => drawn.push(path),
        Err(e) => tracing::warn!("no chart {}: {e}", path.display()),
    };
    if !top.is_empty() {
        let path = dir.join(TOP_CURVES_FILE);
        draw(path.clone(), chart::curves_png(&path, &top));
    }
    for &param in varying {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .zip(trials)
            .filter(|(r, _)| r.status == Status::Done)
            .filter_map(|(r, t)| Some((param.get(&t.cfg), 100.0 * r.rank_value(by_val)?)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let figure = if by_val { "best validation accuracy" } else { "final test accuracy" };
        let scatter = Scatter {
            title: format!("{figure} against --{param}"),
            x_label: match param.choices() {
                Some(names) => format!("{} ({})", param.flag(), names.iter().enumerate().map(|(i, n)| format!("{i} {n}")).collect::<Vec<_>>().join(", ")),
                None => param.flag().to_string(),
            },
            y_label: format!("{figure} (%)"),
            log_x: param.log_axis(),
            points,
        };
        let path = dir.join(param_chart_name(param, by_val));
        draw(path.clone(), chart::scatter_png(&path, &scatter));
    }
    drawn
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(setting: &str, seed: i64, status: Status, val: Option<f64>, test: Option<f64>) -> Row {
        Row {
            id: format!("{setting}-{seed}"),
            setting: setting.into(),
            status,
            reason: String::new(),
            seed,
            lr: 0.1,
            momentum: 0.9,
            batch_size: 10,
            step_size: 1,
            gamma: 0.1,
            epochs: 2,
            optimizer: "sgd".into(),
            lr_schedule: "step".into(),
            weight_decay: 0.0,
            label_smoothing: 0.0,
            random_crop: None,
            hflip: false,
            warmup_epochs: 0,
            best_val_acc: val,
            best_val_epoch: val.map(|_| 1),
            final_val_acc: val,
            final_val_loss: val.map(|v| 1.0 - v),
            final_test_acc: test,
            final_test_loss: test.map(|t| 1.0 - t),
            epochs_run: 2,
            seconds: 1.5,
        }
    }

    #[test]
    fn means_and_sample_standard_deviations() {
        assert_eq!(mean_std(&[]), None);
        assert_eq!(mean_std(&[0.5]), Some((0.5, 0.0)));
        // mean 2, squared deviations 1 + 0 + 1 over n - 1 = 2: std 1.
        assert_eq!(mean_std(&[1.0, 2.0, 3.0]), Some((2.0, 1.0)));
    }

    #[test]
    fn groups_rank_by_validation_and_count_seeds_and_prunes() {
        let rows = [
            row("lr=1e-3", 0, Status::Done, Some(0.40), Some(0.39)),
            row("lr=1e-2", 0, Status::Done, Some(0.60), Some(0.58)),
            row("lr=1e-3", 1, Status::Done, Some(0.50), Some(0.52)),
            row("lr=1e-2", 1, Status::Done, Some(0.62), Some(0.10)),
            row("lr=1e-1", 0, Status::Pruned, Some(0.10), None),
            row("lr=1e-1", 1, Status::Pending, None, None),
        ];
        let g = groups(&rows, true);
        assert_eq!(g.iter().map(|g| g.setting.as_str()).collect::<Vec<_>>(), ["lr=1e-2", "lr=1e-3", "lr=1e-1"]);
        assert_eq!((g[0].done, g[2].done, g[2].pruned), (2, 0, 1));
        assert!((g[0].rank.unwrap().0 - 0.61).abs() < 1e-12);
        // Ranked by test instead, lr=1e-3 (mean 0.455) beats lr=1e-2 (mean 0.34).
        assert_eq!(groups(&rows, false)[0].setting, "lr=1e-3");

        let text = table(&rows, true);
        assert!(text.starts_with("Settings ranked by best validation accuracy"), "{text}");
        assert!(text.contains("   1  lr=1e-2      2      61.00 ± 1.41 %"), "{text}");
        assert!(text.contains("lr=1e-1-1  pending after 2 epochs"), "{text}");
        let by_test = table(&rows, false);
        assert!(by_test.contains("ranked by final TEST accuracy"));
        // Ranked by the test accuracy, the table has one such column, not an empty second one.
        let header = by_test.lines().find(|l| l.trim_start().starts_with("rank")).unwrap();
        assert_eq!(header.matches("test acc").count(), 1, "{header}");
    }

    #[test]
    fn csv_and_jsonl_hold_one_row_per_trial_with_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let rows = [row("lr=1e-3", 0, Status::Done, Some(0.4), Some(0.39)), row("lr=1e-2", 0, Status::Pending, None, None)];
        write_rows(dir.path(), &rows).unwrap();
        let csv = std::fs::read_to_string(dir.path().join(CSV_FILE)).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "id,setting,status,reason,seed,lr,momentum,batch_size,step_size,gamma,epochs,optimizer,lr_schedule,weight_decay,label_smoothing,random_crop,hflip,warmup_epochs,best_val_acc,best_val_epoch,final_val_acc,final_val_loss,final_test_acc,final_test_loss,epochs_run,seconds");
        assert_eq!(lines[1], "lr=1e-3-0,lr=1e-3,done,,0,0.1,0.9,10,1,0.1,2,sgd,step,0.0,0.0,,false,0,0.4,1,0.4,0.6,0.39,0.61,2,1.5");
        assert_eq!(lines[2], "lr=1e-2-0,lr=1e-2,pending,,0,0.1,0.9,10,1,0.1,2,sgd,step,0.0,0.0,,false,0,,,,,,,2,1.5");
        let jsonl = std::fs::read_to_string(dir.path().join(JSONL_FILE)).unwrap();
        let back: Vec<Row> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(back, rows);
        assert!(jsonl.lines().nth(1).unwrap().contains(r#""final_test_acc":null"#));
    }

    #[test]
    fn half_written_lines_are_skipped_and_best_val_waits_for_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let line = |e: usize, v: f64| format!(r#"{{"epoch":{e},"lr":0.1,"train_loss":1,"train_acc":0.5,"val_acc":{v},"seconds":1,"images_per_sec":1,"device":"cpu"}}"#);
        std::fs::write(dir.path().join(METRICS_FILE), format!("{}\n{}\n{{\"epoch\":3,", line(1, 0.3), line(2, 0.2))).unwrap();
        let records = read_records(dir.path());
        assert_eq!(records.len(), 2);
        assert_eq!(best_val_up_to(&records, 2), Some(0.3));
        assert_eq!(best_val_up_to(&records, 1), Some(0.3));
        assert_eq!(best_val_up_to(&records, 3), None);
    }

    #[test]
    fn figures_out_of_range_make_the_trial_failed_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let trial = Trial {
            index: 0,
            id: "t001".into(),
            setting_label: String::new(),
            dir: dir.path().to_path_buf(),
            cfg: crate::config::TrainConfig::default(),
        };
        let line = |acc: &str| format!(r#"{{"epoch":1,"lr":0.1,"train_loss":1,"train_acc":0.5,"val_acc":{acc},"seconds":1,"images_per_sec":1,"device":"cpu"}}"#);
        std::fs::write(dir.path().join(METRICS_FILE), line("0.5") + "\n").unwrap();
        let test = crate::report::EvalMetrics { loss: 1.0, accuracy: 0.5, per_class_accuracy: vec![0.5; 10], images: 10 };
        let mut summary = Summary::new(&trial.cfg, &read_records(dir.path()), &test, &[], 1.0, "cpu");
        std::fs::write(dir.path().join(SUMMARY_FILE), serde_json::to_string(&summary).unwrap()).unwrap();
        let good = super::row(&trial);
        assert_eq!((good.status, good.final_test_acc), (Status::Done, Some(0.5)));
        summary.test_acc = 1e308;
        std::fs::write(dir.path().join(SUMMARY_FILE), serde_json::to_string(&summary).unwrap()).unwrap();
        let bad = super::row(&trial);
        assert_eq!((bad.status, bad.final_test_acc), (Status::Failed, None));
        assert!(bad.reason.contains("summary.json") && bad.reason.contains("test_acc = 1e308 is not a number within [0, 1]"), "{}", bad.reason);
        // A crafted epoch line: failed, and its figure is not ranked.
        summary.test_acc = 0.5;
        std::fs::write(dir.path().join(SUMMARY_FILE), serde_json::to_string(&summary).unwrap()).unwrap();
        std::fs::write(dir.path().join(METRICS_FILE), line("1e308") + "\n").unwrap();
        let bad = super::row(&trial);
        assert_eq!((bad.status, bad.best_val_acc), (Status::Failed, None));
        assert!(bad.reason.contains("metrics.jsonl, line 1: val_acc = 1e308"), "{}", bad.reason);
    }
}
