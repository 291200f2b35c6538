//! One benchmark run end to end: start (or reach) the node, create the topics, run the
//! producer and consumer tasks through warm-up and the measured window (or the backlog and
//! catch-up phases), show progress, stop on time or CTRL-C, and assemble the [`Report`].
//!
//! Invariants: the embedded node is stopped before [`run`] returns on every path; the
//! measured window is `[warm-up end, min(planned end, CTRL-C)]` and every rate divides by
//! the window actually measured, never the planned one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use strand_client::{Admin, Client, ClientConfig};
use strand_wire::msg::Acks;

use crate::config::{AcksMode, Args, Protocol, Workload, WorkloadFile};
use crate::driver::{run_consumer, run_producer, ProducerSpec, Shared, Tally, Target};
use crate::kafka::KafkaClient;
use crate::node::{EmbeddedNode, NodeError, ProcSample};
use crate::pacing::{per_producer_rate, Clock};
use crate::stats::{CatchupResult, LatencySummary, NodeUsage, Report, Results, Throughput};

/// Longest consumers may keep reading after producers stopped, to receive what was acked.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Progress refresh period.
const TICK: Duration = Duration::from_millis(200);

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("client: {0}")]
    Client(#[from] strand_client::ClientError),
    #[error("kafka client: {0}")]
    Kafka(String),
    #[error("--protocol kafka: the node has no Kafka port (started with --kafka-listen off?)")]
    NoKafkaPort,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    #[error("cold backlog: {0}")]
    Cold(String),
}

impl BenchError {
    /// The wire error behind this failure, when there is one.
    pub fn code(&self) -> Option<strand_wire::ErrorCode> {
        match self {
            BenchError::Client(e) => Some(e.code()),
            _ => None,
        }
    }
}

/// Resolves the workload from `args` (and its file).
pub fn workload_from_args(args: &Args) -> Result<Workload, BenchError> {
    let file = args.workload.as_deref().map(WorkloadFile::load).transpose()?;
    Ok(Workload::resolve(file.as_ref(), args)?)
}

/// Resolves on SIGINT (CTRL-C) or SIGTERM: both end the run early, print what was
/// measured and stop the embedded node. (SIGKILL cannot be caught: a killed harness
/// leaves its node running.)
async fn stop_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Runs the benchmark `args` describes.
pub async fn run(args: &Args) -> Result<Report, BenchError> {
    let workload = workload_from_args(args)?;
    // Take over SIGINT and SIGTERM before a node exists: from here on neither CTRL-C nor a
    // `kill` can end the harness with the node (in its own process group) left behind; the
    // run loops watch for them (`stop_requested`).
    let _sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let _sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut node = None;
    if workload.cold && args.bootstrap.is_some() {
        return Err(BenchError::Cold("--cold evicts an embedded node's files; it cannot with --bootstrap".into()));
    }
    let tls_wanted = args.tls || args.tls_ca.is_some();
    if tls_wanted && workload.protocol != Protocol::Native {
        return Err(BenchError::Tls("--tls and --tls-ca are for --protocol native only".into()));
    }
    // The throwaway certificates of --tls live (in this dir) until the run ends.
    let mut throwaway = None;
    let mut tls_ca = args.tls_ca.clone();
    let (bootstrap, target) = match &args.bootstrap {
        Some(addr) => (addr.clone(), addr.clone()),
        None => {
            let bin = match &args.node_bin {
                Some(p) => p.clone(),
                None => EmbeddedNode::default_binary()?,
            };
            let mut extra: Vec<String> =
                args.node_args.as_deref().unwrap_or("").split_whitespace().map(String::from).collect();
            if args.tls {
                let certs = ThrowawayCerts::make()?;
                extra.extend(["--tls-cert".into(), certs.cert(), "--tls-key".into(), certs.key()]);
                tls_ca = Some(certs.ca());
                throwaway = Some(certs);
            }
            let (io, fsync) = (workload.io_mode.clone(), workload.fsync.clone());
            let parent = args.node_data_parent.clone();
            let started =
                tokio::task::spawn_blocking(move || EmbeddedNode::start(&bin, &io, &fsync, &extra, parent.as_deref()))
                    .await
                    .map_err(std::io::Error::other)??;
            let addr = match workload.protocol {
                Protocol::Native => started.listening.public.to_string(),
                Protocol::Kafka => match started.listening.kafka {
                    Some(kafka) => kafka.to_string(),
                    None => return Err(BenchError::NoKafkaPort),
                },
            };
            node = Some(started);
            (addr, "embedded".to_string())
        }
    };
    let tls = tls_ca
        .as_deref()
        .map(|ca| strand_client::ClientTls::from_files(ca, None))
        .transpose()
        .map_err(|e| BenchError::Tls(e.to_string()))?;
    let target = if tls.is_some() { format!("{target} (tls)") } else { target };
    let outcome = run_against(&workload, &bootstrap, tls, node.as_ref(), args.quiet).await;
    drop(throwaway);
    if let Some(mut n) = node {
        if outcome.is_err() {
            eprintln!("strand-node stderr (last lines):\n{}", n.stderr_tail());
        }
        tokio::task::spawn_blocking(move || n.stop()).await.map_err(std::io::Error::other)?;
    }
    let results = outcome?;
    Ok(Report { tool: "strand-bench", version: env!("CARGO_PKG_VERSION"), target, config: workload, results })
}

