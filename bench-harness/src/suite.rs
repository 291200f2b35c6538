//! `strand-bench suite`: the machine's limits ([`crate::limits`]: fio and loopback) and the
//! standard workloads (each run through the in-process [`run`]) in one invocation, printed
//! as one table of values, limits, ratios and goals (median of `--runs`, with the min–max
//! spread) and written as JSON with every raw number, the date, the load average before and
//! after, the kernel and the git commit (issue #17, "How to measure").
//!
//! Invariants: a number that was not measured is shown as `n/a (why)` and is `null` in the
//! JSON, never zero or a guess; ratios and goal checks use medians; workload runs are
//! interleaved round by round (run 1 of every workload, then run 2, …) so a slow phase of
//! the machine does not land on one workload only.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{Args, Workload};
use crate::limits::{self, FioError, FioPlan};
use crate::node::{EmbeddedNode, NodeError};
use crate::run::{run, workload_from_args, BenchError};
use crate::stats::{Report, Spread};

/// Free space below which a full suite warns (the max-rate runs write several GB each).
const FREE_SPACE_WARN_BYTES: u64 = 16 << 30;

/// Issue #17 goal 1, fixed 100 MB/s with fsync=never: publish p99.9, publish max, e2e p99.
const FIXED_RATE_P999_MAX_US: f64 = 10_000.0;
const FIXED_RATE_MAX_MAX_US: f64 = 50_000.0;
const FIXED_RATE_E2E_P99_MAX_US: f64 = 5_000.0;
/// One small request in flight: at least half the rate of a bare loopback round trip
/// (`0.5 / rtt p50`), and publish p99 within 3 × the loopback round trip p99.
const SMALL_RATE_RATIO_MIN: f64 = 0.5;
const SMALL_P99_RATIO_MAX: f64 = 3.0;
/// Goal 4, page-cached catch-up: at least 90 % of the loopback sendfile limit.
const CATCHUP_RATIO_MIN: f64 = 0.9;
/// Goal 2: max-rate direct produce ≥ 0.9 × fio's O_DIRECT sequential write; node CPU per
/// GB ≤ 0.5 (direct) and ≤ 1.0 (buffered).
const MAX_RATE_RATIO_MIN: f64 = 0.9;
const MAX_DIRECT_CPU_S_PER_GB_MAX: f64 = 0.5;
const MAX_BUFFERED_CPU_S_PER_GB_MAX: f64 = 1.0;
/// Goal 5: fsync=always publish p99 ≤ 1.3 × fio's write+fdatasync p99.
const FSYNC_ALWAYS_P99_RATIO_MAX: f64 = 1.3;
/// Goal 5, group commit: 16 producers on one partition get ≥ 8 × the rate of one.
const GROUP_COMMIT_RATIO_MIN: f64 = 8.0;
/// Producers of the `fsync-always-16` workload.
const GROUP_COMMIT_PRODUCERS: u32 = 16;
/// Goal 6: every scale step within 20 % of the best step of its group.
const SCALE_RATIO_MIN: f64 = 0.8;
/// Goal 6's steps: partitions (with [`SCALE_PARTITIONS_PRODUCERS`] producers) and producer
/// connections (with [`SCALE_PRODUCERS_PARTITIONS`] partitions).
const SCALE_PARTITIONS_PRODUCERS: u32 = 4;
const SCALE_PRODUCERS_PARTITIONS: u32 = 16;

/// `strand-bench suite` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SuiteArgs {
    /// Runs of every limit and workload; the table shows the median and the min–max spread.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Short durations and small sizes (seconds in total): checks that the suite works, the
    /// numbers mean little.
    #[arg(long)]
    pub quick: bool,
    /// Directory for the fio files and the embedded node's data (must be on the disk under
    /// test, not tmpfs).
    #[arg(long, default_value = "target/bench-suite")]
    pub dir: PathBuf,
    /// Write every raw number, the table's rows and the machine context as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Path of the strand-node binary (default: next to strand-bench).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Run only these workloads (comma-separated): fixed-rate, max-direct, max-buffered,
    /// small-1inflight, catchup, catchup-cold, fsync-always, fsync-always-16, scale-p1, scale-p16, scale-p256, scale-c1,
    /// scale-c16, scale-c64. The limits are always measured.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Why the suite could not run (bad flags or an unusable directory); a failing workload run
