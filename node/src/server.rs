//! Starting and stopping a whole node: one pinned glommio executor per shard, the
//! public-port rendezvous, the admin thread and signal handling.
//!
//! Startup order: lock the data dir → bind every port (exclusively: see `net::listen`)
//! → (cluster mode: connect to etcd and read the view) → load the registry → start
//! shards (each: DMA probe, open owned partitions, start accepting on the listeners it
//! was given — plus, in cluster mode, the replication listener and the reconcile task)
//! → when every shard reported ready, (cluster mode: register this node in etcd) print
//! the `strand-node listening:` line and mark the node serving. Shutdown (SIGTERM,
//! SIGINT): mark not serving, send `Shutdown` to every shard (each stops
//! accepting, finishes in-flight appends and closes its logs), revoke the etcd lease
//! (cluster mode: peers reconfigure at once), join, exit.
//!
//! The public port has one listener, on shard 0, which hands connections round-robin
//! to the shards; no port of the node can be joined by another process.

use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use glommio::{LocalExecutorBuilder, Placement};
use strand_core::placement::ShardId;
use tracing::{error, info, warn};

use crate::admin::AdminServer;
use crate::config::NodeConfig;
use crate::data_dir::{DataDirLock, FormatError, LockError};
use crate::log::IoMode;
use crate::metrics::NodeMetrics;
use crate::net::listen::{self, BindError, NodeListeners};
use crate::shard::forward::{ShardCall, ShardMsg, SHARD_INBOX_LEN};
use crate::shard::registry::{RegistryError, TopicRegistry};
use crate::shard::{BoundPorts, NodeShared, Shard, ShardError};
use crate::topic::TopicConfig;

/// Why the node could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    DataDirLock(#[from] LockError),
    #[error(transparent)]
    DataFormat(#[from] FormatError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error("cannot start shard executor: {0}")]
    Executor(String),
    #[error("signal handler: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Shards(String),
    #[error("cluster mode: {0}")]
    Control(#[from] crate::control::ControlError),
    /// A `--tls-*` file is missing or unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Security(#[from] crate::security::SetupError),
}

/// A shard's startup result: ready, or why not.
type PortReport = Result<usize, String>;

impl NodeError {
    /// The process exit code for this failure: 78 (`EX_CONFIG`) when the host's state
    /// forbids the start — a port or the data dir held by another process, a data dir of
    /// another format, a TLS file missing or unusable — so systemd's
    /// `RestartPreventExitStatus` does not loop on it; 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            NodeError::DataDirLock(LockError::InUse { .. }) => 78,
            NodeError::DataFormat(FormatError::Unmarked { .. } | FormatError::Other { .. }) => 78,
            NodeError::Bind(e) if e.in_use() => 78,
            NodeError::Control(crate::control::ControlError::NodeIdTaken { .. }) => 78,
            NodeError::Tls(_) => 78,
            NodeError::Security(crate::security::SetupError::NoPassword(_) | crate::security::SetupError::Store(_)) => {
                78
            }
            _ => 1,
        }
    }
}

