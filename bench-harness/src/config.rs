//! Workload configuration: the command-line flags, the TOML workload file, and the
//! resolved [`Workload`] a run uses.
//!
//! Invariants: a [`Workload`] is only built by [`Workload::resolve`], which layers
//! built-in defaults ← workload file ← flags (flags win) and then validates every
//! field, so the rest of the harness never sees a message too small to carry the
//! 16-byte measurement header, a zero count, or an unknown fsync policy.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

/// Bytes at the front of every message value: send timestamp (u64 LE ns) + sequence (u64 LE).
pub const VALUE_HEADER_LEN: usize = 16;
/// Largest message the harness generates; keeps one message well inside a default 8 MiB frame.
pub const MESSAGE_SIZE_MAX: usize = 4 * 1024 * 1024;
/// Upper bound on producers, consumers, topics and partitions per topic: the harness runs
/// one task per producer/consumer on a 2-core box, so more than this is a typo.
pub const COUNT_MAX: u32 = 4096;
/// Default produce requests in flight per partition lane (the node's idempotence window).
pub const MAX_INFLIGHT_DEFAULT: usize = 5;
/// Largest `--max-inflight` (the node's per-connection in-flight limit is 64).
pub const MAX_INFLIGHT_MAX: usize = 64;

/// `strand-bench` command line (DESIGN §8). Every workload field is optional here so that a
/// flag given explicitly overrides the workload file and an absent flag does not. Without a
/// subcommand the flags describe one run; `strand-bench suite …` runs the reproducible suite
/// (its flags are its own: the two forms do not mix).
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "strand-bench",
    version,
    about = "OpenMessaging-style latency and throughput benchmark for Strand",
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Spawn a strand-node on loopback in a temp dir (the default when --bootstrap is absent).
    #[arg(long, conflicts_with = "bootstrap")]
    pub embedded: bool,
    /// Address of a running node (`host:port`) instead of an embedded one.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Path of the strand-node binary for --embedded (default: next to strand-bench).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Parent directory of the embedded node's temporary data dir (default: $TMPDIR or /tmp).
    #[arg(long)]
    pub node_data_parent: Option<PathBuf>,
    /// Extra arguments passed to the embedded node, split on whitespace.
    #[arg(long, allow_hyphen_values = true)]
    pub node_args: Option<String>,
    /// Native protocol over TLS, trusting the CA certificates in this PEM file (a node
    /// started with --tls-cert).
    #[arg(long, conflicts_with = "tls")]
    pub tls_ca: Option<PathBuf>,
    /// Embedded node with TLS: a throwaway CA and certificate for 127.0.0.1 are made for
    /// the run (native protocol only), to compare TLS with plaintext throughput.
    #[arg(long, conflicts_with = "bootstrap")]
    pub tls: bool,
    /// Workload file (TOML); flags override its values.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    #[arg(long)]
    pub topics: Option<u32>,
    /// Partitions per topic.
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Replicas per partition of the topics the run creates (chain length; cluster mode).
    #[arg(long)]
    pub replication: Option<u16>,
    #[arg(long)]
    pub producers: Option<u32>,
    #[arg(long)]
    pub consumers: Option<u32>,
    /// Bytes per message value (at least 16).
    #[arg(long)]
    pub message_size: Option<usize>,
    /// Bytes of records per batch before it is sent.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Longest a non-full batch waits before it is sent.
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// Total target rate over all producers: `max`, `N` (msgs/s) or `NMB/s` (10^6 bytes/s).
    #[arg(long)]
    pub rate: Option<String>,
    /// Measured seconds (after warm-up).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up seconds excluded from the statistics.
    #[arg(long)]
    pub warmup: Option<f64>,
    /// none | leader | all
    #[arg(long)]
    pub acks: Option<String>,
    /// native (Strand's own protocol) | kafka (the Kafka wire protocol: Strand's Kafka port,
    /// or with --bootstrap any Kafka-API system)
    #[arg(long)]
    pub protocol: Option<String>,
    /// Produce requests in flight per partition lane (1 = one request, then its ack).
    #[arg(long)]
    pub max_inflight: Option<usize>,
    /// direct | buffered (embedded node only; default buffered, like strand-node)
    #[arg(long)]
    pub io_mode: Option<String>,
    /// always | interval:MS | never (embedded node only)
    #[arg(long)]
    pub fsync: Option<String>,
    /// Catch-up mode: produce this many bytes first (e.g. `2GiB`, `256MiB`), then measure the
    /// consumers reading it back. `0` disables the backlog phase.
    #[arg(long)]
    pub backlog: Option<String>,
    /// Catch-up mode, embedded node: evict the backlog's segment files from the page cache
    /// (fdatasync, then `POSIX_FADV_DONTNEED`) before the consumers start, so every byte
    /// they read comes from the disk.
    #[arg(long)]
    pub cold: bool,
    /// Write config + results + full percentile spectrum as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency percentile curve (SVG) here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar (also implied when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// Subcommands of `strand-bench`.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Machine limits (fio, loopback) and the standard workloads in one invocation: one
    /// table of values, limits and ratios (median of --runs, with the spread) and JSON.
    Suite(crate::suite::SuiteArgs),
    /// Loopback TCP round trip (ping-pong, TCP_NODELAY): the reference for per-hop
    /// latency in docs/REPLICATION.md.
    Rtt(RttArgs),
}