/// is not one of these, it is reported in the table and the JSON.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("unknown workload {0:?} in --only (known: {known})", known = workload_names().join(", "))]
    UnknownWorkload(String),
    #[error("cannot use --dir {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("workload {name}: {source}")]
    Workload { name: &'static str, source: BenchError },
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    #[error("the limit measurements stopped: {0}")]
    Limits(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// One workload of the suite: its flags, built for full or `--quick` runs.
struct SuiteWorkload {
    name: &'static str,
    description: &'static str,
    args: fn(quick: bool) -> Args,
}

/// Flags common to every suite workload: 1 topic, 1 partition, 1 producer, embedded.
fn base(quick: bool, full_duration: f64, full_warmup: f64) -> Args {
    Args {
        embedded: true,
        topics: Some(1),
        partitions: Some(1),
        producers: Some(1),
        duration: Some(if quick { 1.0 } else { full_duration }),
        warmup: Some(if quick { 0.5 } else { full_warmup }),
        fsync: Some("never".into()),
        io_mode: Some("buffered".into()),
        quiet: true,
        ..Args::default()
    }
}

fn max_rate(quick: bool, io_mode: &str) -> Args {
    Args {
        consumers: Some(0),
        message_size: Some(1000),
        batch_size: Some(1 << 20),
        linger_ms: Some(1),
        rate: Some("max".into()),
        io_mode: Some(io_mode.into()),
        // Goal 2 asks for a sustained rate: ≥ 20 s and ≥ 4 GB.
        ..base(quick, 20.0, 2.0)
    }
}

/// One record per batch (`batch_size = message_size`), one request in flight, max rate.
fn one_in_flight(quick: bool, message_size: usize) -> Args {
    Args {
        consumers: Some(0),
        message_size: Some(message_size),
        batch_size: Some(message_size),
        linger_ms: Some(0),
        max_inflight: Some(1),
        rate: Some("max".into()),
        ..base(quick, 10.0, 2.0)
    }
}

/// Goal 6: max-rate produce, 1000 B messages in 64 KiB batches, buffered, fsync=never, over
/// the node's default shards (one per CPU), `partitions` partitions and `producers`
/// producers (each its own connections).
fn scale(quick: bool, partitions: u32, producers: u32) -> Args {
    Args {
        consumers: Some(0),
        partitions: Some(partitions),
        producers: Some(producers),
        message_size: Some(1000),
        batch_size: Some(64 * 1024),
        linger_ms: Some(1),
        rate: Some("max".into()),
        ..base(quick, 10.0, 2.0)
    }
}

/// Goal 4: a 4 GiB backlog written at max rate, then read back by one consumer; `cold`
/// evicts it from the page cache first. (1 GiB was read in about a second, cold or warm:
/// too short a window, runs spread 779–1449 MB/s.)
fn catchup(quick: bool, cold: bool) -> Args {
    Args {
        consumers: Some(1),
        message_size: Some(1000),
        batch_size: Some(256 * 1024),
        linger_ms: Some(1),
        rate: Some("max".into()),
        backlog: Some(if quick { "16MiB" } else { "4GiB" }.into()),
        cold,
        duration: Some(if quick { 10.0 } else { 60.0 }),
        warmup: Some(0.0),
        ..base(quick, 60.0, 0.0)
    }
}

const WORKLOADS: &[SuiteWorkload] = &[
    SuiteWorkload {
        name: "fixed-rate",
        description: "fixed 100 MB/s (10 MB/s with --quick), 1000 B messages, 64 KiB batches, 1 consumer, \
                      buffered, fsync=never",
        args: |quick| Args {
            consumers: Some(1),
            message_size: Some(1000),
            batch_size: Some(64 * 1024),
            linger_ms: Some(1),
            rate: Some(if quick { "10MB/s" } else { "100MB/s" }.into()),
            ..base(quick, 30.0, 5.0)
        },
    },
    SuiteWorkload {
        name: "max-direct",
        description: "max-rate produce, 1 MiB batches of 1000 B messages, no consumer, direct IO, fsync=never",
        args: |quick| max_rate(quick, "direct"),
    },
    SuiteWorkload {
        name: "max-buffered",
        description: "max-rate produce, 1 MiB batches of 1000 B messages, no consumer, buffered IO, fsync=never",
        args: |quick| max_rate(quick, "buffered"),
    },
    SuiteWorkload {
        name: "small-1inflight",
        description: "64 B messages, 1 record per batch, 1 request in flight, max rate, no consumer",
        args: |quick| one_in_flight(quick, 64),
    },
    SuiteWorkload {
        name: "catchup",
        description: "4 GiB backlog (16 MiB with --quick) written at max rate, then read back from the page \
                      cache by 1 consumer; buffered IO",
        args: |quick| catchup(quick, false),
    },
    SuiteWorkload {
        name: "catchup-cold",
        description: "like catchup, but the backlog's segment files are evicted from the page cache (fdatasync, \
                      POSIX_FADV_DONTNEED) before the consumer starts: every byte is read from the disk",
        args: |quick| catchup(quick, true),
    },
    SuiteWorkload {
        name: "fsync-always",
        description: "4 KiB messages, 1 record per batch, 1 request in flight, fsync=always, buffered IO",
        args: |quick| Args { fsync: Some("always".into()), ..one_in_flight(quick, 4096) },
    },
    SuiteWorkload {
        name: "fsync-always-16",
        description: "as fsync-always with 16 producers on the one partition (group commit)",
        args: |quick| Args {
            fsync: Some("always".into()),
            producers: Some(GROUP_COMMIT_PRODUCERS),
            ..one_in_flight(quick, 4096)
        },
    },
    SuiteWorkload {
        name: "scale-p1",
        description: "scale: 1 partition, 4 producers, max rate, 64 KiB batches of 1000 B, buffered, fsync=never",
        args: |quick| scale(quick, 1, SCALE_PARTITIONS_PRODUCERS),
    },
    SuiteWorkload {
        name: "scale-p16",
        description: "scale: 16 partitions, 4 producers, otherwise as scale-p1",
        args: |quick| scale(quick, 16, SCALE_PARTITIONS_PRODUCERS),
    },
    SuiteWorkload {
        name: "scale-p256",
        description: "scale: 256 partitions, 4 producers, otherwise as scale-p1",
        args: |quick| scale(quick, 256, SCALE_PARTITIONS_PRODUCERS),
    },
    SuiteWorkload {
        name: "scale-c1",
        description: "scale: 1 producer connection, 16 partitions, otherwise as scale-p1",
        args: |quick| scale(quick, SCALE_PRODUCERS_PARTITIONS, 1),
    },
    SuiteWorkload {
        name: "scale-c16",
        description: "scale: 16 producer connections, 16 partitions, otherwise as scale-p1",
        args: |quick| scale(quick, SCALE_PRODUCERS_PARTITIONS, 16),
    },
    SuiteWorkload {
        name: "scale-c64",
        description: "scale: 64 producer connections, 16 partitions, otherwise as scale-p1",
        args: |quick| scale(quick, SCALE_PRODUCERS_PARTITIONS, 64),
    },
];

/// Goal 6's groups: a synthetic limit (key, label, workloads) = the best median produce rate
/// of the group's workloads, measured in the same suite run.
const SCALE_GROUPS: &[(&str, &str, &[&str])] = &[
    ("scale_partitions_best", "best of scale-p1/p16/p256 (produce)", &["scale-p1", "scale-p16", "scale-p256"]),
    ("scale_producers_best", "best of scale-c1/c16/c64 (produce)", &["scale-c1", "scale-c16", "scale-c64"]),
];

/// Names of the suite's workloads, in run order.
pub fn workload_names() -> Vec<&'static str> {
    WORKLOADS.iter().map(|w| w.name).collect()
}

/// The workloads `--only` selects (all when empty), in the suite's order.
fn select(only: &[String]) -> Result<Vec<&'static SuiteWorkload>, SuiteError> {
    let wanted: Vec<&str> = only.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    if let Some(bad) = wanted.iter().find(|n| !WORKLOADS.iter().any(|w| w.name == **n)) {
        return Err(SuiteError::UnknownWorkload(bad.to_string()));
    }
    Ok(WORKLOADS.iter().filter(|w| wanted.is_empty() || wanted.contains(&w.name)).collect())
}

/// What a number measures, for formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Microseconds.
    Us,
    /// 10^6 bytes per second.
    MbPerSec,
    MsgsPerSec,
    OpsPerSec,
    /// Node CPU seconds per 10^9 bytes moved.
    CpuSecondsPerGb,
    /// Node CPU microseconds per produce request.
    CpuUsPerRequest,
    /// 2^20 bytes.
    MiB,
    /// Node CPU time over wall time, in percent of one core.
    CpuPercent,
}

