//! Charts as PNG files, drawn with `plotters` into memory, encoded with `png` and written
//! atomically:
//!
//! * [`curves_png`] (`curves.png`): loss and accuracy per epoch, for train, validation and test,
//!   of one or several runs (read from their `metrics.jsonl`, see [`super::metrics`]), with the
//!   learning-rate changes marked as dashed vertical lines.
//! * [`confusion_matrix_png`]: counts of true (rows) against predicted (columns) classes.
//! * [`reliability_png`]: a reliability diagram (accuracy against confidence per bin, with the
//!   bin counts), for `eval --reliability-png`.
//! * [`scatter_png`]: a figure against a parameter, with the mean at each value (a sweep's
//!   `val-acc-vs-<param>.png`), on a logarithmic axis for rates.
//!
//! Text is drawn with DejaVu Sans, compiled into the binary (the `dejavu` crate; the fonts are
//! under the Bitstream Vera / DejaVu licence), by the private `report::text` module, so charts render the same on
//! a machine without fonts.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{
    metrics::{read_metrics, EpochRecord, METRICS_FILE},
    text::TextBackend,
};
use crate::{
    error::{Error, Result},
    run_dir::write_atomic,
};

/// The chart file's name in a run directory.
pub const CURVES_FILE: &str = "curves.png";
/// Width and height of `curves.png` in pixels.
pub const CURVES_SIZE: (u32, u32) = (1400, 560);
/// Width and height of a confusion matrix chart in pixels.
pub const CONFUSION_SIZE: (u32, u32) = (900, 820);

/// The font family every chart uses (registered from the embedded DejaVu Sans).
const FONT: &str = "sans-serif";
/// Colours of the train, validation and test series of a single run.
const SPLIT_COLORS: [RGBColor; 3] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44)];
/// Colour of marks shared by several runs, or of a single run's learning-rate marks.
const GREY: RGBColor = RGBColor(110, 110, 110);
/// Colours of the runs when several are drawn (matplotlib's `tab10`).
const RUN_COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

type DrawResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// One run to draw: its legend label and its epochs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunCurves {
    /// The name in the legend (the run directory's name, by default).
    pub label: String,
    /// The run's epochs, in order.
    pub records: Vec<EpochRecord>,
}

/// Registers the embedded font with plotters' own text machinery, once per process. Charts draw
/// their text through [`TextBackend`]; this is for any layout plotters does by itself.
fn register_font() -> std::result::Result<(), String> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bad = |_| "the embedded DejaVu Sans font cannot be read".to_string();
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).map_err(bad)?;
        plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).map_err(bad)
    })
    .clone()
}

/// Draws `(width, height)` pixels with `draw`, then writes them to `path` as an RGB PNG.
fn render(path: &Path, (width, height): (u32, u32), draw: impl FnOnce(&DrawingArea<TextBackend<'_>, Shift>) -> DrawResult) -> Result<()> {
    let fail = |reason: String| Error::Chart { path: path.to_path_buf(), reason };
    register_font().map_err(fail)?;
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = TextBackend::new(BitMapBackend::with_buffer(&mut rgb, (width, height))).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        draw(&root).map_err(|e| fail(e.to_string()))?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| fail(e.to_string()))?;
        writer.write_image_data(&rgb).map_err(|e| fail(e.to_string()))?;
    }
    write_atomic(path, &bytes)
}

/// Draws `curves.png`-style loss and accuracy curves of `runs` to `path` ([`CURVES_SIZE`]).
///
/// # Errors
/// [`Error::Chart`] when there is nothing to draw or drawing fails; [`Error::Io`] when the
/// file cannot be written.
pub fn curves_png(path: &Path, runs: &[RunCurves]) -> Result<()> {
    if runs.iter().all(|r| r.records.is_empty()) {
        return Err(Error::Chart { path: path.to_path_buf(), reason: "no epochs to draw".to_string() });
    }
    render(path, CURVES_SIZE, |root| {
        let (left, right) = root.split_horizontally(CURVES_SIZE.0 / 2);
        curves_panel(&left, runs, Panel::Loss)?;
        curves_panel(&right, runs, Panel::Accuracy)
    })
}

/// Reads `metrics.jsonl` of each run (a run directory, or the file itself) and draws their
/// curves to `out`, by default `curves.png` in the run directory for one run, in the current
/// directory for several. Returns the path written. Runs are labelled as [`plot_labelled`] does
/// without labels.
///
/// # Errors
/// A missing or malformed metrics file (named), or a chart that cannot be drawn or written.
pub fn plot_runs(runs: &[PathBuf], out: Option<&Path>) -> Result<PathBuf> {
    plot_labelled(runs, &[], out)
}

