//! TensorBoard event files (`train --tensorboard`, `sweep --tensorboard`): what PyTorch's
//! `torch.utils.tensorboard.SummaryWriter` writes, so `tensorboard --logdir runs` shows our
//! runs beside PyTorch's.
//!
//! The file is TensorFlow's record format (per record: the length as u64 little-endian, its
//! masked CRC-32C, the bytes of an `Event` protocol buffer, their masked CRC-32C; TensorFlow's
//! `tsl/lib/io/record_writer.cc`), the CRC from the `crc` crate and the protocol buffers
//! encoded by `prost`, from message declarations below that copy the field numbers of
//! TensorFlow's `event.proto`, `summary.proto`, `tensor.proto` and TensorBoard's hparams
//! `plugin_data.proto` and `api.proto`. (The Rust TensorBoard writers were weighed and not
//! taken: `tensorboard-rs` panics on I/O errors, leaves `add_hparams` unimplemented and pulls in
//! `protobuf` 2 and `image` 0.23; `tboard` needs `protoc` installed to build; `tfrecord`'s build
//! script always compiles an HTTP client, TLS and `prost-build`, 55 crates, for an optional code
//! generator. None has the HParams messages.)
//!
//! Each epoch gives scalars (`SummaryWriter.add_scalar`'s float values) at step = epoch:
//!
//! | tag | value |
//! | --- | --- |
//! | `Loss/train`, `Accuracy/train` | the epoch's mean training loss and training accuracy |
//! | `Loss/val`, `Accuracy/val` | after the epoch, with `--val-size` |
//! | `Loss/test`, `Accuracy/test` | after the epoch, when the test set is evaluated then |
//! | `LearningRate` | the epoch's learning rate |
//!
//! Accuracies are fractions in `[0, 1]`, as in `metrics.jsonl`. The run's hyperparameters go to
//! TensorBoard's HParams view as PyTorch's `SummaryWriter.add_hparams` writes them: summaries
//! of the `hparams` plugin (`_hparams_/session_start_info` at the start, `.../session_end_info`
//! at the end; a sweep adds `_hparams_/experiment` with the swept parameters and the metrics,
//! [`write_experiment`]), whose content is an `HParamsPluginData` message. Runs of one setting
//! with different seeds share a session group, so TensorBoard averages over seeds.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use prost::Message;

use proto::{event::What, summary, Event, Summary, SummaryMetadata, TensorProto, TensorShapeProto};

use super::{EpochMetrics, EvalMetrics, Reporter, TrainStart};
use crate::{
    config::TrainConfig,
    error::{Error, Result},
};

/// Scalar tags, as `SummaryWriter.add_scalar` users name them.
pub mod tags {
    /// Mean training loss of the epoch.
    pub const TRAIN_LOSS: &str = "Loss/train";
    /// Training accuracy of the epoch (a fraction).
    pub const TRAIN_ACC: &str = "Accuracy/train";
    /// Validation loss after the epoch.
    pub const VAL_LOSS: &str = "Loss/val";
    /// Validation accuracy after the epoch.
    pub const VAL_ACC: &str = "Accuracy/val";
    /// Test loss after the epoch.
    pub const TEST_LOSS: &str = "Loss/test";
    /// Test accuracy after the epoch.
    pub const TEST_ACC: &str = "Accuracy/test";
    /// The epoch's learning rate.
    pub const LEARNING_RATE: &str = "LearningRate";
    /// The metrics an HParams table shows, with `api.proto`'s `DatasetType` of each
    /// (1 training, 2 validation, 0 unknown: there is no test kind).
    pub const METRICS: [(&str, i32); 6] = [(VAL_ACC, 2), (VAL_LOSS, 2), (TEST_ACC, 0), (TEST_LOSS, 0), (TRAIN_ACC, 1), (TRAIN_LOSS, 1)];
}

/// The HParams plugin's name and the tags of its summaries (TensorBoard's
/// `plugins/hparams/metadata.py`).
const HPARAMS_PLUGIN: &str = "hparams";
const EXPERIMENT_TAG: &str = "_hparams_/experiment";
const SESSION_START_TAG: &str = "_hparams_/session_start_info";
const SESSION_END_TAG: &str = "_hparams_/session_end_info";
/// `event.proto`'s `SessionLog.SessionStatus.START`.
const SESSION_LOG_START: i32 = 1;
/// `api.proto`'s `Status.STATUS_SUCCESS`.
const STATUS_SUCCESS: i32 = 1;

