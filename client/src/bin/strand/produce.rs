//! `strand produce`: stdin to a topic, one message per line: the line is the value, or
//! `key SEP value` (`--key-separator`, kafka-console-producer's `parse.key`), or a JSON
//! object (`--format json`, the form `consume --format json` prints). A line that does
//! not parse stops the run like a refused one: it and everything after it is not sent.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use serde::Deserialize;
use strand_client::{Acks, Client, ClientError, Compression, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::io::AsyncBufReadExt;

use crate::json::{json_to_bytes, json_to_headers};

/// Delivery futures kept before the oldest is awaited (bounds memory on endless input).
const DELIVERIES_PENDING_MAX: usize = 100_000;
/// Ranges of lines stored after the first failure named in the error, at most.
const STORED_AFTER_RANGES_SHOWN: usize = 10;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum AcksArg {
    None,
    Leader,
    All,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum InputFormatArg {
    /// Each line is a value (or `key SEP value` with --key-separator).
    Text,
    /// Each line is a JSON object: {"key", "value", "headers", "partition", "timestamp"},
    /// all optional; bytes as a string or {"base64": "..."}; headers an object or a list
    /// of {"key", "value"}. "topic" and "offset" (as consume prints them) are ignored.
    Json,
}

#[derive(Args)]
pub(crate) struct ProduceArgs {
    pub(crate) topic: String,
    /// Send every message to this partition (default: by key hash, or round-robin without a key).
    #[arg(long)]
    pub(crate) partition: Option<u32>,
    /// Key for every message.
    #[arg(long, conflicts_with = "key_separator")]
    pub(crate) key: Option<String>,
    /// Split each line at the first SEP into key and value; a line without SEP is an
    /// error (it and the lines after it are not sent).
    #[arg(long, value_name = "SEP")]
    pub(crate) key_separator: Option<String>,
    /// Header K=V added to every message (split at the first `=`); repeatable.
    #[arg(long = "header", value_name = "K=V", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,
    /// Input format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: InputFormatArg,
    /// Acknowledgement level. With `none` the count printed is of messages sent.
    #[arg(long, value_enum, default_value = "leader")]
    pub(crate) acks: AcksArg,
    /// Batch compression.
    #[arg(long, value_enum, default_value = "none")]
    pub(crate) compression: CompressionArg,
    /// Batch size in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub(crate) batch_size: usize,
    /// Milliseconds a batch waits for more messages.
    #[arg(long, default_value_t = 5)]
    pub(crate) linger_ms: u64,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?}: expected KEY=VALUE")),
    }
}

/// One `--format json` input line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    #[serde(default)]
    key: serde_json::Value,
    #[serde(default)]
    value: serde_json::Value,
    #[serde(default)]
    headers: serde_json::Value,
    partition: Option<u32>,
    timestamp: Option<i64>,
    /// Printed by `consume --format json`; ignored, so its lines can be replayed.
    #[serde(default, rename = "topic")]
    _topic: serde_json::Value,
    #[serde(default, rename = "offset")]
    _offset: serde_json::Value,
}

/// The record for one input line (without its trailing newline), or why it has none.
fn record(args: &ProduceArgs, line: &[u8]) -> Result<ProducerRecord, String> {
    let mut record = ProducerRecord::new(args.topic.clone(), Bytes::new());
    record.partition = args.partition;
    match (args.format, &args.key_separator) {
        (InputFormatArg::Json, _) => {
            let parsed: JsonLine = serde_json::from_slice(line).map_err(|e| format!("not a JSON message: {e}"))?;
            record.key = json_to_bytes(&parsed.key, "key")?;
            // A null value is a tombstone.
            record.value = json_to_bytes(&parsed.value, "value")?;
            record.headers = json_to_headers(&parsed.headers)?;
            record.partition = parsed.partition.or(args.partition);
            record.timestamp = parsed.timestamp;
        }
        (InputFormatArg::Text, Some(sep)) => {
            let sep = sep.as_bytes();
            let at = line
                .windows(sep.len().max(1))
                .position(|w| w == sep)
                .ok_or_else(|| format!("no key separator {:?} in the line", String::from_utf8_lossy(sep)))?;
            record.key = Some(Bytes::copy_from_slice(&line[..at]));
            record.value = Some(Bytes::copy_from_slice(&line[at + sep.len()..]));
        }
        (InputFormatArg::Text, None) => {
            record.key = args.key.as_ref().map(|k| Bytes::copy_from_slice(k.as_bytes()));
            record.value = Some(Bytes::copy_from_slice(line));
        }
    }
    for (k, v) in &args.headers {
        record.headers.push((Bytes::copy_from_slice(k.as_bytes()), Some(Bytes::copy_from_slice(v.as_bytes()))));
    }
    Ok(record)
}

