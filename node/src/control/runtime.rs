//! The etcd thread: one std thread running a tokio current-thread runtime (etcd-client
//! is tokio-based). [`start`] connects (bounded), reads the whole `{prefix}/` keyspace
//! into the initial view and returns; the thread then serves [`ControlRequest`]s while
//! background tasks follow the keyspace (`watch`), hold the lease (`session`) and, on
//! the elected node, run the controller (`controller`).
//!
//! Lifecycle: connect → (Register) lease + node record, keep-alive, campaign → Shutdown
//! revokes the lease (peers reconfigure at once) or Abandon drops everything without
//! revoking (a crash, for tests). All handles dropped = Shutdown.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Txn, TxnOp};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::handle::{ControlError, ControlHandle, ControlRequest, Shared, TopicChange};
use super::keyspace::{keys, Keyspace, Kv};
use super::types::{ControlConfig, InSyncReport, NodeRecord};
use super::{controller, session, suspect, watch as follow};
use crate::log::LogConfig;
use crate::topic::{changed_configs, topic_log_config, TopicConfig};

/// Longest wait for etcd at start (connect + first read).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one etcd request made on behalf of a caller.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long CreateTopic waits for the controller to assign every partition a chain.
const CREATE_WAIT: Duration = Duration::from_secs(10);
/// Bound of the request channel from the shards.
const REQUESTS_MAX: usize = 1024;

/// Connects, reads the initial view and starts the control thread.
pub(super) fn start(config: ControlConfig) -> Result<ControlHandle, ControlError> {
    validate(&config)?;
    let (init_tx, init_rx) = std::sync::mpsc::channel();
    let (requests, requests_rx) = flume::bounded(REQUESTS_MAX);
    std::thread::Builder::new()
        .name("strand-control".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = init_tx.send(Err(ControlError::Etcd(format!("tokio runtime: {e}"))));
                    return;
                }
            };
            runtime.block_on(run(config, requests_rx, init_tx));
        })
        .map_err(|e| ControlError::Etcd(format!("spawning the control thread: {e}")))?;
    let shared = init_rx
        .recv_timeout(CONNECT_TIMEOUT + Duration::from_secs(5))
        .map_err(|_| ControlError::Timeout("the control thread did not start".into()))??;
    Ok(ControlHandle { shared, requests })
}

fn validate(config: &ControlConfig) -> Result<(), ControlError> {
    if config.node_id == 0 {
        return Err(ControlError::Invalid("node id must be >= 1".into()));
    }
    if config.endpoints.is_empty() {
        return Err(ControlError::Invalid("no etcd endpoint".into()));
    }
    if config.lease_ttl_s < 1 {
        return Err(ControlError::Invalid(format!("lease TTL {} s must be >= 1", config.lease_ttl_s)));
    }
    Ok(())
}

/// The prefix without trailing `/` (keys are `{prefix}/…`).
fn normalized_prefix(prefix: &str) -> String {
    prefix.trim_end_matches('/').to_string()
}

/// Reads every key under `{prefix}/` (the revision is the read's).
pub(super) async fn read_all(client: &mut Client, prefix: &str) -> Result<Keyspace, etcd_client::Error> {
    let response = client.get(format!("{prefix}/"), Some(GetOptions::new().with_prefix())).await?;
    let mut keyspace = Keyspace::new(prefix);
    keyspace.revision = response.header().map(|h| h.revision()).unwrap_or(0);
    for kv in response.kvs() {
        keyspace.put(kv_of(kv));
    }
    Ok(keyspace)
}

pub(super) fn kv_of(kv: &etcd_client::KeyValue) -> Kv<'_> {
    Kv {
        key: kv.key(),
        value: kv.value(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: kv.lease(),
    }
}

/// Why the control thread could not connect to etcd and read the keyspace.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error(transparent)]
    Etcd(#[from] etcd_client::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

async fn connect(config: &ControlConfig, prefix: &str) -> Result<(Client, Keyspace), ConnectError> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    let attempt = async {
        let mut client = Client::connect(&config.endpoints, Some(options)).await?;
        let keyspace = read_all(&mut client, prefix).await?;
        Ok::<_, etcd_client::Error>((client, keyspace))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(ConnectError::Timeout(CONNECT_TIMEOUT)),
    }
}

