//! Starting and stopping a whole node: one pinned glommio executor per shard, the
//! public-port rendezvous, the admin thread and signal handling.
//!
//! Startup order: (cluster mode: connect to etcd and read the view) → load the registry
//! → start shards (each: DMA probe, open owned partitions, bind ports — plus, in cluster
//! mode, a replication listener and the reconcile task) → when every shard reported its
//! ports, (cluster mode: register this node in etcd) print the `strand-node listening:`
//! line and mark the node serving. Shutdown (SIGTERM,
//! SIGINT): mark not serving, send `Shutdown` to every shard (each stops
//! accepting, finishes in-flight appends and closes its logs), revoke the etcd lease
//! (cluster mode: peers reconfigure at once), join, exit.
//!
//! The public port is shared by all shards with `SO_REUSEPORT`: shard 0 binds the
//! configured address first (so port 0 resolves to one real port) and the others
//! bind the address it got.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};

use glommio::{LocalExecutorBuilder, Placement};
use strand_core::placement::ShardId;
use tracing::{error, info, warn};

use super::forward::{ShardCall, ShardMsg, SHARD_INBOX_LEN};
use super::registry::{TopicConfig, TopicRegistry};
use super::{now_ms, BoundPorts, NodeShared, Shard, ShardError};
use crate::admin::AdminServer;
use crate::config::NodeConfig;
use crate::log::IoMode;
use crate::metrics::NodeMetrics;

/// Why the node could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Registry(#[from] super::registry::RegistryError),
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
}

/// The public address once shard 0 bound it (or why it could not).
type Rendezvous = Arc<(Mutex<Option<Result<SocketAddr, String>>>, Condvar)>;
/// A shard's bound ports or its startup failure.
type PortReport = Result<ShardPorts, String>;

/// What one shard bound.
struct ShardPorts {
    shard: usize,
    own: u16,
    public: u16,
    /// Replication listener (0 on a single node).
    replication: u16,
}

