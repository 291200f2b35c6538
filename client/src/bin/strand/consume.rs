//! `strand consume`: a topic's messages to stdout, alone or in a consumer group, as
//! values, as chosen fields (`--print-*`, kafka-console-consumer style), or as JSON lines.

use std::io::Write;
use std::time::Duration;

use clap::{Args, ValueEnum};
use strand_client::{Client, ClientError, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, SeekTo};
use strand_wire::msg::OffsetSpec;

use crate::json::{bytes_to_json, headers_to_json};

/// What text output prints for an absent (null) key or header value.
pub(crate) const NULL_MARKER: &str = "null";
/// What `--print-headers` prints for a message without headers.
pub(crate) const NO_HEADERS_MARKER: &str = "NO_HEADERS";

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// The value, or the fields chosen with --print-*, separated by --separator.
    Text,
    /// One JSON object per line: topic, partition, offset, timestamp, key, value, headers.
    Json,
}

/// Where `--offset` starts reading each partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OffsetArg {
    Earliest,
    Latest,
    /// This offset; outside [log start, log end] is an error.
    At(u64),
    /// This many records before the log end, clamped at the log start.
    BeforeEnd(u64),
}

fn parse_offset(text: &str) -> Result<OffsetArg, String> {
    let bad = || format!("{text:?}: expected an offset, earliest, latest or -N (N records before the end)");
    match text {
        "earliest" => Ok(OffsetArg::Earliest),
        "latest" => Ok(OffsetArg::Latest),
        _ => match text.strip_prefix('-') {
            Some(n) => n.parse().map(OffsetArg::BeforeEnd).map_err(|_| bad()),
            None => text.parse().map(OffsetArg::At).map_err(|_| bad()),
        },
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ReadFromArg {
    Leader,
    Nearest,
}

#[derive(Args)]
#[command(after_help = "Without --count and --timeout-ms, consume runs until interrupted (Ctrl-C, exit 0). \
With --timeout-ms it exits 0 after that long without new data; with --count N it exits 0 after N values, \
or 1 if --timeout-ms passes first. --offset outside [log start, log end] of a partition read exits 1 at once, \
naming both offsets (--offset equal to the log end waits for new data). A corrupt batch exits 1 naming its \
partition and offsets, unless --skip-corrupt.

Text output prints, in this order and separated by --separator, the fields chosen: timestamp (ms since the \
epoch), partition, offset, headers (k:v,k:v; NO_HEADERS when none), key, then always the value. A null key or \
header value prints as `null`. --format json prints one object per line: {\"topic\", \"partition\", \"offset\", \
\"timestamp\", \"key\", \"value\", \"headers\": [{\"key\", \"value\"}]}; bytes that are not UTF-8 are \
{\"base64\": \"...\"} instead of a string, a null key is null. produce --format json reads these lines back.")]
pub(crate) struct ConsumeArgs {
    pub(crate) topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub(crate) partition: Option<u32>,
    /// Consume as a member of this consumer group: partitions are assigned by the group,
    /// reading starts at the group's committed offsets, and what was printed is committed
    /// before exiting.
    #[arg(long, conflicts_with_all = ["partition", "offset", "from_timestamp"])]
    pub(crate) group: Option<String>,
    /// Start at the oldest retained message (default: only new messages). With --group:
    /// where partitions without a committed offset start.
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp"])]
    pub(crate) from_beginning: bool,
    /// Where to start in every partition read: an offset N, `earliest`, `latest`, or `-N`
    /// for the last N messages (N before the log end, clamped at the log start).
    #[arg(long, value_name = "N|earliest|latest|-N", allow_hyphen_values = true, value_parser = parse_offset, conflicts_with = "from_timestamp")]
    pub(crate) offset: Option<OffsetArg>,
    /// Start at the first message with a timestamp at or after this time (ms since the
    /// epoch, or RFC 3339 like 2026-12-03T10:00:00Z or …+02:00), in every partition read; a
    /// time after the newest message starts at the log end (waits for new messages).
    #[arg(long, value_name = "MS|RFC3339", value_parser = crate::time_arg::parse_time_ms)]
    pub(crate) from_timestamp: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: FormatArg,
    /// Text: print the key (`null` when the message has none) before the value.
    #[arg(long)]
    pub(crate) print_key: bool,
    /// Text: print the partition.
    #[arg(long)]
    pub(crate) print_partition: bool,
    /// Text: print the offset.
    #[arg(long)]
    pub(crate) print_offset: bool,
    /// Text: print the timestamp (ms since the Unix epoch).
    #[arg(long)]
    pub(crate) print_timestamp: bool,
    /// Text: print the headers as k:v,k:v (NO_HEADERS when there are none).
    #[arg(long)]
    pub(crate) print_headers: bool,
    /// Text: what separates the printed fields [default: a tab].
    #[arg(long, value_name = "SEP")]
    pub(crate) separator: Option<String>,
    /// Which replica to read from: the chain head, or the nearest member (the bootstrap
    /// node if it holds a replica). Every member serves committed records only.
    #[arg(long, value_enum, default_value = "leader")]
    pub(crate) read_from: ReadFromArg,
    /// Exit after this many values.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Exit after this many milliseconds without new data.
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// Skip corrupt batches (stored by an older node, or damaged on disk) instead of
    /// stopping at them; each skipped offset range is logged on stderr.
    #[arg(long)]
    pub(crate) skip_corrupt: bool,
}

/// `consume --group`: subscribe, print, and on any exit commit what was printed and leave.
pub(crate) async fn consume_group(client: Client, args: ConsumeArgs) -> Result<(), String> {
    let printer = Printer::new(&args)?;
    let group = args.group.clone().unwrap_or_default();
    let reset = if args.from_beginning { OffsetReset::Earliest } else { OffsetReset::Latest };
    let config = ConsumerConfig { auto_offset_reset: reset, ..ConsumerConfig::default() };
    let mut consumer = Consumer::new(client, config);
    consumer.subscribe(&group, &[args.topic.as_str()]).await.map_err(|e| e.to_string())?;
    let result = tokio::select! {
        r = consume_loop(&mut consumer, &args, &printer) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    // Every record `poll_max` returned was printed, so the consumed positions are
    // exactly what to commit (auto-commit is on: `close` commits them).
    let closed = consumer.close().await.map_err(|e| format!("committing and leaving group {group}: {e}"));
    result.and(closed)
}

pub(crate) async fn consume(client: Client, args: ConsumeArgs) -> Result<(), String> {
    let printer = Printer::new(&args)?;
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    let partitions = match args.partition {
        Some(p) => vec![p],
        None => (0..consumer_partition_count(&consumer, &args.topic).await?).collect(),
    };
    for p in partitions {
        consumer.assign(&args.topic, p).await.map_err(|e| e.to_string())?;
        let seek = start(&consumer, &args, p).await?;
        consumer.seek(&args.topic, p, seek).await.map_err(|e| e.to_string())?;
    }
    tokio::select! {
        r = consume_loop(&mut consumer, &args, &printer) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Where reading `partition` starts, from `--offset`, `--from-timestamp` and `--from-beginning`.
async fn start(consumer: &Consumer, args: &ConsumeArgs, partition: u32) -> Result<SeekTo, String> {
    let topic = args.topic.as_str();
    Ok(match (args.offset, args.from_timestamp) {
        (Some(OffsetArg::At(offset)), _) => {
            check_offset(consumer, topic, partition, offset).await?;
            SeekTo::Offset(offset)
        }
        (Some(OffsetArg::BeforeEnd(n)), _) => {
            let list = |spec| consumer.list_offset(topic, partition, spec);
            let end = list(OffsetSpec::Latest).await.map_err(|e| e.to_string())?;
            let start = list(OffsetSpec::Earliest).await.map_err(|e| e.to_string())?;
            SeekTo::Offset(end.saturating_sub(n).max(start))
        }
        (Some(OffsetArg::Earliest), _) => SeekTo::Earliest,
        (Some(OffsetArg::Latest), _) => SeekTo::Latest,
        (None, Some(ms)) => SeekTo::Timestamp(ms),
        (None, None) if args.from_beginning => SeekTo::Earliest,
        (None, None) => SeekTo::Latest,
    })
}

/// `--offset` must lie in a partition's log: past its end (or before its start) the
/// consumer would silently move to the end and wait, which looks like an empty topic.
async fn check_offset(consumer: &Consumer, topic: &str, partition: u32, offset: u64) -> Result<(), String> {
    let list = |spec| consumer.list_offset(topic, partition, spec);
    let end = list(OffsetSpec::Latest).await.map_err(|e| e.to_string())?;
    if offset > end {
        return Err(format!("offset {offset} is past the end of {topic}/{partition} (log end offset {end})"));
    }
    let start = list(OffsetSpec::Earliest).await.map_err(|e| e.to_string())?;
    if offset < start {
        return Err(format!("offset {offset} is before the start of {topic}/{partition} (log start offset {start})"));
    }
    Ok(())
}

async fn consumer_partition_count(consumer: &Consumer, topic: &str) -> Result<u32, String> {
    consumer.client().partition_count(topic).await.map_err(|e| e.to_string())
}

/// One `--format json` line; fields print in this order.
#[derive(serde::Serialize)]
struct JsonRecord<'a> {
    topic: &'a str,
    partition: u32,
    offset: u64,
    timestamp: i64,
    key: serde_json::Value,
    value: serde_json::Value,
    headers: serde_json::Value,
}

/// Flag combinations clap cannot express, checked before connecting.
pub(crate) fn check_args(args: &ConsumeArgs) -> Result<(), String> {
    Printer::new(args).map(|_| ())
}

/// Formats one record as one output line.
struct Printer {
    format: FormatArg,
    fields: [bool; 5],
    separator: Vec<u8>,
}

impl Printer {
    fn new(args: &ConsumeArgs) -> Result<Self, String> {
        let fields =
            [args.print_timestamp, args.print_partition, args.print_offset, args.print_headers, args.print_key];
        if args.format == FormatArg::Json && (fields.contains(&true) || args.separator.is_some()) {
            return Err("--print-* and --separator apply to --format text (json prints every field)".to_string());
        }
        let separator = args.separator.clone().unwrap_or_else(|| "\t".to_string()).into_bytes();
        Ok(Printer { format: args.format, fields, separator })
    }

    /// Appends `r` and a newline to `line`.
    fn line(&self, r: &ConsumerRecord, line: &mut Vec<u8>) {
        if self.format == FormatArg::Json {
            let object = JsonRecord {
                topic: &r.topic,
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: bytes_to_json(r.key.as_deref()),
                value: bytes_to_json(r.value.as_deref()),
                headers: headers_to_json(&r.headers),
            };
            // Only strings, numbers and `Value`s: serializing cannot fail.
            let Ok(text) = serde_json::to_string(&object) else { unreachable!("JSON values always serialize") };
            line.extend_from_slice(text.as_bytes());
            line.push(b'\n');
            return;
        }
        let [timestamp, partition, offset, headers, key] = self.fields;
        let mut field = |bytes: &[u8]| {
            line.extend_from_slice(bytes);
            line.extend_from_slice(&self.separator);
        };
        if timestamp {
            field(r.timestamp.to_string().as_bytes());
        }
        if partition {
            field(r.partition.to_string().as_bytes());
        }
        if offset {
            field(r.offset.to_string().as_bytes());
        }
        if headers {
            field(&headers_text(&r.headers));
        }
        if key {
            field(r.key.as_deref().unwrap_or(NULL_MARKER.as_bytes()));
        }
        // A tombstone prints as the null marker, as a null key does.
        line.extend_from_slice(r.value.as_deref().unwrap_or(NULL_MARKER.as_bytes()));
        line.push(b'\n');
    }
}

/// Headers as `k:v,k:v` (kafka-console-consumer's form); `NO_HEADERS` when there are none.
fn headers_text(headers: &[(bytes::Bytes, Option<bytes::Bytes>)]) -> Vec<u8> {
    if headers.is_empty() {
        return NO_HEADERS_MARKER.as_bytes().to_vec();
    }
    let mut out = Vec::new();
    for (i, (k, v)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(k);
        out.push(b':');
        out.extend_from_slice(v.as_deref().unwrap_or(NULL_MARKER.as_bytes()));
    }
    out
}

async fn consume_loop(consumer: &mut Consumer, args: &ConsumeArgs, printer: &Printer) -> Result<(), String> {
    let mut line = Vec::new();
    let idle_max = args.timeout_ms.map(Duration::from_millis);
    let wanted = args.count.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while printed < wanted {
        let idle = idle_max.unwrap_or(Duration::from_secs(3600));
        let records_max = usize::try_from(wanted - printed).unwrap_or(usize::MAX);
        // At most what is still wanted, so every record returned is printed (and a group
        // consumer's consumed positions, which it commits, match what was printed).
        let records = match consumer.poll_max(idle, records_max).await {
            Ok(records) => records,
            Err(e @ ClientError::CorruptAt { .. }) if args.skip_corrupt => {
                if let Some(skipped) = consumer.skip_corrupt_batch(&e).await.map_err(|e| e.to_string())? {
                    eprintln!(
                        "strand: skipped offsets {}..{} ({} records): {e}",
                        skipped.start,
                        skipped.end,
                        skipped.end - skipped.start
                    );
                }
                continue;
            }
            Err(e @ ClientError::CorruptAt { .. }) => {
                let _ = out.flush();
                return Err(format!("{e}; --skip-corrupt skips it (its records are then lost to this reader)"));
            }
            Err(e) => {
                let _ = out.flush();
                return Err(e.to_string());
            }
        };
        if records.is_empty() {
            if idle_max.is_none() {
                continue;
            }
            if args.count.is_some() {
                let _ = out.flush();
                return Err(format!("timed out after {printed} of {wanted} messages"));
            }
            break;
        }
        for r in &records {
            line.clear();
            printer.line(r, &mut line);
            if out.write_all(&line).is_err() {
                return Ok(()); // stdout closed (e.g. `| head`): stop quietly.
            }
            printed += 1;
        }
        if out.flush().is_err() {
            return Ok(());
        }
    }
    let _ = out.flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        for (text, parsed) in [
            ("earliest", Some(OffsetArg::Earliest)),
            ("latest", Some(OffsetArg::Latest)),
            ("42", Some(OffsetArg::At(42))),
            ("-3", Some(OffsetArg::BeforeEnd(3))),
            ("-0", Some(OffsetArg::BeforeEnd(0))),
            ("--3", None),
            ("-", None),
            ("first", None),
            ("", None),
        ] {
            assert_eq!(parse_offset(text).ok(), parsed, "{text:?}");
        }
    }
}
