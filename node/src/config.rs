//! Node configuration: the `strand-node` command line (DESIGN §8) merged over an
//! optional `--config strand.toml` file (flags win), resolved into [`NodeConfig`].
//!
//! Sizes and durations in the file may be written with units ("64MiB", "7d"), see
//! [`units`].
//!
//! Invariant: a [`NodeConfig`] is fully validated — every limit is non-zero and
//! related limits agree (a frame fits in the per-connection buffer budget), so the
//! shards never re-check it.

pub mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;
use strand_wire::frame::FRAME_LEN_MAX_DEFAULT;

use strand_core::group::{CoordinatorConfig, METADATA_LEN_MAX};

use crate::control::types::{
    ControlConfig, RebalanceConfig, LEASE_TTL_S_DEFAULT, PREFIX_DEFAULT, REBALANCE_MOVES_PER_MINUTE_MAX,
};
use crate::log::{FsyncPolicy, IoMode, LogConfig};
use crate::replication::link::InboundLimits;

/// Default cap on topics per node (internal topics included).
pub const TOPICS_MAX_DEFAULT: u32 = 10_000;
/// Default cap on partitions per node, summed over every topic.
pub const PARTITIONS_MAX_DEFAULT: u32 = 20_000;
/// Default descriptors kept free for connections and transient files.
pub const OPEN_FILES_RESERVED_DEFAULT: u64 = 1024;

/// The per-node caps a topic create is checked against (`shard::admission`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Topics per node (internal topics included).
    pub topics_max: u32,
    /// Partitions per node, summed over every topic.
    pub partitions_max: u32,
    /// Descriptors of `RLIMIT_NOFILE` topics may not use (connections, transient files).
    pub open_files_reserved: u64,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            topics_max: TOPICS_MAX_DEFAULT,
            partitions_max: PARTITIONS_MAX_DEFAULT,
            open_files_reserved: OPEN_FILES_RESERVED_DEFAULT,
        }
    }
}

/// Default public listen address.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7070";
/// Default admin HTTP address.
pub const ADMIN_DEFAULT: &str = "127.0.0.1:7071";
/// Default Kafka-protocol port (Kafka's own); the address is the `--listen` IP.
pub const KAFKA_PORT_DEFAULT: u16 = 9092;
/// Default first shard port (`shard s` listens on `base + s`).
pub const SHARD_PORT_BASE_DEFAULT: u16 = 7100;
/// Default requests a connection may have in flight before the node stops reading it.
pub const INFLIGHT_PER_CONNECTION_DEFAULT: u32 = 64;
/// Default request bytes a connection may have buffered and in flight.
pub const CONNECTION_BUFFER_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Default connections per node (over all shards and ports).
pub const CONNECTIONS_MAX_DEFAULT: u32 = 10_000;
/// Default time a client connection may sit with no request in flight and no bytes received
/// before the node closes it (Kafka's `connections.max.idle.ms`).
pub const CONNECTIONS_MAX_IDLE_MS_DEFAULT: u64 = 10 * 60 * 1000;
/// Default connections one source IP may hold (well below `connections_max`, so no one
/// source can take the node's connections).
pub const CONNECTIONS_PER_IP_MAX_DEFAULT: u32 = 1_000;
/// Default connection slots kept for sources that hold none (admin tools, canaries).
pub const CONNECTIONS_RESERVED_DEFAULT: u32 = 100;
/// Default series per metric family in `/metrics`; more are left out and counted.
pub const METRICS_SERIES_MAX_DEFAULT: u32 = 10_000;
/// Default: a batch timestamp may be at most this far ahead of the node's clock
/// (Kafka's `message.timestamp.after.max.ms`).
pub const MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT: u64 = 60 * 60 * 1000;
/// Default: a batch timestamp may be any age (Kafka's `message.timestamp.before.max.ms`,
/// unlimited by default there too); only negative timestamps other than -1 are refused.
pub const MESSAGE_TIMESTAMP_BEFORE_MAX_MS_DEFAULT: u64 = u64::MAX;
/// Default first replication port (cluster mode: shard `s` listens on `base + s`).
pub const REPLICATION_PORT_BASE_DEFAULT: u16 = 7200;
/// Default interval between retention passes.
pub const RETENTION_CHECK_MS_DEFAULT: u64 = 30_000;
/// Smallest `batch_decompressed_len_max`: room for a useful compressed batch.
pub const BATCH_DECOMPRESSED_LEN_MIN: usize = 64 * 1024;
/// Longest a fetch may long-poll, whatever the client asks.
pub const FETCH_WAIT_MS_MAX: u32 = 60_000;