/// Runs a node until SIGTERM/SIGINT; returns after every shard closed its logs.
pub fn run(config: NodeConfig) -> Result<(), NodeError> {
    // First: a bad certificate must stop the start before anything is opened or bound.
    let tls = load_tls(&config)?;
    let cluster_tls = load_cluster_tls(&config)?;
    // Held until this function returns: no other node may open this data dir meanwhile.
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    // Before anything in the dir is opened: recovery would cut an old-format log as damage.
    crate::data_dir::check_format(&config.data_dir)?;
    let listeners = listen::bind_all(&config)?;
    // Cluster mode reads the view before this node registers (the start-up order that
    // keeps `epoch_min` safe); binding first is harmless, nobody knows the ports yet.
    let control = config.cluster.clone().map(crate::control::connect).transpose()?;
    // Users and ACLs: the data dir's, or in cluster mode etcd's (every node sees every user).
    let dir = config.data_dir.clone();
    let security =
        crate::security::Security::open(dir, config.require_auth, config.superuser.as_deref(), control.clone())?;
    let mut registry = TopicRegistry::load(&config.data_dir)?;
    ensure_offsets_topic(&mut registry, config.shards)?;
    let topics = local_topics(&registry, control.is_some());
    let topics = crate::shard::admission::admit_at_start(topics, &config.data_dir, &config.admission);
    let shard_count = usize::from(config.shards);
    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..shard_count).map(|_| flume::bounded(SHARD_INBOX_LEN)).unzip();
    let (group_inboxes, group_receivers): (Vec<_>, Vec<_>) =
        (0..shard_count).map(|_| flume::bounded(crate::groups::GROUP_INBOX_LEN)).unzip();
    let shared = Arc::new(NodeShared {
        metrics: Arc::new(NodeMetrics::new(shard_count, config.limits.metrics_series_max as usize)),
        registry: Mutex::new(registry),
        inboxes,
        group_inboxes,
        ports: OnceLock::new(),
        connections: AtomicU32::new(0),
        connection_sources: Arc::default(),
        producer_ids: Default::default(),
        quotas: crate::quota::QuotaRegistry::with_users(config.quotas, config.quota_users.clone()),
        config,
        control,
        tls,
        cluster_tls,
        security,
    });
    let ports = bound_ports(&listeners, shared.control.is_some());
    let NodeListeners { public, shards: own, replication, admin, kafka } = listeners;
    let mut public = Some((public, kafka));
    let mut replication = replication.into_iter().map(Some).collect::<Vec<_>>();
    let (handoff_tx, handoff_rx): (Vec<_>, Vec<_>) =
        (0..shard_count).map(|_| flume::bounded(crate::net::HANDOFF_QUEUE_LEN)).unzip();
    let (ports_tx, ports_rx) = mpsc::channel::<PortReport>();
    let mut handles = Vec::with_capacity(shard_count);
    for (s, ((inbox, group_inbox), (own, handed))) in
        receivers.into_iter().zip(group_receivers).zip(own.into_iter().zip(handoff_rx)).enumerate()
    {
        let (shared, topics, ports_tx) = (shared.clone(), topics.clone(), ports_tx.clone());
        let inboxes = ShardInboxes { calls: inbox, groups: group_inbox };
        let public = match s {
            0 => {
                let (public, kafka) = public.take().expect("shard 0 is started once");
                PublicPort::Accept { public, kafka, handoff: handoff_tx.clone() }
            }
            _ => PublicPort::Adopt(handed),
        };
        let listeners = ShardListeners { public, own, replication: replication.get_mut(s).and_then(Option::take) };
        let start = move || shard_main(s, shared, inboxes, topics, listeners, ports_tx);
        handles.push(spawn_executor(s, start)?);
    }
    drop((ports_tx, handoff_tx));
    let mut start_error = None;
    let started = collect_ready(&ports_rx, shard_count).map_err(NodeError::Shards);
    let admin = match started.and_then(|()| register(&shared, ports)) {
        Ok(ports) => Some(announce(&shared, ports, admin)?),
        Err(e) => {
            error!(error = %e, "node failed to start");
            shutdown_all(&shared);
            start_error = Some(e);
            None
        }
    };
    if admin.is_some() {
        watch_signals(shared.clone())?;
    }
    let failures: Vec<String> = handles
        .into_iter()
        .enumerate()
        .filter_map(|(s, h)| match h.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("shard {s} executor: {e}")),
        })
        .collect();
    if let Some(admin) = admin {
        admin.stop();
    }
    if let Some(control) = &shared.control {
        control.shutdown();
    }
    match (failures.is_empty(), shared.ports.get().is_some(), start_error) {
        (true, true, _) => {
            info!("node stopped cleanly");
            Ok(())
        }
        (_, _, Some(e)) => Err(e),
        _ => Err(NodeError::Shards(failures.join("; "))),
    }
}

