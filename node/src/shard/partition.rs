//! One partition as its owner shard holds it: the log, the watchers that wake
//! long-polling fetches, and the idempotent-producer sequence table.
//!
//! Lifecycle: opened by the owner shard at start or on topic creation, used by
//! any number of tasks of that shard concurrently, closed at shutdown or deleted
//! with its topic. `!Send`: never leaves its shard.
//!
//! Invariant: batches of idempotent producers are checked and appended under the
//! partition's sequence lock, so the check, the append and the table update are
//! one step for every other idempotent batch of the partition; plain batches skip
//! the lock (their appends group-commit freely).

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use glommio::sync::Semaphore;
use strand_core::producer::{ProducerBatch, ProducerTable, SequenceCheck};
use strand_wire::batch::{BatchHeader, HEADER_LEN};
use strand_wire::ErrorCode;

use super::notify::LocalNotify;
use crate::log::PartitionLog;

/// What a successful (or deduplicated) produce to one partition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceOutcome {
    /// `None`, or `DuplicateSequence` for an idempotent retry (nothing appended).
    pub code: ErrorCode,
    pub base_offset: u64,
    pub record_count: u32,
}

/// A refused produce: the code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRefusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> ProduceRefusal {
    ProduceRefusal { code, message: message.into() }
}

/// A partition owned by this shard.
pub struct Partition {
    pub topic: String,
    pub partition: u32,
    pub log: PartitionLog,
    /// Notified after every append.
    pub appended: Rc<LocalNotify>,
    producers: RefCell<ProducerTable>,
    sequence_lock: Semaphore,
}

impl Partition {
    /// Wraps an opened log.
    pub fn new(topic: String, partition: u32, log: PartitionLog) -> Self {
        Partition {
            topic,
            partition,
            log,
            appended: Rc::new(LocalNotify::default()),
            producers: RefCell::new(ProducerTable::new()),
            sequence_lock: Semaphore::new(1),
        }
    }

    /// Appends `payload` (one or more whole batches), deduplicating idempotent retries.
    pub async fn produce(&self, payload: Bytes) -> Result<ProduceOutcome, ProduceRefusal> {
        let batches = producer_batches(&payload)?;
        let idempotent = batches.iter().any(|b| b.producer_id != 0);
        if !idempotent {
            return self.append(payload, &batches).await;
        }
        let _permit =
            self.sequence_lock.acquire_permit(1).await.map_err(|_| refuse(ErrorCode::ShuttingDown, "closing"))?;
        match self.check_sequences(&batches)? {
            Some(base_offset) => Ok(ProduceOutcome {
                code: ErrorCode::DuplicateSequence,
                base_offset,
                record_count: batches.iter().map(|b| b.record_count).sum(),
            }),
            None => {
                let outcome = self.append(payload, &batches).await?;
                let mut offset = outcome.base_offset;
                let mut table = self.producers.borrow_mut();
                for batch in &batches {
                    table.record(batch, offset);
                    offset += u64::from(batch.record_count);
                }
                Ok(outcome)
            }
        }
    }

    /// `Some(base_offset)` if every batch is a retry of one already appended, `None`
    /// if all may be appended; mixed or out-of-order runs are refused.
    fn check_sequences(&self, batches: &[ProducerBatch]) -> Result<Option<u64>, ProduceRefusal> {
        let table = self.producers.borrow();
        let first = batches.first().ok_or_else(|| refuse(ErrorCode::InvalidRequest, "no batch"))?;
        let checked = table.check(first).map_err(|e| refuse(e.code(), e.to_string()))?;
        for pair in batches.windows(2) {
            let (prev, next) = (&pair[0], &pair[1]);
            let contiguous = next.producer_id == prev.producer_id
                && next.producer_epoch == prev.producer_epoch
                && next.base_sequence == prev.base_sequence.wrapping_add(prev.record_count);
            if !contiguous {
                return Err(refuse(ErrorCode::OutOfOrderSequence, "batches of one request are not contiguous"));
            }
        }
        match checked {
            SequenceCheck::Append => Ok(None),
            SequenceCheck::Duplicate { base_offset } if batches.len() == 1 => Ok(Some(base_offset)),
            SequenceCheck::Duplicate { base_offset } => {
                // A multi-batch retry is a duplicate only if its last batch is too.
                let last = batches.last().expect("non-empty");
                match table.check(last) {
                    Ok(SequenceCheck::Duplicate { .. }) => Ok(Some(base_offset)),
                    _ => Err(refuse(ErrorCode::OutOfOrderSequence, "retry overlaps appended batches")),
                }
            }
        }
    }

    async fn append(&self, payload: Bytes, batches: &[ProducerBatch]) -> Result<ProduceOutcome, ProduceRefusal> {
        let record_count = batches.iter().map(|b| b.record_count).sum();
        let info = self.log.append(BytesMut::from(&payload[..])).await.map_err(|e| refuse(e.code(), e.to_string()))?;
        self.appended.notify_all();
        Ok(ProduceOutcome { code: ErrorCode::None, base_offset: info.base_offset, record_count })
    }
}

/// The producer fields of every batch in `payload`, which must be whole batches.
/// CRC and records are validated by the log on append; this only walks headers.
fn producer_batches(payload: &[u8]) -> Result<Vec<ProducerBatch>, ProduceRefusal> {
    let mut out = Vec::new();
    let mut rest = payload;
    if rest.is_empty() {
        return Err(refuse(ErrorCode::CorruptBatch, "empty produce payload"));
    }
    while !rest.is_empty() {
        let header = BatchHeader::parse(rest).map_err(|e| refuse(ErrorCode::CorruptBatch, e.to_string()))?;
        let len = header.batch_len as usize;
        if len < HEADER_LEN || len > rest.len() || header.record_count == 0 {
            return Err(refuse(ErrorCode::CorruptBatch, format!("batch length {len} does not fit the payload")));
        }
        out.push(ProducerBatch {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            record_count: header.record_count,
        });
        rest = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strand_wire::batch::BatchBuilder;

    #[test]
    fn walks_batch_headers() {
        let mut payload = BytesMut::new();
        for seq in [0u32, 2] {
            let mut b = BatchBuilder::new().producer(5, 1, seq);
            b.push(1, None, b"x", &[]);
            b.push(2, None, b"y", &[]);
            payload.extend_from_slice(&b.finish());
        }
        let batches = producer_batches(&payload).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1], ProducerBatch { producer_id: 5, producer_epoch: 1, base_sequence: 2, record_count: 2 });
        assert_eq!(producer_batches(&payload[..payload.len() - 1]).unwrap_err().code, ErrorCode::CorruptBatch);
        assert_eq!(producer_batches(&[]).unwrap_err().code, ErrorCode::CorruptBatch);
        assert_eq!(producer_batches(&[0u8; 20]).unwrap_err().code, ErrorCode::CorruptBatch);
    }
}