/// [`plot_runs`] with the legend's labels: `labels[i]` for `runs[i]` when given (one per run);
/// otherwise a run directory's name, or a metrics file's own name when it is not
/// `metrics.jsonl` (so `DIR/pytorch.metrics.jsonl` and `DIR` differ), or its folder's name when
/// it is. Runs that would share a label are told apart by their paths.
///
/// # Errors
/// As [`plot_runs`], and [`Error::InvalidConfig`] (`label`) when `labels` is neither empty nor
/// one per run.
pub fn plot_labelled(runs: &[PathBuf], labels: &[String], out: Option<&Path>) -> Result<PathBuf> {
    if !labels.is_empty() && labels.len() != runs.len() {
        return Err(Error::InvalidConfig {
            field: "label",
            value: labels.join(", "),
            expected: format!("one --label per run: {} labels for {} runs", labels.len(), runs.len()),
        });
    }
    let files: Vec<PathBuf> = runs.iter().map(|r| if r.is_dir() { r.join(METRICS_FILE) } else { r.clone() }).collect();
    let mut curves = Vec::with_capacity(runs.len());
    for (file, label) in files.iter().zip(legend_labels(&files, labels)) {
        if !file.exists() {
            return Err(Error::Io {
                path: file.clone(),
                cause: std::io::Error::new(std::io::ErrorKind::NotFound, "no metrics file (expected a run directory holding metrics.jsonl)"),
            });
        }
        curves.push(RunCurves { label, records: read_metrics(file)? });
    }
    let out = match (out, files.as_slice()) {
        (Some(out), _) => out.to_path_buf(),
        (None, [one]) => one.parent().unwrap_or(Path::new(".")).join(CURVES_FILE),
        _ => PathBuf::from(CURVES_FILE),
    };
    curves_png(&out, &curves)?;
    Ok(out)
}

/// The legend's labels of the metrics files `files`: `given` when there are some (one per
/// file); else each file's default label ([`run_label`]), and for labels shared by several
/// files, their paths (a run directory's for its `metrics.jsonl`).
fn legend_labels(files: &[PathBuf], given: &[String]) -> Vec<String> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let labels: Vec<String> = files.iter().map(|f| run_label(f)).collect();
    labels
        .iter()
        .zip(files)
        .map(|(label, file)| {
            if labels.iter().filter(|l| *l == label).count() == 1 {
                return label.clone();
            }
            let path = if file.file_name().is_some_and(|n| n == METRICS_FILE) { file.parent().unwrap_or(file) } else { file };
            path.display().to_string()
        })
        .collect()
}