/// Flags of `strand-bench rtt`.
#[derive(Debug, Clone, clap::Args)]
pub struct RttArgs {
    /// Round trips measured (a tenth more are run first as warm-up).
    #[arg(long, default_value_t = 20_000)]
    pub count: usize,
    /// Bytes per message each way.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

/// Target producer rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    /// As fast as the pipeline allows (closed loop; latency from the actual send time).
    Max,
    /// Fixed messages per second over all producers.
    MsgsPerSec(f64),
    /// Fixed bytes per second of message values over all producers.
    BytesPerSec(f64),
}

impl Rate {
    /// Parses `max`, `N` (msgs/s) or `N{KB,MB,GB,KiB,MiB,GiB}/s` (bytes/s).
    pub fn parse(text: &str) -> Result<Rate, ConfigError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let bad = || ConfigError::Invalid { field: "rate", value: text.to_string() };
        let rate = if let Some(bytes) = text.strip_suffix("/s") {
            Rate::BytesPerSec(parse_bytes(bytes).map_err(|_| bad())? as f64)
        } else {
            Rate::MsgsPerSec(text.parse::<f64>().map_err(|_| bad())?)
        };
        match rate {
            Rate::MsgsPerSec(v) | Rate::BytesPerSec(v) if !(v.is_finite() && v > 0.0) => Err(bad()),
            rate => Ok(rate),
        }
    }

    /// Messages per second over all producers, or `None` for max rate.
    pub fn msgs_per_sec(self, message_size: usize) -> Option<f64> {
        match self {
            Rate::Max => None,
            Rate::MsgsPerSec(v) => Some(v),
            Rate::BytesPerSec(v) => Some(v / message_size as f64),
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Max => write!(f, "max"),
            Rate::MsgsPerSec(v) => write!(f, "{v} msgs/s"),
            Rate::BytesPerSec(v) => write!(f, "{} MB/s", v / 1e6),
        }
    }
}

/// Parses a byte count with an optional unit: `1024`, `64KiB`, `2GiB`, `50MB` (decimal).
pub fn parse_bytes(text: &str) -> Result<u64, ConfigError> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" | "K" | "k" => 1024.0,
        "MiB" | "M" => 1024.0 * 1024.0,
        "GiB" | "G" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(ConfigError::Invalid { field: "bytes", value: text.to_string() }),
    };
    let value: f64 = number.parse().map_err(|_| ConfigError::Invalid { field: "bytes", value: text.to_string() })?;
    Ok((value * multiplier).round() as u64)
}

/// The workload file: every field optional; unknown keys are an error so typos do not
/// silently fall back to defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    pub name: Option<String>,
    pub description: Option<String>,
    pub topics: Option<u32>,
    pub partitions: Option<u32>,
    pub producers: Option<u32>,
    pub consumers: Option<u32>,
    pub message_size: Option<usize>,
    pub batch_size: Option<usize>,
    pub linger_ms: Option<u64>,
    /// `"max"`, a number (msgs/s) or a string like `"50MB/s"`.
    pub rate: Option<toml::Value>,
    pub duration_s: Option<f64>,
    pub warmup_s: Option<f64>,
    pub acks: Option<String>,
    pub protocol: Option<String>,
    pub max_inflight: Option<usize>,
    pub io_mode: Option<String>,
    pub fsync: Option<String>,
    /// Bytes to produce before consumers start (catch-up mode), number or `"2GiB"`.
    pub backlog: Option<toml::Value>,
    /// Evict the backlog from the page cache before the catch-up (embedded node).
    pub cold: Option<bool>,
}

