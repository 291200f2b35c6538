//! The commit record: one committed offset as the shell stores it in the internal
//! `__consumer_offsets` partition (as a record value; [`CommitRecord::encode_key`] gives
//! the matching record key so a future compactor can keep the last value per key).
//! Replaying the records in log order through `GroupCoordinator::load_offset_record`
//! rebuilds every group's committed offsets.
//!
//! Value layout, little-endian, no padding:
//! ```text
//! u8  version (= COMMIT_RECORD_VERSION)
//! u16 group_len     | group_len bytes of UTF-8 group id
//! u16 topic_len     | topic_len bytes of UTF-8 topic
//! u32 partition
//! u64 offset        (next offset the group will consume)
//! u64 commit_ms     (coordinator clock at commit)
//! u16 metadata_len  | metadata_len bytes of UTF-8 client metadata
//! ```
//! Key layout: `u8 version | u16 group_len | group | u16 topic_len | topic | u32 partition`.
//!
//! A *tombstone* (the partition's committed offset of an empty group expired, see
//! `offsets_retention_ms`) has the same layout with version byte
//! [`TOMBSTONE_RECORD_VERSION`] in the value (the key keeps version 1, so it names the
//! same partition); its `offset` is the value that expired and its metadata is empty.
//! Replay drops whatever the records before it committed for that partition.
//!
//! A *snapshot marker* (value version byte [`SNAPSHOT_MARKER_VERSION`]) starts a snapshot:
//! the `count` commit records right after it restate every live committed offset of the
//! partition's groups (see `compact.rs`), so everything before the marker may be deleted
//! once the marker and its `count` records are durable. Value layout:
//! `u8 version | u32 count | u64 written_ms`; key: the single byte `3`. Replay ignores it.
//! Invariant: `decode(encode(r)) == r` for every record within the length limits, and
//! `decode` never panics on arbitrary bytes.

use super::{GROUP_ID_LEN_MAX, METADATA_LEN_MAX, TOPIC_NAME_LEN_MAX};

/// The record format version this code writes and reads.
pub const COMMIT_RECORD_VERSION: u8 = 1;
/// The value version byte of a tombstone record.
pub const TOMBSTONE_RECORD_VERSION: u8 = 2;
/// The value version byte of a snapshot marker.
pub const SNAPSHOT_MARKER_VERSION: u8 = 3;

/// Starts a snapshot of a partition's live offsets (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMarker {
    /// Commit records of the snapshot, right after the marker.
    pub count: u32,
    /// Coordinator clock when the snapshot was taken.
    pub written_ms: u64,
}

impl SnapshotMarker {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_MARKER_VERSION];
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.written_ms.to_le_bytes());
        out
    }

    pub fn encode_key() -> Vec<u8> {
        vec![SNAPSHOT_MARKER_VERSION]
    }
}

/// One record of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    Commit(CommitRecord),
    Snapshot(SnapshotMarker),
}

impl OffsetsRecord {
    /// Parses a record value of the offsets topic (a commit, tombstone or snapshot marker).
    pub fn decode(bytes: &[u8]) -> Result<OffsetsRecord, RecordError> {
        if bytes.first() != Some(&SNAPSHOT_MARKER_VERSION) {
            return CommitRecord::decode(bytes).map(OffsetsRecord::Commit);
        }
        let mut reader = Reader { bytes: &bytes[1..] };
        let count = u32::from_le_bytes(reader.take()?);
        let written_ms = u64::from_le_bytes(reader.take()?);
        if !reader.bytes.is_empty() {
            return Err(RecordError::TrailingBytes(reader.bytes.len()));
        }
        Ok(OffsetsRecord::Snapshot(SnapshotMarker { count, written_ms }))
    }
}

/// One committed offset of one group's partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRecord {
    pub group_id: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub commit_ms: u64,
    pub metadata: String,
    /// A tombstone: the committed offset expired (see the module doc).
    pub tombstone: bool,
}

/// Why bytes are not a valid commit record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("commit record truncated")]
    Truncated,
    #[error("unknown commit record version {0}")]
    UnknownVersion(u8),
    #[error("commit record field is not UTF-8")]
    NotUtf8,
    #[error("commit record field exceeds its length limit")]
    TooLong,
    #[error("{0} trailing bytes after commit record")]
    TrailingBytes(usize),
}

impl CommitRecord {
    /// The record value. Panics if a field exceeds its limit: the coordinator validates
    /// lengths before it creates records, so this is a programmer error.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_key();
        if self.tombstone {
            out[0] = TOMBSTONE_RECORD_VERSION;
        }
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.commit_ms.to_le_bytes());
        put_str(&mut out, &self.metadata, METADATA_LEN_MAX);
        out
    }

    /// The record key: identifies `(group, topic, partition)`.
    pub fn encode_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.group_id.len() + self.topic.len() + self.metadata.len());
        out.push(COMMIT_RECORD_VERSION);
        put_str(&mut out, &self.group_id, GROUP_ID_LEN_MAX);
        put_str(&mut out, &self.topic, TOPIC_NAME_LEN_MAX);
        out.extend_from_slice(&self.partition.to_le_bytes());
        out
    }

    /// Parses a record value written by [`CommitRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<CommitRecord, RecordError> {
        let mut reader = Reader { bytes };
        let version = reader.take::<1>()?[0];
        if version != COMMIT_RECORD_VERSION && version != TOMBSTONE_RECORD_VERSION {
            return Err(RecordError::UnknownVersion(version));
        }
        let group_id = reader.string(GROUP_ID_LEN_MAX)?;
        let topic = reader.string(TOPIC_NAME_LEN_MAX)?;
        let partition = u32::from_le_bytes(reader.take()?);
        let offset = u64::from_le_bytes(reader.take()?);
        let commit_ms = u64::from_le_bytes(reader.take()?);
        let metadata = reader.string(METADATA_LEN_MAX)?;
        if !reader.bytes.is_empty() {
            return Err(RecordError::TrailingBytes(reader.bytes.len()));
        }
        let tombstone = version == TOMBSTONE_RECORD_VERSION;
        Ok(CommitRecord { group_id, topic, partition, offset, commit_ms, metadata, tombstone })
    }
}

