//! Node configuration: the `strand-node` command line (DESIGN §8) merged over an
//! optional `--config strand.toml` file (flags win), resolved into [`NodeConfig`].
//!
//! Invariant: a [`NodeConfig`] is fully validated — every limit is non-zero and
//! related limits agree (a frame fits in the per-connection buffer budget), so the
//! shards never re-check it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;
use strand_wire::frame::FRAME_LEN_MAX_DEFAULT;

use crate::control::types::{ControlConfig, LEASE_TTL_S_DEFAULT, PREFIX_DEFAULT};
use crate::log::{FsyncPolicy, IoMode, LogConfig};

/// Default public listen address.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7070";
/// Default admin HTTP address.
pub const ADMIN_DEFAULT: &str = "127.0.0.1:7071";
/// Default first shard port (`shard s` listens on `base + s`).
pub const SHARD_PORT_BASE_DEFAULT: u16 = 7100;
/// Default requests a connection may have in flight before the node stops reading it.
pub const INFLIGHT_PER_CONNECTION_DEFAULT: u32 = 64;
/// Default request bytes a connection may have buffered and in flight.
pub const CONNECTION_BUFFER_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Default connections per node (over all shards and ports).
pub const CONNECTIONS_MAX_DEFAULT: u32 = 10_000;
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
    pub frame_len_max: Option<u32>,
    pub inflight_per_connection: Option<u32>,
    pub connection_buffer_bytes: Option<u64>,
    pub connections_max: Option<u32>,
    pub retention_check_ms: Option<u64>,
    pub segment_bytes: Option<u64>,
    pub segment_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub min_free_bytes: Option<u64>,
    pub batch_decompressed_len_max: Option<u64>,
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
}

/// The resolved, validated configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub shards: u16,
    /// `None` = ephemeral shard ports.
    pub shard_port_base: Option<u16>,
    pub node_id: u32,
    pub advertise_host: String,
    pub limits: NetLimits,
    pub retention_check_ms: u64,
    pub log: LogConfig,
    /// Cluster mode (`--etcd`); `None` = a single node, exactly as without replication.
    pub cluster: Option<ControlConfig>,
    /// Shard `s`'s replication listener port is `base + s`; `None` = ephemeral.
    pub replication_port_base: Option<u16>,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
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
        let limits = NetLimits {
            frame_len_max: file.frame_len_max.unwrap_or(FRAME_LEN_MAX_DEFAULT as u32),
            inflight_per_connection: file.inflight_per_connection.unwrap_or(INFLIGHT_PER_CONNECTION_DEFAULT),
            connection_buffer_bytes: file.connection_buffer_bytes.unwrap_or(CONNECTION_BUFFER_BYTES_DEFAULT),
            connections_max: file.connections_max.unwrap_or(CONNECTIONS_MAX_DEFAULT),
        };
        check_limits(&limits)?;
        let log = log_config(&cli, &file)?;
        let cluster = cluster_config(&cli, &file)?;
        let replication_port_base =
            match cli.replication_port_base.or(file.replication_port_base).unwrap_or(REPLICATION_PORT_BASE_DEFAULT) {
                0 => None,
                base if u32::from(base) + u32::from(shards) > 65_536 => {
                    return Err(invalid("replication_port_base", "base + shards exceeds port range"))
                }
                base => Some(base),
            };
        Ok(NodeConfig {
            data_dir: absolute(cli.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./strand-data")))?,
            listen,
            admin: cli.admin.or(file.admin).unwrap_or_else(|| parse_addr(ADMIN_DEFAULT)),
            shards,
            shard_port_base,
            node_id: cli.node_id.or(file.node_id).unwrap_or(0),
            advertise_host: cli.advertise.or(file.advertise).unwrap_or_else(|| listen.ip().to_string()),
            limits,
            retention_check_ms: file.retention_check_ms.unwrap_or(RETENTION_CHECK_MS_DEFAULT).max(100),
            log,
            cluster,
            replication_port_base,
        })
    }
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
    Ok(Some(ControlConfig { endpoints, node_id, lease_ttl_s, prefix: prefix.trim_end_matches('/').to_string() }))
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
    Ok(())
}

/// The data dir as an absolute path: glommio's directory opens reject relative paths
/// (EBADF), and logs and metrics should name the real location.
fn absolute(dir: PathBuf) -> Result<PathBuf, ConfigError> {
    std::path::absolute(&dir).map_err(|e| invalid("data_dir", format!("{}: {e}", dir.display())))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source: Box::new(source) })
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
        for (v, ok) in [(65_535, false), (65_536, true), (64 << 20, true), ((64 << 20) + 1, false)] {
            let file = FileConfig { batch_decompressed_len_max: Some(v), ..FileConfig::default() };
            let c = NodeConfig::merge(cli(&[]), file);
            assert_eq!(c.as_ref().map(|c| c.log.decompressed_len_max as u64).ok(), ok.then_some(v), "{v}");
        }
    }
}