/// Flag combinations clap cannot express, checked before connecting.
pub(crate) fn check_args(args: &ProduceArgs) -> Result<(), String> {
    if args.key_separator.as_deref() == Some("") {
        return Err("--key-separator must not be empty".to_string());
    }
    if args.format == InputFormatArg::Json && (args.key_separator.is_some() || args.key.is_some()) {
        return Err("--key and --key-separator apply to --format text (a JSON line carries its key)".to_string());
    }
    Ok(())
}

pub(crate) async fn produce(client: Client, args: ProduceArgs) -> Result<(), String> {
    let config = ProducerConfig {
        acks: match args.acks {
            AcksArg::None => Acks::None,
            AcksArg::Leader => Acks::Leader,
            AcksArg::All => Acks::All,
        },
        compression: match args.compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        },
        batch_size: args.batch_size,
        linger: Duration::from_millis(args.linger_ms),
        stop_on_failure: true,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, config).await.map_err(|e| e.to_string())?;
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut pending: VecDeque<(u64, DeliveryFuture)> = VecDeque::new();
    let mut tally = Tally::default();
    let (mut line, mut line_no) = (Vec::new(), 0u64);
    // Stop reading at the first failure the producer reports: nothing is sent after it.
    while producer.failure().is_none() {
        line.clear();
        let n = stdin.read_until(b'\n', &mut line).await.map_err(|e| format!("reading stdin: {e}"))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let record = match record(&args, &line) {
            Ok(record) => record,
            Err(reason) => {
                tally.unsent = Some((line_no, reason));
                break;
            }
        };
        match producer.send(record).await {
            Ok(delivery) => pending.push_back((line_no, delivery)),
            Err(e) => {
                tally.unsent = Some((line_no, e.to_string()));
                break;
            }
        }
        if pending.len() >= DELIVERIES_PENDING_MAX {
            tally.settle(pending.pop_front()).await;
        }
    }
    producer.flush().await.map_err(|e| e.to_string())?;
    while let Some(p) = pending.pop_front() {
        tally.settle(Some(p)).await;
    }
    println!("{}", tally.acked);
    tally.verdict()
}

/// What became of the lines `produce` read, settled in line order.
#[derive(Default)]
struct Tally {
    acked: u64,
    /// The first line whose delivery failed, and why.
    failed: Option<(u64, ClientError)>,
    /// A line not parsed or refused by `send` (never sent); it is the last line read.
    unsent: Option<(u64, String)>,
    /// Lines acknowledged after the first failed one, as inclusive ranges.
    stored_after: Vec<(u64, u64)>,
}

impl Tally {
    async fn settle(&mut self, delivery: Option<(u64, DeliveryFuture)>) {
        let Some((line, delivery)) = delivery else { return };
        match delivery.await {
            Ok(_) => {
                self.acked += 1;
                if self.failed.is_some() {
                    match self.stored_after.last_mut() {
                        Some((_, end)) if *end + 1 == line => *end = line,
                        _ => self.stored_after.push((line, line)),
                    }
                }
            }
            Err(e) => {
                self.failed.get_or_insert((line, e));
            }
        }
    }

    /// `Ok` if every line was acknowledged, else the one-line account of what was stored.
    fn verdict(mut self) -> Result<(), String> {
        let failed = self.failed.take().map(|(line, e)| (line, e.to_string()));
        let Some((line, e)) = failed.or(self.unsent.take()) else { return Ok(()) };
        let before = match line {
            1 => "no line before it".to_string(),
            _ => format!("lines 1-{} all stored", line - 1),
        };
        let mut reason =
            format!("stopped at line {line}, not stored: {e}; {} lines acknowledged, {before}", self.acked);
        if self.stored_after.is_empty() {
            reason.push_str("; nothing after it stored");
        } else {
            let count: u64 = self.stored_after.iter().map(|(a, b)| b - a + 1).sum();
            let shown: Vec<String> =
                self.stored_after.iter().take(STORED_AFTER_RANGES_SHOWN).map(|(a, b)| format!("{a}-{b}")).collect();
            let more = if self.stored_after.len() > STORED_AFTER_RANGES_SHOWN { ", ..." } else { "" };
            reason.push_str(&format!(
                "; {count} later lines were stored too (in flight on other partitions): {}{more}",
                shown.join(", ")
            ));
        }
        Err(reason)
    }
}