/// The messages written, declared for `prost` with the field numbers of TensorFlow's
/// `core/util/event.proto`, `core/framework/summary.proto`, `tensor.proto`, `tensor_shape.proto`
/// and TensorBoard's `plugins/hparams/plugin_data.proto` and `api.proto` (only the fields used;
/// enums as `int32`, which encode the same).
pub(crate) mod proto {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        #[prost(double, tag = "1")]
        pub wall_time: f64,
        #[prost(int64, tag = "2")]
        pub step: i64,
        #[prost(oneof = "event::What", tags = "3, 5, 7")]
        pub what: Option<event::What>,
    }

    pub mod event {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum What {
            #[prost(string, tag = "3")]
            FileVersion(String),
            #[prost(message, tag = "5")]
            Summary(super::Summary),
            #[prost(message, tag = "7")]
            SessionLog(super::SessionLog),
        }
    }

    /// `event.proto`'s `SessionLog` (only `status`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionLog {
        /// `SessionStatus`: 1 is `START`.
        #[prost(int32, tag = "1")]
        pub status: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        #[prost(message, repeated, tag = "1")]
        pub value: Vec<summary::Value>,
    }

    pub mod summary {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Value {
            #[prost(string, tag = "1")]
            pub tag: String,
            #[prost(message, optional, tag = "9")]
            pub metadata: Option<super::SummaryMetadata>,
            #[prost(oneof = "Kind", tags = "2, 8")]
            pub value: Option<Kind>,
        }

        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Kind {
            #[prost(float, tag = "2")]
            SimpleValue(f32),
            #[prost(message, tag = "8")]
            Tensor(super::TensorProto),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryMetadata {
        #[prost(message, optional, tag = "1")]
        pub plugin_data: Option<PluginData>,
        /// `DataClass`: 2 is `DATA_CLASS_TENSOR`.
        #[prost(int32, tag = "4")]
        pub data_class: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginData {
        #[prost(string, tag = "1")]
        pub plugin_name: String,
        #[prost(bytes = "vec", tag = "2")]
        pub content: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        /// `DataType`: 1 is `DT_FLOAT`.
        #[prost(int32, tag = "1")]
        pub dtype: i32,
        #[prost(message, optional, tag = "2")]
        pub tensor_shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "2")]
        pub dim: Vec<Dim>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dim {
        #[prost(int64, tag = "1")]
        pub size: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HParamsPluginData {
        #[prost(int32, tag = "1")]
        pub version: i32,
        #[prost(oneof = "Data", tags = "2, 3, 4")]
        pub data: Option<Data>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        #[prost(message, tag = "2")]
        Experiment(Experiment),
        #[prost(message, tag = "3")]
        SessionStartInfo(SessionStartInfo),
        #[prost(message, tag = "4")]
        SessionEndInfo(SessionEndInfo),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionStartInfo {
        #[prost(map = "string, message", tag = "1")]
        pub hparams: HashMap<String, prost_types::Value>,
        #[prost(string, tag = "4")]
        pub group_name: String,
        #[prost(double, tag = "5")]
        pub start_time_secs: f64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionEndInfo {
        #[prost(int32, tag = "1")]
        pub status: i32,
        #[prost(double, tag = "2")]
        pub end_time_secs: f64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Experiment {
        #[prost(string, tag = "1")]
        pub description: String,
        #[prost(double, tag = "3")]
        pub time_created_secs: f64,
        #[prost(message, repeated, tag = "4")]
        pub hparam_infos: Vec<HParamInfo>,
        #[prost(message, repeated, tag = "5")]
        pub metric_infos: Vec<MetricInfo>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HParamInfo {
        #[prost(string, tag = "1")]
        pub name: String,
        /// `DataType`: 3 is `DATA_TYPE_FLOAT64`.
        #[prost(int32, tag = "4")]
        pub r#type: i32,
        #[prost(oneof = "Domain", tags = "5, 6")]
        pub domain: Option<Domain>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Domain {
        #[prost(message, tag = "5")]
        Discrete(prost_types::ListValue),
        #[prost(message, tag = "6")]
        Interval(Interval),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Interval {
        #[prost(double, tag = "1")]
        pub min_value: f64,
        #[prost(double, tag = "2")]
        pub max_value: f64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricName {
        #[prost(string, tag = "1")]
        pub group: String,
        #[prost(string, tag = "2")]
        pub tag: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricInfo {
        #[prost(message, optional, tag = "1")]
        pub name: Option<MetricName>,
        /// `DatasetType`: 0 unknown, 1 training, 2 validation.
        #[prost(int32, tag = "5")]
        pub dataset_type: i32,
    }
}

/// `api.proto`'s `DataType.DATA_TYPE_FLOAT64`.
const DATA_TYPE_FLOAT64: i32 = 3;
/// `api.proto`'s `DataType.DATA_TYPE_STRING`.
const DATA_TYPE_STRING: i32 = 1;
/// `summary.proto`'s `DataClass.DATA_CLASS_TENSOR`.
const DATA_CLASS_TENSOR: i32 = 2;
/// `types.proto`'s `DataType.DT_FLOAT`.
const DT_FLOAT: i32 = 1;

/// TensorFlow's masked CRC-32C of a record's length or data (`tsl/lib/hash/crc32c.h`: the
/// Castagnoli CRC rotated right by 15 bits plus a constant).
fn masked_crc(bytes: &[u8]) -> u32 {
    const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    CASTAGNOLI.checksum(bytes).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends `event` as one record to `out`.
fn write_record(out: &mut impl Write, event: &Event) -> std::io::Result<()> {
    let data = event.encode_to_vec();
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc(&len).to_le_bytes())?;
    out.write_all(&data)?;
    out.write_all(&masked_crc(&data).to_le_bytes())
}

/// The events of a file of records, each checked against its CRCs.
///
/// # Errors
/// [`Error::Io`] naming `path`: unreadable, larger than `limit`, truncated, a bad checksum or a
/// record that does not decode.
pub(crate) fn read_events(path: &Path, limit: u64) -> Result<Vec<Event>> {
    let bytes = crate::safe_fs::read_regular(path, limit)?;
    let bad = |why: String| io_error(path, why);
    let mut rest = bytes.as_slice();
    let mut events = Vec::new();
    while !rest.is_empty() {
        let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>> {
            if rest.len() < n {
                return Err(bad(format!("truncated record after {} events", events.len())));
            }
            let (head, tail) = rest.split_at(n);
            *rest = tail;
            Ok(head.to_vec())
        };
        let len = take(&mut rest, 8)?;
        let crc = take(&mut rest, 4)?;
        if masked_crc(&len).to_le_bytes()[..] != crc[..] {
            return Err(bad(format!("length checksum mismatch in record {}", events.len() + 1)));
        }
        let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        let data = take(&mut rest, usize::try_from(n).unwrap_or(usize::MAX))?;
        let crc = take(&mut rest, 4)?;
        if masked_crc(&data).to_le_bytes()[..] != crc[..] {
            return Err(bad(format!("data checksum mismatch in record {}", events.len() + 1)));
        }
        events.push(Event::decode(data.as_slice()).map_err(|e| bad(format!("record {}: {e}", events.len() + 1)))?);
    }
    Ok(events)
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A summary value of the HParams plugin holding `data`. Like TensorBoard's own, it carries a
/// zero-length float tensor (`metadata.NULL_TENSOR`) so that readers list it as a tensor series.
fn hparams_value(tag: &str, data: proto::Data) -> summary::Value {
    let content = proto::HParamsPluginData { version: 0, data: Some(data) }.encode_to_vec();
    summary::Value {
        tag: tag.to_string(),
        metadata: Some(SummaryMetadata {
            plugin_data: Some(proto::PluginData { plugin_name: HPARAMS_PLUGIN.to_string(), content }),
            data_class: DATA_CLASS_TENSOR,
        }),
        value: Some(summary::Kind::Tensor(TensorProto {
            dtype: DT_FLOAT,
            tensor_shape: Some(TensorShapeProto { dim: vec![proto::Dim { size: 0 }] }),
        })),
    }
}

fn event(step: i64, what: What) -> Event {
    Event { wall_time: now_secs(), step, what: Some(what) }
}

fn io_error(path: &Path, why: String) -> Error {
    Error::Io { path: path.to_path_buf(), cause: std::io::Error::other(format!("TensorBoard event file: {why}")) }
}

/// An open event file.
struct EventFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventFile {
    /// Creates `dir/events.out.tfevents.<unix seconds>.tch-cifar10.<pid>.<n>` (the name
    /// TensorBoard looks for; one file per writer, as `SummaryWriter`) and writes the file
    /// version event that opens every event file.
    fn create(dir: &Path) -> Result<EventFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let name = format!("events.out.tfevents.{secs:010}.tch-cifar10.{}.{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = dir.join(name);
        let file = File::create(&path).map_err(Error::io(&path))?;
        let mut file = EventFile { path, out: BufWriter::new(file) };
        file.write(event(0, What::FileVersion(FILE_VERSION.to_string())))?;
        Ok(file)
    }

    /// Appends `e` and flushes, so TensorBoard sees each epoch as it ends.
    fn write(&mut self, e: Event) -> Result<()> {
        write_record(&mut self.out, &e).and_then(|()| self.out.flush()).map_err(Error::io(&self.path))
    }

    fn scalar(&mut self, tag: &str, step: usize, x: f64) -> Result<()> {
        let value = summary::Value { tag: tag.to_string(), metadata: None, value: Some(summary::Kind::SimpleValue(x as f32)) };
        self.write(event(step as i64, What::Summary(Summary { value: vec![value] })))
    }

    fn hparams(&mut self, tag: &str, data: proto::Data) -> Result<()> {
        self.write(event(0, What::Summary(Summary { value: vec![hparams_value(tag, data)] })))
    }
}

/// The first event of every event file.
const FILE_VERSION: &str = "brain.Event:2";

/// A hyperparameter's value in the HParams view: a number, or a name (`--optimizer adamw`).
#[derive(Clone, Debug, PartialEq)]
pub enum HValue {
    /// A number.
    Number(f64),
    /// A named value.
    Name(String),
}

impl HValue {
    fn proto(&self) -> prost_types::Value {
        prost_types::Value {
            kind: Some(match self {
                HValue::Number(x) => prost_types::value::Kind::NumberValue(*x),
                HValue::Name(s) => prost_types::value::Kind::StringValue(s.clone()),
            }),
        }
    }
}

impl std::fmt::Display for HValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HValue::Number(v) if v.fract() == 0.0 => write!(f, "{v:.0}"),
            HValue::Number(v) => write!(f, "{v:?}"),
            HValue::Name(s) => f.write_str(s),
        }
    }
}

/// A run's hyperparameters as the HParams view shows them, named as their flags: the
/// reference's, then the recipe's (optimizer, schedule, weight decay, label smoothing,
/// augmentation, warm-up), named values as their flag's value names.
pub fn run_hparams(cfg: &TrainConfig) -> Vec<(&'static str, HValue)> {
    let r = &cfg.recipe;
    let num = HValue::Number;
    vec![
        ("lr", num(cfg.learning_rate)),
        ("momentum", num(cfg.momentum)),
        ("batch-size", num(cfg.batch_size as f64)),
        ("step-size", num(cfg.step_size as f64)),
        ("gamma", num(cfg.gamma)),
        ("epochs", num(cfg.epochs as f64)),
        ("seed", num(cfg.seed as f64)),
        ("optimizer", HValue::Name(crate::config::value_name(&r.optimizer))),
        ("lr-schedule", HValue::Name(crate::config::value_name(&r.lr_schedule))),
        ("weight-decay", num(r.weight_decay())),
        ("label-smoothing", num(r.label_smoothing)),
        ("augment", HValue::Name(r.augment().name())),
        ("warmup-epochs", num(r.warmup_epochs as f64)),
    ]
}

/// The [`Reporter`] writing a run's event file in its run directory, when `cfg.tensorboard` is
/// set (otherwise it does nothing). A file that cannot be written is logged once as a warning
/// and training goes on: the run's own files are `metrics.jsonl` and `summary.json`.
pub struct TensorBoard {
    /// Where the file goes; `None` when TensorBoard output is off.
    dir: Option<PathBuf>,
    hparams: Vec<(&'static str, HValue)>,
    file: Option<EventFile>,
    failed: bool,
}

impl TensorBoard {
    /// A reporter for the run of `cfg` in `run_dir` (nothing is written before training starts).
    pub fn new(cfg: &TrainConfig, run_dir: &Path) -> TensorBoard {
        TensorBoard { dir: cfg.tensorboard.then(|| run_dir.to_path_buf()), hparams: run_hparams(cfg), file: None, failed: false }
    }

    /// The event file being written, once training has started.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    /// Runs `write` on the open file; the first error is logged and ends the output.
    fn with_file(&mut self, write: impl FnOnce(&mut EventFile) -> Result<()>) {
        if let Some(file) = self.file.as_mut() {
            if let Err(e) = write(file) {
                tracing::warn!("no more TensorBoard output for this run: {e}");
                (self.file, self.failed) = (None, true);
            }
        }
    }
}

impl Reporter for TensorBoard {
    fn train_start(&mut self, s: &TrainStart) {
        let Some(dir) = &self.dir else { return };
        if self.failed {
            return;
        }
        match EventFile::create(dir) {
            Ok(file) => self.file = Some(file),
            Err(e) => {
                tracing::warn!("no TensorBoard output for this run: {e}");
                self.failed = true;
                return;
            }
        }
        // A `SessionLog.START` opens each session, as TensorFlow's writers do: at step 0 for a
        // new run, and for a resumed one at its first epoch (what `SummaryWriter(purge_step=..)`
        // writes). TensorBoard takes every START after a run's first as a restart and drops the
        // earlier files' events from its step on: epochs written after the checkpoint the run
        // resumed from, which it trains again.
        let step = if s.first_epoch > 1 { s.first_epoch as i64 } else { 0 };
        let start = What::SessionLog(proto::SessionLog { status: SESSION_LOG_START });
        self.with_file(|f| f.write(event(step, start)));
        // Runs that differ only in their seed form one group, which TensorBoard averages.
        let group_name = self
            .hparams
            .iter()
            .filter(|(k, _)| *k != "seed")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let hparams: HashMap<String, prost_types::Value> = self
            .hparams
            .iter()
            .map(|(k, v)| (k.to_string(), v.proto()))
            .collect();
        let start = proto::SessionStartInfo { hparams, group_name, start_time_secs: now_secs() };
        self.with_file(|f| f.hparams(SESSION_START_TAG, proto::Data::SessionStartInfo(start)));
    }

    fn epoch_end(&mut self, m: &EpochMetrics) {
        self.with_file(|f| {
            f.scalar(tags::TRAIN_LOSS, m.epoch, m.train_loss)?;
            f.scalar(tags::TRAIN_ACC, m.epoch, m.train_acc)?;
            f.scalar(tags::LEARNING_RATE, m.epoch, m.lr)
        });
    }

    fn validated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.with_file(|f| {
            f.scalar(tags::VAL_LOSS, epoch, m.loss)?;
            f.scalar(tags::VAL_ACC, epoch, m.accuracy)
        });
    }

    fn evaluated(&mut self, epoch: usize, m: &EvalMetrics) {
        self.with_file(|f| {
            f.scalar(tags::TEST_LOSS, epoch, m.loss)?;
            f.scalar(tags::TEST_ACC, epoch, m.accuracy)
        });
    }

    fn train_end(&mut self) {
        let end = proto::SessionEndInfo { status: STATUS_SUCCESS, end_time_secs: now_secs() };
        self.with_file(|f| f.hparams(SESSION_END_TAG, proto::Data::SessionEndInfo(end)));
    }
}

/// The values a swept hyperparameter takes, for the HParams view's filters.
#[derive(Clone, Debug, PartialEq)]
pub enum Domain {
    /// Listed values.
    Discrete(Vec<f64>),
    /// Listed names (a parameter with named values).
    Names(Vec<String>),
    /// A range `[min, max]`.
    Interval(f64, f64),
}

/// The name of the sweep's experiment file in its folder (rewritten whole by each run of the
/// sweep, so a rerun does not add a second experiment).
pub const EXPERIMENT_FILE: &str = "events.out.tfevents.0000000000.tch-cifar10-sweep";

/// Writes `dir/`[`EXPERIMENT_FILE`]: the `_hparams_/experiment` summary naming the swept
/// `hparams` (names as in [`run_hparams`]) and the metrics ([`tags::METRICS`]), which makes
/// `tensorboard --logdir dir` show the sweep's trials (the runs `trials/<id>`) in its HParams
/// view with just those columns.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_experiment(dir: &Path, description: &str, hparams: &[(&str, Domain)]) -> Result<PathBuf> {
    let path = dir.join(EXPERIMENT_FILE);
    let hparam_infos = hparams
        .iter()
        .map(|(name, domain)| proto::HParamInfo {
            name: name.to_string(),
            r#type: if matches!(domain, Domain::Names(_)) { DATA_TYPE_STRING } else { DATA_TYPE_FLOAT64 },
            domain: Some(match domain {
                Domain::Discrete(values) => proto::Domain::Discrete(prost_types::ListValue {
                    values: values.iter().map(|v| HValue::Number(*v).proto()).collect(),
                }),
                Domain::Names(names) => proto::Domain::Discrete(prost_types::ListValue {
                    values: names.iter().map(|v| HValue::Name(v.clone()).proto()).collect(),
                }),
                Domain::Interval(lo, hi) => proto::Domain::Interval(proto::Interval { min_value: *lo, max_value: *hi }),
            }),
        })
        .collect();
    let metric_infos = tags::METRICS
        .iter()
        .map(|(tag, dataset_type)| proto::MetricInfo {
            name: Some(proto::MetricName { group: String::new(), tag: tag.to_string() }),
            dataset_type: *dataset_type,
        })
        .collect();
    let experiment = proto::Experiment { description: description.to_string(), time_created_secs: now_secs(), hparam_infos, metric_infos };
    let summary = Summary { value: vec![hparams_value(EXPERIMENT_TAG, proto::Data::Experiment(experiment))] };
    let mut bytes = Vec::new();
    for e in [event(0, What::FileVersion(FILE_VERSION.to_string())), event(0, What::Summary(summary))] {
        write_record(&mut bytes, &e).expect("writing to memory cannot fail");
    }
    crate::run_dir::write_atomic(&path, &bytes)?;
    Ok(path)
}

/// Reads an event file's scalars back as `(tag, step, value)`, checking every record's CRCs
/// (for tests and for `sweep` users who want the numbers without TensorBoard).
///
/// # Errors
/// [`Error::Io`] naming the file: unreadable, a bad checksum or a record that does not decode.
pub fn read_scalars(path: &Path) -> Result<Vec<(String, i64, f32)>> {
    let mut out = Vec::new();
    for e in read_events(path, crate::safe_fs::MAX_TEXT_FILE_BYTES)? {
        if let Some(What::Summary(s)) = e.what {
            for v in s.value {
                if let Some(summary::Kind::SimpleValue(x)) = v.value {
                    out.push((v.tag, e.step, x));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_file_holds_its_scalars_and_hparams_with_valid_crcs() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TrainConfig { tensorboard: true, seed: 3, ..TrainConfig::default() };
        let mut tb = TensorBoard::new(&cfg, dir.path());
        let start = TrainStart { first_epoch: 1, last_record: None, epochs: 2, steps_per_epoch: 1, batch_size: 1, train_images: 1, device: "cpu".into() };
        tb.train_start(&start);
        for epoch in 1..=2 {
            let m = EpochMetrics { epoch, lr: 0.01, train_loss: 2.0 / epoch as f64, train_acc: 0.25, seconds: 1.0, images_per_sec: 1.0, step_losses: vec![] };
            tb.epoch_end(&m);
            tb.validated(epoch, &EvalMetrics { loss: 1.5, accuracy: 0.5, per_class_accuracy: vec![], images: 2 });
        }
        tb.train_end();
        let path = tb.path().unwrap().to_path_buf();
        drop(tb);
        assert!(path.file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."));
        let scalars = read_scalars(&path).unwrap();
        assert!(scalars.contains(&("Loss/train".into(), 2, 1.0)), "{scalars:?}");
        assert!(scalars.contains(&("Accuracy/val".into(), 1, 0.5)), "{scalars:?}");
        assert_eq!(scalars.len(), 2 * 5);

        // The hparams summaries decode as TensorBoard's HParamsPluginData.
        let plugin: Vec<(String, proto::HParamsPluginData)> = read_events(&path, 1 << 20)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.what {
                Some(What::Summary(s)) => s.value.into_iter().find_map(|v| {
                    let data = v.metadata?.plugin_data?;
                    Some((v.tag, proto::HParamsPluginData::decode(data.content.as_slice()).unwrap()))
                }),
                _ => None,
            })
            .collect();
        assert_eq!(plugin.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), [SESSION_START_TAG, SESSION_END_TAG]);
        let Some(proto::Data::SessionStartInfo(start)) = &plugin[0].1.data else { panic!("{plugin:?}") };
        assert_eq!(start.hparams["seed"].kind, Some(prost_types::value::Kind::NumberValue(3.0)));
        assert!(start.group_name.contains("lr=0.001") && !start.group_name.contains("seed"), "{}", start.group_name);

        // A corrupted byte fails the CRC check.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(read_scalars(&path).unwrap_err().to_string().contains("checksum"));
    }

    #[test]
    fn off_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut tb = TensorBoard::new(&TrainConfig::default(), dir.path());
        tb.train_start(&TrainStart { first_epoch: 1, last_record: None, epochs: 1, steps_per_epoch: 1, batch_size: 1, train_images: 1, device: "cpu".into() });
        tb.train_end();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