fn spawn_executor(
    s: usize,
    start: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ShardError>>>> + Send + 'static,
) -> Result<glommio::ExecutorJoinHandle<Result<(), ShardError>>, NodeError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let name = format!("strand-shard-{s}");
    let start = Arc::new(Mutex::new(Some(start)));
    let make = |placement: Placement| {
        let start = start.clone();
        let blocking = glommio::PoolPlacement::Unbound(crate::net::zerocopy::BLOCKING_THREADS_PER_SHARD);
        LocalExecutorBuilder::new(placement).blocking_thread_pool_placement(blocking).name(&name).spawn(move || {
            let start = start.lock().ok().and_then(|mut s| s.take());
            async move {
                match start {
                    Some(start) => start().await,
                    None => Err(ShardError::Other { shard: s as u16, reason: "started twice".into() }),
                }
            }
        })
    };
    if s < cpus {
        match make(Placement::Fixed(s)) {
            Ok(handle) => return Ok(handle),
            Err(e) => warn!(shard = s, error = %e, "cannot pin shard to its CPU; running unpinned"),
        }
    }
    make(Placement::Unbound).map_err(|e| NodeError::Executor(e.to_string()))
}

/// The ports the node bound (admin too), as peers and clients are told them.
fn bound_ports(listeners: &NodeListeners, cluster: bool) -> BoundPorts {
    BoundPorts {
        public: listen::port(&listeners.public),
        admin: listen::port(&listeners.admin),
        shards: listeners.shards.iter().map(listen::port).collect(),
        replication: if cluster { listeners.replication.iter().map(listen::port).collect() } else { Vec::new() },
        kafka: listeners.kafka.as_ref().map(listen::port),
    }
}

/// Waits until every shard opened its partitions and started accepting.
fn collect_ready(rx: &mpsc::Receiver<PortReport>, shard_count: usize) -> Result<(), String> {
    for _ in 0..shard_count {
        match rx.recv() {
            Ok(Ok(_shard)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a shard exited during startup".into()),
        }
    }
    Ok(())
}

/// Cluster mode: registers this node (lease, keep-alive, controller campaign) once every
/// port is bound, so peers that see the record can reach it. Refused
/// (`ControlError::NodeIdTaken`) while another data dir's process holds the node id.
fn register(shared: &NodeShared, ports: BoundPorts) -> Result<BoundPorts, NodeError> {
    let Some(control) = &shared.control else { return Ok(ports) };
    let data_dir = &shared.config.data_dir;
    let token = crate::control::token::load_or_create(data_dir)
        .map_err(|source| NodeError::DataDir { path: data_dir.display().to_string(), source })?;
    let record = crate::control::NodeRecord {
        node_id: control.node_id(),
        host: shared.config.advertise_host.clone(),
        port: ports.public,
        shard_ports: ports.shards.clone(),
        replication_ports: ports.replication.clone(),
        admin_port: ports.admin,
        kafka_port: ports.kafka.unwrap_or(0),
        incarnation: 0,
        token,
    };
    control.register(record)?;
    info!(node_id = control.node_id(), replication_ports = ?ports.replication, "registered in the cluster");
    Ok(ports)
}

/// The topics shards open from the node-local registry: all of them on a single node;
/// none in cluster mode (cluster topics, the offsets topic included, come from the view).
fn local_topics(registry: &TopicRegistry, cluster: bool) -> Vec<TopicConfig> {
    let (local, ignored): (Vec<TopicConfig>, Vec<TopicConfig>) =
        registry.topics().values().cloned().partition(|_| !cluster);
    for t in ignored.into_iter().filter(|t| !crate::topic::is_internal_topic(&t.name)) {
        warn!(topic = %t.name, "node-local topic not served in cluster mode (topics come from etcd)");
    }
    local
}

fn announce(
    shared: &Arc<NodeShared>,
    ports: BoundPorts,
    admin: std::net::TcpListener,
) -> Result<AdminServer, NodeError> {
    let admin = AdminServer::start(admin, shared.clone())?;
    let ip = shared.config.listen.ip();
    let shard_list: Vec<String> = ports.shards.iter().map(|p| p.to_string()).collect();
    let _ = shared.ports.set(ports.clone());
    shared.metrics.serving.store(true, Ordering::Relaxed);
    info!(data_dir = %shared.config.data_dir.display(), shards = shared.config.shards, "node serving");
    // The one line tools and tests parse; keep its format stable.
    let kafka = match (ports.kafka, shared.config.kafka_listen) {
        (Some(port), Some(addr)) => format!("{}:{port}", addr.ip()),
        _ => "off".to_string(),
    };
    eprintln!(
        "strand-node listening: public={ip}:{} admin={} shards={} kafka={kafka}",
        ports.public,
        admin.addr,
        shard_list.join(",")
    );
    Ok(admin)
}

fn shutdown_all(shared: &NodeShared) {
    shared.metrics.serving.store(false, Ordering::Relaxed);
    for inbox in &shared.inboxes {
        let _ = inbox.send(ShardMsg { call: ShardCall::Shutdown, reply: None });
    }
}

/// Loads the client ports' TLS files (`--tls-cert`), if given, and logs how fetches will
/// leave: the kernel's TLS offload is not used yet, so every fetch is encrypted in user space.
fn load_tls(config: &NodeConfig) -> Result<Option<Arc<crate::tls::TlsServer>>, NodeError> {
    let Some(files) = &config.tls else { return Ok(None) };
    let server = crate::tls::TlsServer::load(files.clone())?;
    let ktls = crate::tls::kernel_tls_available();
    info!(
        cert = %files.cert.display(),
        mutual = files.client_ca.is_some(),
        kernel_tls_available = ktls,
        fetch_path = "user-space encryption through a bounded buffer (no sendfile)",
        "TLS on the public, shard and Kafka ports and the admin HTTP"
    );
    Ok(Some(Arc::new(server)))
}

/// Loads the replication links' TLS files (`--cluster-tls-*`), if given.
fn load_cluster_tls(config: &NodeConfig) -> Result<Option<Arc<crate::replication::tls::LinkTls>>, NodeError> {
    let Some(files) = &config.cluster_tls else { return Ok(None) };
    let tls = crate::replication::tls::LinkTls::load(files.clone())?;
    info!(cert = %files.cert.display(), "mutual TLS on replication links (cluster CA required of every peer)");
    Ok(Some(Arc::new(tls)))
}

/// SIGTERM/SIGINT: shut down. SIGHUP: reload the TLS files (a bad file keeps the old ones).
fn watch_signals(shared: Arc<NodeShared>) -> Result<(), NodeError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(NodeError::Signals)?;
    std::thread::Builder::new()
        .name("strand-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    reload_tls(&shared);
                    continue;
                }
                info!(signal, "signal received; shutting down");
                shutdown_all(&shared);
                // Revoking the lease lets peers reconfigure at once instead of after the TTL.
                if let Some(control) = &shared.control {
                    control.shutdown();
                }
                break;
            }
        })
        .map_err(NodeError::Signals)?;
    Ok(())
}