/// Formats `value` in `unit`.
pub fn format_value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Us => crate::report::format_us(value),
        Unit::MbPerSec => format!("{value:.1} MB/s"),
        Unit::MsgsPerSec => format!("{value:.0} msgs/s"),
        Unit::OpsPerSec => format!("{value:.0} ops/s"),
        Unit::CpuSecondsPerGb => format!("{value:.2} CPU-s/GB"),
        Unit::CpuUsPerRequest => format!("{value:.1} CPU-µs/req"),
        Unit::MiB => format!("{value:.1} MiB"),
        Unit::CpuPercent => format!("{value:.0} % of a core"),
    }
}

/// One machine limit over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct Limit {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: Unit,
    /// Median and spread of the runs that produced a number; `None` when none did.
    pub value: Option<Spread>,
    /// Why there is no number (`n/a (fio missing)`, the error of the failed runs).
    pub missing: Option<String>,
    /// Errors of runs that failed while others succeeded.
    pub errors: Vec<String>,
}

impl Limit {
    fn median(&self) -> Option<f64> {
        self.value.as_ref().map(|s| s.median)
    }
}

/// Collects one limit's per-run outcomes.
fn limit_of<T>(
    key: &'static str,
    label: &'static str,
    unit: Unit,
    runs: &[Result<T, String>],
    pick: impl Fn(&T) -> f64,
) -> Limit {
    let values: Vec<f64> = runs.iter().filter_map(|r| r.as_ref().ok()).map(&pick).collect();
    let errors: Vec<String> = runs.iter().filter_map(|r| r.as_ref().err()).cloned().collect();
    let value = Spread::of(&values);
    let missing = match (&value, errors.first()) {
        (None, Some(e)) => Some(format!("n/a ({e})")),
        (None, None) => Some("n/a (not measured)".into()),
        _ => None,
    };
    let errors = if missing.is_some() { Vec::new() } else { errors };
    Limit { key, label, unit, value, missing, errors }
}

/// Sizes and durations of the limit measurements.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LimitPlan {
    pub fio: FioPlan,
    pub rtt_count: usize,
    pub rtt_size: usize,
    pub sendfile_seconds: f64,
    pub sendfile_file_bytes: u64,
}

impl LimitPlan {
    fn new(quick: bool) -> LimitPlan {
        if quick {
            LimitPlan {
                fio: FioPlan { seconds: 1, seq_write_bytes: 64 << 20, seq_read_bytes: 32 << 20, sync_bytes: 4 << 20 },
                rtt_count: 2_000,
                rtt_size: 64,
                sendfile_seconds: 0.3,
                sendfile_file_bytes: 16 << 20,
            }
        } else {
            LimitPlan {
                fio: FioPlan { seconds: 10, seq_write_bytes: 2 << 30, seq_read_bytes: 1 << 30, sync_bytes: 64 << 20 },
                rtt_count: 20_000,
                rtt_size: 64,
                sendfile_seconds: 5.0,
                sendfile_file_bytes: 512 << 20,
            }
        }
    }
}

/// Raw outcomes of every limit run (`Err` holds the reason).
#[derive(Debug, Default, Serialize)]
pub struct LimitRuns {
    pub seq_write: Vec<Result<limits::FioBandwidth, String>>,
    pub seq_write_flushed: Vec<Result<limits::FioBandwidth, String>>,
    pub seq_read: Vec<Result<limits::FioBandwidth, String>>,
    pub fdatasync: Vec<Result<limits::FioSync, String>>,
    pub rtt: Vec<Result<limits::RttResult, String>>,
    pub sendfile: Vec<Result<limits::StreamResult, String>>,
}

/// The limits section of the JSON.
#[derive(Debug, Serialize)]
pub struct LimitsReport {
    pub fio_version: Option<String>,
    pub plan: LimitPlan,
    pub raw: LimitRuns,
    pub summary: Vec<Limit>,
}

impl LimitsReport {
    fn get(&self, key: &str) -> Option<&Limit> {
        self.summary.iter().find(|l| l.key == key)
    }
}

fn progress(quiet: bool, text: &str) {
    if !quiet {
        eprintln!("suite: {text}");
    }
}

/// Measures every limit `runs` times, or until `stop` is set (blocking: run it on a blocking
/// thread).
fn measure_limits(dir: &Path, runs: u32, quick: bool, quiet: bool, stop: &AtomicBool) -> LimitsReport {
    let plan = LimitPlan::new(quick);
    let fio_version = limits::fio_version();
    match &fio_version {
        Err(FioError::Missing) => eprintln!(
            "suite: fio missing: install it with `{}`; the fio-based limits and ratios are n/a",
            limits::FIO_INSTALL_HINT
        ),
        Err(e) => eprintln!("suite: {e}: the fio-based limits and ratios are n/a"),
        Ok(_) => {}
    }
    let text = |e: &FioError| e.to_string();
    let mut raw = LimitRuns::default();
    for i in 1..=runs {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let round = format!("run {i}/{runs}");
        if fio_version.is_ok() {
            progress(quiet, &format!("limits {round}: fio sequential write, 1 MiB O_DIRECT"));
            raw.seq_write.push(limits::fio_seq_write(dir, &plan.fio).map_err(|e| text(&e)));
            progress(quiet, &format!("limits {round}: fio sequential write, 1 MiB O_DIRECT, fdatasync per segment"));
            raw.seq_write_flushed.push(limits::fio_seq_write_flushed(dir, &plan.fio).map_err(|e| text(&e)));
            progress(quiet, &format!("limits {round}: fio sequential read, 4 MiB O_DIRECT"));
            raw.seq_read.push(limits::fio_seq_read(dir, &plan.fio).map_err(|e| text(&e)));
            progress(quiet, &format!("limits {round}: fio 4 KiB write + fdatasync"));
            raw.fdatasync.push(limits::fio_fdatasync(dir, &plan.fio).map_err(|e| text(&e)));
        } else {
            let missing = fio_version.as_ref().err().map(text).unwrap_or_default();
            raw.seq_write.push(Err(missing.clone()));
            raw.seq_write_flushed.push(Err(missing.clone()));
            raw.seq_read.push(Err(missing.clone()));
            raw.fdatasync.push(Err(missing));
        }
        progress(quiet, &format!("limits {round}: loopback round trip, {} B ping-pong", plan.rtt_size));
        raw.rtt.push(limits::loopback_rtt(plan.rtt_count, plan.rtt_size).map_err(|e| format!("loopback rtt: {e}")));
        progress(quiet, &format!("limits {round}: loopback sendfile of a page-cached file"));
        let seconds = Duration::from_secs_f64(plan.sendfile_seconds);
        raw.sendfile.push(
            limits::loopback_sendfile(seconds, plan.sendfile_file_bytes, dir)
                .map_err(|e| format!("loopback sendfile: {e}")),
        );
    }
    limits::remove_fio_files(dir);
    let summary = vec![
        limit_of(
            "fio_seq_write",
            "fio sequential write, 1 MiB O_DIRECT, iodepth 8",
            Unit::MbPerSec,
            &raw.seq_write,
            |b| b.mb_per_sec,
        ),
        limit_of(
            "fio_seq_write_flushed",
            "fio sequential write, 1 MiB O_DIRECT, iodepth 8, fdatasync per GiB",
            Unit::MbPerSec,
            &raw.seq_write_flushed,
            |b| b.mb_per_sec,
        ),
        limit_of(
            "fio_seq_read",
            "fio sequential read, 4 MiB O_DIRECT, iodepth 8",
            Unit::MbPerSec,
            &raw.seq_read,
            |b| b.mb_per_sec,
        ),
        limit_of("fio_sync_ops", "fio 4 KiB write + fdatasync, rate", Unit::OpsPerSec, &raw.fdatasync, |s| {
            s.ops_per_sec
        }),
        limit_of("fio_fdatasync_p50", "fio 4 KiB write + fdatasync, fdatasync p50", Unit::Us, &raw.fdatasync, |s| {
            s.fdatasync_p50_us
        }),
        limit_of("fio_fdatasync_p99", "fio 4 KiB write + fdatasync, fdatasync p99", Unit::Us, &raw.fdatasync, |s| {
            s.fdatasync_p99_us
        }),
        limit_of("rtt_p50", "loopback round trip 64 B, p50", Unit::Us, &raw.rtt, |r| r.p50_us),
        limit_of("rtt_p99", "loopback round trip 64 B, p99", Unit::Us, &raw.rtt, |r| r.p99_us),
        limit_of("rtt_p999", "loopback round trip 64 B, p99.9", Unit::Us, &raw.rtt, |r| r.p999_us),
        limit_of("rtt_max", "loopback round trip 64 B, max", Unit::Us, &raw.rtt, |r| r.max_us),
        limit_of("rtt_rate", "loopback round trips per second (1 / p50)", Unit::MsgsPerSec, &raw.rtt, |r| {
            1e6 / r.p50_us.max(f64::MIN_POSITIVE)
        }),
        limit_of("sendfile", "loopback sendfile of a page-cached file", Unit::MbPerSec, &raw.sendfile, |s| {
            s.mb_per_sec
        }),
    ];
    LimitsReport { fio_version: fio_version.ok(), plan, raw, summary }
}