/// A metrics file's default label: its own name when it is not `metrics.jsonl`
/// (`pytorch.metrics.jsonl`), else its run directory's name.
fn run_label(metrics_file: &Path) -> String {
    match metrics_file.file_name() {
        Some(name) if name != METRICS_FILE => return name.to_string_lossy().into_owned(),
        _ => {}
    }
    let dir = metrics_file.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    dir.file_name().map_or_else(|| metrics_file.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Width and height of a [`scatter_png`] chart in pixels.
pub const SCATTER_SIZE: (u32, u32) = (900, 600);

/// What [`scatter_png`] draws: points, and a line through the mean at each x.
#[derive(Clone, Debug, PartialEq)]
pub struct Scatter {
    /// The chart's title.
    pub title: String,
    /// The x axis's name.
    pub x_label: String,
    /// The y axis's name.
    pub y_label: String,
    /// A logarithmic x axis (for rates); every x must then be positive.
    pub log_x: bool,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// Draws `chart` to `path` ([`SCATTER_SIZE`]): each point as a dot, and a line through the mean
/// of the points sharing an x (the mean over seeds of a grid value).
///
/// # Errors
/// [`Error::Chart`] when there is no finite point (or, on a log axis, a point with x <= 0) or
/// drawing fails; [`Error::Io`] when the file cannot be written.
pub fn scatter_png(path: &Path, chart: &Scatter) -> Result<()> {
    let points: Vec<(f64, f64)> = chart.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    if points.is_empty() {
        return Err(Error::Chart { path: path.to_path_buf(), reason: "no points to draw".to_string() });
    }
    if chart.log_x && points.iter().any(|(x, _)| *x <= 0.0) {
        return Err(Error::Chart { path: path.to_path_buf(), reason: format!("{} must be positive on a logarithmic axis", chart.x_label) });
    }
    let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let means: Vec<(f64, f64)> = xs
        .iter()
        .map(|&x| {
            let ys: Vec<f64> = points.iter().filter(|p| p.0 == x).map(|p| p.1).collect();
            (x, ys.iter().sum::<f64>() / ys.len() as f64)
        })
        .collect();
    let (y_lo, y_hi) = padded(points.iter().map(|p| p.1));
    let (x_min, x_max) = (xs[0], xs[xs.len() - 1]);
    render(path, SCATTER_SIZE, |root| {
        let (head, area) = root.split_vertically(40);
        let (head_width, _) = head.dim_in_pixel();
        let title = TextStyle::from((FONT, 22).into_font().style(FontStyle::Bold)).pos(Pos::new(HPos::Center, VPos::Center));
        head.draw(&Text::new(chart.title.as_str(), (head_width as i32 / 2, 24), title))?;
        let dot = RUN_COLORS[0].mix(0.7).filled();
        let line = RUN_COLORS[1].stroke_width(2);
        macro_rules! draw {
            ($x_range:expr, $fmt:expr) => {{
                let mut c = ChartBuilder::on(&area).margin(20).x_label_area_size(48).y_label_area_size(64).build_cartesian_2d($x_range, y_lo..y_hi)?;
                c.configure_mesh()
                    .x_desc(chart.x_label.as_str())
                    .y_desc(chart.y_label.as_str())
                    .x_label_formatter($fmt)
                    .label_style((FONT, 15))
                    .axis_desc_style((FONT, 17))
                    .light_line_style(RGBColor(235, 235, 235))
                    .bold_line_style(RGBColor(215, 215, 215))
                    .draw()?;
                c.draw_series(points.iter().map(|&p| Circle::new(p, 5, dot)))?;
                c.draw_series(LineSeries::new(means.iter().copied(), line))?;
            }};
        }
        if chart.log_x {
            let (lo, hi) = if x_max > x_min { (x_min / (x_max / x_min).powf(0.05), x_max * (x_max / x_min).powf(0.05)) } else { (x_min / 2.0, x_max * 2.0) };
            draw!((lo..hi).log_scale(), &|x: &f64| format!("{x:.0e}"));
        } else {
            let (lo, hi) = padded(xs.iter().copied());
            draw!(lo..hi, &|x: &f64| {
                let text = format!("{x:.4}");
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            });
        }
        Ok(())
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Panel {
    Loss,
    Accuracy,
}

/// A split's value in a record for a panel (accuracy in percent), when it has one.
type SplitValue = fn(&EpochRecord, Panel) -> Option<f64>;

/// The series of each split: its name and value.
const SPLITS: [(&str, SplitValue); 3] = [
    ("train", |r, p| if p == Panel::Loss { r.train_loss } else { r.train_acc.map(|a| 100.0 * a) }),
    ("validation", |r, p| if p == Panel::Loss { r.val_loss } else { r.val_acc.map(|a| 100.0 * a) }),
    ("test", |r, p| if p == Panel::Loss { r.test_loss } else { r.test_acc.map(|a| 100.0 * a) }),
];

/// Where the learning rate changes in a run: `(epoch, new lr)` for each epoch whose rate differs
/// from the previous epoch's.
pub fn lr_changes(records: &[EpochRecord]) -> Vec<(usize, f64)> {
    records.windows(2).filter(|w| w[0].lr != w[1].lr).map(|w| (w[1].epoch, w[1].lr)).collect()
}

/// A value range padded by 5 % on each side (and widened when flat).
/// Decimals that tell apart the ~10 ticks of an axis from `lo` to `hi` (one more than the
/// span's order of magnitude needs), 0 to 6.
fn tick_decimals(lo: f64, hi: f64) -> usize {
    let span = hi - lo;
    if !(span > 0.0) || !span.is_finite() {
        return 2;
    }
    (1.0 - span.log10()).ceil().clamp(0.0, 6.0) as usize
}

fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.05 * lo.abs().max(1.0) };
    (lo - pad, hi + pad)
}

fn curves_panel(area: &DrawingArea<TextBackend<'_>, Shift>, runs: &[RunCurves], panel: Panel) -> DrawResult {
    let several = runs.len() > 1;
    let series = |r: &RunCurves, split: usize| -> Vec<(f64, f64)> {
        r.records.iter().filter_map(|rec| SPLITS[split].1(rec, panel).map(|v| (rec.epoch as f64, v))).collect()
    };
    let all = runs.iter().flat_map(|r| (0..SPLITS.len()).flat_map(move |s| series(r, s)));
    let (mut y_lo, mut y_hi) = padded(all.clone().map(|(_, y)| y));
    if panel == Panel::Accuracy {
        (y_lo, y_hi) = (y_lo.max(0.0), y_hi.min(100.0));
    }
    let last = all.clone().map(|(x, _)| x).fold(1.0, f64::max);
    let first = all.map(|(x, _)| x).fold(last, f64::min);
    let (x_lo, x_hi) = (first - 0.5, last + 0.5);

    let (title, y_desc) = match panel {
        Panel::Loss => ("Loss", "cross-entropy"),
        Panel::Accuracy => ("Accuracy", "accuracy (%)"),
    };
    // The title in a band of its own, so the learning-rate labels above the plot stay clear of it.
    let (head, area) = area.split_vertically(40);
    let (head_width, _) = head.dim_in_pixel();
    head.draw(&Text::new(title, (head_width as i32 / 2, 26), TextStyle::from((FONT, 24).into_font().style(FontStyle::Bold)).pos(Pos::new(HPos::Center, VPos::Center))))?;
    let area = &area;
    let mut chart = ChartBuilder::on(area)
        .margin(16)
        .margin_top(24)
        .x_label_area_size(44)
        .y_label_area_size(78)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels(12)
        .x_label_formatter(&|x| if (x - x.round()).abs() < 1e-6 { format!("{x:.0}") } else { String::new() })
        .y_label_formatter(&|y| format!("{y:.*}", tick_decimals(y_lo, y_hi)))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;

    // Learning-rate changes: a dashed line at each epoch where a run's rate changes, labelled
    // with the new rate(s) above the plot, in the run's colour (grey for one run, or a mix).
    let mut marks: Vec<(usize, Vec<f64>, RGBColor)> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let color = if several { RUN_COLORS[i % RUN_COLORS.len()] } else { GREY };
        for (epoch, lr) in lr_changes(&run.records) {
            match marks.iter_mut().find(|m| m.0 == epoch) {
                Some((_, lrs, mark_color)) => {
                    // Runs from PyTorch and from here may differ in the last bits of a rate.
                    if !lrs.iter().any(|&l| (l - lr).abs() <= 1e-9 * lr.abs()) {
                        lrs.push(lr);
                    }
                    if *mark_color != color {
                        *mark_color = GREY;
                    }
                }
                None => marks.push((epoch, vec![lr], color)),
            }
        }
    }
    let (base_x, base_y) = area.get_base_pixel();
    for (epoch, lrs, color) in &marks {
        let x = *epoch as f64 - 0.5;
        chart.draw_series(DashedLineSeries::new([(x, y_lo), (x, y_hi)], 6, 4, color.mix(0.8).stroke_width(1)))?;
        let (px, py) = chart.backend_coord(&(x, y_hi));
        let text = format!("lr {}", lrs.iter().map(|lr| format!("{lr:.0e}")).collect::<Vec<_>>().join(", "));
        let style = TextStyle::from((FONT, 14).into_font()).color(color).pos(Pos::new(HPos::Center, VPos::Bottom));
        area.draw(&Text::new(text, (px - base_x, py - base_y - 4), style))?;
    }

    // The legend goes in the corner its box covers the fewest curve points in (curves sampled
    // along their segments), in plot fractions.
    let (plot_w, plot_h) = chart.plotting_area().dim_in_pixel();
    let mut fractions = Vec::new();
    let mut rows = 0usize;
    let mut widest = 0usize;
    for run in runs {
        for (s, (split, _)) in SPLITS.iter().enumerate() {
            let points = series(run, s);
            if points.is_empty() {
                continue;
            }
            rows += 1;
            widest = widest.max(if several { run.label.chars().count() + 1 + split.len() } else { split.len() });
            let at = |(x, y): (f64, f64)| ((x - x_lo) / (x_hi - x_lo), (y - y_lo) / (y_hi - y_lo));
            fractions.push(at(points[0]));
            for w in points.windows(2) {
                for k in 1..=8 {
                    let t = k as f64 / 8.0;
                    fractions.push(at((w[0].0 + t * (w[1].0 - w[0].0), w[0].1 + t * (w[1].1 - w[0].1))));
                }
            }
        }
    }
    // About 8 px a character of the 15 px font, the 24 px key and margins; 20 px a row.
    let legend = ((widest * 8 + 50) as f64 / plot_w.max(1) as f64, (rows * 20 + 12) as f64 / plot_h.max(1) as f64);
    let corner = legend_corner(&fractions, legend);

    for (i, run) in runs.iter().enumerate() {
        for (s, (split, _)) in SPLITS.iter().enumerate() {
            let points = series(run, s);
            if points.is_empty() {
                continue;
            }
            let color = if several { RUN_COLORS[i % RUN_COLORS.len()] } else { SPLIT_COLORS[s] };
            let label = if several { format!("{} {split}", run.label) } else { split.to_string() };
            let style = color.stroke_width(2);
            if points.len() == 1 && s < 2 {
                // A line of one point draws nothing (a one-epoch run): mark the point.
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            }
            match s {
                0 => chart
                    .draw_series(LineSeries::new(points, style))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style)),
                1 => chart
                    .draw_series(DashedLineSeries::new(points, 8, 5, style))?
                    .label(label)
                    .legend(move |(x, y)| {
                        EmptyElement::at((x, y)) + PathElement::new([(0, 0), (9, 0)], style) + PathElement::new([(15, 0), (24, 0)], style)
                    }),
                _ => {
                    chart.draw_series(LineSeries::new(points.clone(), color.mix(0.6).stroke_width(1)))?;
                    chart
                        .draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled())))?
                        .label(label)
                        .legend(move |(x, y)| {
                            EmptyElement::at((x, y)) + PathElement::new([(0, 0), (24, 0)], color.stroke_width(1)) + Circle::new((12, 0), 4, color.filled())
                        })
                }
            };
        }
    }
    chart
        .configure_series_labels()
        .position(corner)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()?;
    Ok(())
}