impl WorkloadFile {
    /// Reads and parses a workload file.
    pub fn load(path: &Path) -> Result<WorkloadFile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.to_path_buf(), reason: e.to_string() })?;
        WorkloadFile::parse(&text).map_err(|e| match e {
            ConfigError::Unit { key, value, reason, .. } => {
                ConfigError::Unit { path: path.to_path_buf(), key, value, reason }
            }
            ConfigError::Parse { reason, .. } => ConfigError::Parse { path: path.to_path_buf(), reason },
            e => e,
        })
    }

    /// Parses a workload file's text. Sizes (`message_size`, `batch_size`) may be written
    /// like `backlog` (`"1KiB"`, see [`parse_bytes`]) and durations (`linger_ms`,
    /// `duration_s`, `warmup_s`) like `"5ms"`, `"2m"` (humantime), besides plain numbers.
    pub fn parse(text: &str) -> Result<WorkloadFile, ConfigError> {
        let parse_error = |e: toml::de::Error| ConfigError::Parse { path: PathBuf::new(), reason: e.to_string() };
        let mut table: toml::Table = toml::from_str(text).map_err(parse_error)?;
        for (key, kind) in UNIT_KEYS {
            let Some(toml::Value::String(value)) = table.get(*key) else { continue };
            let unit_error = |reason: &str| ConfigError::Unit {
                path: PathBuf::new(),
                key,
                value: value.clone(),
                reason: reason.to_string(),
            };
            let number = match kind {
                UnitKind::Bytes => parse_bytes(value)
                    .ok()
                    .and_then(|n| i64::try_from(n).ok())
                    .map(toml::Value::Integer)
                    .ok_or_else(|| unit_error("not a size (e.g. 1KiB, 64MB, 1024)"))?,
                UnitKind::Millis | UnitKind::Seconds => {
                    let duration = humantime::parse_duration(value.trim())
                        .map_err(|_| unit_error("not a duration (e.g. 5ms, 30s, 2m)"))?;
                    match kind {
                        UnitKind::Millis => i64::try_from(duration.as_millis())
                            .ok()
                            .filter(|_| duration.subsec_nanos() % 1_000_000 == 0)
                            .map(toml::Value::Integer)
                            .ok_or_else(|| unit_error("not a whole number of milliseconds"))?,
                        _ => toml::Value::Float(duration.as_secs_f64()),
                    }
                }
            };
            table.insert(key.to_string(), number);
        }
        toml::Value::Table(table).try_into().map_err(parse_error)
    }
}

#[derive(Clone, Copy)]
enum UnitKind {
    Bytes,
    Millis,
    Seconds,
}

/// Workload keys that accept a size or duration string besides a number.
const UNIT_KEYS: &[(&str, UnitKind)] = &[
    ("message_size", UnitKind::Bytes),
    ("batch_size", UnitKind::Bytes),
    ("linger_ms", UnitKind::Millis),
    ("duration_s", UnitKind::Seconds),
    ("warmup_s", UnitKind::Seconds),
];

/// The wire protocol the harness speaks to the system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Native,
    Kafka,
}

fn parse_protocol(s: &str) -> Result<Protocol, ConfigError> {
    match s {
        "native" => Ok(Protocol::Native),
        "kafka" => Ok(Protocol::Kafka),
        other => Err(ConfigError::Invalid { field: "protocol", value: other.to_string() }),
    }
}

/// Acknowledgement mode of produce requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AcksMode {
    None,
    Leader,
    All,
}