/// One run of a workload: its report, or why it failed.
#[derive(Debug, Serialize)]
pub struct WorkloadRun {
    pub report: Option<Report>,
    pub error: Option<String>,
}

/// Every run of one workload.
#[derive(Debug, Serialize)]
pub struct WorkloadRuns {
    pub name: &'static str,
    pub description: &'static str,
    pub config: Workload,
    pub runs: Vec<WorkloadRun>,
}

/// How a row's median compares with its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Met,
    Missed,
    /// No goal for this row: value and ratio only.
    NoGoal,
    /// The value or the limit the goal needs was not measured.
    NotAvailable,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Missed => "**missed**",
            Status::NoGoal => "—",
            Status::NotAvailable => "n/a",
        }
    }
}

/// A row's goal.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Goal {
    None,
    /// value ≤ bound (in the row's unit).
    AtMost(f64),
    /// value / limit ≥ x.
    RatioAtLeast(f64),
    /// value / limit ≤ x.
    RatioAtMost(f64),
}

impl Goal {
    fn text(self, unit: Unit) -> Option<String> {
        match self {
            Goal::None => None,
            Goal::AtMost(bound) => Some(format!("≤ {}", format_value(bound, unit))),
            Goal::RatioAtLeast(x) => Some(format!("ratio ≥ {x}")),
            Goal::RatioAtMost(x) => Some(format!("ratio ≤ {x}")),
        }
    }

    fn status(self, value: Option<f64>, ratio: Option<f64>) -> Status {
        let check = |v: Option<f64>, ok: &dyn Fn(f64) -> bool| match v {
            Some(v) if ok(v) => Status::Met,
            Some(_) => Status::Missed,
            None => Status::NotAvailable,
        };
        match self {
            Goal::None => Status::NoGoal,
            Goal::AtMost(bound) => check(value, &|v| v <= bound),
            Goal::RatioAtLeast(x) => check(ratio, &|r| r >= x),
            Goal::RatioAtMost(x) => check(ratio, &|r| r <= x),
        }
    }
}

/// One row of the table: a workload metric against a limit and a goal.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: &'static str,
    pub metric: &'static str,
    pub unit: Unit,
    /// Median and spread over the runs that produced the metric.
    pub value: Option<Spread>,
    /// Key and label of the limit in the `limits` section.
    pub limit_key: Option<&'static str>,
    pub limit_label: Option<&'static str>,
    /// The limit's median, in the row's unit.
    pub limit: Option<f64>,
    /// Why the value or the limit is missing.
    pub missing: Option<String>,
    /// median value / median limit.
    pub ratio: Option<f64>,
    pub goal: Option<String>,
    pub status: Status,
    /// Request errors, an incomplete catch-up, a CTRL-C.
    pub notes: Vec<String>,
}

/// How to compute one row from a workload's reports.
struct RowSpec {
    workload: &'static str,
    metric: &'static str,
    unit: Unit,
    value: fn(&Report) -> Option<f64>,
    limit: Option<&'static str>,
    goal: Goal,
}

fn node_cpu_per_gb(r: &Report) -> Option<f64> {
    r.results.node.map(|n| n.cpu_seconds_per_gb).filter(|v| *v > 0.0)
}

/// Node CPU per produce request (every suite workload using this has one record per batch).
fn node_cpu_us_per_request(r: &Report) -> Option<f64> {
    let n = r.results.node?;
    (r.results.produce.msgs > 0).then(|| n.cpu_seconds * 1e6 / r.results.produce.msgs as f64)
}

fn node_rss_peak_mib(r: &Report) -> Option<f64> {
    r.results.node.map(|n| n.rss_peak_bytes as f64 / f64::from(1 << 20)).filter(|v| *v > 0.0)
}

fn node_cpu_percent(r: &Report) -> Option<f64> {
    r.results.node.map(|n| n.cpu_percent).filter(|v| *v > 0.0)
}

fn positive(v: f64) -> Option<f64> {
    (v > 0.0).then_some(v)
}

fn publish_count(r: &Report) -> bool {
    r.results.publish.count > 0
}