/// The corner of the plot whose legend box (`size`: width and height as fractions of the plot)
/// holds the fewest of `points` (x and y as fractions of the plot, y up): upper right, upper
/// left, lower right, lower left, the first of those on a tie, so an empty corner is taken.
fn legend_corner(points: &[(f64, f64)], size: (f64, f64)) -> SeriesLabelPosition {
    // A margin of 2 % around the box, as the legend sits a little inside the corner.
    let (w, h) = (size.0 + 0.02, size.1 + 0.02);
    let corners = [
        (SeriesLabelPosition::UpperRight, 1.0 - w, 1.0, 1.0 - h, 1.0),
        (SeriesLabelPosition::UpperLeft, 0.0, w, 1.0 - h, 1.0),
        (SeriesLabelPosition::LowerRight, 1.0 - w, 1.0, 0.0, h),
        (SeriesLabelPosition::LowerLeft, 0.0, w, 0.0, h),
    ];
    let covered = |&(_, x0, x1, y0, y1): &(SeriesLabelPosition, f64, f64, f64, f64)| {
        points.iter().filter(|&&(x, y)| (x0..=x1).contains(&x) && (y0..=y1).contains(&y)).count()
    };
    let best = corners.iter().min_by_key(|c| covered(c)).expect("four corners");
    best.0.clone()
}

