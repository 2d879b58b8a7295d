//! The `tch-cifar10` binary: parses the command line, sets up logging on stderr, calls one
//! library function per subcommand, prints results on stdout, and turns errors into a message
//! and exit status 1.

mod cli;

use std::{
    io::Write,
    process::ExitCode,
};

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command};
use tch_cifar10::{
    info,
    report::{self, chart, progress},
    Error, LogReporter, ProgressReporter, Reporter, TrainConfig,
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // libgomp read its wait settings when it was loaded, before `main`: set them and start again.
    let reexec = tch_cifar10::wait_policy::reexec();
    tch_cifar10::program::set_invoked_as(std::env::args_os().next());
    // Before anything can ask libtorch about CUDA: it caches the first answer.
    if let Err(e) = tch_cifar10::cuda::load_cuda_library() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let level = match (cli.verbose, cli.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v > 1 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)))
        .with_writer(progress::LogWriter)
        .with_ansi(progress::stderr_terminal().colour)
        .with_target(false)
        .init();
    if let Err(e) = reexec {
        tracing::warn!("could not execute itself again with GOMP_SPINCOUNT set ({e}): libtorch's threads spin as long as libgomp's default");
    }
    if let Some(why) = tch_cifar10::wait_policy::in_force().ignored {
        tracing::warn!("{why}");
    }
    match run(cli.command, cli.quiet > 0) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<StdoutError>().is_some() => {
            let StdoutError(cause) = e.downcast_ref::<StdoutError>().expect("matched");
            if cause.kind() == std::io::ErrorKind::BrokenPipe {
                // The reader has gone (`| head`): stop quietly, as Unix tools do.
                ExitCode::SUCCESS
            } else {
                eprintln!("error: cannot write the results to standard output: {cause}");
                ExitCode::FAILURE
            }
        }
        Err(e) if matches!(e.downcast_ref::<Error>(), Some(Error::Interrupted { .. } | Error::SweepInterrupted { .. })) => {
            eprintln!("{}", report::escape::escape_control_lines(&e.to_string()));
            ExitCode::from(tch_cifar10::signals::INTERRUPTED_STATUS)
        }
        Err(e) => {
            eprintln!("error: {}", report::escape::escape_control_lines(&format!("{e:#}"))); // names from files
            ExitCode::FAILURE
        }
    }
}

/// A failed write to standard output: a closed pipe (`| head`), a full disk.
#[derive(Debug)]
struct StdoutError(std::io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "standard output: {}", self.0)
    }
}

impl std::error::Error for StdoutError {}

/// Writes `text` to standard output and flushes it, so that a closed pipe or a full disk is
/// seen here, as a [`StdoutError`], instead of panicking in `print!`.
fn emit(text: impl std::fmt::Display) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{text}").and_then(|()| stdout.flush()).map_err(|e| anyhow::Error::new(StdoutError(e)))
}

/// Bars on a terminal unless --quiet; plain log lines otherwise.
fn reporter_for(quiet: bool) -> Box<dyn Reporter> {
    if progress::wanted(quiet) { Box::new(ProgressReporter::new()) } else { Box::new(LogReporter) }
}

/// Prints a finished (or failed) `train`/`finetune` run: results on stdout.
fn finish_train(run: tch_cifar10::Result<tch_cifar10::TrainRun>, quiet: bool) -> anyhow::Result<()> {
    let run = run.map_err(|e| match e {
        e @ Error::Interrupted { .. } => anyhow::Error::new(e),
        e @ (Error::Download { .. } | Error::Checksum { .. } | Error::BadArchive { .. } | Error::IncompleteData { .. }) => {
            anyhow::Error::new(e).context("download failed")
        }
        e => anyhow::Error::new(e).context("training failed"),
    })?;
    emit(report::result_table(&run.summary))?;
    if !quiet {
        emit(report::run_table(&run.summary, run.run_dir.path(), &run.artifacts))?;
    }
    Ok(())
}

