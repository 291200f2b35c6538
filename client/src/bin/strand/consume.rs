//! `strand consume`: a topic's messages to stdout, alone or in a consumer group.

use std::io::Write;
use std::time::Duration;

use clap::{Args, ValueEnum};
use strand_client::{Client, ClientError, Consumer, ConsumerConfig, OffsetReset, SeekTo};
use strand_wire::msg::OffsetSpec;

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
partition and offsets, unless --skip-corrupt.")]
pub(crate) struct ConsumeArgs {
    pub(crate) topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub(crate) partition: Option<u32>,
    /// Consume as a member of this consumer group: partitions are assigned by the group,
    /// reading starts at the group's committed offsets, and what was printed is committed
    /// before exiting.
    #[arg(long, conflicts_with_all = ["partition", "offset"])]
    pub(crate) group: Option<String>,
    /// Start at the oldest retained message (default: only new messages). With --group:
    /// where partitions without a committed offset start.
    #[arg(long, conflicts_with = "offset")]
    pub(crate) from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(long)]
    pub(crate) offset: Option<u64>,
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
    let group = args.group.clone().unwrap_or_default();
    let reset = if args.from_beginning { OffsetReset::Earliest } else { OffsetReset::Latest };
    let config = ConsumerConfig { auto_offset_reset: reset, ..ConsumerConfig::default() };
    let mut consumer = Consumer::new(client, config);
    consumer.subscribe(&group, &[args.topic.as_str()]).await.map_err(|e| e.to_string())?;
    let result = tokio::select! {
        r = consume_loop(&mut consumer, &args) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    // Every record `poll_max` returned was printed, so the consumed positions are
    // exactly what to commit (auto-commit is on: `close` commits them).
    let closed = consumer.close().await.map_err(|e| format!("committing and leaving group {group}: {e}"));
    result.and(closed)
}

pub(crate) async fn consume(client: Client, args: ConsumeArgs) -> Result<(), String> {
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    let partitions = match args.partition {
        Some(p) => vec![p],
        None => (0..consumer_partition_count(&consumer, &args.topic).await?).collect(),
    };
    let seek = match (args.from_beginning, args.offset) {
        (_, Some(o)) => SeekTo::Offset(o),
        (true, None) => SeekTo::Earliest,
        (false, None) => SeekTo::Latest,
    };
    for p in partitions {
        consumer.assign(&args.topic, p).await.map_err(|e| e.to_string())?;
        if let Some(offset) = args.offset {
            check_offset(&consumer, &args.topic, p, offset).await?;
        }
        consumer.seek(&args.topic, p, seek).await.map_err(|e| e.to_string())?;
    }
    tokio::select! {
        r = consume_loop(&mut consumer, &args) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
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

async fn consume_loop(consumer: &mut Consumer, args: &ConsumeArgs) -> Result<(), String> {
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
            if out.write_all(&r.value).and_then(|()| out.write_all(b"\n")).is_err() {
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