const ROWS: &[RowSpec] = &[
    RowSpec {
        workload: "fixed-rate",
        metric: "produce rate held",
        unit: Unit::MbPerSec,
        value: |r| positive(r.results.produce.mb_per_sec),
        limit: None,
        goal: Goal::None,
    },
    RowSpec {
        workload: "fixed-rate",
        metric: "publish p99.9",
        unit: Unit::Us,
        value: |r| publish_count(r).then_some(r.results.publish.p999_us as f64),
        limit: Some("rtt_p999"),
        goal: Goal::AtMost(FIXED_RATE_P999_MAX_US),
    },
    RowSpec {
        workload: "fixed-rate",
        metric: "publish max",
        unit: Unit::Us,
        value: |r| publish_count(r).then_some(r.results.publish.max_us as f64),
        limit: Some("rtt_max"),
        goal: Goal::AtMost(FIXED_RATE_MAX_MAX_US),
    },
    RowSpec {
        workload: "fixed-rate",
        metric: "end-to-end p99",
        unit: Unit::Us,
        value: |r| (r.results.end_to_end.count > 0).then_some(r.results.end_to_end.p99_us as f64),
        limit: Some("rtt_p99"),
        goal: Goal::AtMost(FIXED_RATE_E2E_P99_MAX_US),
    },
    RowSpec {
        workload: "max-direct",
        metric: "produce",
        unit: Unit::MbPerSec,
        value: |r| positive(r.results.produce.mb_per_sec),
        limit: Some("fio_seq_write"),
        goal: Goal::RatioAtLeast(MAX_RATE_RATIO_MIN),
    },
    RowSpec {
        workload: "max-direct",
        metric: "produce vs flushed fio",
        unit: Unit::MbPerSec,
        value: |r| positive(r.results.produce.mb_per_sec),
        limit: Some("fio_seq_write_flushed"),
        goal: Goal::None,
    },
    RowSpec {
        workload: "max-direct",
        metric: "node CPU per GB",
        unit: Unit::CpuSecondsPerGb,
        value: node_cpu_per_gb,
        limit: None,
        goal: Goal::AtMost(MAX_DIRECT_CPU_S_PER_GB_MAX),
    },
    RowSpec {
        workload: "max-buffered",
        metric: "produce",
        unit: Unit::MbPerSec,
        value: |r| positive(r.results.produce.mb_per_sec),
        limit: Some("fio_seq_write"),
        goal: Goal::RatioAtLeast(MAX_RATE_RATIO_MIN),
    },
    RowSpec {
        workload: "max-buffered",
        metric: "produce vs flushed fio",
        unit: Unit::MbPerSec,
        value: |r| positive(r.results.produce.mb_per_sec),
        limit: Some("fio_seq_write_flushed"),
        goal: Goal::None,
    },
    RowSpec {
        workload: "max-buffered",
        metric: "node CPU per GB",
        unit: Unit::CpuSecondsPerGb,
        value: node_cpu_per_gb,
        limit: None,
        goal: Goal::AtMost(MAX_BUFFERED_CPU_S_PER_GB_MAX),
    },
    RowSpec {
        workload: "small-1inflight",
        metric: "produce",
        unit: Unit::MsgsPerSec,
        value: |r| positive(r.results.produce.msgs_per_sec),
        limit: Some("rtt_rate"),
        goal: Goal::RatioAtLeast(SMALL_RATE_RATIO_MIN),
    },
    RowSpec {
        workload: "small-1inflight",
        metric: "publish p99",
        unit: Unit::Us,
        value: |r| publish_count(r).then_some(r.results.publish.p99_us as f64),
        limit: Some("rtt_p99"),
        goal: Goal::RatioAtMost(SMALL_P99_RATIO_MAX),
    },
    RowSpec {
        workload: "small-1inflight",
        metric: "node CPU per request",
        unit: Unit::CpuUsPerRequest,
        value: node_cpu_us_per_request,
        limit: None,
        goal: Goal::None,
    },
    RowSpec {
        workload: "catchup",
        metric: "catch-up read",
        unit: Unit::MbPerSec,
        value: |r| r.results.catchup.and_then(|c| positive(c.consume.mb_per_sec)),
        limit: Some("sendfile"),
        goal: Goal::RatioAtLeast(CATCHUP_RATIO_MIN),
    },
    RowSpec {
        workload: "catchup",
        metric: "node CPU per GB read",
        unit: Unit::CpuSecondsPerGb,
        value: node_cpu_per_gb,
        limit: None,
        goal: Goal::None,
    },
    RowSpec {
        workload: "catchup-cold",
        metric: "catch-up read",
        unit: Unit::MbPerSec,
        value: |r| r.results.catchup.filter(|c| c.evicted_bytes > 0).and_then(|c| positive(c.consume.mb_per_sec)),
        limit: Some("fio_seq_read"),
        goal: Goal::RatioAtLeast(CATCHUP_RATIO_MIN),
    },
    RowSpec {
        workload: "catchup-cold",
        metric: "node CPU per GB read",
        unit: Unit::CpuSecondsPerGb,
        value: node_cpu_per_gb,
        limit: None,
        goal: Goal::None,
    },
    RowSpec {
        workload: "fsync-always",
        metric: "publish p50",
        unit: Unit::Us,
        value: |r| publish_count(r).then_some(r.results.publish.p50_us as f64),
        limit: Some("fio_fdatasync_p50"),
        goal: Goal::None,
    },
    RowSpec {
        workload: "fsync-always",
        metric: "publish p99",
        unit: Unit::Us,
        value: |r| publish_count(r).then_some(r.results.publish.p99_us as f64),
        limit: Some("fio_fdatasync_p99"),
        goal: Goal::RatioAtMost(FSYNC_ALWAYS_P99_RATIO_MAX),
    },
    RowSpec {
        workload: "fsync-always",
        metric: "produce",
        unit: Unit::MsgsPerSec,
        value: |r| positive(r.results.produce.msgs_per_sec),
        limit: None,
        goal: Goal::None,
    },
    RowSpec {
        workload: "fsync-always-16",
        metric: "produce",
        unit: Unit::MsgsPerSec,
        value: |r| positive(r.results.produce.msgs_per_sec),
        limit: Some("fsync_always_one_rate"),
        goal: Goal::RatioAtLeast(GROUP_COMMIT_RATIO_MIN),
    },
    RowSpec {
        workload: "fsync-always-16",
        metric: "publish p99",
        unit: Unit::Us,
        value: |r| publish_count(r).then_some(r.results.publish.p99_us as f64),
        limit: Some("fio_fdatasync_p99"),
        goal: Goal::RatioAtMost(FSYNC_ALWAYS_P99_RATIO_MAX),
    },
    scale_produce("scale-p1", "scale_partitions_best"),
    scale_rss("scale-p1"),
    scale_cpu("scale-p1"),
    scale_produce("scale-p16", "scale_partitions_best"),
    scale_rss("scale-p16"),
    scale_cpu("scale-p16"),
    scale_produce("scale-p256", "scale_partitions_best"),
    scale_rss("scale-p256"),
    scale_cpu("scale-p256"),
    scale_produce("scale-c1", "scale_producers_best"),
    scale_rss("scale-c1"),
    scale_cpu("scale-c1"),
    scale_produce("scale-c16", "scale_producers_best"),
    scale_rss("scale-c16"),
    scale_cpu("scale-c16"),
    scale_produce("scale-c64", "scale_producers_best"),
    scale_rss("scale-c64"),
    scale_cpu("scale-c64"),
];