/// The control thread's main task.
async fn run(
    config: ControlConfig,
    requests: flume::Receiver<ControlRequest>,
    init: std::sync::mpsc::Sender<Result<Arc<Shared>, ControlError>>,
) {
    let prefix = normalized_prefix(&config.prefix);
    let (client, keyspace) = match connect(&config, &prefix).await {
        Ok(done) => done,
        Err(e) => {
            let endpoints = config.endpoints.join(",");
            let _ = init.send(Err(ControlError::Etcd(format!("cannot reach {endpoints}: {e}"))));
            return;
        }
    };
    let mut client = client;
    let secret = match cluster_secret(&mut client, &config, &prefix).await {
        Ok(secret) => secret,
        Err(e) => {
            let _ = init.send(Err(e));
            return;
        }
    };
    let view = keyspace.view();
    tracing::info!(
        revision = view.revision,
        nodes = view.nodes.len(),
        topics = view.topics.len(),
        "control plane: initial view read"
    );
    let shared = Arc::new(Shared {
        node_id: config.node_id,
        initial: Arc::new(view.clone()),
        latest: Mutex::new(Arc::new(view)),
        subscribers: Mutex::new(Vec::new()),
        controller: AtomicBool::new(false),
        incarnation: AtomicI64::new(0),
        secret,
    });
    let (snapshots, snapshots_rx) = watch::channel(Arc::new(keyspace.clone()));
    let watcher = tokio::spawn(follow::run(client.clone(), keyspace, snapshots, shared.clone()));
    let _ = init.send(Ok(shared.clone()));
    let detector = suspect::Detector::new(client.clone(), config.node_id, snapshots_rx.clone());
    let mut thread =
        ControlThread { client, config, prefix, shared, snapshots: snapshots_rx, detector, tasks: vec![watcher] };
    loop {
        let request = requests.recv_async().await.ok();
        if !thread.serve(request).await {
            break;
        }
    }
    for task in &thread.tasks {
        task.abort();
    }
}

/// The replication links' secret: the `--cluster-secret-file`'s bytes (trailing
/// whitespace trimmed), else the cluster's one in etcd, created once with a random value
/// by whichever node comes first (transaction: create if absent, else read), so every
/// node reads the same.
async fn cluster_secret(client: &mut Client, config: &ControlConfig, prefix: &str) -> Result<Arc<[u8]>, ControlError> {
    let secret = match &config.secret_file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| ControlError::Secret(format!("{}: {e}", path.display())))?;
            let len = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
            bytes[..len].to_vec()
        }
        None => etcd_secret(client, prefix).await?,
    };
    let min = crate::replication::auth::SECRET_LEN_MIN;
    if secret.len() < min {
        return Err(ControlError::Secret(format!("{} bytes; at least {min} are needed", secret.len())));
    }
    Ok(Arc::from(secret))
}

async fn etcd_secret(client: &mut Client, prefix: &str) -> Result<Vec<u8>, ControlError> {
    let key = keys::cluster_secret(prefix);
    let fresh = crate::replication::auth::random_secret_hex().map_err(|e| ControlError::Secret(e.to_string()))?;
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), fresh.clone(), None)])
        .or_else([TxnOp::get(key.clone(), None)]);
    let response = timed(client.txn(txn)).await?;
    if response.succeeded() {
        tracing::info!(key, "cluster secret created in etcd (a shared --cluster-secret-file is stronger)");
        return Ok(fresh.into_bytes());
    }
    let stored = response.op_responses().into_iter().find_map(|op| match op {
        etcd_client::TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    });
    stored.ok_or_else(|| ControlError::Secret(format!("{key} vanished while it was read")))
}

/// Replaces `{prefix}/security` if its mod revision is still `expected` (0 = absent).
async fn put_security(mut client: Client, prefix: &str, bytes: Vec<u8>, expected: i64) -> Result<i64, ControlError> {
    let key = keys::security(prefix);
    let guard = match expected {
        0 => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        revision => Compare::mod_revision(key.clone(), CompareOp::Equal, revision),
    };
    let txn = Txn::new().when([guard]).and_then([TxnOp::put(key.clone(), bytes, None)]);
    let response = timed(client.txn(txn)).await?;
    if !response.succeeded() {
        return Err(ControlError::Conflict);
    }
    Ok(response.header().map_or(0, |h| h.revision()))
}

/// State of the request loop.
struct ControlThread {
    client: Client,
    config: ControlConfig,
    prefix: String,
    shared: Arc<Shared>,
    snapshots: watch::Receiver<Arc<Keyspace>>,
    detector: suspect::Detector,
    tasks: Vec<JoinHandle<()>>,
}

