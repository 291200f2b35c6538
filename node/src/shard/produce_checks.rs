//! Checks of a produce's batch headers that need no partition state, run on the shard that
//! received the request before it is routed (single node and cluster alike): the producer
//! epoch must be one the node issues, and the timestamps must lie within the configured
//! bounds of the node's clock (see `strand_core::producer` and `strand_core::timestamp`).
//! Producer ids are issued here too: random, and never one in use on this shard or issued
//! recently by the node.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use strand_core::producer::{check_epoch_issued, producer_id_from_random, ProducerBatch};
use strand_core::timestamp::{check_batch, TimestampBounds};
use strand_wire::batch::BatchHeaders;
use strand_wire::ErrorCode;

use crate::config::NetLimits;

/// Producer ids the node issued last, remembered to refuse a colliding random draw.
pub const PRODUCER_IDS_REMEMBERED: usize = 65_536;
/// Random draws before InitProducerId gives up (each collides with odds below 2^-40).
const PRODUCER_ID_DRAWS_MAX: usize = 16;

/// The ids the node issued most recently (bounded), node-wide.
#[derive(Debug, Default)]
pub struct IssuedProducerIds {
    recent: Mutex<(HashSet<i64>, VecDeque<i64>)>,
}

impl IssuedProducerIds {
    /// A fresh random producer id (positive, see `producer_id_from_random`) that is not in
    /// `recent` and for which `in_use` is false; `None` if every draw collided (the caller
    /// answers an error rather than reuse an id).
    pub fn issue(&self, in_use: impl Fn(i64) -> bool) -> Option<i64> {
        let mut guard = self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (set, order) = &mut *guard;
        let id = (0..PRODUCER_ID_DRAWS_MAX)
            .filter_map(|_| producer_id_from_random(rand::random::<u64>()))
            .find(|id| !set.contains(id) && !in_use(*id))?;
        if order.len() == PRODUCER_IDS_REMEMBERED {
            let oldest = order.pop_front().expect("full");
            set.remove(&oldest);
        }
        set.insert(id);
        order.push_back(id);
        assert_eq!(set.len(), order.len());
        Some(id)
    }
}

/// Checks every batch header of one partition's produce payload at `now_ms`. A payload
/// whose headers do not parse passes: the owner's validation answers `CORRUPT_BATCH`.
pub fn check_payload(payload: &[u8], now_ms: i64, limits: &NetLimits) -> Result<(), (ErrorCode, String)> {
    let bounds = TimestampBounds {
        before_max_ms: limits.message_timestamp_before_max_ms,
        after_max_ms: limits.message_timestamp_after_max_ms,
    };
    for (header, _) in BatchHeaders::new(payload).map_while(Result::ok) {
        check_epoch_issued(&ProducerBatch::of(&header)).map_err(|e| (e.code(), e.to_string()))?;
        check_batch(header.first_timestamp, header.max_timestamp, now_ms, bounds)
            .map_err(|e| (e.code(), e.to_string()))?;
    }
    Ok(())
}