/// Goal 6 rows: a scale step's produce rate against the best of its group ...
const fn scale_produce(workload: &'static str, best: &'static str) -> RowSpec {
    RowSpec {
        workload,
        metric: "produce",
        unit: Unit::MbPerSec,
        value: |r| positive(r.results.produce.mb_per_sec),
        limit: Some(best),
        goal: Goal::RatioAtLeast(SCALE_RATIO_MIN),
    }
}

/// ... its node RSS peak ...
const fn scale_rss(workload: &'static str) -> RowSpec {
    RowSpec {
        workload,
        metric: "node RSS peak",
        unit: Unit::MiB,
        value: node_rss_peak_mib,
        limit: None,
        goal: Goal::None,
    }
}

/// ... and its node CPU.
const fn scale_cpu(workload: &'static str) -> RowSpec {
    RowSpec {
        workload,
        metric: "node CPU",
        unit: Unit::CpuPercent,
        value: node_cpu_percent,
        limit: None,
        goal: Goal::None,
    }
}

fn notes_of(runs: &WorkloadRuns) -> Vec<String> {
    let mut notes = Vec::new();
    for (i, run) in runs.runs.iter().enumerate() {
        let n = i + 1;
        match (&run.report, &run.error) {
            (_, Some(e)) => notes.push(format!("run {n} failed: {e}")),
            (Some(r), None) => {
                let res = &r.results;
                if res.errors > 0 {
                    let first = res.first_error.as_deref().unwrap_or("?");
                    notes.push(format!("run {n}: {} request errors ({first})", res.errors));
                }
                if res.catchup.is_some_and(|c| !c.completed) {
                    notes.push(format!("run {n}: backlog not read completely"));
                }
                if res.stopped_early {
                    notes.push(format!("run {n}: stopped early"));
                }
            }
            (None, None) => {}
        }
    }
    notes
}

fn build_row(spec: &RowSpec, runs: &WorkloadRuns, limits: &LimitsReport) -> Row {
    let values: Vec<f64> = runs.runs.iter().filter_map(|r| r.report.as_ref()).filter_map(spec.value).collect();
    let value = Spread::of(&values);
    let limit = spec.limit.and_then(|k| limits.get(k));
    let limit_median = limit.and_then(Limit::median);
    let ratio = match (&value, limit_median) {
        (Some(v), Some(l)) if l > 0.0 => Some(v.median / l),
        _ => None,
    };
    let missing = if value.is_none() {
        Some("n/a (no run measured it)".to_string())
    } else {
        limit.and_then(|l| l.missing.clone())
    };
    Row {
        workload: spec.workload,
        metric: spec.metric,
        unit: spec.unit,
        limit: limit_median,
        limit_key: spec.limit,
        limit_label: limit.map(|l| l.label),
        missing,
        ratio,
        goal: spec.goal.text(spec.unit),
        status: spec.goal.status(value.as_ref().map(|v| v.median), ratio),
        value,
        notes: notes_of(runs),
    }
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages.
pub fn load_average() -> Option<[f64; 3]> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut f = text.split_whitespace().map(str::parse::<f64>);
    Some([f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?])
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix time (proleptic Gregorian calendar).
pub fn utc_string(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Days since 1970-01-01 to a civil date (H. Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", secs / 3_600, secs % 3_600 / 60, secs % 60)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Bytes free for unprivileged users on the filesystem holding `dir` (`df -Pk`).
fn free_bytes(dir: &Path) -> Option<u64> {
    let text = command_line("df", &["-Pk", &dir.display().to_string()])?;
    let kib: u64 = text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib * 1024)
}

/// The machine and build the numbers belong to.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub date_utc: String,
    pub started_unix_s: u64,
    pub finished_utc: String,
    pub elapsed_s: u64,
    pub kernel: Option<String>,
    pub cpus: usize,
    /// 1, 5 and 15 minute load averages before the first and after the last measurement.
    pub load_before: Option<[f64; 3]>,
    pub load_after: Option<[f64; 3]>,
    pub git_commit: Option<String>,
    /// Uncommitted changes to tracked files when the suite ran.
    pub git_dirty: Option<bool>,
    pub dir: String,
    pub dir_fs_type: Option<String>,
    pub quick: bool,
    pub runs: u32,
    /// CTRL-C / SIGTERM ended the suite before every run was done.
    pub interrupted: bool,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct SuiteReport {
    pub tool: &'static str,
    pub version: &'static str,
    pub context: Context,
    pub limits: LimitsReport,
    pub workloads: Vec<WorkloadRuns>,
    pub rows: Vec<Row>,
}

impl SuiteReport {
    /// True if some workload run did not complete (the table still shows the others).
    pub fn has_failed_runs(&self) -> bool {
        self.workloads.iter().any(|w| w.runs.iter().any(|r| r.error.is_some()))
    }
}

/// Sets `flag` on SIGINT or SIGTERM (the runs watch for the same signals themselves).
fn watch_signals(flag: Arc<AtomicBool>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        flag.store(true, Ordering::Relaxed);
    }))
}