/// A fully resolved, validated workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub name: String,
    pub topics: u32,
    pub partitions: u32,
    /// Replicas per partition (RF) of the created topics.
    pub replication: u16,
    pub producers: u32,
    pub consumers: u32,
    pub message_size: usize,
    pub batch_size: usize,
    pub linger_ms: u64,
    pub rate: Rate,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub acks: AcksMode,
    pub protocol: Protocol,
    /// Produce requests unacknowledged per partition lane.
    pub max_inflight: usize,
    pub io_mode: String,
    pub fsync: String,
    /// Catch-up mode when non-zero.
    pub backlog_bytes: u64,
    /// Catch-up reads a backlog evicted from the page cache.
    pub cold: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            name: "default".into(),
            topics: 1,
            partitions: 1,
            replication: 1,
            producers: 1,
            consumers: 1,
            message_size: 1024,
            batch_size: 64 * 1024,
            linger_ms: 1,
            rate: Rate::Max,
            duration_s: 10.0,
            warmup_s: 2.0,
            acks: AcksMode::Leader,
            protocol: Protocol::Native,
            max_inflight: MAX_INFLIGHT_DEFAULT,
            io_mode: "buffered".into(),
            fsync: "never".into(),
            backlog_bytes: 0,
            cold: false,
        }
    }
}