/// Runs a node until SIGTERM/SIGINT; returns after every shard closed its logs.
pub fn run(config: NodeConfig) -> Result<(), NodeError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| NodeError::DataDir { path: config.data_dir.display().to_string(), source })?;
    // Cluster mode reads the view before anything binds (DESIGN §6 start-up order).
    let control = config.cluster.clone().map(crate::control::connect).transpose()?;
    let mut registry = TopicRegistry::load(&config.data_dir)?;
    ensure_offsets_topic(&mut registry, config.shards)?;
    let topics = local_topics(&registry, control.is_some());
    let shard_count = usize::from(config.shards);
    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..shard_count).map(|_| flume::bounded(SHARD_INBOX_LEN)).unzip();
    let (group_inboxes, group_receivers): (Vec<_>, Vec<_>) =
        (0..shard_count).map(|_| flume::bounded(crate::groups::GROUP_INBOX_LEN)).unzip();
    let shared = Arc::new(NodeShared {
        metrics: Arc::new(NodeMetrics::new(shard_count)),
        registry: Mutex::new(registry),
        inboxes,
        group_inboxes,
        ports: OnceLock::new(),
        connections: AtomicU32::new(0),
        next_producer_id: AtomicU64::new((now_ms().max(1) as u64) << 16),
        config,
        control,
    });
    let rendezvous: Rendezvous = Arc::new((Mutex::new(None), Condvar::new()));
    let (ports_tx, ports_rx) = mpsc::channel::<PortReport>();
    let mut handles = Vec::with_capacity(shard_count);
    for (s, (inbox, group_inbox)) in receivers.into_iter().zip(group_receivers).enumerate() {
        let (shared, topics, rendezvous, ports_tx) =
            (shared.clone(), topics.clone(), rendezvous.clone(), ports_tx.clone());
        let inboxes = ShardInboxes { calls: inbox, groups: group_inbox };
        let start = move || shard_main(s, shared, inboxes, topics, rendezvous, ports_tx);
        handles.push(spawn_executor(s, start)?);
    }
    drop(ports_tx);
    let mut start_error = None;
    let started = collect_ports(&shared, &ports_rx, shard_count).map_err(NodeError::Shards);
    let admin = match started.and_then(|p| register(&shared, p)) {
        Ok(ports) => Some(announce(&shared, ports)?),
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
            Ok(Err(e)) => Some(format!("shard {s}: {e}")),
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

fn collect_ports(
    shared: &NodeShared,
    rx: &mpsc::Receiver<PortReport>,
    shard_count: usize,
) -> Result<BoundPorts, String> {
    let mut shards = vec![0u16; shard_count];
    let mut replication = vec![0u16; shard_count];
    let mut public = 0;
    for _ in 0..shard_count {
        match rx.recv() {
            Ok(Ok(p)) => {
                shards[p.shard] = p.own;
                replication[p.shard] = p.replication;
                public = p.public;
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a shard exited during startup".into()),
        }
    }
    if shared.control.is_none() {
        replication.clear();
    }
    Ok(BoundPorts { public, admin: 0, shards, replication })
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
    for t in ignored.into_iter().filter(|t| !crate::groups::is_internal_topic(&t.name)) {
        warn!(topic = %t.name, "node-local topic not served in cluster mode (topics come from etcd)");
    }
    local
}

fn announce(shared: &Arc<NodeShared>, mut ports: BoundPorts) -> Result<AdminServer, NodeError> {
    let admin = AdminServer::start(shared.config.admin, shared.clone())?;
    ports.admin = admin.addr.port();
    let ip = shared.config.listen.ip();
    let shard_list: Vec<String> = ports.shards.iter().map(|p| p.to_string()).collect();
    let _ = shared.ports.set(ports.clone());
    shared.metrics.serving.store(true, Ordering::Relaxed);
    info!(data_dir = %shared.config.data_dir.display(), shards = shared.config.shards, "node serving");
    // The one line tools and tests parse; keep its format stable.
    eprintln!(
        "strand-node listening: public={ip}:{} admin={} shards={}",
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

fn watch_signals(shared: Arc<NodeShared>) -> Result<(), NodeError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(NodeError::Signals)?;
    std::thread::Builder::new()
        .name("strand-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                info!(signal, "signal received; shutting down");
                shutdown_all(&shared);
                // Revoking the lease lets peers reconfigure at once instead of after the TTL.
                if let Some(control) = &shared.control {
                    control.shutdown();
                }
            }
        })
        .map_err(NodeError::Signals)?;
    Ok(())
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

fn shard_main(
    s: usize,
    shared: Arc<NodeShared>,
    inboxes: ShardInboxes,
    topics: Vec<TopicConfig>,
    rendezvous: Rendezvous,
    ports_tx: mpsc::Sender<PortReport>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ShardError>>>> {
    Box::pin(async move {
        let shard = Shard::new(ShardId(s as u16), shared);
        let started = start_shard(&shard, &topics, &rendezvous).await;
        let (public, own, replication) = match started {
            Ok(listeners) => listeners,
            Err(e) => {
                if s == 0 {
                    publish_public(&rendezvous, Err(e.to_string()));
                }
                let _ = ports_tx.send(Err(e.to_string()));
                return Err(e);
            }
        };
        let port = |l: &glommio::net::TcpListener| l.local_addr().map(|a| a.port()).unwrap_or(0);
        let ports = ShardPorts {
            shard: s,
            own: port(&own),
            public: port(&public),
            replication: replication.as_ref().map_or(0, port),
        };
        let _ = ports_tx.send(Ok(ports));
        if let (Some(listener), Some(cluster)) = (replication, shard.cluster()) {
            let handler = cluster.replicator.frame_handler();
            let inbound = crate::replication::link::Inbound {
                auth: cluster.link_auth(),
                limits: shard.shared.config.replication_limits,
                metrics: shard.metrics.clone(),
            };
            glommio::spawn_local(crate::replication::link::serve(listener, handler, inbound)).detach();
            glommio::spawn_local(shard.clone().reconcile_loop()).detach();
            glommio::spawn_local(shard.clone().group_heads_loop()).detach();
        }
        glommio::spawn_local(shard.clone().serve_inbox(inboxes.calls)).detach();
        glommio::spawn_local(shard.clone().serve_group_inbox(inboxes.groups)).detach();
        glommio::spawn_local(shard.clone().group_timer()).detach();
        glommio::spawn_local(crate::net::accept_loop(shard.clone(), public, "public")).detach();
        glommio::spawn_local(crate::net::accept_loop(shard.clone(), own, "shard")).detach();
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

/// The listeners of one shard: public, own fast-path port, replication (cluster mode).
type Listeners = (glommio::net::TcpListener, glommio::net::TcpListener, Option<glommio::net::TcpListener>);

/// Probes DMA, opens owned partitions, binds the public, shard and replication ports.
async fn start_shard(
    shard: &Rc<Shard>,
    topics: &[TopicConfig],
    rendezvous: &Rendezvous,
) -> Result<Listeners, ShardError> {
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
    shard.load_groups().await?;
    let listen_err = |addr: SocketAddr, source| ShardError::Listen { shard: id, addr: addr.to_string(), source };
    let public = if id == 0 {
        let l = glommio::net::TcpListener::bind(config.listen).map_err(|e| listen_err(config.listen, e.into()))?;
        let addr = l.local_addr().map_err(|e| listen_err(config.listen, e.into()))?;
        publish_public(rendezvous, Ok(addr));
        l
    } else {
        let addr = wait_public(rendezvous).map_err(|reason| ShardError::Other { shard: id, reason })?;
        glommio::net::TcpListener::bind(addr).map_err(|e| listen_err(addr, e.into()))?
    };
    let own_port = config.shard_port_base.map_or(0, |base| base + id);
    let own_addr = SocketAddr::new(config.listen.ip(), own_port);
    let own = glommio::net::TcpListener::bind(own_addr).map_err(|e| listen_err(own_addr, e.into()))?;
    let replication = match shard.cluster() {
        None => None,
        Some(_) => {
            let port = config.replication_port_base.map_or(0, |base| base + id);
            let addr = SocketAddr::new(config.listen.ip(), port);
            Some(glommio::net::TcpListener::bind(addr).map_err(|e| listen_err(addr, e.into()))?)
        }
    };
    Ok((public, own, replication))
}

fn publish_public(rendezvous: &Rendezvous, addr: Result<SocketAddr, String>) {
    let (lock, cvar) = &**rendezvous;
    if let Ok(mut slot) = lock.lock() {
        *slot = Some(addr);
        cvar.notify_all();
    }
}

/// Blocks (at startup only) until shard 0 bound the public port.
fn wait_public(rendezvous: &Rendezvous) -> Result<SocketAddr, String> {
    let (lock, cvar) = &**rendezvous;
    let mut slot = lock.lock().map_err(|_| "rendezvous poisoned".to_string())?;
    loop {
        match &*slot {
            Some(Ok(addr)) => return Ok(*addr),
            Some(Err(e)) => return Err(format!("shard 0 failed: {e}")),
            None => slot = cvar.wait(slot).map_err(|_| "rendezvous poisoned".to_string())?,
        }
    }
}