/// Runs the suite: limits first, then the workloads round by round.
pub async fn run_suite(args: &SuiteArgs) -> Result<SuiteReport, SuiteError> {
    let selected = select(&args.only)?;
    let dir_error = |source| SuiteError::Dir { path: args.dir.clone(), source };
    std::fs::create_dir_all(&args.dir).map_err(dir_error)?;
    let dir = args.dir.canonicalize().map_err(dir_error)?;
    let dir_fs_type = limits::filesystem_type(&dir);
    if let Some(fs) = dir_fs_type.as_deref().filter(|fs| limits::is_memory_fs(fs)) {
        eprintln!(
            "suite: WARNING: {} is on {fs} (memory, not the disk): its fio and node numbers do not describe a disk; \
             pass --dir on the disk under test",
            dir.display()
        );
    }
    if let Some(free) = free_bytes(&dir).filter(|f| !args.quick && *f < FREE_SPACE_WARN_BYTES) {
        eprintln!(
            "suite: WARNING: only {:.1} GB free in {}; the max-rate runs may write several GB each",
            free as f64 / 1e9,
            dir.display()
        );
    }
    // Resolve every workload and the node binary before measuring anything, so a bad one
    // fails at once rather than after the limits.
    if !selected.is_empty() {
        let bin = match &args.node_bin {
            Some(p) => p.clone(),
            None => EmbeddedNode::default_binary().map_err(dir_error)?,
        };
        if !bin.is_file() {
            return Err(NodeError::BinaryMissing(bin).into());
        }
    }
    let mut workloads = Vec::new();
    for w in &selected {
        let config = workload_from_args(&(w.args)(args.quick))
            .map_err(|source| SuiteError::Workload { name: w.name, source })?;
        workloads.push(WorkloadRuns { name: w.name, description: w.description, config, runs: Vec::new() });
    }

    let started = unix_now();
    let load_before = load_average();
    let git_commit = command_line("git", &["rev-parse", "--short", "HEAD"]);
    let git_dirty = git_commit
        .as_ref()
        .and(command_line("git", &["status", "--porcelain", "--untracked-files=no"]))
        .map(|s| !s.is_empty());

    // From here on CTRL-C / SIGTERM end the suite after the current measurement (a fio
    // child in the same process group ends its job on CTRL-C too) instead of killing it.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_signals(Arc::clone(&stop)).ok();
    let (limit_dir, runs, quick, quiet, limit_stop) = (dir.clone(), args.runs, args.quick, args.quiet, stop.clone());
    let limits = tokio::task::spawn_blocking(move || measure_limits(&limit_dir, runs, quick, quiet, &limit_stop))
        .await
        .map_err(|e| SuiteError::Limits(e.to_string()))?;
    let mut interrupted = stop.load(Ordering::Relaxed);
    'rounds: for round in 1..=args.runs {
        if interrupted {
            break;
        }
        for (spec, runs) in selected.iter().zip(workloads.iter_mut()) {
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                break 'rounds;
            }
            progress(args.quiet, &format!("workload {} run {round}/{}", spec.name, args.runs));
            let mut flags = (spec.args)(args.quick);
            flags.node_bin = args.node_bin.clone();
            flags.node_data_parent = Some(dir.clone());
            let run = match run(&flags).await {
                Ok(report) => {
                    interrupted |= report.results.stopped_early;
                    WorkloadRun { report: Some(report), error: None }
                }
                Err(e) => {
                    eprintln!("suite: workload {} run {round} failed: {e}", spec.name);
                    WorkloadRun { report: None, error: Some(e.to_string()) }
                }
            };
            runs.runs.push(run);
            if interrupted {
                break 'rounds;
            }
        }
    }
    if let Some(w) = watcher {
        w.abort();
    }
    let finished = unix_now();

    let mut limits = limits;
    limits.summary.extend(scale_limits(&workloads));
    limits.summary.extend(group_commit_limit(&workloads));
    let rows = ROWS
        .iter()
        .filter_map(|spec| workloads.iter().find(|w| w.name == spec.workload).map(|w| build_row(spec, w, &limits)))
        .collect();
    let context = Context {
        date_utc: utc_string(started),
        started_unix_s: started,
        finished_utc: utc_string(finished),
        elapsed_s: finished.saturating_sub(started),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load_before,
        load_after: load_average(),
        git_commit,
        git_dirty,
        dir: dir.display().to_string(),
        dir_fs_type,
        quick: args.quick,
        runs: args.runs,
        interrupted,
    };
    Ok(SuiteReport { tool: "strand-bench suite", version: env!("CARGO_PKG_VERSION"), context, limits, workloads, rows })
}

/// Goal 6's synthetic limits: per group, the best median produce rate among the group's
/// workloads that ran (a group that did not run has none).
fn scale_limits(workloads: &[WorkloadRuns]) -> Vec<Limit> {
    let rates: Vec<(&str, Vec<f64>)> = workloads
        .iter()
        .map(|w| {
            let reports = w.runs.iter().filter_map(|r| r.report.as_ref());
            (w.name, reports.filter_map(|r| positive(r.results.produce.mb_per_sec)).collect())
        })
        .collect();
    scale_limits_of(&rates)
}

/// Goal 5's synthetic limit: `fsync-always`'s median produce rate (one producer), the base
/// `fsync-always-16` is compared with.
fn group_commit_limit(workloads: &[WorkloadRuns]) -> Option<Limit> {
    let one = workloads.iter().find(|w| w.name == "fsync-always")?;
    let rates: Vec<f64> = one
        .runs
        .iter()
        .filter_map(|r| r.report.as_ref())
        .filter_map(|r| positive(r.results.produce.msgs_per_sec))
        .collect();
    let median = Spread::of(&rates)?.median;
    Some(Limit {
        key: "fsync_always_one_rate",
        label: "fsync-always with 1 producer (produce)",
        unit: Unit::MsgsPerSec,
        value: Spread::of(&[median]),
        missing: None,
        errors: Vec::new(),
    })
}

/// [`scale_limits`] from each workload's per-run produce rates.
fn scale_limits_of(rates: &[(&str, Vec<f64>)]) -> Vec<Limit> {
    SCALE_GROUPS
        .iter()
        .filter_map(|&(key, label, names)| {
            let medians = rates.iter().filter(|(name, _)| names.contains(name)).filter_map(|(_, r)| Spread::of(r));
            let best = medians.map(|s| s.median).reduce(f64::max)?;
            Some(Limit {
                key,
                label,
                unit: Unit::MbPerSec,
                value: Spread::of(&[best]),
                missing: None,
                errors: Vec::new(),
            })
        })
        .collect()
}

fn spread_cell(s: &Spread, unit: Unit) -> String {
    if s.runs.len() < 2 {
        "—".into()
    } else {
        format!("{} – {}", format_value(s.min, unit), format_value(s.max, unit))
    }
}