/// `strand-node` command line.
#[derive(Debug, Parser)]
#[command(name = "strand-node", version, about = "Strand streaming-log storage node")]
pub struct Cli {
    /// Data directory (default ./strand-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Public listen address; any request, forwarded to owner shards. Port 0 = ephemeral.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin HTTP address (/health, /metrics, /v1/topics). Port 0 = ephemeral.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Kafka-protocol listener (any Kafka client): `ADDR`, or `off`. Default: the `--listen`
    /// IP, port 9092. Port 0 = ephemeral.
    #[arg(long)]
    pub kafka_listen: Option<String>,
    /// Number of shards (glommio executors); default: all online CPUs.
    #[arg(long)]
    pub shards: Option<u16>,
    /// Shard `s` listens on `base + s`; 0 = an ephemeral port per shard.
    #[arg(long)]
    pub shard_port_base: Option<u16>,
    /// `direct` (O_DIRECT DMA) or `buffered` (page cache).
    #[arg(long)]
    pub io_mode: Option<String>,
    /// `always`, `interval:MS` or `never`.
    #[arg(long)]
    pub fsync: Option<String>,
    /// This node's id in the cluster.
    #[arg(long)]
    pub node_id: Option<u32>,
    /// etcd endpoints (comma-separated, e.g. `http://127.0.0.1:2379`): cluster mode.
    #[arg(long)]
    pub etcd: Option<String>,
    /// Host clients and peers should use to reach this node (default: the listen IP).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Cluster mode: seconds without keep-alive after which this node is declared dead.
    #[arg(long)]
    pub lease_ttl_s: Option<i64>,
    /// Cluster mode: etcd key prefix (lets clusters share one etcd).
    #[arg(long)]
    pub etcd_prefix: Option<String>,
    /// Cluster mode: shard `s` takes replication traffic on `base + s`; 0 = ephemeral.
    #[arg(long)]
    pub replication_port_base: Option<u16>,
    /// Cluster mode: file holding the replication links' shared secret (>= 16 bytes, the
    /// same on every node); default: a random secret stored once in etcd.
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
    /// Cluster mode (as controller): a chain's head moves back to its preferred node only
    /// once the chain has been unchanged this long (ms).
    #[arg(long)]
    pub rebalance_cooldown_ms: Option<u64>,
    /// Cluster mode (as controller): head moves per minute, cluster-wide, evenly spaced;
    /// 0 = no preferred-head rebalancing.
    #[arg(long)]
    pub rebalance_moves_per_minute: Option<u32>,
    /// TLS on the public, shard and Kafka ports and the admin HTTP: the certificate chain
    /// (PEM, leaf first). Needs `--tls-key`; reloaded on SIGHUP.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM: PKCS#8, RSA or EC).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by a CA in this PEM file.
    #[arg(long)]
    pub tls_client_ca: Option<PathBuf>,
    /// Cluster mode: mutual TLS on replication links. This node's certificate (PEM; IP SAN of
    /// the address peers dial, usable for server and client auth), signed by the cluster CA.
    #[arg(long)]
    pub cluster_tls_cert: Option<PathBuf>,
    /// The private key of `--cluster-tls-cert`.
    #[arg(long)]
    pub cluster_tls_key: Option<PathBuf>,
    /// The cluster CA: links to and from nodes whose certificate it did not sign are refused.
    #[arg(long)]
    pub cluster_tls_ca: Option<PathBuf>,
    /// Every connection must authenticate (SASL SCRAM, or PLAIN over TLS) before any other
    /// request, and every request is checked against the ACLs (default deny).
    #[arg(long)]
    pub require_auth: bool,
    /// Creates this superuser at start (password from `STRAND_SUPERUSER_PASSWORD`) unless a
    /// user of that name exists.
    #[arg(long)]
    pub superuser: Option<String>,
    /// Serve on a non-loopback address without `--require-auth` anyway (a node refuses to
    /// start so otherwise: anyone who reaches it could read, write and delete everything).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// TOML file with the same keys as these flags (snake_case) plus limits.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Keys of `strand.toml`; all optional, flags override them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub kafka_listen: Option<String>,
    pub shards: Option<u16>,
    pub shard_port_base: Option<u16>,
    pub io_mode: Option<String>,
    pub fsync: Option<String>,
    pub node_id: Option<u32>,
    pub advertise: Option<String>,
    pub etcd: Option<String>,
    pub lease_ttl_s: Option<i64>,
    pub etcd_prefix: Option<String>,
    pub replication_port_base: Option<u16>,
    pub cluster_secret_file: Option<PathBuf>,
    pub rebalance_cooldown_ms: Option<u64>,
    pub rebalance_moves_per_minute: Option<u32>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub cluster_tls_cert: Option<PathBuf>,
    pub cluster_tls_key: Option<PathBuf>,
    pub cluster_tls_ca: Option<PathBuf>,
    pub replication_connections_max: Option<u32>,
    pub replication_handshake_timeout_ms: Option<u64>,
    pub frame_len_max: Option<u32>,
    pub inflight_per_connection: Option<u32>,
    pub connection_buffer_bytes: Option<u64>,
    pub connections_max: Option<u32>,
    pub connections_max_idle_ms: Option<u64>,
    pub connections_per_ip_max: Option<u32>,
    pub connections_reserved: Option<u32>,
    pub metrics_series_max: Option<u32>,
    pub message_timestamp_after_max_ms: Option<u64>,
    pub message_timestamp_before_max_ms: Option<u64>,
    pub retention_check_ms: Option<u64>,
    pub segment_bytes: Option<u64>,
    pub segment_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub min_free_bytes: Option<u64>,
    pub topics_max: Option<u32>,
    pub partitions_max: Option<u32>,
    pub open_files_reserved: Option<u64>,
    pub groups_max: Option<usize>,
    pub group_members_max: Option<usize>,
    pub offset_metadata_max_bytes: Option<usize>,
    pub group_offsets_bytes_max: Option<u64>,
    pub offsets_retention_ms: Option<u64>,
    pub offsets_compact_records_min: Option<u64>,
    pub batch_decompressed_len_max: Option<u64>,
    pub quota_produce_bytes_per_sec: Option<u64>,
    pub quota_fetch_bytes_per_sec: Option<u64>,
    pub quota_users: Option<std::collections::BTreeMap<String, UserQuotaFile>>,
    pub require_auth: Option<bool>,
    pub superuser: Option<String>,
    pub insecure_no_auth: Option<bool>,
}

/// A `[quota_users.NAME]` table: the user's own byte rates (a direction left out keeps the
/// node's default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserQuotaFile {
    pub produce_bytes_per_sec: Option<u64>,
    pub fetch_bytes_per_sec: Option<u64>,
}

/// Network limits of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetLimits {
    /// Largest frame accepted (prefix included).
    pub frame_len_max: u32,
    /// Requests a connection may have in flight.
    pub inflight_per_connection: u32,
    /// Request bytes a connection may hold in flight.
    pub connection_buffer_bytes: u64,
    /// Open client connections per node.
    pub connections_max: u32,
    /// A connection with no request in flight and no bytes received for this long is closed.
    pub connections_max_idle_ms: u64,
    /// Open client connections per source IP address.
    pub connections_per_ip_max: u32,
    /// Of `connections_max`, slots only a source holding no connection may take.
    pub connections_reserved: u32,
    /// Series per metric family rendered in `/metrics`.
    pub metrics_series_max: u32,
    /// Largest amount a batch timestamp may lie ahead of the node's clock, in ms.
    pub message_timestamp_after_max_ms: u64,
    /// Largest amount a batch timestamp may lie behind the node's clock, in ms (`u64::MAX` = any).
    pub message_timestamp_before_max_ms: u64,
}