fn put_str(out: &mut Vec<u8>, value: &str, len_max: usize) {
    assert!(value.len() <= len_max, "commit record field of {} bytes over limit {len_max}", value.len());
    let len = u16::try_from(value.len()).expect("limits fit u16 (compile-time asserted)");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let (head, rest) = self.bytes.split_first_chunk::<N>().ok_or(RecordError::Truncated)?;
        self.bytes = rest;
        Ok(*head)
    }

    fn string(&mut self, len_max: usize) -> Result<String, RecordError> {
        let len = usize::from(u16::from_le_bytes(self.take()?));
        if len > len_max {
            return Err(RecordError::TooLong);
        }
        let (head, rest) = self.bytes.split_at_checked(len).ok_or(RecordError::Truncated)?;
        self.bytes = rest;
        String::from_utf8(head.to_vec()).map_err(|_| RecordError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> CommitRecord {
        CommitRecord {
            group_id: "g".into(),
            topic: "t".into(),
            partition: 3,
            offset: 42,
            commit_ms: 7,
            metadata: "m".into(),
            tombstone: false,
        }
    }

    #[test]
    fn tombstone_differs_only_in_the_value_version() {
        let tombstone = CommitRecord { tombstone: true, ..sample() };
        let (plain, dead) = (sample().encode(), tombstone.encode());
        assert_eq!((plain[0], dead[0]), (COMMIT_RECORD_VERSION, TOMBSTONE_RECORD_VERSION));
        assert_eq!(plain[1..], dead[1..]);
        assert_eq!(tombstone.encode_key(), sample().encode_key());
        assert_eq!(CommitRecord::decode(&dead), Ok(tombstone));
    }

    #[test]
    fn layout_is_as_documented() {
        let bytes = sample().encode();
        let mut expect = vec![1u8, 1, 0, b'g', 1, 0, b't', 3, 0, 0, 0];
        expect.extend_from_slice(&42u64.to_le_bytes());
        expect.extend_from_slice(&7u64.to_le_bytes());
        expect.extend_from_slice(&[1, 0, b'm']);
        assert_eq!(bytes, expect);
        assert_eq!(sample().encode_key(), expect[..11].to_vec());
    }

    #[test]
    fn decode_rejects_damage() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert_eq!(CommitRecord::decode(&bytes[..cut]), Err(RecordError::Truncated), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(CommitRecord::decode(&long), Err(RecordError::TrailingBytes(1)));
        let mut version = bytes.clone();
        version[0] = 9;
        assert_eq!(CommitRecord::decode(&version), Err(RecordError::UnknownVersion(9)));
        let mut utf8 = bytes.clone();
        utf8[3] = 0xff;
        assert_eq!(CommitRecord::decode(&utf8), Err(RecordError::NotUtf8));
        let mut too_long = bytes;
        too_long[1..3].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(CommitRecord::decode(&too_long), Err(RecordError::TooLong));
    }

    #[test]
    fn snapshot_marker_round_trips_and_rejects_damage() {
        let marker = SnapshotMarker { count: 7, written_ms: 99 };
        let bytes = marker.encode();
        assert_eq!(bytes.len(), 13);
        assert_eq!(OffsetsRecord::decode(&bytes), Ok(OffsetsRecord::Snapshot(marker)));
        for cut in 1..bytes.len() {
            assert_eq!(OffsetsRecord::decode(&bytes[..cut]), Err(RecordError::Truncated), "cut at {cut}");
        }
        let mut long = bytes;
        long.push(1);
        assert_eq!(OffsetsRecord::decode(&long), Err(RecordError::TrailingBytes(1)));
        assert_eq!(OffsetsRecord::decode(&sample().encode()), Ok(OffsetsRecord::Commit(sample())));
        assert_eq!(CommitRecord::decode(&marker.encode()), Err(RecordError::UnknownVersion(3)));
    }

    proptest! {
        #[test]
        fn round_trip(
            group_id in "\\PC{1,40}",
            topic in "[A-Za-z0-9._-]{1,60}",
            partition in any::<u32>(),
            offset in any::<u64>(),
            commit_ms in any::<u64>(),
            metadata in "\\PC{0,80}",
            tombstone in any::<bool>(),
        ) {
            let record = CommitRecord { group_id, topic, partition, offset, commit_ms, metadata, tombstone };
            prop_assume!(record.group_id.len() <= GROUP_ID_LEN_MAX && record.metadata.len() <= METADATA_LEN_MAX);
            prop_assert_eq!(CommitRecord::decode(&record.encode()), Ok(record));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = CommitRecord::decode(&bytes);
            let _ = OffsetsRecord::decode(&bytes);
        }
    }
}
