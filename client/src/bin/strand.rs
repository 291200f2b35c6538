//! The `strand` command-line tool (DESIGN §8): topic administration, produce from
//! stdin (one message per line), consume to stdout (one value per line), alone or
//! as a member of a consumer group, and group inspection.
//! Exit status 0 on success; otherwise a one-line reason on stderr and status 1
//! (2 for usage errors, from clap). `produce` stops at the first line not stored and
//! says which lines were; `consume --offset` outside a partition's log is an error.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use strand_client::admin::{DescribeGroupResponse, TopicDescription, COMMITTED_NONE};
use strand_client::{
    Acks, Admin, Client, ClientConfig, ClientError, Compression, Consumer, ConsumerConfig, DeliveryFuture, OffsetReset,
    Producer, ProducerConfig, ProducerRecord, ReadPreference, SeekTo,
};
use strand_wire::msg::OffsetSpec;
use tokio::io::AsyncBufReadExt;

/// Delivery futures kept before the oldest is awaited (bounds memory on endless input).
const DELIVERIES_PENDING_MAX: usize = 100_000;
/// Ranges of lines stored after the first failure named in the error, at most.
const STORED_AFTER_RANGES_SHOWN: usize = 10;

#[derive(Parser)]
#[command(name = "strand", version, about = "Command-line client for the Strand streaming log")]
struct Cli {
    /// Address of any node's public port.
    #[arg(long, default_value = "127.0.0.1:7070", global = true)]
    bootstrap: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, describe or delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Send stdin to a topic, one message per line (the newline is not part of the
    /// message); prints the number of messages acknowledged. Stops at the first line
    /// refused (or not sendable, e.g. longer than the node's frame limit) and exits 1,
    /// naming that line and which lines were stored; non-retriable errors
    /// (MESSAGE_TOO_LARGE, CORRUPT_BATCH, INVALID_*, STORAGE_FULL) are never retried.
    Produce(ProduceArgs),
    /// Print a topic's messages to stdout, one value per line.
    Consume(ConsumeArgs),
    /// List or describe consumer groups.
    #[command(subcommand)]
    Group(GroupCommand),
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(long)]
        partitions: u32,
        /// Replicas per partition (chain length).
        #[arg(long, default_value_t = 1)]
        replication: u16,
    },
    /// List topics: one line per topic, `NAME<TAB>PARTITIONS<TAB>REPLICATION`.
    List,
    /// Show a topic's partitions and replicas (two tab-separated tables with headers):
    /// `partition leader shard chain epoch commit log_start log_end` (chain head first;
    /// offsets as the head reports them), then
    /// `partition replica role log_end commit lag` per chain member, asked of its own
    /// node; lag = head log end − replica log end; `-` = the node could not be asked.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// List consumer groups: one line per group, `GROUP<TAB>STATE<TAB>MEMBERS`.
    List,
    /// Show a group: a summary line, then per partition committed offset, log end and lag
    /// (`-` = nothing committed), then its members and their assignments (tab-separated
    /// tables with headers). Exits 1 if the group does not exist.
    Describe { group: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum AcksArg {
    None,
    Leader,
    All,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReadFromArg {
    Leader,
    Nearest,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    None,
    Lz4,
    Zstd,
}

#[derive(Args)]
struct ProduceArgs {
    topic: String,
    /// Send every message to this partition (default: by key hash, or round-robin without a key).
    #[arg(long)]
    partition: Option<u32>,
    /// Key for every message.
    #[arg(long)]
    key: Option<String>,
    /// Acknowledgement level. With `none` the count printed is of messages sent.
    #[arg(long, value_enum, default_value = "leader")]
    acks: AcksArg,
    /// Batch compression.
    #[arg(long, value_enum, default_value = "none")]
    compression: CompressionArg,
    /// Batch size in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    batch_size: usize,
    /// Milliseconds a batch waits for more messages.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
}

#[derive(Args)]
#[command(after_help = "Without --count and --timeout-ms, consume runs until interrupted (Ctrl-C, exit 0). \
With --timeout-ms it exits 0 after that long without new data; with --count N it exits 0 after N values, \
or 1 if --timeout-ms passes first. --offset outside [log start, log end] of a partition read exits 1 at once, \
naming both offsets (--offset equal to the log end waits for new data). A corrupt batch exits 1 naming its \
partition and offsets, unless --skip-corrupt.")]
struct ConsumeArgs {
    topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    partition: Option<u32>,
    /// Consume as a member of this consumer group: partitions are assigned by the group,
    /// reading starts at the group's committed offsets, and what was printed is committed
    /// before exiting.
    #[arg(long, conflicts_with_all = ["partition", "offset"])]
    group: Option<String>,
    /// Start at the oldest retained message (default: only new messages). With --group:
    /// where partitions without a committed offset start.
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(long)]
    offset: Option<u64>,
    /// Which replica to read from: the chain head, or the nearest member (the bootstrap
    /// node if it holds a replica). Every member serves committed records only.
    #[arg(long, value_enum, default_value = "leader")]
    read_from: ReadFromArg,
    /// Exit after this many values.
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this many milliseconds without new data.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Skip corrupt batches (stored by an older node, or damaged on disk) instead of
    /// stopping at them; each skipped offset range is logged on stderr.
    #[arg(long)]
    skip_corrupt: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start runtime: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => fail(&reason),
    }
}