/// The resolved, validated configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// The Kafka-protocol listener; `None` = off.
    pub kafka_listen: Option<SocketAddr>,
    pub shards: u16,
    /// `None` = ephemeral shard ports.
    pub shard_port_base: Option<u16>,
    pub node_id: u32,
    pub advertise_host: String,
    pub limits: NetLimits,
    /// Caps a topic create is admitted against (topics, partitions, open files).
    pub admission: AdmissionLimits,
    pub retention_check_ms: u64,
    pub log: LogConfig,
    /// Cluster mode (`--etcd`); `None` = a single node, exactly as without replication.
    pub cluster: Option<ControlConfig>,
    /// Shard `s`'s replication listener port is `base + s`; `None` = ephemeral.
    pub replication_port_base: Option<u16>,
    /// Bounds of each shard's replication listener (cluster mode).
    pub replication_limits: InboundLimits,
    /// Limits of every shard's group coordinator (each shard applies them to its groups).
    pub group_limits: CoordinatorConfig,
    /// Byte-rate quota of each principal without one of its own; `None` = unlimited.
    pub quotas: crate::quota::Rates,
    /// Users' own quotas (`[quota_users.NAME]`), the default filled in where left out.
    pub quota_users: std::collections::HashMap<String, crate::quota::Rates>,
    /// TLS on the client-facing ports (`--tls-cert`/`--tls-key`); `None` = plaintext. The
    /// files are read when the node starts (`crate::tls`), not here.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Mutual TLS on replication links (`--cluster-tls-*`; `client_ca` is the cluster CA);
    /// `None` = plain TCP with the cluster-secret handshake only.
    pub cluster_tls: Option<crate::tls::TlsFiles>,
    /// `--require-auth`: authenticate before any request, ACLs enforced.
    pub require_auth: bool,
    /// `--superuser`: the user created at start if missing.
    pub superuser: Option<String>,
    /// `--insecure-no-auth`: serve non-loopback addresses without authentication.
    pub insecure_no_auth: bool,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("invalid config file {path}: {key} = {value:?}: {reason}")]
    Unit { path: PathBuf, key: &'static str, value: String, reason: String },
    #[error("invalid {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

impl NodeConfig {
    /// Resolves the command line, reading `--config` if given.
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    /// Flags over file over defaults, then validation.
    pub fn merge(cli: Cli, file: FileConfig) -> Result<Self, ConfigError> {
        let listen = cli.listen.or(file.listen).unwrap_or_else(|| parse_addr(LISTEN_DEFAULT));
        let shards = cli.shards.or(file.shards).unwrap_or_else(online_cpus);
        if shards == 0 || shards > strand_core::placement::SHARD_COUNT_MAX {
            return Err(invalid("shards", format!("{shards} outside 1..={}", strand_core::placement::SHARD_COUNT_MAX)));
        }
        let shard_port_base = match cli.shard_port_base.or(file.shard_port_base).unwrap_or(SHARD_PORT_BASE_DEFAULT) {
            0 => None,
            base if u32::from(base) + u32::from(shards) > 65_536 => {
                return Err(invalid("shard_port_base", "base + shards exceeds port range"))
            }
            base => Some(base),
        };
        let connections_max = file.connections_max.unwrap_or(CONNECTIONS_MAX_DEFAULT);
        // Unset shares follow a smaller `connections_max`, so a small node stays valid.
        let connections_reserved =
            file.connections_reserved.unwrap_or(CONNECTIONS_RESERVED_DEFAULT.min(connections_max / 10));
        let connections_per_ip_max = file
            .connections_per_ip_max
            .unwrap_or(CONNECTIONS_PER_IP_MAX_DEFAULT.min(connections_max.saturating_sub(connections_reserved)));
        let limits = NetLimits {
            frame_len_max: file.frame_len_max.unwrap_or(FRAME_LEN_MAX_DEFAULT as u32),
            inflight_per_connection: file.inflight_per_connection.unwrap_or(INFLIGHT_PER_CONNECTION_DEFAULT),
            connection_buffer_bytes: file.connection_buffer_bytes.unwrap_or(CONNECTION_BUFFER_BYTES_DEFAULT),
            connections_max,
            connections_max_idle_ms: file.connections_max_idle_ms.unwrap_or(CONNECTIONS_MAX_IDLE_MS_DEFAULT),
            connections_per_ip_max,
            connections_reserved,
            metrics_series_max: file.metrics_series_max.unwrap_or(METRICS_SERIES_MAX_DEFAULT),
            message_timestamp_after_max_ms: file
                .message_timestamp_after_max_ms
                .unwrap_or(MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT),
            message_timestamp_before_max_ms: file
                .message_timestamp_before_max_ms
                .unwrap_or(MESSAGE_TIMESTAMP_BEFORE_MAX_MS_DEFAULT),
        };
        check_limits(&limits)?;
        let admission = admission_limits(&file)?;
        let log = log_config(&cli, &file)?;
        let group_limits = group_limits(&file)?;
        let cluster = cluster_config(&cli, &file)?;
        let replication_port_base =
            match cli.replication_port_base.or(file.replication_port_base).unwrap_or(REPLICATION_PORT_BASE_DEFAULT) {
                0 => None,
                base if u32::from(base) + u32::from(shards) > 65_536 => {
                    return Err(invalid("replication_port_base", "base + shards exceeds port range"))
                }
                base => Some(base),
            };
        let replication_limits = replication_limits(&file)?;
        let advertise_host = advertise_host(cli.advertise.or(file.advertise), listen)?;
        let kafka_listen = kafka_listen(cli.kafka_listen.or(file.kafka_listen), listen)?;
        let quotas = crate::quota::Rates {
            produce: quota("quota_produce_bytes_per_sec", file.quota_produce_bytes_per_sec)?,
            fetch: quota("quota_fetch_bytes_per_sec", file.quota_fetch_bytes_per_sec)?,
        };
        let mut quota_users = std::collections::HashMap::new();
        for (user, q) in file.quota_users.unwrap_or_default() {
            let rates = crate::quota::Rates {
                produce: quota("quota_users", q.produce_bytes_per_sec)?.or(quotas.produce),
                fetch: quota("quota_users", q.fetch_bytes_per_sec)?.or(quotas.fetch),
            };
            quota_users.insert(user, rates);
        }
        let tls = tls_files(
            cli.tls_cert.or(file.tls_cert),
            cli.tls_key.or(file.tls_key),
            cli.tls_client_ca.or(file.tls_client_ca),
        )?;
        let cluster_tls = cluster_tls_files(
            cli.cluster_tls_cert.or(file.cluster_tls_cert),
            cli.cluster_tls_key.or(file.cluster_tls_key),
            cli.cluster_tls_ca.or(file.cluster_tls_ca),
            cluster.is_some(),
        )?;
        let config = NodeConfig {
            data_dir: absolute(cli.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./strand-data")))?,
            listen,
            admin: cli.admin.or(file.admin).unwrap_or_else(|| parse_addr(ADMIN_DEFAULT)),
            kafka_listen,
            shards,
            shard_port_base,
            node_id: cli.node_id.or(file.node_id).unwrap_or(0),
            advertise_host,
            limits,
            admission,
            retention_check_ms: file.retention_check_ms.unwrap_or(RETENTION_CHECK_MS_DEFAULT).max(100),
            log,
            cluster,
            replication_port_base,
            replication_limits,
            group_limits,
            quotas,
            quota_users,
            tls,
            cluster_tls,
            require_auth: cli.require_auth || file.require_auth.unwrap_or(false),
            superuser: cli.superuser.or(file.superuser),
            insecure_no_auth: cli.insecure_no_auth || file.insecure_no_auth.unwrap_or(false),
        };
        if config.superuser.as_deref().is_some_and(|n| n.is_empty() || n.len() > strand_core::auth::USER_NAME_LEN_MAX) {
            return Err(invalid("superuser", "user names are 1 to 255 bytes"));
        }
        check_ports_distinct(&config)?;
        Ok(config)
    }
}

impl NodeConfig {
    /// Why this node must not start as configured: it would serve clients on a
    /// non-loopback address without authentication (and without `--insecure-no-auth`).
    /// One line naming the address and both ways out. Replication ports are not counted:
    /// their peers always prove the cluster secret.
    pub fn exposure_refusal(&self) -> Option<String> {
        if self.require_auth || self.insecure_no_auth {
            return None;
        }
        let ports =
            [("--listen", Some(self.listen)), ("--kafka-listen", self.kafka_listen), ("--admin", Some(self.admin))];
        let (flag, addr) =
            ports.into_iter().find_map(|(flag, addr)| addr.filter(|a| !a.ip().is_loopback()).map(|a| (flag, a)))?;
        Some(format!(
            "refusing to serve {flag} {addr} without authentication: anyone who can reach it could read, write and \
             delete every topic; start with --require-auth --superuser NAME (see docs/SECURITY.md), or with \
             --insecure-no-auth to run open anyway"
        ))
    }
}

/// A byte-rate quota key: absent = unlimited, 0 is refused (it would stop all traffic).
fn quota(key: &'static str, given: Option<u64>) -> Result<Option<u64>, ConfigError> {
    match given {
        Some(0) => Err(invalid(key, "0 would stop all traffic; leave the key out for no quota")),
        other => Ok(other),
    }
}

/// The Kafka listener: `off`, an address, or by default the listen IP on port 9092.
fn kafka_listen(given: Option<String>, listen: SocketAddr) -> Result<Option<SocketAddr>, ConfigError> {
    match given.as_deref().map(str::trim) {
        None => Ok(Some(SocketAddr::new(listen.ip(), KAFKA_PORT_DEFAULT))),
        Some("off") => Ok(None),
        Some(addr) => addr.parse().map(Some).map_err(|_| {
            invalid("kafka_listen", format!("{addr:?} is neither an address (e.g. 127.0.0.1:9092) nor \"off\""))
        }),
    }
}

/// The TLS files: certificate and key both or neither; a client CA only with them. Paths
/// are made absolute so a SIGHUP reload reads the same files whatever the working directory.
/// The replication links' TLS files: all three or none, and only in cluster mode.
fn cluster_tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    cluster: bool,
) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    let abs = |key: &'static str, path: PathBuf| {
        std::path::absolute(&path).map_err(|e| invalid(key, format!("{}: {e}", path.display())))
    };
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(_), Some(_), Some(_)) if !cluster => Err(invalid(
            "cluster_tls_cert",
            "--cluster-tls-* secure replication links: they need cluster mode (--etcd)",
        )),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(crate::tls::TlsFiles {
            cert: abs("cluster_tls_cert", cert)?,
            key: abs("cluster_tls_key", key)?,
            client_ca: Some(abs("cluster_tls_ca", ca)?),
        })),
        _ => Err(invalid(
            "cluster_tls_cert",
            "--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together (give all three or none)",
        )),
    }
}

fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    let abs = |key: &'static str, path: PathBuf| {
        std::path::absolute(&path).map_err(|e| invalid(key, format!("{}: {e}", path.display())))
    };
    match (cert, key, client_ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), client_ca) => Ok(Some(crate::tls::TlsFiles {
            cert: abs("tls_cert", cert)?,
            key: abs("tls_key", key)?,
            client_ca: client_ca.map(|ca| abs("tls_client_ca", ca)).transpose()?,
        })),
        (None, None, Some(_)) => Err(invalid("tls_client_ca", "--tls-client-ca needs --tls-cert and --tls-key")),
        (Some(_), None, _) => Err(invalid("tls_key", "--tls-cert needs --tls-key (give both or neither)")),
        (None, Some(_), _) => Err(invalid("tls_cert", "--tls-key needs --tls-cert (give both or neither)")),
    }
}

/// The host clients and peers are told (`--advertise`, default the listen IP), in the form
/// they join with `:port`: a DNS name, an IPv4 address or a bracketed IPv6 address. The
/// node advertises the ports it binds, so a port here is refused rather than kept
/// (clients would otherwise dial `host:port:port`).
fn advertise_host(given: Option<String>, listen: SocketAddr) -> Result<String, ConfigError> {
    let Some(host) = given else {
        return Ok(match listen.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        });
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::Ipv6Addr>() {
        return Ok(format!("[{ip}]"));
    }
    if host.parse::<SocketAddr>().is_ok() || host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        let without = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        return Err(invalid(
            "advertise",
            format!("{host:?} has a port; give the host only (e.g. --advertise {without}): the node advertises the ports it binds"),
        ));
    }
    let valid_name = |h: &str| {
        !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    };
    if !valid_name(&host) {
        return Err(invalid("advertise", format!("{host:?} is not a host name or IP address")));
    }
    Ok(host)
}

