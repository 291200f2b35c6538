//! Binding every port a node listens on, exclusively, before anything else starts.
//!
//! Architecture invariant: no listener of a node has `SO_REUSEPORT`. glommio's own
//! `TcpListener::bind` sets it, and with it a second `strand-node` started on the same
//! ports *also* binds them and the kernel spreads clients over two processes with
//! different data. So the node binds with `std::net` (only `SO_REUSEADDR`, which lets a
//! restart reuse a port in TIME_WAIT but never lets two processes listen on one port),
//! on the main thread, before the data is opened: a conflict stops the start with
//! [`BindError`] naming the address and the flag that sets it.
//!
//! The public port is shared by the shards without the kernel's help: shard 0 owns its
//! one listener and hands accepted connections round-robin to the shards
//! (`net::accept_public`).

use std::net::{SocketAddr, TcpListener};

use crate::config::NodeConfig;

/// Every listener of one node, bound and listening.
#[derive(Debug)]
pub struct NodeListeners {
    /// The public port (`--listen`); shard 0 accepts on it.
    pub public: TcpListener,
    /// `shards[s]`: shard `s`'s own port (`--shard-port-base`).
    pub shards: Vec<TcpListener>,
    /// `replication[s]`: shard `s`'s replication port (cluster mode; else empty).
    pub replication: Vec<TcpListener>,
    /// The admin HTTP port (`--admin`).
    pub admin: TcpListener,
    /// The Kafka-protocol port (`--kafka-listen`; `None` = off); shard 0 accepts on it.
    pub kafka: Option<TcpListener>,
}

/// A port the node could not bind.
#[derive(Debug, thiserror::Error)]
#[error("{addr} ({flag}) {}", describe(.source))]
pub struct BindError {
    pub addr: SocketAddr,
    /// The flag that sets this port, e.g. `--listen`.
    pub flag: &'static str,
    pub source: std::io::Error,
}

impl BindError {
    /// True when another process holds the port (as opposed to, say, an address this
    /// host does not have).
    pub fn in_use(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::AddrInUse
    }
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "is already in use by another process".to_string(),
        std::io::ErrorKind::AddrNotAvailable => "is not an address of this host".to_string(),
        std::io::ErrorKind::PermissionDenied => "cannot be bound: permission denied".to_string(),
        _ => format!("cannot be bound: {e}"),
    }
}

/// Binds the public, shard, replication (cluster mode), admin and Kafka ports of `config`.
/// Port 0 binds an ephemeral port. Nothing stays bound if any bind fails.
pub fn bind_all(config: &NodeConfig) -> Result<NodeListeners, BindError> {
    let ip = config.listen.ip();
    let public = bind(config.listen, "--listen")?;
    let shard_count = config.shards;
    let shards = (0..shard_count)
        .map(|s| bind(SocketAddr::new(ip, config.shard_port_base.map_or(0, |base| base + s)), "--shard-port-base"))
        .collect::<Result<Vec<_>, _>>()?;
    let replication = match config.cluster {
        None => Vec::new(),
        Some(_) => (0..shard_count)
            .map(|s| {
                let port = config.replication_port_base.map_or(0, |base| base + s);
                bind(SocketAddr::new(ip, port), "--replication-port-base")
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let admin = bind(config.admin, "--admin")?;
    let kafka = config.kafka_listen.map(|addr| bind(addr, "--kafka-listen")).transpose()?;
    Ok(NodeListeners { public, shards, replication, admin, kafka })
}

/// One exclusive listener (std sets `SO_REUSEADDR` and never `SO_REUSEPORT`).
pub fn bind(addr: SocketAddr, flag: &'static str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).map_err(|source| BindError { addr, flag, source })
}

/// Port of a bound listener (0 if the kernel cannot say, which it always can for TCP).
pub fn port(listener: &TcpListener) -> u16 {
    listener.local_addr().map_or(0, |a| a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_bind_of_a_bound_port_is_refused_and_names_the_flag() {
        let first = bind("127.0.0.1:0".parse().unwrap(), "--listen").unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(addr, "--shard-port-base").unwrap_err();
        assert!(err.in_use());
        assert_eq!(err.to_string(), format!("{addr} (--shard-port-base) is already in use by another process"));
    }

    #[test]
    fn a_reuseport_listener_of_another_process_blocks_an_exclusive_bind() {
        // What glommio's bind does: SO_REUSEPORT. Our plain bind must still be refused.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_reuse_port(true).unwrap();
        socket.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
        socket.listen(16).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        assert!(bind(addr, "--listen").unwrap_err().in_use());
    }
}