fn fail(reason: &str) -> ExitCode {
    eprintln!("strand: {reason}");
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> Result<(), String> {
    let read_preference = match &cli.command {
        Command::Consume(ConsumeArgs { read_from: ReadFromArg::Nearest, .. }) => ReadPreference::Nearest,
        _ => ReadPreference::Leader,
    };
    let config = ClientConfig {
        client_id: "strand-cli".to_string(),
        read_preference,
        ..ClientConfig::new(cli.bootstrap.clone())
    };
    let client = Client::connect(config).await.map_err(|e| e.to_string())?;
    match cli.command {
        Command::Topic(cmd) => topic(client, cmd).await.map_err(|e| e.to_string()),
        Command::Produce(args) => produce(client, args).await,
        Command::Consume(args) if args.group.is_some() => consume_group(client, args).await,
        Command::Consume(args) => consume(client, args).await,
        Command::Group(cmd) => group(client, cmd).await,
    }
}

async fn group(client: Client, cmd: GroupCommand) -> Result<(), String> {
    let admin = Admin::new(client);
    let mut out = std::io::stdout().lock();
    match cmd {
        GroupCommand::List => {
            for g in admin.list_groups().await.map_err(|e| e.to_string())? {
                let _ = writeln!(out, "{}\t{}\t{}", g.group_id, g.state, g.member_count);
            }
        }
        GroupCommand::Describe { group } => {
            let g = admin.describe_group(&group).await.map_err(|e| e.to_string())?;
            if g.state == "Dead" && g.members.is_empty() && g.partitions.is_empty() {
                return Err(format!("group {group} does not exist"));
            }
            let _ = write_group(&mut out, &g);
        }
    }
    Ok(())
}

fn write_group(out: &mut impl Write, g: &DescribeGroupResponse) -> std::io::Result<()> {
    let assignor = format!("{:?}", g.assignor).to_lowercase();
    writeln!(out, "group {}\tstate {}\tgeneration {}\tassignor {assignor}", g.group_id, g.state, g.generation)?;
    writeln!(out, "topic\tpartition\tcommitted\tlog_end\tlag")?;
    for p in &g.partitions {
        let committed = if p.committed == COMMITTED_NONE { "-".to_string() } else { p.committed.to_string() };
        writeln!(out, "{}\t{}\t{committed}\t{}\t{}", p.topic, p.partition, p.log_end_offset, p.lag)?;
    }
    writeln!(out, "member\tclient\tassignment")?;
    for m in &g.members {
        let parts: Vec<String> = m.assignment.iter().map(|tp| format!("{}/{}", tp.topic, tp.partition)).collect();
        writeln!(out, "{}\t{}\t{}", m.member_id, m.client_id, parts.join(","))?;
    }
    Ok(())
}

/// `consume --group`: subscribe, print, and on any exit commit what was printed and leave.
async fn consume_group(client: Client, args: ConsumeArgs) -> Result<(), String> {
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

async fn topic(client: Client, cmd: TopicCommand) -> Result<(), ClientError> {
    let admin = Admin::new(client);
    let mut out = std::io::stdout().lock();
    match cmd {
        TopicCommand::Create { name, partitions, replication } => {
            let created = admin.create_topic(&name, partitions, replication).await?;
            let _ = writeln!(out, "created {}\t{}", created.name, created.partitions);
        }
        TopicCommand::List => {
            for t in admin.list_topics().await? {
                let _ = writeln!(out, "{}\t{}\t{}", t.name, t.partitions, t.replication_factor);
            }
        }
        TopicCommand::Describe { name } => {
            let description = admin.describe_topic_replicas(&name).await?;
            let _ = write_description(&mut out, &description);
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            let _ = writeln!(out, "deleted {name}");
        }
    }
    Ok(())
}

fn or_dash(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn write_description(out: &mut impl Write, t: &TopicDescription) -> std::io::Result<()> {
    writeln!(out, "partition\tleader\tshard\tchain\tepoch\tcommit\tlog_start\tlog_end")?;
    for p in &t.partitions {
        let chain: Vec<String> = p.chain.iter().map(u32::to_string).collect();
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            p.partition,
            p.leader_node,
            p.leader_shard,
            chain.join(","),
            p.epoch,
            or_dash(p.commit_offset),
            or_dash(p.log_start_offset),
            or_dash(p.log_end_offset)
        )?;
    }
    writeln!(out, "partition\treplica\trole\tlog_end\tcommit\tlag")?;
    for p in &t.partitions {
        for r in &p.replicas {
            let (end, commit, lag) = (or_dash(r.log_end_offset), or_dash(r.commit_offset), or_dash(r.lag));
            writeln!(out, "{}\t{}\t{}\t{end}\t{commit}\t{lag}", p.partition, r.node_id, r.role)?;
        }
    }
    Ok(())
}

async fn produce(client: Client, args: ProduceArgs) -> Result<(), String> {
    let config = ProducerConfig {
        acks: match args.acks {
            AcksArg::None => Acks::None,
            AcksArg::Leader => Acks::Leader,
            AcksArg::All => Acks::All,
        },
        compression: match args.compression {
            CompressionArg::None => Compression::None,
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
        let mut record = ProducerRecord::new(args.topic.clone(), Bytes::copy_from_slice(&line));
        record.partition = args.partition;
        record.key = args.key.as_ref().map(|k| Bytes::copy_from_slice(k.as_bytes()));
        match producer.send(record).await {
            Ok(delivery) => pending.push_back((line_no, delivery)),
            Err(e) => {
                tally.unsent = Some((line_no, e));
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
    /// A line `send` refused (never sent); it is the last line read.
    unsent: Option<(u64, ClientError)>,
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
        let Some((line, e)) = self.failed.take().or(self.unsent.take()) else { return Ok(()) };
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

async fn consume(client: Client, args: ConsumeArgs) -> Result<(), String> {
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