async fn run_against(
    w: &Workload,
    bootstrap: &str,
    tls: Option<strand_client::ClientTls>,
    node: Option<&EmbeddedNode>,
    quiet: bool,
) -> Result<Results, BenchError> {
    let run_id = Clock::new().now_ns() ^ u64::from(std::process::id()) << 32;
    let topics = w.topic_names(run_id);
    let client = match w.protocol {
        Protocol::Native => {
            let mut config = ClientConfig::new(bootstrap);
            config.client_id = "strand-bench".into();
            config.tls = tls;
            let client = Client::connect(config).await?;
            let admin = Admin::new(client.clone());
            for t in &topics {
                admin.create_topic(t, w.partitions, w.replication).await?;
            }
            Target::Native(client)
        }
        Protocol::Kafka => {
            let addr = tokio::net::lookup_host(bootstrap)
                .await?
                .next()
                .ok_or_else(|| BenchError::Kafka(format!("{bootstrap} resolves to no address")))?;
            let client = Arc::new(KafkaClient::new(addr));
            for t in &topics {
                client
                    .create_topic(t, w.partitions, w.replication)
                    .await
                    .map_err(|e| BenchError::Kafka(e.to_string()))?;
            }
            Target::Kafka(client)
        }
    };
    let all: Vec<(String, u32)> = topics.iter().flat_map(|t| (0..w.partitions).map(move |p| (t.clone(), p))).collect();
    let bar = progress_bar(quiet);
    let outcome = if w.backlog_bytes > 0 {
        run_catchup(w, &client, &all, node, &bar).await
    } else {
        run_steady(w, &client, &all, node, &bar).await
    };
    bar.finish_and_clear();
    if let Target::Native(client) = &client {
        client.abort_connections();
    }
    Ok(outcome)
}

/// `--tls`: a CA and a certificate for 127.0.0.1 it signs, as PEM files in a temp dir.
struct ThrowawayCerts {
    dir: tempfile::TempDir,
}

