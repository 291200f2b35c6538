//! Connection admission by source: the per-IP cap and the reserved share.
//!
//! `accept_loop` counts every connection against the node-wide `connections_max`; a
//! connection that passed it is then admitted here by its source IP address:
//! - a source may hold at most `connections_per_ip_max` connections;
//! - the last `connections_reserved` slots of `connections_max` go only to sources that
//!   hold no connection yet, so when one source (or a crowd) has filled the node, an
//!   operator's tool or a monitoring canary from another address is still served.
//!
//! The table is shared by every shard (behind a mutex taken once per accept and once per
//! close, never on the data path) and bounded: it holds an entry only for a source with an
//! open connection, so at most `connections_max` entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::NetLimits;

/// Open connections per source IP, node-wide.
#[derive(Debug, Default)]
pub struct SourceTable {
    held: Mutex<HashMap<IpAddr, u32>>,
}

/// Why a connection from a source was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("connection refused: source {source_ip} holds {held} connections, connections_per_ip_max is {limit}")]
    PerIp { source_ip: IpAddr, held: u32, limit: u32 },
    #[error(
        "connection refused: {open} of connections_max {max} open; the last {reserved} (connections_reserved) \
         are kept for sources holding none, and {source_ip} holds {held}"
    )]
    Reserved { source_ip: IpAddr, held: u32, open: u32, max: u32, reserved: u32 },
}

/// A connection admitted for its source; dropping it gives the slot back.
#[derive(Debug)]
pub struct Admission {
    table: Arc<SourceTable>,
    source: IpAddr,
}

impl SourceTable {
    /// Admits one more connection from `source` when `open` connections (this one
    /// included) are open on the node, or says why not.
    pub fn admit(
        table: &Arc<SourceTable>,
        source: IpAddr,
        open: u32,
        limits: &NetLimits,
    ) -> Result<Admission, Refusal> {
        let mut held_by = table.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let held = held_by.get(&source).copied().unwrap_or(0);
        decide(source, held, open, limits)?;
        *held_by.entry(source).or_insert(0) += 1;
        assert!(held_by.len() <= limits.connections_max as usize, "one entry per source with an open connection");
        Ok(Admission { table: table.clone(), source })
    }

    /// Connections `source` holds now.
    pub fn held(&self, source: IpAddr) -> u32 {
        let held_by = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        held_by.get(&source).copied().unwrap_or(0)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut held_by = self.table.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(held) = held_by.get_mut(&self.source) else {
            unreachable!("an admitted source has an entry until its last connection closes");
        };
        assert!(*held > 0);
        *held -= 1;
        if *held == 0 {
            held_by.remove(&self.source);
        }
    }
}

/// The admission rule: `held` = connections `source` has open already, `open` = the node's
/// open connections counting the new one.
fn decide(source: IpAddr, held: u32, open: u32, limits: &NetLimits) -> Result<(), Refusal> {
    if held >= limits.connections_per_ip_max {
        return Err(Refusal::PerIp { source_ip: source, held, limit: limits.connections_per_ip_max });
    }
    let unreserved = limits.connections_max - limits.connections_reserved;
    if held > 0 && open > unreserved {
        let (max, reserved) = (limits.connections_max, limits.connections_reserved);
        return Err(Refusal::Reserved { source_ip: source, held, open, max, reserved });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u32, per_ip: u32, reserved: u32) -> NetLimits {
        NetLimits {
            frame_len_max: 1 << 20,
            inflight_per_connection: 1,
            connection_buffer_bytes: 1 << 20,
            connections_max: max,
            connections_max_idle_ms: 1,
            connections_per_ip_max: per_ip,
            connections_reserved: reserved,
            metrics_series_max: 1,
            message_timestamp_after_max_ms: 1,
            message_timestamp_before_max_ms: 1,
        }
    }

    #[test]
    fn per_ip_cap_and_reserved_share() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let l = limits(10, 6, 2);
        // (source, held, open incl. the new one, admitted?)
        let cases = [
            (a, 0, 1, true),
            (a, 5, 6, true),
            (a, 6, 7, false), // per-IP cap
            (a, 5, 9, false), // would take a reserved slot while holding some
            (b, 0, 9, true),  // a new source takes a reserved slot
            (b, 0, 10, true),
            (b, 1, 10, false),
        ];
        for (source, held, open, admitted) in cases {
            assert_eq!(decide(source, held, open, &l).is_ok(), admitted, "{source} held {held} open {open}");
        }
        let refused = decide(a, 6, 7, &l).unwrap_err().to_string();
        assert!(refused.contains("connections_per_ip_max is 6") && refused.contains("holds 6"), "{refused}");
    }

    #[test]
    fn admissions_are_counted_and_given_back() {
        let table = Arc::new(SourceTable::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let l = limits(10, 2, 2);
        let first = SourceTable::admit(&table, a, 1, &l).expect("first");
        let second = SourceTable::admit(&table, a, 2, &l).expect("second");
        assert!(matches!(SourceTable::admit(&table, a, 3, &l), Err(Refusal::PerIp { held: 2, .. })));
        assert_eq!(table.held(a), 2);
        drop((first, second));
        assert_eq!(table.held(a), 0);
        assert!(table.held.lock().unwrap().is_empty(), "no entry for a source without connections");
    }
}