fn load_text(load: Option<[f64; 3]>) -> String {
    load.map_or_else(|| "?".into(), |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"))
}

/// The markdown table printed on stdout (and pasted into docs/BENCHMARKS.md).
pub fn suite_table(report: &SuiteReport) -> String {
    let c = &report.context;
    let mut out = String::new();
    let commit = match (&c.git_commit, c.git_dirty) {
        (Some(h), Some(true)) => format!("commit {h} (uncommitted changes)"),
        (Some(h), _) => format!("commit {h}"),
        (None, _) => "commit unknown".into(),
    };
    let _ = writeln!(
        out,
        "strand-bench suite {} — {}, {commit}, kernel {}, {} CPUs{}",
        report.version,
        c.date_utc,
        c.kernel.as_deref().unwrap_or("?"),
        c.cpus,
        if c.quick { ", --quick (short runs: not for quoting)" } else { "" }
    );
    let _ = writeln!(
        out,
        "load average (1/5/15 min) {} before, {} after; median of {} run(s), spread min – max; dir {} ({}); {} s",
        load_text(c.load_before),
        load_text(c.load_after),
        c.runs,
        c.dir,
        c.dir_fs_type.as_deref().unwrap_or("?"),
        c.elapsed_s
    );
    if c.interrupted {
        let _ = writeln!(out, "INTERRUPTED: not every run was done");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| limit | median | min – max |");
    let _ = writeln!(out, "|---|---|---|");
    for l in &report.limits.summary {
        let (median, spread) = match (&l.value, &l.missing) {
            (Some(s), _) => (format_value(s.median, l.unit), spread_cell(s, l.unit)),
            (None, missing) => (missing.clone().unwrap_or_else(|| "n/a".into()), "—".into()),
        };
        let _ = writeln!(out, "| {} | {median} | {spread} |", l.label);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| workload | metric | median | min – max | limit | ratio | goal | status |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for r in &report.rows {
        let (median, spread) = match &r.value {
            Some(s) => (format_value(s.median, r.unit), spread_cell(s, r.unit)),
            None => (r.missing.clone().unwrap_or_else(|| "n/a".into()), "—".into()),
        };
        let limit = match (r.limit_key, r.limit) {
            (None, _) => "—".into(),
            (Some(key), Some(v)) => format!("{} ({key})", format_value(v, r.unit)),
            (Some(key), None) => {
                let why = report.limits.get(key).and_then(|l| l.missing.clone()).unwrap_or_else(|| "n/a".into());
                format!("{why} ({key})")
            }
        };
        let ratio = r.ratio.map_or_else(|| "—".into(), |x| format!("{x:.2}"));
        let goal = r.goal.clone().unwrap_or_else(|| "—".into());
        let _ = writeln!(
            out,
            "| {} | {} | {median} | {spread} | {limit} | {ratio} | {goal} | {} |",
            r.workload,
            r.metric,
            r.status.word()
        );
    }
    let notes: Vec<String> = report
        .workloads
        .iter()
        .flat_map(|w| notes_of(w).into_iter().map(move |n| format!("{}: {n}", w.name)))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(out);
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

/// Writes the report as pretty JSON.
pub fn write_json(report: &SuiteReport, path: &Path) -> Result<(), SuiteError> {
    let write_error = |source| SuiteError::Write { path: path.to_path_buf(), source };
    let text = serde_json::to_string_pretty(report).map_err(|e| write_error(std::io::Error::other(e)))?;
    std::fs::write(path, text + "\n").map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_resolves_and_every_row_names_one() {
        for quick in [false, true] {
            for w in WORKLOADS {
                let config = workload_from_args(&(w.args)(quick)).unwrap_or_else(|e| panic!("{}: {e}", w.name));
                assert!(config.duration_s > 0.0, "{}", w.name);
            }
        }
        for row in ROWS {
            assert!(WORKLOADS.iter().any(|w| w.name == row.workload), "{}", row.workload);
        }
        let one = workload_from_args(&one_in_flight(false, 64)).unwrap();
        assert_eq!((one.max_inflight, one.batch_size, one.message_size), (1, 64, 64), "one record per request");
    }

    #[test]
    fn only_selects_and_rejects() {
        let names = |only: &[&str]| {
            select(&only.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map(|v| v.iter().map(|w| w.name).collect())
        };
        assert_eq!(names(&[]).unwrap(), workload_names());
        let picked: Vec<&str> = names(&["small-1inflight", "fixed-rate"]).unwrap();
        assert_eq!(picked, vec!["fixed-rate", "small-1inflight"], "suite order");
        let err = names(&["fixed-rate", "fast"]).unwrap_err();
        assert!(err.to_string().contains("\"fast\"") && err.to_string().contains("catchup"), "{err}");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_string(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_string(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_string(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_string(1_796_297_207), "2026-12-03 11:26:47 UTC");
    }

    #[test]
    fn loadavg_parses() {
        assert_eq!(parse_loadavg("0.92 0.87 0.62 1/300 4242\n"), Some([0.92, 0.87, 0.62]));
        assert_eq!(parse_loadavg("x"), None);
        assert!(load_average().is_some());
    }

    #[test]
    fn goals_and_formatting() {
        assert_eq!(Goal::AtMost(10_000.0).status(Some(9_000.0), None), Status::Met);
        assert_eq!(Goal::AtMost(10_000.0).status(Some(11_000.0), Some(1.0)), Status::Missed);
        assert_eq!(Goal::RatioAtLeast(0.5).status(Some(1.0), None), Status::NotAvailable);
        assert_eq!(Goal::RatioAtLeast(0.5).status(Some(1.0), Some(0.6)), Status::Met);
        assert_eq!(Goal::RatioAtMost(3.0).status(Some(1.0), Some(3.5)), Status::Missed);
        assert_eq!(Goal::None.status(Some(1.0), Some(1.0)), Status::NoGoal);
        assert_eq!(Goal::AtMost(50_000.0).text(Unit::Us).unwrap(), "≤ 50.00 ms");
        assert_eq!(format_value(850.0, Unit::Us), "850 µs");
        assert_eq!(format_value(1234.56, Unit::MbPerSec), "1234.6 MB/s");
    }

    #[test]
    fn scale_limits_are_the_best_median_of_each_group_that_ran() {
        let rates = vec![
            ("scale-p1", vec![100.0, 300.0, 200.0]),
            ("scale-p16", vec![250.0, 260.0, 240.0]),
            ("scale-p256", vec![]),
            ("max-direct", vec![900.0]),
        ];
        let limits = scale_limits_of(&rates);
        assert_eq!(limits.len(), 1, "the producers group did not run: no limit");
        assert_eq!(limits[0].key, "scale_partitions_best");
        assert_eq!(limits[0].median(), Some(250.0), "best median, not best run, and not another workload");
        for (key, _, names) in SCALE_GROUPS {
            for name in *names {
                assert!(WORKLOADS.iter().any(|w| w.name == *name), "{key}: {name}");
                assert!(ROWS.iter().any(|r| r.workload == *name && r.limit == Some(key)), "{name} row uses {key}");
            }
        }
    }

    #[test]
    fn limits_without_numbers_say_why() {
        let runs: Vec<Result<f64, String>> = vec![Err(FioError::Missing.to_string()); 2];
        let l = limit_of("k", "label", Unit::MbPerSec, &runs, |v| *v);
        assert!(l.value.is_none());
        assert_eq!(l.missing.as_deref(), Some("n/a (fio missing)"));
        let mixed = vec![Ok(2.0), Err("boom".to_string()), Ok(4.0)];
        let l = limit_of("k", "label", Unit::MbPerSec, &mixed, |v| *v);
        assert_eq!(l.median(), Some(3.0));
        assert_eq!((l.missing, l.errors), (None, vec!["boom".to_string()]));
    }
}