/// Draws a confusion matrix to `path` ([`CONFUSION_SIZE`]): `matrix[t][p]` counts the images of
/// true class `t` predicted as class `p`; `classes` names the rows and columns. Each cell shows
/// its count, shaded by the square root of its share of the row; the right column gives each
/// class's accuracy (the diagonal over the row total).
///
/// # Errors
/// [`Error::Chart`] when `matrix` is not square with one row per class, or drawing fails;
/// [`Error::Io`] when the file cannot be written.
pub fn confusion_matrix_png(path: &Path, matrix: &[Vec<u64>], classes: &[String]) -> Result<()> {
    let k = classes.len();
    if k == 0 || matrix.len() != k || matrix.iter().any(|row| row.len() != k) {
        let shape = format!("{} rows of lengths {:?}", matrix.len(), matrix.iter().map(Vec::len).collect::<Vec<_>>());
        return Err(Error::Chart {
            path: path.to_path_buf(),
            reason: format!("the confusion matrix must be {k} x {k} (one row and column per class), got {shape}"),
        });
    }
    render(path, CONFUSION_SIZE, |root| {
        let (width, height) = CONFUSION_SIZE;
        let (left, top, right, bottom) = (130i32, 70i32, 110i32, 100i32);
        let cell = ((width as i32 - left - right) / k as i32).min((height as i32 - top - bottom) / k as i32).max(1);
        let side = cell * k as i32;
        let font = (cell as f64 * 0.32).clamp(8.0, 16.0);
        let centered = |size: f64| TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Center));

        root.draw(&Text::new(
            "Confusion matrix",
            (left + side / 2, 24),
            TextStyle::from((FONT, 24).into_font().style(FontStyle::Bold)).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        let total: u64 = matrix.iter().flatten().sum();
        let correct: u64 = (0..k).map(|i| matrix[i][i]).sum();
        let overall = if total == 0 { 0.0 } else { 100.0 * correct as f64 / total as f64 };
        root.draw(&Text::new(format!("{total} images, accuracy {overall:.2} %"), (left + side / 2, 50), centered(15.0)))?;

        for (t, row) in matrix.iter().enumerate() {
            let row_total: u64 = row.iter().sum();
            let y = top + t as i32 * cell;
            for (p, &count) in row.iter().enumerate() {
                let share = if row_total == 0 { 0.0 } else { count as f64 / row_total as f64 };
                let x = left + p as i32 * cell;
                // White to a deep blue by the square root of the share of the row, so that
                // small confusions show.
                let depth = share.sqrt();
                let shade = |lo: f64, hi: f64| (lo + (hi - lo) * depth).round() as u8;
                let fill = RGBColor(shade(255.0, 8.0), shade(255.0, 48.0), shade(255.0, 107.0));
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], fill.filled()))?;
                if cell >= 22 {
                    let ink = if depth > 0.5 { WHITE } else { BLACK };
                    root.draw(&Text::new(count.to_string(), (x + cell / 2, y + cell / 2), centered(font).color(&ink)))?;
                }
            }
            let acc = if row_total == 0 { "-".to_string() } else { format!("{:.1} %", 100.0 * row[t] as f64 / row_total as f64) };
            let mid = y + cell / 2;
            if cell >= 10 {
                let label = TextStyle::from((FONT, font.max(11.0)).into_font());
                root.draw(&Text::new(classes[t].clone(), (left - 8, mid), label.pos(Pos::new(HPos::Right, VPos::Center))))?;
                root.draw(&Text::new(acc, (left + side + 10, mid), label.pos(Pos::new(HPos::Left, VPos::Center))))?;
            }
        }
        for (p, name) in classes.iter().enumerate() {
            if cell >= 10 {
                let x = left + p as i32 * cell + cell / 2;
                let label = TextStyle::from((FONT, font.max(11.0)).into_font().transform(FontTransform::Rotate270));
                root.draw(&Text::new(name.clone(), (x, top + side + 8), label.pos(Pos::new(HPos::Right, VPos::Center))))?;
            }
        }
        root.draw(&Rectangle::new([(left, top), (left + side, top + side)], RGBColor(120, 120, 120).stroke_width(1)))?;
        root.draw(&Text::new("predicted class", (left + side / 2, height as i32 - 18), centered(17.0)))?;
        root.draw(&Text::new(
            "true class",
            (22, top + side / 2),
            TextStyle::from((FONT, 17).into_font().transform(FontTransform::Rotate270)).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        root.draw(&Text::new("class accuracy", (left + side + 10, top - 14), TextStyle::from((FONT, 14).into_font())))?;
        Ok(())
    })
}