impl ControlThread {
    /// Serves one request (`None` = every handle dropped); false = stop the thread.
    async fn serve(&mut self, request: Option<ControlRequest>) -> bool {
        let Some(request) = request else {
            self.stop(true).await;
            return false;
        };
        match request {
            ControlRequest::Register { record, reply } => {
                let _ = reply.send(self.register(record).await);
            }
            ControlRequest::CreateTopic { config, reply } => {
                let (client, prefix, snapshots) = (self.client.clone(), self.prefix.clone(), self.snapshots.clone());
                tokio::spawn(async move {
                    let _ = reply.send(create_topic(client, &prefix, snapshots, config).await);
                });
            }
            ControlRequest::AlterTopic { name, change, reply } => {
                let (client, prefix, snapshots) = (self.client.clone(), self.prefix.clone(), self.snapshots.clone());
                tokio::spawn(async move {
                    let _ = reply.send(alter_topic(client, &prefix, snapshots, name, change).await);
                });
            }
            ControlRequest::DeleteTopic { name, reply } => {
                let (client, prefix) = (self.client.clone(), self.prefix.clone());
                tokio::spawn(async move {
                    let _ = reply.send(delete_topic(client, &prefix, &name).await);
                });
            }
            ControlRequest::PutSecurity { bytes, expected, reply } => {
                let (client, prefix) = (self.client.clone(), self.prefix.clone());
                tokio::spawn(async move {
                    let _ = reply.send(put_security(client, &prefix, bytes, expected).await);
                });
            }
            ControlRequest::LearnerInSync { topic, partition, epoch, learner } => {
                self.learner_in_sync(topic, partition, InSyncReport { epoch, learner });
            }
            ControlRequest::Suspect { node, reason } => self.detector.report(node, reason),
            ControlRequest::Shutdown { reply } => {
                self.stop(true).await;
                let _ = reply.send(());
                return false;
            }
            ControlRequest::Abandon { reply } => {
                self.stop(false).await;
                let _ = reply.send(());
                return false;
            }
        }
        true
    }

    /// First registration: lease + node record now (the caller waits), then the
    /// keep-alive/re-registration and controller tasks in the background.
    async fn register(&mut self, record: NodeRecord) -> Result<(), ControlError> {
        if self.shared.incarnation.load(Ordering::Relaxed) != 0 {
            return Err(ControlError::Invalid("this node is already registered".into()));
        }
        if record.node_id != self.config.node_id {
            return Err(ControlError::Invalid(format!(
                "record for node {} on node {}",
                record.node_id, self.config.node_id
            )));
        }
        let mut client = self.client.clone();
        let grant = session::register_once(&mut client, &self.prefix, &record, self.config.lease_ttl_s);
        let lease = match tokio::time::timeout(REQUEST_TIMEOUT, grant).await {
            Ok(Ok(lease)) => lease,
            Ok(Err(e @ ControlError::NodeIdTaken { .. })) => return Err(e),
            Ok(Err(e)) => return Err(ControlError::Etcd(format!("registering node {}: {e}", record.node_id))),
            Err(_) => return Err(ControlError::Timeout(format!("registering node {}", record.node_id))),
        };
        self.shared.incarnation.store(lease, Ordering::Relaxed);
        tracing::info!(node = record.node_id, incarnation = format_args!("{lease:x}"), "registered with etcd");
        let (leases, leases_rx) = watch::channel(Some(lease));
        let session = session::Session {
            client: self.client.clone(),
            prefix: self.prefix.clone(),
            record,
            ttl_s: self.config.lease_ttl_s,
            shared: self.shared.clone(),
            leases,
        };
        self.tasks.push(tokio::spawn(session.run(lease)));
        let leader = controller::Controller {
            client: self.client.clone(),
            prefix: self.prefix.clone(),
            node_id: self.config.node_id,
            shared: self.shared.clone(),
            leases: leases_rx,
            snapshots: self.snapshots.clone(),
            rebalance: self.config.rebalance,
        };
        self.tasks.push(tokio::spawn(leader.run()));
        // Registered means visible: wait until this node's own record is in its view, so
        // a node that serves clients never answers "the cluster has 0 live nodes".
        let node_id = self.config.node_id;
        let mut snapshots = self.snapshots.clone();
        let seen = async { snapshots.wait_for(|ks| ks.nodes.contains_key(&node_id)).await.is_ok() };
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, seen).await;
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(ControlError::Stopped),
            Err(_) => Err(ControlError::Timeout(format!(
                "node {node_id} registered but its record did not reach its own etcd watch within {REQUEST_TIMEOUT:?}"
            ))),
        }
    }

    fn learner_in_sync(&mut self, topic: String, partition: u32, report: InSyncReport) {
        let known = self.snapshots.borrow().insync.get(&(topic.clone(), partition)).copied();
        if known == Some(report) {
            return;
        }
        let mut client = self.client.clone();
        let key = keys::insync(&self.prefix, &topic, partition);
        tokio::spawn(async move {
            let value = serde_json::to_vec(&report).unwrap_or_default();
            match tokio::time::timeout(REQUEST_TIMEOUT, client.put(key.clone(), value, None)).await {
                Ok(Ok(_)) => {
                    tracing::info!(key, epoch = report.epoch, learner = report.learner, "learner in sync reported")
                }
                Ok(Err(e)) => tracing::warn!(key, error = %e, "in-sync report failed (the tail repeats it)"),
                Err(_) => tracing::warn!(key, "in-sync report timed out (the tail repeats it)"),
            }
        });
    }

    /// Stops the background tasks first (so nothing re-registers), then revokes the lease.
    async fn stop(&mut self, revoke: bool) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.shared.controller.store(false, Ordering::Relaxed);
        let lease = self.shared.incarnation.load(Ordering::Relaxed);
        if revoke && lease != 0 {
            match tokio::time::timeout(REQUEST_TIMEOUT, self.client.lease_revoke(lease)).await {
                Ok(Ok(_)) => tracing::info!(incarnation = format_args!("{lease:x}"), "lease revoked"),
                Ok(Err(e)) => tracing::warn!(error = %e, "lease revoke failed (it expires by itself)"),
                Err(_) => tracing::warn!("lease revoke timed out (it expires by itself)"),
            }
        }
    }
}