/// Two of the node's own fixed ports on one address would make the second bind fail with a
/// misleading "in use by another process": say which flags collide instead.
fn check_ports_distinct(config: &NodeConfig) -> Result<(), ConfigError> {
    let shards = config.shards;
    let mut fixed: Vec<(&'static str, std::net::IpAddr, u16)> = Vec::new();
    let mut add = |flag, ip, port: u16| {
        if port != 0 {
            fixed.push((flag, ip, port));
        }
    };
    let ip = config.listen.ip();
    add("--listen", ip, config.listen.port());
    add("--admin", config.admin.ip(), config.admin.port());
    if let Some(kafka) = config.kafka_listen {
        add("--kafka-listen", kafka.ip(), kafka.port());
    }
    for s in 0..config.shard_port_base.map_or(0, |_| shards) {
        add("--shard-port-base", ip, config.shard_port_base.unwrap_or(0) + s);
    }
    if config.cluster.is_some() {
        for s in 0..config.replication_port_base.map_or(0, |_| shards) {
            add("--replication-port-base", ip, config.replication_port_base.unwrap_or(0) + s);
        }
    }
    for (i, (flag_a, ip_a, port_a)) in fixed.iter().enumerate() {
        for (flag_b, ip_b, port_b) in &fixed[i + 1..] {
            let same_ip = ip_a == ip_b || ip_a.is_unspecified() || ip_b.is_unspecified();
            if port_a == port_b && same_ip {
                let reason = format!("port {port_a} is given both by {flag_a} and by {flag_b}");
                return Err(invalid("ports", reason));
            }
        }
    }
    Ok(())
}

/// The control-plane settings: `Some` iff `--etcd` (or `etcd` in the file) is given, which
/// then requires a node id ≥ 1.
fn cluster_config(cli: &Cli, file: &FileConfig) -> Result<Option<ControlConfig>, ConfigError> {
    let Some(etcd) = cli.etcd.as_deref().or(file.etcd.as_deref()) else {
        return Ok(None);
    };
    let endpoints: Vec<String> = etcd.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect();
    if endpoints.is_empty() {
        return Err(invalid("etcd", "no endpoint given (e.g. --etcd http://127.0.0.1:2379)"));
    }
    let node_id = match cli.node_id.or(file.node_id) {
        Some(id) if id >= 1 => id,
        _ => return Err(invalid("node_id", "--etcd (cluster mode) needs --node-id N with N >= 1")),
    };
    let lease_ttl_s = cli.lease_ttl_s.or(file.lease_ttl_s).unwrap_or(LEASE_TTL_S_DEFAULT);
    if lease_ttl_s < 1 {
        return Err(invalid("lease_ttl_s", format!("{lease_ttl_s}: must be >= 1")));
    }
    let prefix = cli.etcd_prefix.clone().or_else(|| file.etcd_prefix.clone()).unwrap_or(PREFIX_DEFAULT.to_string());
    if !prefix.starts_with('/') || prefix.len() < 2 {
        return Err(invalid("etcd_prefix", format!("{prefix:?}: must start with '/' and name something")));
    }
    let secret_file = cli.cluster_secret_file.clone().or_else(|| file.cluster_secret_file.clone());
    let prefix = prefix.trim_end_matches('/').to_string();
    let defaults = RebalanceConfig::default();
    let rebalance = RebalanceConfig {
        cooldown_ms: cli.rebalance_cooldown_ms.or(file.rebalance_cooldown_ms).unwrap_or(defaults.cooldown_ms),
        moves_per_minute_max: cli
            .rebalance_moves_per_minute
            .or(file.rebalance_moves_per_minute)
            .unwrap_or(defaults.moves_per_minute_max),
    };
    if rebalance.moves_per_minute_max > REBALANCE_MOVES_PER_MINUTE_MAX {
        let reason = format!("{}: at most {REBALANCE_MOVES_PER_MINUTE_MAX}", rebalance.moves_per_minute_max);
        return Err(invalid("rebalance_moves_per_minute", reason));
    }
    Ok(Some(ControlConfig { endpoints, node_id, lease_ttl_s, prefix, secret_file, rebalance }))
}

/// The replication listener's bounds: `replication_connections_max` (>= 1) and
/// `replication_handshake_timeout_ms` (>= 100).
fn replication_limits(file: &FileConfig) -> Result<InboundLimits, ConfigError> {
    let defaults = InboundLimits::default();
    let limits = InboundLimits {
        connections_max: file.replication_connections_max.unwrap_or(defaults.connections_max),
        handshake_timeout_ms: file.replication_handshake_timeout_ms.unwrap_or(defaults.handshake_timeout_ms),
    };
    if limits.connections_max == 0 {
        return Err(invalid("replication_connections_max", "must be >= 1"));
    }
    if limits.handshake_timeout_ms < 100 {
        return Err(invalid(
            "replication_handshake_timeout_ms",
            format!("{}: must be >= 100", limits.handshake_timeout_ms),
        ));
    }
    Ok(limits)
}

/// The log settings. Defaults, and why:
/// - `io_mode = buffered`: works on every filesystem (tmpfs and overlayfs refuse
///   O_DIRECT), so a bare `strand-node` starts anywhere; production on ext4/xfs
///   should pass `--io-mode direct` (Redpanda-style DMA, own batch cache).
/// - `fsync = always`: an ack means the batch is on stable storage (group commit
///   keeps the cost per shard, not per producer). Kafka's default relies on
///   replication instead; a single node has none, so we choose safety.
fn log_config(cli: &Cli, file: &FileConfig) -> Result<LogConfig, ConfigError> {
    let mut log = LogConfig::default();
    let io_mode = cli.io_mode.as_deref().or(file.io_mode.as_deref()).unwrap_or("buffered");
    log.io_mode =
        io_mode.parse::<IoMode>().map_err(|_| invalid("io_mode", format!("{io_mode:?}: use direct|buffered")))?;
    let fsync = cli.fsync.as_deref().or(file.fsync.as_deref()).unwrap_or("always");
    log.fsync = fsync
        .parse::<FsyncPolicy>()
        .map_err(|_| invalid("fsync", format!("{fsync:?}: use always|interval:MS|never")))?;
    if let Some(v) = file.segment_bytes {
        log.segment_bytes = v;
    }
    log.segment_ms = file.segment_ms.or(log.segment_ms);
    log.retention_bytes = file.retention_bytes.or(log.retention_bytes);
    log.retention_ms = file.retention_ms.or(log.retention_ms);
    if let Some(v) = file.min_free_bytes {
        log.min_free_bytes = v;
    }
    if let Some(v) = file.batch_decompressed_len_max {
        let max = strand_wire::batch::DECOMPRESSED_LEN_MAX;
        if !(BATCH_DECOMPRESSED_LEN_MIN as u64..=max as u64).contains(&v) {
            let reason = format!("{v}: must be between {BATCH_DECOMPRESSED_LEN_MIN} and {max} (what clients read)");
            return Err(invalid("batch_decompressed_len_max", reason));
        }
        log.decompressed_len_max = v as usize;
    }
    if log.segment_bytes == 0 {
        return Err(invalid("segment_bytes", "must be > 0"));
    }
    Ok(log)
}

fn admission_limits(file: &FileConfig) -> Result<AdmissionLimits, ConfigError> {
    let d = AdmissionLimits::default();
    let limits = AdmissionLimits {
        topics_max: file.topics_max.unwrap_or(d.topics_max),
        partitions_max: file.partitions_max.unwrap_or(d.partitions_max),
        open_files_reserved: file.open_files_reserved.unwrap_or(d.open_files_reserved),
    };
    if limits.topics_max == 0 || limits.partitions_max == 0 {
        return Err(invalid("topics_max/partitions_max", "must be > 0"));
    }
    Ok(limits)
}

/// The group coordinator's limits: defaults from `strand_core::group`, each key checked.
fn group_limits(file: &FileConfig) -> Result<CoordinatorConfig, ConfigError> {
    let mut limits = CoordinatorConfig::default();
    limits.groups_max = file.groups_max.unwrap_or(limits.groups_max);
    limits.members_per_group_max = file.group_members_max.unwrap_or(limits.members_per_group_max);
    limits.offset_metadata_bytes_max = file.offset_metadata_max_bytes.unwrap_or(limits.offset_metadata_bytes_max);
    limits.offsets_bytes_max = file.group_offsets_bytes_max.unwrap_or(limits.offsets_bytes_max);
    limits.offsets_retention_ms = file.offsets_retention_ms.unwrap_or(limits.offsets_retention_ms);
    if limits.groups_max == 0 || limits.members_per_group_max == 0 || limits.offsets_retention_ms == 0 {
        return Err(invalid("groups_max/group_members_max/offsets_retention_ms", "must be > 0"));
    }
    limits.compact_records_min = file.offsets_compact_records_min.unwrap_or(limits.compact_records_min);
    if limits.compact_records_min < 100 {
        return Err(invalid("offsets_compact_records_min", "must be at least 100"));
    }
    if limits.offset_metadata_bytes_max > METADATA_LEN_MAX {
        return Err(invalid("offset_metadata_max_bytes", format!("at most {METADATA_LEN_MAX}")));
    }
    Ok(limits)
}

fn check_limits(limits: &NetLimits) -> Result<(), ConfigError> {
    if (limits.frame_len_max as usize) < 1024 {
        return Err(invalid("frame_len_max", "must be at least 1024"));
    }
    if limits.inflight_per_connection == 0 || limits.connections_max == 0 {
        return Err(invalid("inflight_per_connection/connections_max", "must be > 0"));
    }
    if limits.connection_buffer_bytes < u64::from(limits.frame_len_max) {
        return Err(invalid("connection_buffer_bytes", "must hold at least one frame of frame_len_max"));
    }
    check_connection_shares(limits)?;
    if limits.connections_max_idle_ms == 0 || limits.metrics_series_max == 0 {
        return Err(invalid("connections_max_idle_ms/metrics_series_max", "must be > 0"));
    }
    Ok(())
}

/// The per-IP cap and the reserved slots must leave room for other sources: one source can
/// hold at most `connections_per_ip_max`, which must fit below the unreserved share, and the
/// reserved slots must leave some share at all (so a source holding one connection can open
/// a second).
fn check_connection_shares(limits: &NetLimits) -> Result<(), ConfigError> {
    let (max, per_ip, reserved) = (limits.connections_max, limits.connections_per_ip_max, limits.connections_reserved);
    if reserved >= max {
        return Err(invalid("connections_reserved", format!("{reserved} must be below connections_max {max}")));
    }
    if per_ip == 0 || per_ip > max - reserved {
        let reason = format!(
            "{per_ip} must be in 1..={} (connections_max {max} - connections_reserved {reserved})",
            max - reserved
        );
        return Err(invalid("connections_per_ip_max", reason));
    }
    Ok(())
}

/// The data dir as an absolute path: glommio's directory opens reject relative paths
/// (EBADF), and logs and metrics should name the real location.
fn absolute(dir: PathBuf) -> Result<PathBuf, ConfigError> {
    std::path::absolute(&dir).map_err(|e| invalid("data_dir", format!("{}: {e}", dir.display())))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    parse_file(&text).map_err(|e| e.at(path))
}

/// Why a config file's text did not parse (the path is added by [`read_file`]).
#[derive(Debug)]
enum FileError {
    Toml(toml::de::Error),
    Unit(units::UnitError),
}

impl FileError {
    fn at(self, path: &Path) -> ConfigError {
        match self {
            FileError::Toml(source) => ConfigError::Parse { path: path.into(), source: Box::new(source) },
            FileError::Unit(e) => ConfigError::Unit { path: path.into(), key: e.key, value: e.value, reason: e.reason },
        }
    }
}

/// The file's keys, sizes and durations given with units turned into integers first.
fn parse_file(text: &str) -> Result<FileConfig, FileError> {
    let mut table: toml::Table = toml::from_str(text).map_err(FileError::Toml)?;
    units::normalize(&mut table).map_err(FileError::Unit)?;
    toml::Value::Table(table).try_into().map_err(FileError::Toml)
}

fn parse_addr(text: &str) -> SocketAddr {
    text.parse().expect("default addresses are valid literals")
}

fn online_cpus() -> u16 {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().min(usize::from(strand_core::placement::SHARD_COUNT_MAX)) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("strand-node").chain(args.iter().copied()))
    }

    #[test]
    fn users_quotas_override_the_default_per_direction() {
        let text = "quota_produce_bytes_per_sec = \"1MiB\"\n[quota_users.alice]\nfetch_bytes_per_sec = \"2KiB\"\n\
                    [quota_users.bob]\nproduce_bytes_per_sec = 5\n";
        let c = NodeConfig::merge(cli(&[]), parse_file(text).unwrap()).unwrap();
        let rates = |p, f| crate::quota::Rates { produce: p, fetch: f };
        assert_eq!(c.quotas, rates(Some(1 << 20), None));
        assert_eq!(c.quota_users["alice"], rates(Some(1 << 20), Some(2048)));
        assert_eq!(c.quota_users["bob"], rates(Some(5), None));
        assert!(parse_file("[quota_users.x]\nproduce_bytes_per_sec = \"lots\"\n").is_err());
        assert!(parse_file("[quota_users.x]\nproduce = 5\n").is_err(), "unknown keys are refused");
        let zero = parse_file("[quota_users.x]\nfetch_bytes_per_sec = 0\n").unwrap();
        assert!(NodeConfig::merge(cli(&[]), zero).is_err());
    }

    #[test]
    fn non_loopback_addresses_need_auth_or_an_explicit_opt_out() {
        let config = |args: &[&str]| NodeConfig::merge(cli(args), FileConfig::default()).unwrap();
        assert_eq!(config(&[]).exposure_refusal(), None, "the defaults are loopback");
        let open = config(&["--listen", "0.0.0.0:7070"]).exposure_refusal().unwrap();
        assert!(open.contains("--listen 0.0.0.0:7070") && open.contains("--insecure-no-auth"), "{open}");
        assert!(!open.contains('\n'));
        let kafka = config(&["--kafka-listen", "10.1.2.3:9092"]).exposure_refusal().unwrap();
        assert!(kafka.contains("--kafka-listen 10.1.2.3:9092"), "{kafka}");
        assert!(config(&["--admin", "[::]:7071"]).exposure_refusal().unwrap().contains("--admin"));
        assert_eq!(config(&["--listen", "0.0.0.0:7070", "--require-auth"]).exposure_refusal(), None);
        assert_eq!(config(&["--listen", "0.0.0.0:7070", "--insecure-no-auth"]).exposure_refusal(), None);
        let file = parse_file("listen = \"0.0.0.0:7070\"\ninsecure_no_auth = true\n").unwrap();
        assert_eq!(NodeConfig::merge(cli(&[]), file).unwrap().exposure_refusal(), None);
    }

    #[test]
    fn cluster_tls_files_come_as_three_and_only_in_cluster_mode() {
        let err = |args: &[&str]| NodeConfig::merge(cli(args), FileConfig::default()).unwrap_err().to_string();
        let all = ["--cluster-tls-cert", "n.pem", "--cluster-tls-key", "n.key", "--cluster-tls-ca", "ca.pem"];
        assert!(err(&all).contains("need cluster mode"));
        assert!(err(&["--etcd", "http://127.0.0.1:2379", "--node-id", "1", "--cluster-tls-cert", "n.pem"])
            .contains("go together"));
        let mut args = vec!["--etcd", "http://127.0.0.1:2379", "--node-id", "1"];
        args.extend(all);
        let files = NodeConfig::merge(cli(&args), FileConfig::default()).unwrap().cluster_tls.unwrap();
        assert!(files.cert.is_absolute() && files.client_ca.as_deref().is_some_and(|ca| ca.ends_with("ca.pem")));
        assert!(NodeConfig::merge(cli(&[]), FileConfig::default()).unwrap().cluster_tls.is_none());
    }

    #[test]
    fn tls_cert_and_key_come_together() {
        let c = NodeConfig::merge(cli(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]), FileConfig::default()).unwrap();
        let tls = c.tls.unwrap();
        assert!(tls.cert.is_absolute() && tls.cert.ends_with("c.pem") && tls.client_ca.is_none());
        let err = |args: &[&str]| NodeConfig::merge(cli(args), FileConfig::default()).unwrap_err().to_string();
        assert!(err(&["--tls-cert", "c.pem"]).contains("--tls-cert needs --tls-key"));
        assert!(err(&["--tls-key", "k.pem"]).contains("--tls-key needs --tls-cert"));
        assert!(err(&["--tls-client-ca", "ca.pem"]).contains("needs --tls-cert and --tls-key"));
        let file = parse_file("tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\ntls_client_ca = \"/ca.pem\"\n").unwrap();
        let tls = NodeConfig::merge(cli(&[]), file).unwrap().tls.unwrap();
        assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/ca.pem")));
        assert!(NodeConfig::merge(cli(&[]), FileConfig::default()).unwrap().tls.is_none());
    }

    #[test]
    fn defaults() {
        let c = NodeConfig::merge(cli(&[]), FileConfig::default()).unwrap();
        assert_eq!(c.data_dir, std::env::current_dir().unwrap().join("strand-data"));
        assert!(c.data_dir.is_absolute());
        assert_eq!(c.listen, parse_addr(LISTEN_DEFAULT));
        assert_eq!(c.admin, parse_addr(ADMIN_DEFAULT));
        assert_eq!(c.shard_port_base, Some(SHARD_PORT_BASE_DEFAULT));
        assert_eq!(c.log.fsync, FsyncPolicy::Always);
        assert_eq!(c.log.io_mode, IoMode::Buffered);
        assert!(c.shards >= 1);
        assert_eq!(c.cluster, None);
        assert_eq!(c.replication_port_base, Some(REPLICATION_PORT_BASE_DEFAULT));
    }

    #[test]
    fn cluster_mode() {
        let args = ["--etcd", "http://127.0.0.1:2379, http://127.0.0.1:2380", "--node-id", "3", "--lease-ttl-s", "2"];
        let c = NodeConfig::merge(cli(&args), FileConfig::default()).unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.endpoints, vec!["http://127.0.0.1:2379", "http://127.0.0.1:2380"]);
        assert_eq!((cluster.node_id, cluster.lease_ttl_s, cluster.prefix.as_str()), (3, 2, PREFIX_DEFAULT));
        assert_eq!(cluster.rebalance, RebalanceConfig::default());
        let rebalance = [&args[..], &["--rebalance-cooldown-ms", "500", "--rebalance-moves-per-minute", "0"]].concat();
        let c = NodeConfig::merge(cli(&rebalance), FileConfig::default()).unwrap();
        let want = RebalanceConfig { cooldown_ms: 500, moves_per_minute_max: 0 };
        assert_eq!(c.cluster.map(|c| c.rebalance), Some(want));
        let too_many = [&args[..], &["--rebalance-moves-per-minute", "121"]].concat();
        let err = NodeConfig::merge(cli(&too_many), FileConfig::default()).unwrap_err().to_string();
        assert!(err.contains("rebalance_moves_per_minute") && err.contains("120"), "{err}");
        let file = parse_file("rebalance_cooldown_ms = \"2s\"").unwrap();
        let c = NodeConfig::merge(cli(&args), file).unwrap();
        assert_eq!(c.cluster.map(|c| c.rebalance.cooldown_ms), Some(2_000));
        let file: FileConfig =
            toml::from_str("etcd = \"http://h:1\"\nnode_id = 2\netcd_prefix = \"/x/\"\nreplication_port_base = 0")
                .unwrap();
        let c = NodeConfig::merge(cli(&[]), file).unwrap();
        assert_eq!(c.cluster.unwrap().prefix, "/x");
        assert_eq!(c.replication_port_base, None);
    }

    #[test]
    fn flags_override_file() {
        let file: FileConfig =
            toml::from_str("shards = 3\nfsync = \"never\"\nlisten = \"127.0.0.1:9000\"\nframe_len_max = 4096").unwrap();
        let c = NodeConfig::merge(cli(&["--shards", "2", "--shard-port-base", "0"]), file).unwrap();
        assert_eq!(c.shards, 2);
        assert_eq!(c.shard_port_base, None);
        assert_eq!(c.log.fsync, FsyncPolicy::Never);
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.limits.frame_len_max, 4096);
    }

    #[test]
    fn connection_shares_and_new_limits() {
        let c = NodeConfig::merge(cli(&[]), FileConfig::default()).unwrap();
        assert_eq!((c.limits.connections_per_ip_max, c.limits.connections_reserved), (1_000, 100));
        assert_eq!(c.limits.connections_max_idle_ms, CONNECTIONS_MAX_IDLE_MS_DEFAULT);
        assert_eq!(c.limits.message_timestamp_after_max_ms, 3_600_000);
        assert_eq!(c.limits.message_timestamp_before_max_ms, u64::MAX);
        // Unset shares follow a small connections_max.
        let small: FileConfig = toml::from_str("connections_max = 20").unwrap();
        let c = NodeConfig::merge(cli(&[]), small).unwrap();
        assert_eq!((c.limits.connections_per_ip_max, c.limits.connections_reserved), (18, 2));
        // At the limit: the per-IP cap may equal the unreserved share, not exceed it.
        let shares = |text: &str| NodeConfig::merge(cli(&[]), toml::from_str(text).unwrap());
        assert!(shares("connections_max = 10\nconnections_reserved = 2\nconnections_per_ip_max = 8").is_ok());
        let over = shares("connections_max = 10\nconnections_reserved = 2\nconnections_per_ip_max = 9");
        assert!(matches!(over, Err(ConfigError::Invalid { key: "connections_per_ip_max", .. })), "{over:?}");
        let all_reserved = shares("connections_max = 10\nconnections_reserved = 10");
        assert!(matches!(all_reserved, Err(ConfigError::Invalid { key: "connections_reserved", .. })));
        assert!(shares("connections_max_idle_ms = 0").is_err());
        assert!(shares("metrics_series_max = 0").is_err());
    }

    #[test]
    fn replication_limits_and_secret_file() {
        let c = NodeConfig::merge(cli(&[]), FileConfig::default()).unwrap();
        assert_eq!(c.replication_limits, InboundLimits::default());
        let at_limit: FileConfig =
            toml::from_str("replication_connections_max = 1\nreplication_handshake_timeout_ms = 100").unwrap();
        let c = NodeConfig::merge(cli(&[]), at_limit).unwrap();
        assert_eq!(c.replication_limits, InboundLimits { connections_max: 1, handshake_timeout_ms: 100 });
        let zero = FileConfig { replication_connections_max: Some(0), ..FileConfig::default() };
        assert!(matches!(
            NodeConfig::merge(cli(&[]), zero),
            Err(ConfigError::Invalid { key: "replication_connections_max", .. })
        ));
        let short = FileConfig { replication_handshake_timeout_ms: Some(99), ..FileConfig::default() };
        assert!(NodeConfig::merge(cli(&[]), short).is_err());
        let args = ["--etcd", "http://e:1", "--node-id", "1", "--cluster-secret-file", "/etc/strand/secret"];
        let cluster = NodeConfig::merge(cli(&args), FileConfig::default()).unwrap().cluster.unwrap();
        assert_eq!(cluster.secret_file, Some(PathBuf::from("/etc/strand/secret")));
    }

    #[test]
    fn rejects_bad_values() {
        assert!(NodeConfig::merge(cli(&["--shards", "0"]), FileConfig::default()).is_err());
        assert!(NodeConfig::merge(cli(&["--fsync", "sometimes"]), FileConfig::default()).is_err());
        assert!(NodeConfig::merge(cli(&["--io-mode", "mmap"]), FileConfig::default()).is_err());
        let no_id = NodeConfig::merge(cli(&["--etcd", "http://127.0.0.1:2379"]), FileConfig::default());
        assert!(matches!(no_id, Err(ConfigError::Invalid { key: "node_id", .. })));
        let zero = NodeConfig::merge(cli(&["--etcd", "http://e:1", "--node-id", "0"]), FileConfig::default());
        assert!(zero.is_err());
        assert!(NodeConfig::merge(cli(&["--etcd", ",", "--node-id", "1"]), FileConfig::default()).is_err());
        assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
        let tiny = FileConfig { frame_len_max: Some(10), ..FileConfig::default() };
        assert!(NodeConfig::merge(cli(&[]), tiny).is_err());
        let metadata = FileConfig { offset_metadata_max_bytes: Some(4097), ..FileConfig::default() };
        assert!(NodeConfig::merge(cli(&[]), metadata).is_err());
        let groups = FileConfig { groups_max: Some(0), ..FileConfig::default() };
        assert!(NodeConfig::merge(cli(&[]), groups).is_err());
        for (v, ok) in [(65_535, false), (65_536, true), (64 << 20, true), ((64 << 20) + 1, false)] {
            let file = FileConfig { batch_decompressed_len_max: Some(v), ..FileConfig::default() };
            let c = NodeConfig::merge(cli(&[]), file);
            assert_eq!(c.as_ref().map(|c| c.log.decompressed_len_max as u64).ok(), ok.then_some(v), "{v}");
        }
    }

    #[test]
    fn file_sizes_and_durations_take_units() {
        let text = "segment_bytes = \"64MiB\"\nretention_ms = \"7d\"\nretention_check_ms = \"500ms\"\n\
                    frame_len_max = \"1MiB\"\nmin_free_bytes = 1048576\nlease_ttl_s = \"10s\"";
        let file = parse_file(text).unwrap();
        let c = NodeConfig::merge(cli(&[]), file).unwrap();
        assert_eq!((c.log.segment_bytes, c.log.retention_ms, c.retention_check_ms), (64 << 20, Some(604_800_000), 500));
        assert_eq!((c.limits.frame_len_max, c.log.min_free_bytes), (1 << 20, 1_048_576));
        let err = parse_file("segment_bytes = \"64 parsecs\"").unwrap_err().at(Path::new("n.toml")).to_string();
        assert_eq!(
            err,
            "invalid config file n.toml: segment_bytes = \"64 parsecs\": not a size (e.g. 64MiB, 1GB, 1048576)"
        );
        let err = parse_file("segment_ms = \"soon\"").unwrap_err().at(Path::new("n.toml")).to_string();
        assert!(err.contains("segment_ms = \"soon\": not a duration"), "{err}");
        // Every listed key is a real key of the file (deny_unknown_fields refuses others).
        for key in units::SIZE_KEYS.iter().chain(units::MILLIS_KEYS).chain(units::SECONDS_KEYS) {
            assert!(parse_file(&format!("{key} = \"1\"")).is_ok(), "{key}");
        }
    }

    #[test]
    fn advertise_takes_a_host_without_a_port() {
        let host = |args: &[&str]| NodeConfig::merge(cli(args), FileConfig::default()).map(|c| c.advertise_host);
        assert_eq!(host(&[]).unwrap(), "127.0.0.1");
        assert_eq!(host(&["--advertise", "node-1.example.com"]).unwrap(), "node-1.example.com");
        assert_eq!(host(&["--advertise", "10.0.0.7"]).unwrap(), "10.0.0.7");
        assert_eq!(host(&["--advertise", "::1"]).unwrap(), "[::1]");
        assert_eq!(host(&["--listen", "[::1]:7070"]).unwrap(), "[::1]");
        let err = host(&["--advertise", "127.0.0.1:7100"]).unwrap_err().to_string();
        assert!(err.contains("has a port") && err.contains("--advertise 127.0.0.1"), "{err}");
        assert!(host(&["--advertise", "h:7100"]).is_err());
        assert!(host(&["--advertise", "[::1]:7100"]).is_err());
        assert!(host(&["--advertise", "bad host"]).is_err());
        assert!(host(&["--advertise", ""]).is_err());
    }

    #[test]
    fn kafka_listens_on_9092_of_the_listen_ip_unless_told() {
        let kafka = |args: &[&str]| NodeConfig::merge(cli(args), FileConfig::default()).map(|c| c.kafka_listen);
        assert_eq!(kafka(&[]).unwrap(), Some(parse_addr("127.0.0.1:9092")));
        assert_eq!(kafka(&["--listen", "0.0.0.0:7070"]).unwrap(), Some(parse_addr("0.0.0.0:9092")));
        assert_eq!(kafka(&["--kafka-listen", "127.0.0.1:0"]).unwrap(), Some(parse_addr("127.0.0.1:0")));
        assert_eq!(kafka(&["--kafka-listen", "off"]).unwrap(), None);
        let err = kafka(&["--kafka-listen", "9092"]).unwrap_err().to_string();
        assert!(err.contains("neither an address") && err.contains("off"), "{err}");
        let err = kafka(&["--kafka-listen", "127.0.0.1:7070"]).unwrap_err().to_string();
        assert_eq!(err, "invalid ports: port 7070 is given both by --listen and by --kafka-listen");
        let file: FileConfig = toml::from_str("kafka_listen = \"off\"").unwrap();
        assert_eq!(NodeConfig::merge(cli(&[]), file).unwrap().kafka_listen, None);
    }

    #[test]
    fn the_nodes_own_ports_must_not_collide() {
        let merge = |args: &[&str]| NodeConfig::merge(cli(args), FileConfig::default());
        let err = merge(&["--shards", "2", "--shard-port-base", "7070"]).unwrap_err().to_string();
        assert_eq!(err, "invalid ports: port 7070 is given both by --listen and by --shard-port-base");
        assert!(merge(&["--admin", "127.0.0.1:7101", "--shards", "2"]).is_err());
        assert!(merge(&["--admin", "0.0.0.0:7070"]).is_err());
        assert!(merge(&["--admin", "127.0.0.2:7070"]).is_ok());
        let cluster = ["--etcd", "http://e:1", "--node-id", "1", "--shards", "2"];
        let both = [&cluster[..], &["--replication-port-base", "7101"]].concat();
        assert!(merge(&both).is_err());
        assert!(merge(&[&cluster[..], &["--listen", "127.0.0.1:0", "--shard-port-base", "0"]].concat()).is_ok());
    }
}