/// Width and height of a reliability diagram in pixels.
pub const RELIABILITY_SIZE: (u32, u32) = (760, 820);

/// Draws a reliability diagram ([`RELIABILITY_SIZE`]), as Guo et al. (2017) draw them: for each
/// confidence bin `(lower, upper]` a bar up to the fraction right, the gap to the bin's mean
/// confidence shaded, the diagonal of perfect calibration, and below, the images per bin.
/// `bins` holds `(lower, upper, images, mean confidence, accuracy)`; `title` heads the chart.
///
/// # Errors
/// [`Error::Chart`] when there is no bin or drawing fails; [`Error::Io`] when the file cannot be
/// written.
pub fn reliability_png(path: &Path, title: &str, bins: &[(f64, f64, u64, f64, f64)]) -> Result<()> {
    if bins.is_empty() {
        return Err(Error::Chart { path: path.to_path_buf(), reason: "no bins to draw".to_string() });
    }
    render(path, RELIABILITY_SIZE, |root| {
        let (top, bottom) = root.split_vertically(RELIABILITY_SIZE.1 - 220);
        let mut chart = ChartBuilder::on(&top)
            .caption(title, (FONT, 22).into_font().style(FontStyle::Bold))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart.configure_mesh().x_desc("confidence").y_desc("accuracy").x_labels(11).y_labels(11).draw()?;
        for &(lo, hi, _, conf, acc) in bins.iter().filter(|b| b.2 > 0) {
            chart.draw_series(std::iter::once(Rectangle::new([(lo, 0.0), (hi, acc)], SPLIT_COLORS[0].mix(0.85).filled())))?;
            chart.draw_series(std::iter::once(Rectangle::new([(lo, 0.0), (hi, acc)], BLACK.stroke_width(1))))?;
            let (a, b) = if conf > acc { (acc, conf) } else { (conf, acc) };
            chart.draw_series(std::iter::once(Rectangle::new([(lo, a), (hi, b)], RUN_COLORS[3].mix(0.35).filled())))?;
        }
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], GREY.stroke_width(2)))?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREY.stroke_width(2)));
        chart
            .draw_series(std::iter::once(Rectangle::new([(2.0, 2.0), (2.0, 2.0)], SPLIT_COLORS[0].filled())))?
            .label("accuracy")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], SPLIT_COLORS[0].filled()));
        chart
            .draw_series(std::iter::once(Rectangle::new([(2.0, 2.0), (2.0, 2.0)], RUN_COLORS[3].mix(0.35).filled())))?
            .label("gap to the mean confidence")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], RUN_COLORS[3].mix(0.35).filled()));
        chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.9)).border_style(GREY).draw()?;

        let most = bins.iter().map(|b| b.2).max().unwrap_or(1).max(1) as f64;
        let mut counts = ChartBuilder::on(&bottom)
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..1f64, 0f64..most * 1.1)?;
        counts.configure_mesh().x_desc("confidence").y_desc("images").x_labels(11).y_labels(4).draw()?;
        counts.draw_series(bins.iter().map(|&(lo, hi, n, _, _)| Rectangle::new([(lo, 0.0), (hi, n as f64)], GREY.mix(0.6).filled())))?;
        Ok(())
    })
}