/// Why a workload could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read workload file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot parse workload file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid {field}: {value:?}")]
    Invalid { field: &'static str, value: String },
    #[error("invalid workload file {path}: {key} = {value:?}: {reason}")]
    Unit { path: PathBuf, key: &'static str, value: String, reason: String },
}

impl Workload {
    /// Defaults ← `file` ← flags in `args`, then validated.
    pub fn resolve(file: Option<&WorkloadFile>, args: &Args) -> Result<Workload, ConfigError> {
        let mut w = Workload::default();
        if let Some(f) = file {
            w.apply_file(f)?;
        }
        w.apply_args(args)?;
        w.validate()?;
        Ok(w)
    }

    fn apply_file(&mut self, f: &WorkloadFile) -> Result<(), ConfigError> {
        set(&mut self.name, f.name.clone());
        set(&mut self.topics, f.topics);
        set(&mut self.partitions, f.partitions);
        set(&mut self.producers, f.producers);
        set(&mut self.consumers, f.consumers);
        set(&mut self.message_size, f.message_size);
        set(&mut self.batch_size, f.batch_size);
        set(&mut self.linger_ms, f.linger_ms);
        set(&mut self.duration_s, f.duration_s);
        set(&mut self.warmup_s, f.warmup_s);
        set(&mut self.max_inflight, f.max_inflight);
        set(&mut self.io_mode, f.io_mode.clone());
        set(&mut self.fsync, f.fsync.clone());
        if let Some(acks) = &f.acks {
            self.acks = parse_acks(acks)?;
        }
        if let Some(protocol) = &f.protocol {
            self.protocol = parse_protocol(protocol)?;
        }
        if let Some(rate) = &f.rate {
            self.rate = match rate {
                toml::Value::String(s) => Rate::parse(s)?,
                toml::Value::Integer(n) => Rate::parse(&n.to_string())?,
                toml::Value::Float(n) => Rate::parse(&n.to_string())?,
                other => return Err(ConfigError::Invalid { field: "rate", value: other.to_string() }),
            };
        }
        if let Some(backlog) = &f.backlog {
            self.backlog_bytes = match backlog {
                toml::Value::String(s) => parse_bytes(s)?,
                toml::Value::Integer(n) if *n >= 0 => *n as u64,
                other => return Err(ConfigError::Invalid { field: "backlog", value: other.to_string() }),
            };
        }
        if let Some(cold) = f.cold {
            self.cold = cold;
        }
        Ok(())
    }

    fn apply_args(&mut self, a: &Args) -> Result<(), ConfigError> {
        set(&mut self.topics, a.topics);
        set(&mut self.partitions, a.partitions);
        set(&mut self.replication, a.replication);
        set(&mut self.producers, a.producers);
        set(&mut self.consumers, a.consumers);
        set(&mut self.message_size, a.message_size);
        set(&mut self.batch_size, a.batch_size);
        set(&mut self.linger_ms, a.linger_ms);
        set(&mut self.duration_s, a.duration);
        set(&mut self.warmup_s, a.warmup);
        set(&mut self.max_inflight, a.max_inflight);
        set(&mut self.io_mode, a.io_mode.clone());
        set(&mut self.fsync, a.fsync.clone());
        if let Some(acks) = &a.acks {
            self.acks = parse_acks(acks)?;
        }
        if let Some(protocol) = &a.protocol {
            self.protocol = parse_protocol(protocol)?;
        }
        if let Some(rate) = &a.rate {
            self.rate = Rate::parse(rate)?;
        }
        if let Some(backlog) = &a.backlog {
            self.backlog_bytes = parse_bytes(backlog)?;
        }
        if a.cold {
            self.cold = true;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, value: String| Err(ConfigError::Invalid { field, value });
        for (field, value) in [
            ("topics", self.topics),
            ("partitions", self.partitions),
            ("producers", self.producers),
            ("consumers", self.consumers),
        ] {
            let zero_ok = field == "consumers";
            if (!zero_ok && value == 0) || value > COUNT_MAX {
                return invalid(field, value.to_string());
            }
        }
        if !(VALUE_HEADER_LEN..=MESSAGE_SIZE_MAX).contains(&self.message_size) {
            return invalid("message_size", self.message_size.to_string());
        }
        if self.batch_size == 0 || self.batch_size > strand_wire::batch::BATCH_LEN_MAX {
            return invalid("batch_size", self.batch_size.to_string());
        }
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return invalid("duration", self.duration_s.to_string());
        }
        if !(self.warmup_s.is_finite() && self.warmup_s >= 0.0) {
            return invalid("warmup", self.warmup_s.to_string());
        }
        if !(1..=MAX_INFLIGHT_MAX).contains(&self.max_inflight) {
            return invalid("max_inflight", format!("{} (1..={MAX_INFLIGHT_MAX})", self.max_inflight));
        }
        if !matches!(self.io_mode.as_str(), "direct" | "buffered") {
            return invalid("io_mode", self.io_mode.clone());
        }
        if !fsync_is_valid(&self.fsync) {
            return invalid("fsync", self.fsync.clone());
        }
        if self.backlog_bytes > 0 && self.consumers == 0 {
            return invalid("consumers", "0 (a backlog run needs consumers)".into());
        }
        if self.cold && self.backlog_bytes == 0 {
            return invalid("cold", "true without a backlog (it evicts the backlog before the catch-up)".into());
        }
        Ok(())
    }

    /// Total partitions over all topics.
    pub fn partition_count(&self) -> u32 {
        self.topics * self.partitions
    }

    /// Topic names used by this run (unique per run so re-runs against one node do not collide).
    pub fn topic_names(&self, run_id: u64) -> Vec<String> {
        (0..self.topics).map(|t| format!("bench-{run_id:x}-{t}")).collect()
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn parse_acks(text: &str) -> Result<AcksMode, ConfigError> {
    match text {
        "none" | "0" => Ok(AcksMode::None),
        "leader" | "1" => Ok(AcksMode::Leader),
        "all" | "-1" => Ok(AcksMode::All),
        _ => Err(ConfigError::Invalid { field: "acks", value: text.to_string() }),
    }
}

fn fsync_is_valid(text: &str) -> bool {
    match text {
        "always" | "never" => true,
        _ => text.strip_prefix("interval:").is_some_and(|ms| ms.parse::<u64>().is_ok_and(|ms| ms > 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        let mut argv = vec!["strand-bench"];
        argv.extend_from_slice(list);
        Args::try_parse_from(argv).expect("args parse")
    }

    #[test]
    fn rate_parsing() {
        assert_eq!(Rate::parse("max").unwrap(), Rate::Max);
        assert_eq!(Rate::parse("MAX").unwrap(), Rate::Max);
        assert_eq!(Rate::parse("1000").unwrap(), Rate::MsgsPerSec(1000.0));
        assert_eq!(Rate::parse("50MB/s").unwrap(), Rate::BytesPerSec(50e6));
        assert_eq!(Rate::parse("1MiB/s").unwrap(), Rate::BytesPerSec(1048576.0));
        assert_eq!(Rate::BytesPerSec(50e6).msgs_per_sec(1000), Some(50_000.0));
        assert_eq!(Rate::Max.msgs_per_sec(1000), None);
        for bad in ["", "0", "-5", "fast", "10XB/s", "nan"] {
            assert!(Rate::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn byte_parsing() {
        assert_eq!(parse_bytes("0").unwrap(), 0);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_bytes("50MB").unwrap(), 50_000_000);
        assert_eq!(parse_bytes("1.5KiB").unwrap(), 1536);
        assert!(parse_bytes("2 lots").is_err());
    }

    #[test]
    fn flags_override_file_and_file_overrides_defaults() {
        let file: WorkloadFile = toml::from_str(
            r#"
            name = "t"
            topics = 2
            partitions = 16
            message_size = 100
            rate = "50MB/s"
            acks = "all"
            fsync = "always"
            backlog = "1GiB"
            "#,
        )
        .unwrap();
        let w = Workload::resolve(Some(&file), &args(&["--partitions", "4", "--rate", "max"])).unwrap();
        assert_eq!(w.name, "t");
        assert_eq!(w.topics, 2);
        assert_eq!(w.partitions, 4, "flag wins over file");
        assert_eq!(w.message_size, 100);
        assert_eq!(w.rate, Rate::Max, "flag wins over file");
        assert_eq!(w.acks, AcksMode::All);
        assert_eq!(w.fsync, "always");
        assert_eq!(w.backlog_bytes, 1 << 30);
        assert_eq!(w.producers, Workload::default().producers, "default kept");
        let w = Workload::resolve(Some(&file), &args(&["--backlog", "64MiB"])).unwrap();
        assert_eq!(w.backlog_bytes, 64 << 20);
        assert_eq!(w.rate, Rate::BytesPerSec(50e6));
    }

    #[test]
    fn sizes_and_durations_with_units_in_file() {
        let text = "message_size = \"1KiB\"\nbatch_size = \"64KiB\"\nlinger_ms = \"5ms\"\nduration_s = \"2m\"\nwarmup_s = \"1500ms\"";
        let w = Workload::resolve(Some(&WorkloadFile::parse(text).unwrap()), &Args::default()).unwrap();
        assert_eq!((w.message_size, w.batch_size, w.linger_ms), (1024, 64 << 10, 5));
        assert_eq!((w.duration_s, w.warmup_s), (120.0, 1.5));
        let plain = WorkloadFile::parse("message_size = 100\nduration_s = 20").unwrap();
        assert_eq!((plain.message_size, plain.duration_s), (Some(100), Some(20.0)));
        let err = WorkloadFile::parse("message_size = \"1 parsec\"").unwrap_err().to_string();
        assert!(err.ends_with("message_size = \"1 parsec\": not a size (e.g. 1KiB, 64MB, 1024)"), "{err}");
        assert!(WorkloadFile::parse("linger_ms = \"1500us\"").is_err());
        assert!(WorkloadFile::parse("duration_s = \"soon\"").is_err());
    }

    #[test]
    fn integer_rate_in_file() {
        let file: WorkloadFile = toml::from_str("rate = 5000").unwrap();
        let w = Workload::resolve(Some(&file), &Args::default()).unwrap();
        assert_eq!(w.rate, Rate::MsgsPerSec(5000.0));
    }

    #[test]
    fn invalid_values_rejected() {
        assert!(toml::from_str::<WorkloadFile>("topicz = 1").is_err(), "unknown key");
        for bad in [
            &["--message-size", "15"][..],
            &["--topics", "0"],
            &["--fsync", "sometimes"],
            &["--fsync", "interval:0"],
            &["--io-mode", "mmap"],
            &["--acks", "2"],
            &["--duration", "0"],
            &["--warmup=-1"],
            &["--batch-size", "0"],
            &["--consumers", "0", "--backlog", "1MiB"],
            &["--max-inflight", "0"],
            &["--max-inflight", "65"],
            &["--cold"],
        ] {
            assert!(Workload::resolve(None, &args(bad)).is_err(), "{bad:?} should be rejected");
        }
        let ok = Workload::resolve(None, &args(&["--fsync", "interval:5", "--consumers", "0"])).unwrap();
        assert_eq!(ok.fsync, "interval:5");
        assert_eq!(ok.max_inflight, MAX_INFLIGHT_DEFAULT);
        let one = Workload::resolve(None, &args(&["--max-inflight", "1"])).unwrap();
        assert_eq!(one.max_inflight, 1);
        let cold = Workload::resolve(None, &args(&["--backlog", "1MiB", "--cold"])).unwrap();
        assert!(cold.cold && cold.backlog_bytes == 1 << 20);
        let file: WorkloadFile = toml::from_str("backlog = \"1MiB\"\ncold = true").unwrap();
        assert!(Workload::resolve(Some(&file), &Args::default()).unwrap().cold);
    }

    #[test]
    fn shipped_workloads_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let file = WorkloadFile::load(&path).unwrap();
            Workload::resolve(Some(&file), &Args::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += 1;
        }
        assert!(count >= 5, "expected the five standard workloads, found {count}");
    }
}