impl ThrowawayCerts {
    fn make() -> Result<Self, BenchError> {
        let tls = |e: rcgen::Error| BenchError::Tls(e.to_string());
        let dir = tempfile::Builder::new().prefix("strand-bench-tls-").tempdir()?;
        let ca_key = rcgen::KeyPair::generate().map_err(tls)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "strand-bench throwaway CA");
        let ca = ca_params.self_signed(&ca_key).map_err(tls)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().map_err(tls)?;
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .map_err(tls)?
            .signed_by(&key, &issuer)
            .map_err(tls)?;
        std::fs::write(dir.path().join("ca.pem"), ca.pem())?;
        std::fs::write(dir.path().join("cert.pem"), cert.pem())?;
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem())?;
        Ok(ThrowawayCerts { dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn cert(&self) -> String {
        self.path("cert.pem")
    }

    fn key(&self) -> String {
        self.path("key.pem")
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }
}

fn progress_bar(quiet: bool) -> ProgressBar {
    let target = if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
    let bar = ProgressBar::with_draw_target(Some(1000), target);
    let style = ProgressStyle::with_template("{spinner} {prefix:>9} [{bar:30}] {percent:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Producer `i` of `n` gets every n-th partition; with more producers than partitions,
/// producers share partitions.
pub fn assign(all: &[(String, u32)], index: usize, count: usize) -> Vec<(String, u32)> {
    if count <= all.len() {
        all.iter().skip(index).step_by(count).cloned().collect()
    } else {
        vec![all[index % all.len()].clone()]
    }
}

/// Consumers own disjoint partitions (each message is consumed once); extra ones idle.
pub fn assign_consumer(all: &[(String, u32)], index: usize, count: usize) -> Vec<(String, u32)> {
    if index >= all.len() {
        return Vec::new();
    }
    all.iter().skip(index).step_by(count.min(all.len())).cloned().collect()
}

fn acks(mode: AcksMode) -> Acks {
    match mode {
        AcksMode::None => Acks::None,
        AcksMode::Leader => Acks::Leader,
        AcksMode::All => Acks::All,
    }
}

fn spawn_producers(
    w: &Workload,
    ctx: &Arc<Shared>,
    client: &Target,
    all: &[(String, u32)],
    rated: bool,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    let count = w.producers as usize;
    (0..count)
        .map(|i| {
            let spec = ProducerSpec {
                partitions: assign(all, i, count),
                msgs_per_sec: if rated {
                    w.rate.msgs_per_sec(w.message_size).map(|r| per_producer_rate(r, w.producers))
                } else {
                    None
                },
                message_size: w.message_size,
                batch_size: w.batch_size,
                linger: Duration::from_millis(w.linger_ms),
                acks: acks(w.acks),
                max_inflight: w.max_inflight,
                producer_index: i as u32,
            };
            tokio::spawn(run_producer(Arc::clone(ctx), client.clone(), spec))
        })
        .collect()
}

fn spawn_consumers(
    w: &Workload,
    ctx: &Arc<Shared>,
    client: &Target,
    all: &[(String, u32)],
) -> Vec<tokio::task::JoinHandle<Tally>> {
    let count = w.consumers as usize;
    (0..count)
        .map(|i| tokio::spawn(run_consumer(Arc::clone(ctx), client.clone(), assign_consumer(all, i, count))))
        .collect()
}

async fn join(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut total = Tally::new();
    for t in tasks {
        if let Ok(t) = t.await {
            total.merge(&t);
        }
    }
    total
}

fn window_seconds(ctx: &Shared) -> f64 {
    let start = ctx.window_start_ns.load(Ordering::Relaxed);
    let end = ctx.window_end_ns.load(Ordering::Relaxed);
    end.saturating_sub(start) as f64 / 1e9
}

fn rates_message(ctx: &Shared, last: &mut (u64, u64, u64), dt: f64) -> String {
    let (acked, consumed) = (ctx.acked_bytes.load(Ordering::Relaxed), ctx.consumed_bytes.load(Ordering::Relaxed));
    let errors = ctx.errors.load(Ordering::Relaxed);
    let msg = format!(
        "produce {:.1} MB/s  consume {:.1} MB/s  errors {errors}",
        acked.saturating_sub(last.0) as f64 / dt / 1e6,
        consumed.saturating_sub(last.1) as f64 / dt / 1e6
    );
    *last = (acked, consumed, errors);
    msg
}

/// Steady state: consumers and producers run together through warm-up and the window.
async fn run_steady(
    w: &Workload,
    client: &Target,
    all: &[(String, u32)],
    node: Option<&EmbeddedNode>,
    bar: &ProgressBar,
) -> Results {
    let clock = Clock::new();
    let warmup_ns = (w.warmup_s * 1e9) as u64;
    let end_ns = warmup_ns + (w.duration_s * 1e9) as u64;
    let ctx = Arc::new(Shared::new(clock, warmup_ns, end_ns, 0));
    let consumers = spawn_consumers(w, &ctx, client, all);
    let producers = spawn_producers(w, &ctx, client, all, true);
    let (stopped_early, cpu_start) = tick_until(&ctx, end_ns, warmup_ns, node, bar, "measuring").await;
    ctx.stop_producing.store(true, Ordering::Relaxed);
    let publish = join(producers).await;
    drain(&ctx, w.consumers > 0).await;
    ctx.stop_consuming.store(true, Ordering::Relaxed);
    let e2e = join(consumers).await;
    let window = window_seconds(&ctx);
    let produce = Throughput::new(publish.msgs, publish.bytes, window);
    let consume = Throughput::new(e2e.msgs, e2e.bytes, window);
    let node_usage = node_usage(node, cpu_start, window, publish.bytes + e2e.bytes);
    results(&ctx, &publish, &e2e, produce, consume, node_usage, None, stopped_early)
}

/// Backlog: producers fill `backlog_bytes`, then consumers read it all from offset 0.
async fn run_catchup(
    w: &Workload,
    client: &Target,
    all: &[(String, u32)],
    node: Option<&EmbeddedNode>,
    bar: &ProgressBar,
) -> Results {
    let clock = Clock::new();
    let ctx = Arc::new(Shared::new(clock, 0, u64::MAX, w.backlog_bytes));
    ctx.record_e2e.store(false, Ordering::Relaxed);
    let producers = spawn_producers(w, &ctx, client, all, false);
    let mut interrupted = std::pin::pin!(stop_requested());
    let mut stopped_early = phase(bar, "backlog", TICK, interrupted.as_mut(), || {
        let generated = ctx.generated_bytes.load(Ordering::Relaxed);
        let acked = ctx.acked_bytes.load(Ordering::Relaxed);
        (!ctx.stop_producing.load(Ordering::Relaxed)).then_some((generated, w.backlog_bytes, acked))
    })
    .await;
    if stopped_early {
        ctx.stop_producing.store(true, Ordering::Relaxed);
    }
    let publish = join(producers).await;
    let produce_end = ctx.clock.now_ns();
    let backlog_msgs = ctx.acked_msgs.load(Ordering::Relaxed);
    let backlog_bytes = ctx.acked_bytes.load(Ordering::Relaxed);
    let backlog = Throughput::new(backlog_msgs, backlog_bytes, produce_end as f64 / 1e9);
    let evicted_bytes = match (w.cold, node.and_then(EmbeddedNode::data_dir)) {
        (true, Some(dir)) => {
            let dir = dir.to_path_buf();
            match tokio::task::spawn_blocking(move || evict_segments(&dir)).await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => {
                    eprintln!("strand-bench: evicting the backlog from the page cache failed: {e}; the catch-up reads warm data");
                    0
                }
                Err(e) => {
                    eprintln!("strand-bench: eviction task failed: {e}");
                    0
                }
            }
        }
        _ => 0,
    };

    let consume_start = ctx.clock.now_ns();
    let cpu_start = node.and_then(EmbeddedNode::sample);
    let deadline = consume_start + (w.duration_s * 1e9) as u64;
    let consumers = spawn_consumers(w, &ctx, client, all);
    if !stopped_early {
        stopped_early = phase(bar, "catch-up", Duration::from_millis(10), interrupted, || {
            let done = ctx.consumed_bytes.load(Ordering::Relaxed);
            let more = ctx.consumed_msgs.load(Ordering::Relaxed) < backlog_msgs && ctx.clock.now_ns() < deadline;
            more.then_some((done, backlog_bytes, done))
        })
        .await;
    }
    let consume_end = ctx.clock.now_ns();
    ctx.stop_consuming.store(true, Ordering::Relaxed);
    let _ = join(consumers).await;
    let (consumed_msgs, consumed_bytes) =
        (ctx.consumed_msgs.load(Ordering::Relaxed), ctx.consumed_bytes.load(Ordering::Relaxed));
    let seconds = consume_end.saturating_sub(consume_start) as f64 / 1e9;
    let catchup_consume = Throughput::new(consumed_msgs, consumed_bytes, seconds);
    let node_usage = node_usage(node, cpu_start, seconds, consumed_bytes);
    let catchup = CatchupResult {
        backlog_bytes,
        produce: backlog,
        consume: catchup_consume,
        completed: consumed_msgs >= backlog_msgs,
        evicted_bytes,
    };
    results(&ctx, &publish, &Tally::new(), backlog, catchup_consume, node_usage, Some(catchup), stopped_early)
}

/// One progress-bar phase of the catch-up run: every `tick`, `progress` returns
/// `(position, total, shown)` bytes (bar at `position / total`, text `shown / total MB`)
/// or `None` once the phase is over. Returns whether `interrupted` fired first.
async fn phase(
    bar: &ProgressBar,
    prefix: &'static str,
    tick: Duration,
    mut interrupted: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    mut progress: impl FnMut() -> Option<(u64, u64, u64)>,
) -> bool {
    bar.set_prefix(prefix);
    while let Some((position, total, shown)) = progress() {
        bar.set_position((position.saturating_mul(1000) / total.max(1)).min(1000));
        bar.set_message(format!("{:.0} / {:.0} MB", shown as f64 / 1e6, total as f64 / 1e6));
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = &mut interrupted => return true,
        }
    }
    false
}

/// Shows progress until `end_ns` or CTRL-C/SIGTERM; samples node CPU when the window starts.
/// Returns whether it was interrupted, and the CPU sample at the window start.
async fn tick_until(
    ctx: &Shared,
    end_ns: u64,
    warmup_ns: u64,
    node: Option<&EmbeddedNode>,
    bar: &ProgressBar,
    label: &str,
) -> (bool, Option<ProcSample>) {
    let mut cpu_start = if warmup_ns == 0 { node.and_then(EmbeddedNode::sample) } else { None };
    let mut interrupted = std::pin::pin!(stop_requested());
    let mut last = (0, 0, 0);
    loop {
        let now = ctx.clock.now_ns();
        if now >= end_ns {
            return (false, cpu_start);
        }
        if cpu_start.is_none() && now >= warmup_ns {
            cpu_start = node.and_then(EmbeddedNode::sample);
        }
        bar.set_prefix(if now < warmup_ns { "warm-up" } else { label }.to_string());
        bar.set_position(now.saturating_mul(1000) / end_ns.max(1));
        bar.set_message(rates_message(ctx, &mut last, TICK.as_secs_f64()));
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = &mut interrupted => {
                let now = ctx.clock.now_ns();
                ctx.window_end_ns.store(now.max(warmup_ns), Ordering::Relaxed);
                return (true, cpu_start);
            }
        }
    }
}