/// SIGHUP: new connections get the TLS files as they are now; open ones keep theirs.
fn reload_tls(shared: &NodeShared) {
    if let Some(links) = &shared.cluster_tls {
        match links.reload() {
            Ok(()) => info!(cert = %links.files().cert.display(), "SIGHUP: cluster TLS reloaded; new links use it"),
            Err(e) => error!(error = %e, "SIGHUP: cluster TLS reload failed; keeping the previous files"),
        }
    }
    let Some(tls) = &shared.tls else {
        info!("SIGHUP received; nothing to reload (TLS is off)");
        return;
    };
    match tls.reload() {
        Ok(()) => info!(cert = %tls.files().cert.display(), "SIGHUP: TLS certificate reloaded; new connections use it"),
        Err(e) => error!(error = %e, "SIGHUP: TLS reload failed; keeping the previous certificate"),
    }
}

/// The receiving ends of one shard's inboxes.
struct ShardInboxes {
    calls: flume::Receiver<ShardMsg>,
    groups: flume::Receiver<crate::groups::GroupMsg>,
}

/// Creates the internal offsets topic (one partition per shard) on first start. It
/// keeps its partition count afterwards: group placement depends on it.
fn ensure_offsets_topic(registry: &mut TopicRegistry, shards: u16) -> Result<(), NodeError> {
    let name = crate::groups::OFFSETS_TOPIC;
    if registry.topics().contains_key(name) {
        return Ok(());
    }
    let topic = TopicConfig {
        name: name.to_string(),
        partitions: u32::from(shards),
        replication_factor: 1,
        configs: Default::default(),
    };
    registry.create(topic)?;
    info!(topic = name, partitions = shards, "internal offsets topic created");
    Ok(())
}