/// Validates, creates the topic key if absent, then waits until every partition has a chain.
async fn create_topic(
    mut client: Client,
    prefix: &str,
    mut snapshots: watch::Receiver<Arc<Keyspace>>,
    config: TopicConfig,
) -> Result<(), ControlError> {
    strand_core::topic::validate_topic(&config.name, config.partitions)
        .map_err(|e| ControlError::Invalid(e.to_string()))?;
    if config.replication_factor == 0 {
        return Err(ControlError::Invalid("replication factor must be >= 1".into()));
    }
    topic_log_config(&LogConfig::default(), &config.name, &config.configs)
        .map_err(|e| ControlError::Invalid(e.to_string()))?;
    let live = snapshots.borrow().nodes.len();
    if usize::from(config.replication_factor) > live {
        return Err(ControlError::NotEnoughNodes { wanted: config.replication_factor, live });
    }
    let key = keys::topic(prefix, &config.name);
    let value = serde_json::to_vec(&config).map_err(|e| ControlError::Invalid(e.to_string()))?;
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, value, None)]);
    let response = timed(client.txn(txn)).await?;
    if !response.succeeded() {
        return Err(ControlError::TopicExists(config.name));
    }
    let assigned = |ks: &Keyspace| (0..config.partitions).all(|p| ks.chains.contains_key(&(config.name.clone(), p)));
    let wait = snapshots.wait_for(|ks| assigned(ks));
    match tokio::time::timeout(CREATE_WAIT, wait).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(ControlError::Stopped),
        Err(_) => Err(ControlError::Timeout(format!(
            "topic {} created but its chains were not assigned within {CREATE_WAIT:?} (no controller?)",
            config.name
        ))),
    }
}