/// Width and height of the accuracy-against-severity chart in pixels.
pub const SEVERITY_SIZE: (u32, u32) = (900, 600);

/// Draws accuracy (%) against corruption severity (1 to 5), one line per corruption in `rows`
/// (`(name, fractions at severities 1..5)`), with the clean accuracy at severity 0 ([`SEVERITY_SIZE`]).
///
/// # Errors
/// [`Error::Chart`] when there is no row or drawing fails; [`Error::Io`] when the file cannot be
/// written.
pub fn severity_png(path: &Path, rows: &[(String, Vec<f64>)], clean: f64) -> Result<()> {
    if rows.is_empty() {
        return Err(Error::Chart { path: path.to_path_buf(), reason: "no corruption to draw".to_string() });
    }
    render(path, SEVERITY_SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Accuracy under corruption", (FONT, 22).into_font().style(FontStyle::Bold))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.2f64..5.2f64, 0f64..100f64)?;
        chart
            .configure_mesh()
            .x_desc("severity (0: clean)")
            .y_desc("accuracy (%)")
            .x_labels(6)
            .x_label_formatter(&|x| if (x - x.round()).abs() < 1e-6 { format!("{x:.0}") } else { String::new() })
            .draw()?;
        for (i, (name, acc)) in rows.iter().enumerate() {
            let color = RUN_COLORS[i % RUN_COLORS.len()];
            let points: Vec<(f64, f64)> =
                std::iter::once((0.0, 100.0 * clean)).chain(acc.iter().enumerate().map(|(s, a)| ((s + 1) as f64, 100.0 * a))).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        chart.configure_series_labels().position(SeriesLabelPosition::LowerLeft).background_style(WHITE.mix(0.9)).border_style(GREY).draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, lr: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            lr,
            train_loss: Some(1.0),
            train_acc: Some(0.5),
            val_loss: None,
            val_acc: None,
            test_loss: None,
            test_acc: None,
            test_weights_epoch: None,
            seconds: 1.0,
            images_per_sec: 1.0,
            device: "cpu".into(),
        }
    }

    #[test]
    fn labels_name_files_by_their_name_and_runs_by_their_folder() {
        let p = |s: &str| PathBuf::from(s);
        let files = [p("runs/a/pytorch.metrics.jsonl"), p("runs/a/metrics.jsonl"), p("runs/b/other.jsonl")];
        assert_eq!(legend_labels(&files, &[]), ["pytorch.metrics.jsonl", "a", "other.jsonl"]);
        // Shared names fall back to paths: two runs named x, two files named m.jsonl.
        let files = [p("runs/1/x/metrics.jsonl"), p("runs/2/x/metrics.jsonl"), p("a/m.jsonl"), p("b/m.jsonl")];
        assert_eq!(legend_labels(&files, &[]), ["runs/1/x", "runs/2/x", "a/m.jsonl", "b/m.jsonl"]);
        let given = ["PyTorch".to_string(), "tch".to_string()];
        assert_eq!(legend_labels(&files[..2], &given), given);
    }

    #[test]
    fn the_legend_takes_the_corner_the_curves_leave_free() {
        let corner = |points: &[(f64, f64)]| format!("{:?}", legend_corner(points, (0.3, 0.2)));
        // A falling loss curve leaves the upper right free.
        let falling: Vec<_> = (0..=20).map(|i| (i as f64 / 20.0, 0.9 - 0.8 * (i as f64 / 20.0).sqrt())).collect();
        assert_eq!(corner(&falling), "UpperRight");
        // A rising accuracy curve that ends high: the upper right is taken, the upper left free.
        let rising: Vec<_> = (0..=20).map(|i| (i as f64 / 20.0, 0.1 + 0.85 * (i as f64 / 20.0).sqrt())).collect();
        assert_eq!(corner(&rising), "UpperLeft");
        // A curve along the top from the left and one rising late on the right: the lower right.
        let mut top_and_late: Vec<_> = (0..=20).map(|i| (i as f64 / 20.0, 0.9)).collect();
        top_and_late.extend((0..=20).map(|i| (i as f64 / 20.0, if i < 10 { 0.05 } else { 0.5 })));
        assert_eq!(corner(&top_and_late), "LowerRight");
        // Flat curves along the top and the bottom: no corner is free, so the one with the fewest
        // points is taken (here the upper left, where the top curve starts late).
        let mut both: Vec<_> = (0..=20).map(|i| (i as f64 / 20.0, 0.95)).collect();
        both.extend((0..=20).map(|i| (i as f64 / 20.0, 0.05)));
        both.retain(|&(x, y)| !(y > 0.5 && x < 0.3));
        assert_eq!(corner(&both), "UpperLeft");
    }

    #[test]
    fn one_label_per_run() {
        let err = plot_labelled(&[PathBuf::from("a"), PathBuf::from("b")], &["x".to_string()], None).unwrap_err().to_string();
        assert!(err.contains("1 labels for 2 runs"), "{err}");
    }

    #[test]
    fn scatter_charts_draw_on_linear_and_log_axes_and_refuse_nothing_to_draw() {
        let dir = tempfile::tempdir().unwrap();
        let mut chart = Scatter {
            title: "t".into(),
            x_label: "lr".into(),
            y_label: "acc".into(),
            log_x: true,
            points: vec![(1e-3, 50.0), (1e-3, 52.0), (1e-2, 60.0)],
        };
        let path = dir.path().join("s.png");
        scatter_png(&path, &chart).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!((info.width, info.height), SCATTER_SIZE);
        chart.log_x = false;
        scatter_png(&path, &chart).unwrap();
        chart.points.push((0.0, 1.0));
        chart.log_x = true;
        assert!(scatter_png(&path, &chart).unwrap_err().to_string().contains("positive"));
        chart.points.clear();
        assert!(scatter_png(&path, &chart).unwrap_err().to_string().contains("no points"));
    }

    #[test]
    fn lr_changes_are_the_epochs_with_a_new_rate() {
        let records: Vec<_> = (1..=6).map(|e| record(e, if e <= 2 { 1e-3 } else if e <= 4 { 1e-4 } else { 1e-5 })).collect();
        assert_eq!(lr_changes(&records), [(3, 1e-4), (5, 1e-5)]);
        assert!(lr_changes(&records[..2]).is_empty());
    }

    #[test]
    fn tick_labels_tell_the_ticks_apart() {
        // A one-epoch run's loss axis (2.245 to 2.305) and accuracy axis (12 to 15), and 50 epochs'.
        assert_eq!(tick_decimals(2.245, 2.305), 3);
        assert_eq!(tick_decimals(11.8, 14.9), 1);
        assert_eq!(tick_decimals(10.0, 60.0), 0);
        assert_eq!(tick_decimals(1.0, 1.0), 2);
    }

    #[test]
        fn padded_ranges() {
        assert_eq!(padded([1.0, 3.0].into_iter()), (0.9, 3.1));
        assert_eq!(padded([2.0, f64::NAN].into_iter()), (1.9, 2.1));
        assert_eq!(padded(std::iter::empty()), (0.0, 1.0));
    }

    #[test]
    fn a_matrix_of_the_wrong_shape_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cm.png");
        let classes = vec!["a".to_string(), "b".to_string()];
        let err = confusion_matrix_png(&path, &[vec![1, 2], vec![3]], &classes).unwrap_err().to_string();
        assert!(err.contains("2 x 2") && err.contains("cm.png"), "{err}");
        assert!(!path.exists());
    }
}