/// How a shard takes part in the node-wide ports (public and Kafka).
enum PublicPort {
    /// Shard 0: the listeners, and the queues to hand connections to every shard.
    Accept {
        public: std::net::TcpListener,
        kafka: Option<std::net::TcpListener>,
        handoff: Vec<flume::Sender<crate::net::Handoff>>,
    },
    /// Every other shard: the connections shard 0 hands over.
    Adopt(flume::Receiver<crate::net::Handoff>),
}

/// What one shard serves, bound on the main thread.
struct ShardListeners {
    public: PublicPort,
    own: std::net::TcpListener,
    /// Cluster mode only.
    replication: Option<std::net::TcpListener>,
}

fn shard_main(
    s: usize,
    shared: Arc<NodeShared>,
    inboxes: ShardInboxes,
    topics: Vec<TopicConfig>,
    listeners: ShardListeners,
    ports_tx: mpsc::Sender<PortReport>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ShardError>>>> {
    Box::pin(async move {
        let shard = Shard::new(ShardId(s as u16), shared);
        if let Err(e) = start_shard(&shard, &topics).await {
            let _ = ports_tx.send(Err(e.to_string()));
            return Err(e);
        }
        let _ = ports_tx.send(Ok(s));
        if let (Some(listener), Some(cluster)) = (listeners.replication, shard.cluster()) {
            let handler = cluster.replicator.frame_handler();
            let inbound = crate::replication::link::Inbound {
                auth: cluster.link_auth(),
                limits: shard.shared.config.replication_limits,
                metrics: shard.metrics.clone(),
                on_peer_lost: Some(cluster.peer_lost_reporter()),
            };
            glommio::spawn_local(crate::replication::link::serve(on_executor(listener), handler, inbound)).detach();
            glommio::spawn_local(shard.clone().reconcile_loop()).detach();
            glommio::spawn_local(shard.clone().group_heads_loop()).detach();
        }
        glommio::spawn_local(shard.clone().serve_inbox(inboxes.calls)).detach();
        glommio::spawn_local(shard.clone().serve_group_inbox(inboxes.groups)).detach();
        glommio::spawn_local(shard.clone().group_timer()).detach();
        match listeners.public {
            PublicPort::Accept { public, kafka, handoff } => {
                if let Some(kafka) = kafka {
                    let (listener, protocol) = (on_executor(kafka), crate::net::Protocol::Kafka);
                    glommio::spawn_local(crate::net::accept_public(shard.clone(), listener, protocol, handoff.clone()))
                        .detach();
                }
                let (listener, protocol) = (on_executor(public), crate::net::Protocol::Native);
                glommio::spawn_local(crate::net::accept_public(shard.clone(), listener, protocol, handoff)).detach();
            }
            PublicPort::Adopt(handed) => {
                glommio::spawn_local(crate::net::adopt_loop(shard.clone(), handed)).detach();
            }
        }
        glommio::spawn_local(crate::net::accept_loop(shard.clone(), on_executor(listeners.own), "shard")).detach();
        glommio::spawn_local(shard.clone().housekeeping()).detach();
        while !shard.is_stopping() {
            let stop = shard.stop.listen();
            if shard.is_stopping() {
                break;
            }
            stop.await;
        }
        shard.publish_gauges();
        shard.finish().await
    })
}

/// Moves a listener bound on the main thread onto this shard's reactor.
fn on_executor(listener: std::net::TcpListener) -> glommio::net::TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = listener.into_raw_fd();
    // SAFETY: `fd` is a bound, listening TCP socket whose ownership `into_raw_fd` just
    // released to us; glommio's listener takes it over and is its only owner from here.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd) }
}

/// Probes DMA, opens owned partitions and loads this shard's groups.
async fn start_shard(shard: &Rc<Shard>, topics: &[TopicConfig]) -> Result<(), ShardError> {
    let config = &shard.shared.config;
    let id = shard.id.0;
    if matches!(config.log.io_mode, IoMode::Direct) {
        crate::log::probe_dma(&config.data_dir)
            .await
            .map_err(|e| ShardError::Other { shard: id, reason: format!("DMA probe: {e}") })?;
    }
    for topic in topics {
        shard.open_topic(topic).await?;
    }
    shard.load_groups().await
}