/// Rewrites a topic's key with `change` applied (validated like a create; guarded by the
/// key's mod revision, so a concurrent change is refused, not lost), then waits until this
/// node's view has the new definition and a chain for every partition (the controller
/// places the new partitions' chains as it does a create's).
async fn alter_topic(
    mut client: Client,
    prefix: &str,
    mut snapshots: watch::Receiver<Arc<Keyspace>>,
    name: String,
    change: TopicChange,
) -> Result<TopicConfig, ControlError> {
    if crate::topic::is_internal_topic(&name) {
        return Err(ControlError::Invalid(format!("internal topic {name} cannot be changed")));
    }
    let key = keys::topic(prefix, &name);
    let stored = timed(client.get(key.clone(), None)).await?;
    let kv = stored.kvs().first().ok_or_else(|| ControlError::UnknownTopic(name.clone()))?;
    let old: TopicConfig = serde_json::from_slice(kv.value())
        .map_err(|e| ControlError::Invalid(format!("stored definition of topic {name}: {e}")))?;
    let new = match &change {
        TopicChange::Configs { set, delete } => {
            changed_configs(&old, set, delete).map_err(|e| ControlError::Invalid(e.to_string()))?
        }
        TopicChange::Partitions(count) => {
            strand_core::topic::validate_topic(&name, *count).map_err(|e| ControlError::Invalid(e.to_string()))?;
            if *count <= old.partitions {
                return Err(ControlError::Invalid(format!(
                    "topic {name} has {} partitions; the new count {count} must be larger (partitions only grow)",
                    old.partitions
                )));
            }
            TopicConfig { partitions: *count, ..old.clone() }
        }
    };
    let value = serde_json::to_vec(&new).map_err(|e| ControlError::Invalid(e.to_string()))?;
    let txn = Txn::new()
        .when([Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision())])
        .and_then([TxnOp::put(key, value, None)]);
    if !timed(client.txn(txn)).await?.succeeded() {
        return Err(ControlError::Invalid(format!("topic {name} was changed or deleted concurrently; retry")));
    }
    let applied = |ks: &Keyspace| {
        ks.topics.get(&name).is_some_and(|t| t.config == new)
            && (0..new.partitions).all(|p| ks.chains.contains_key(&(name.clone(), p)))
    };
    match tokio::time::timeout(CREATE_WAIT, snapshots.wait_for(|ks| applied(ks))).await {
        Ok(Ok(_)) => Ok(new),
        Ok(Err(_)) => Err(ControlError::Stopped),
        Err(_) => Err(ControlError::Timeout(format!(
            "topic {name} changed but not every partition had a chain within {CREATE_WAIT:?} (no controller?)"
        ))),
    }
}

/// Deletes the topic key and every chain and in-sync key of the topic, atomically.
async fn delete_topic(mut client: Client, prefix: &str, name: &str) -> Result<(), ControlError> {
    let key = keys::topic(prefix, name);
    let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Greater, 0)]).and_then([
        TxnOp::delete(key, None),
        TxnOp::delete(keys::chains_of(prefix, name), Some(DeleteOptions::new().with_prefix())),
        TxnOp::delete(keys::insync_of(prefix, name), Some(DeleteOptions::new().with_prefix())),
    ]);
    let response = timed(client.txn(txn)).await?;
    if !response.succeeded() {
        return Err(ControlError::UnknownTopic(name.to_string()));
    }
    Ok(())
}

/// An etcd request bounded by [`REQUEST_TIMEOUT`].
pub(super) async fn timed<T>(
    request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ControlError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ControlError::Etcd(e.to_string())),
        Err(_) => Err(ControlError::Timeout(format!("etcd did not answer within {REQUEST_TIMEOUT:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::types::RebalanceConfig;

    #[test]
    fn unreachable_etcd_is_a_clear_bounded_error() {
        // Port 1 on loopback: nothing listens, the connect is refused at once.
        let config = ControlConfig {
            endpoints: vec!["http://127.0.0.1:1".into()],
            node_id: 1,
            lease_ttl_s: 2,
            prefix: "/t".into(),
            secret_file: None,
            rebalance: RebalanceConfig::default(),
        };
        let started = std::time::Instant::now();
        let err = start(config).expect_err("no etcd");
        assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(2));
        let text = err.to_string();
        assert!(text.contains("127.0.0.1:1"), "{text}");
    }

    #[test]
    fn config_is_validated() {
        let ok = ControlConfig {
            endpoints: vec!["http://x".into()],
            node_id: 1,
            lease_ttl_s: 2,
            prefix: "/s".into(),
            secret_file: None,
            rebalance: RebalanceConfig::default(),
        };
        assert!(validate(&ok).is_ok());
        assert!(validate(&ControlConfig { node_id: 0, ..ok.clone() }).is_err());
        assert!(validate(&ControlConfig { endpoints: vec![], ..ok.clone() }).is_err());
        assert!(validate(&ControlConfig { lease_ttl_s: 0, ..ok }).is_err());
        assert_eq!(normalized_prefix("/strand/"), "/strand");
    }
}