/// Lets consumers catch up with everything acked, up to [`DRAIN_TIMEOUT`].
async fn drain(ctx: &Shared, have_consumers: bool) {
    let deadline = ctx.clock.now_ns() + DRAIN_TIMEOUT.as_nanos() as u64;
    while have_consumers
        && ctx.consumed_msgs.load(Ordering::Relaxed) < ctx.acked_msgs.load(Ordering::Relaxed)
        && ctx.clock.now_ns() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn node_usage(node: Option<&EmbeddedNode>, start: Option<ProcSample>, window_s: f64, bytes: u64) -> Option<NodeUsage> {
    let (start, end) = (start?, node?.sample()?);
    let cpu_seconds = (end.cpu_seconds - start.cpu_seconds).max(0.0);
    Some(NodeUsage {
        cpu_seconds,
        cpu_percent: if window_s > 0.0 { cpu_seconds / window_s * 100.0 } else { 0.0 },
        rss_peak_bytes: end.rss_peak_bytes,
        cpu_seconds_per_gb: if bytes > 0 { cpu_seconds / (bytes as f64 / 1e9) } else { 0.0 },
    })
}

#[allow(clippy::too_many_arguments)] // reason: a plain assembly of the run's separately measured parts
fn results(
    ctx: &Shared,
    publish: &Tally,
    e2e: &Tally,
    produce: Throughput,
    consume: Throughput,
    node: Option<NodeUsage>,
    catchup: Option<CatchupResult>,
    stopped_early: bool,
) -> Results {
    Results {
        publish: LatencySummary::from_histogram(&publish.latency),
        end_to_end: LatencySummary::from_histogram(&e2e.latency),
        produce,
        consume,
        node,
        catchup,
        errors: ctx.errors.load(Ordering::Relaxed),
        first_error: ctx.first_error.lock().ok().and_then(|f| f.clone()),
        stopped_early,
    }
}

/// Makes every segment file under `dir` clean (fdatasync) and drops its pages from the page
/// cache (`POSIX_FADV_DONTNEED`), so a catch-up reads them from the disk. Returns the bytes
/// of the files evicted.
fn evict_segments(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                let file = std::fs::File::open(&path)?;
                file.sync_data()?;
                rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
                bytes += file.metadata()?.len();
            }
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(n: u32) -> Vec<(String, u32)> {
        (0..n).map(|p| ("t".to_string(), p)).collect()
    }

    #[test]
    fn producers_cover_every_partition() {
        let all = parts(16);
        let mut seen: Vec<u32> = (0..3).flat_map(|i| assign(&all, i, 3)).map(|(_, p)| p).collect();
        seen.sort();
        assert_eq!(seen, (0..16).collect::<Vec<_>>());
        // More producers than partitions: they share.
        assert_eq!(assign(&parts(2), 3, 4), vec![("t".to_string(), 1)]);
    }

    #[test]
    fn consumers_are_disjoint() {
        let all = parts(3);
        let got: Vec<Vec<(String, u32)>> = (0..5).map(|i| assign_consumer(&all, i, 5)).collect();
        assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 3);
        assert!(got[3].is_empty() && got[4].is_empty());
        let all = parts(16);
        let mut seen: Vec<u32> = (0..2).flat_map(|i| assign_consumer(&all, i, 2)).map(|(_, p)| p).collect();
        seen.sort();
        assert_eq!(seen, (0..16).collect::<Vec<_>>());
    }
}
