//! Cross-shard calls: what one shard asks another (the partition's owner) to do,
//! and the answers. Everything here is `Send`: batch bytes travel as `Bytes`,
//! never as shard-local file handles (a forwarded fetch is copied, the owner
//! shard's port is the zero-copy path).
//!
//! Invariant: every shard inbox is bounded ([`SHARD_INBOX_LEN`]); a sender waits
//! when the owner is saturated instead of queueing without limit.

use bytes::Bytes;
use strand_wire::msg::{
    Acks, FetchPartition, FetchPartitionResponse, ListOffsetsPartition, ListOffsetsPartitionResponse, ProducePartition,
    ProducePartitionResponse,
};
use strand_wire::ErrorCode;

use crate::partition::PartitionOffsets;
use crate::topic::TopicConfig;

/// Calls a shard's inbox holds before senders wait.
pub const SHARD_INBOX_LEN: usize = 1024;

/// A call to another shard.
#[derive(Debug)]
pub enum ShardCall {
    /// Append to partitions the receiver owns.
    Produce { acks: Acks, parts: Vec<(ProducePartition, Bytes)> },
    /// Read (and long-poll) partitions the receiver owns.
    Fetch { max_wait_ms: u32, min_bytes: u32, max_bytes: u32, parts: Vec<FetchPartition> },
    /// Resolve offsets of partitions the receiver owns.
    ListOffsets(Vec<ListOffsetsPartition>),
    /// Log start, log end, commit and epoch of partitions the receiver owns (for metadata).
    Offsets(Vec<(String, u32)>),
    /// A topic is being created: open the partitions you own, do not serve them yet.
    TopicPrepare(TopicConfig),
    /// A topic was added to the registry: open the partitions you own and serve them.
    TopicCreated(TopicConfig),
    /// A topic's config overrides changed: apply its roll and retention limits to the
    /// partitions you hold.
    TopicConfigChanged(TopicConfig),
    /// A topic was removed from the registry: delete the partitions you own.
    TopicDeleted { name: String },
    /// Stop serving, finish appends, close logs.
    Shutdown,
}

/// An answer to a [`ShardCall`].
#[derive(Debug)]
pub enum ShardAnswer {
    Produce(Vec<ProducePartitionResponse>),
    /// Each partition's response and its batch bytes (`bytes_len` of them), as ranges of
    /// the owner's segment files where they are on disk (sent zero-copy by the asker).
    Fetch(Vec<(FetchPartitionResponse, Vec<crate::log::SharedChunk>)>),
    ListOffsets(Vec<ListOffsetsPartitionResponse>),
    Offsets(Vec<Result<PartitionOffsets, ErrorCode>>),
    Done(Result<(), super::ShardError>),
}

/// A call plus where to send the answer (`None` = no answer wanted).
#[derive(Debug)]
pub struct ShardMsg {
    pub call: ShardCall,
    pub reply: Option<flume::Sender<ShardAnswer>>,
}

/// Why a cross-shard call failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("shard {0} is gone")]
    ShardGone(usize),
}

impl ForwardError {
    /// The wire error to answer with.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::ShuttingDown
    }
}

/// Sends `call` to `inbox` and waits for the answer.
pub async fn call(inbox: &flume::Sender<ShardMsg>, shard: usize, call: ShardCall) -> Result<ShardAnswer, ForwardError> {
    let (tx, rx) = flume::bounded(1);
    inbox.send_async(ShardMsg { call, reply: Some(tx) }).await.map_err(|_| ForwardError::ShardGone(shard))?;
    rx.recv_async().await.map_err(|_| ForwardError::ShardGone(shard))
}