fn run(command: Command, quiet: bool) -> anyhow::Result<()> {
    match command {
        Command::Finetune(args) => {
            anyhow::ensure!(
                args.train.resume.is_none(),
                "finetune starts a run: continue one with `{}`",
                tch_cifar10::program::command(&["train", "--resume", "DIR"])
            );
            let stop = tch_cifar10::signals::install();
            let extras = args.train.extras(quiet)?;
            let run = tch_cifar10::run_train(&TrainConfig::from(args), &extras, reporter_for(quiet).as_mut(), Some(stop));
            finish_train(run, quiet)?;
        }
        Command::Train(args) => {
            let stop = tch_cifar10::signals::install();
            let mut reporter = reporter_for(quiet);
            let run = match args.resume.clone() {
                Some(dir) => {
                    let opts = tch_cifar10::ResumeOptions {
                        device: args.device,
                        threads: args.threads,
                        data_dir: args.data_dir.clone(),
                        kernels: args.kernels,
                        cuda_graphs: args.cuda_graphs,
                        deterministic: args.deterministic,
                        epochs: args.epochs,
                    };
                    tch_cifar10::resume_train(&dir, &opts, reporter.as_mut(), Some(stop))
                }
                None => {
                    let extras = args.extras(quiet)?;
                    tch_cifar10::run_train(&TrainConfig::from(args), &extras, reporter.as_mut(), Some(stop))
                }
            };
            finish_train(run, quiet)?;
        }
        Command::Plot(args) => {
            let out = chart::plot_labelled(&args.runs, &args.labels, args.out.as_deref()).context("plot failed")?;
            emit(format_args!("{}\n", out.display()))?;
        }
        Command::Download(args) => {
            let dir = tch_cifar10::run_download(&args.source.options(&args.data_dir, quiet)).context("download failed")?;
            emit(format_args!("CIFAR-10 is ready in {}\n", dir.display()))?;
        }
        Command::Eval(args) => {
            let opts = tch_cifar10::eval::EvalOptions { progress: progress::wanted(quiet), ..(&args).into() };
            let report = tch_cifar10::eval::run_eval(&opts).context("evaluation failed")?;
            if let Some(png) = &args.confusion_png {
                chart::confusion_matrix_png(png, &report.confusion.rows(), &report.classes).context("confusion matrix")?;
                tracing::info!("confusion matrix drawn in {}", png.display());
            }
            if let (Some(png), Some(rows)) = (&args.robustness_png, &report.corruptions) {
                let rows: Vec<_> = rows.iter().map(|r| (r.corruption.clone(), r.accuracy.clone())).collect();
                chart::severity_png(png, &rows, report.accuracy).context("robustness chart")?;
                tracing::info!("accuracy against severity drawn in {}", png.display());
            }
            if let Some(png) = &args.reliability_png {
                let bins: Vec<_> = report.calibration.bins.iter().map(|b| (b.lower, b.upper, b.images, b.confidence, b.accuracy)).collect();
                let title = format!("Reliability diagram (ECE {:.2} %)", 100.0 * report.calibration.ece);
                chart::reliability_png(png, &title, &bins).context("reliability diagram")?;
                tracing::info!("reliability diagram drawn in {}", png.display());
            }
            if args.json {
                emit(format_args!("{}\n", serde_json::to_string_pretty(&report)?))?;
            } else {
                emit(&report)?;
            }
        }
        Command::Predict(args) => {
            let predictions = tch_cifar10::predict::run_predict(&(&args).into()).context("prediction failed")?;
            if args.json {
                emit(format_args!("{}\n", serde_json::to_string_pretty(&predictions)?))?;
            } else {
                for p in &predictions {
                    emit(p)?;
                }
            }
        }
        Command::Calibrate(args) => {
            let report = tch_cifar10::calibrate::run_calibrate(&(&args).into()).context("calibration failed")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
        }
        Command::Export(args) => {
            let exported = tch_cifar10::export::run_export(&(&args).into()).context("export failed")?;
            emit(format_args!("{}\n", exported.out.display()))?;
        }
        Command::Sweep(args) if args.run_trial.is_some() => {
            let (Some(position), Some(dir)) = (args.run_trial, args.train.out.as_deref()) else {
                anyhow::bail!("--run-trial N needs --out DIR, the sweep's folder");
            };
            tch_cifar10::sweep::slurm::run_trial(dir, position, args.train.threads, args.train.device).context("sweep trial failed")?;
        }
        Command::Sweep(args) => {
            let stop = tch_cifar10::signals::install();
            let outcome = tch_cifar10::sweep::run(&args.request(quiet)?, Some(stop)).context("sweep failed")?;
            emit(&outcome.report)?;
            outcome.status()?;
        }
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut cmd, "tch-cifar10", &mut script);
            emit(String::from_utf8_lossy(&script))?;
        }
        Command::Man => {
            // The program's page, then one page per subcommand with its flags (`man -l -` reads them all).
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                // clap names are `&'static str` without its `string` feature; this runs once and exits.
                let name: &'static str = Box::leak(format!("tch-cifar10-{}", sub.get_name()).into_boxed_str());
                clap_mangen::Man::new(sub.clone().name(name)).render(&mut out)?;
            }
            emit(String::from_utf8_lossy(&out))?;
        }
        Command::Info(args) => {
            let info = info::info();
            if args.json {
                emit(format_args!("{}\n", serde_json::to_string_pretty(&info)?))?;
            } else {
                emit(format_args!("{info}\n"))?;
            }
        }
    }
    Ok(())
}
