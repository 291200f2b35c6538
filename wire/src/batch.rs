//! The record-batch format: the unit producers send, the node stores and
//! consumers fetch, byte for byte (see `docs/FORMATS.md`). It is Kafka's RecordBatch
//! v2 (magic 2), so a Kafka client's batch is stored as sent and a stored batch can be
//! served to a Kafka consumer unchanged.
//!
//! All integers are big-endian. The fixed header is [`HEADER_LEN`] bytes:
//!
//! ```text
//!  0  baseOffset            i64  stamped by the partition owner on append
//!  8  batchLength           i32  bytes after this field (whole batch - 12)
//! 12  partitionLeaderEpoch  i32  kept as sent (producers send -1)
//! 16  magic                 i8   = MAGIC
//! 17  crc                   u32  CRC-32C (Castagnoli) of bytes [21, end)
//! 21  attributes            i16  bits 0-2 compression, 3 timestampType, 4 transactional,
//!                                5 control, 6 hasDeleteHorizonMs
//! 23  lastOffsetDelta       i32  recordCount - 1
//! 27  baseTimestamp         i64  ms since the Unix epoch (the builder: first record's)
//! 35  maxTimestamp          i64  largest record timestamp
//! 43  producerId            i64  -1 = not an idempotent producer
//! 51  producerEpoch         i16  -1 = none
//! 53  baseSequence          i32  -1 = none
//! 57  recordCount           i32
//! 61  records…
//! ```
//!
//! A record is `length` (zigzag varint, bytes after it), `attributes` (i8, 0),
//! `timestampDelta` (varlong), `offsetDelta` (varint), `keyLength` (varint, -1 = null) +
//! key, `valueLength` (-1 = null, a tombstone) + value, `headerCount`, then per header
//! `keyLength` (>= 0) + key, `valueLength` (-1 = null) + value.
//!
//! The CRC covers everything from `attributes` on, but not `baseOffset`, `batchLength`,
//! `partitionLeaderEpoch` and `magic`, so the owner can stamp the offset without
//! recomputing it. When the batch is compressed the records section holds the
//! compressed bytes. [`Batch::parse`] checks the header and CRC of such a batch;
//! [`Batch::check_compressed`] decompresses it with a bounded output ([`decompress`])
//! and runs the same record check as for an uncompressed batch ([`check_records`]).
//! The node calls both at produce, so a batch whose content is garbage is refused,
//! never stored.

use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};

/// Size of the fixed batch header in bytes.
pub const HEADER_LEN: usize = 61;
/// The only batch format version this crate writes and reads (Kafka's RecordBatch v2).
pub const MAGIC: u8 = 2;
/// The CRC covers bytes from here to the end of the batch.
pub const CRC_START: usize = 21;
/// Bytes before the part `batchLength` counts: `baseOffset` and `batchLength` itself.
pub const LENGTH_FIELDS_LEN: usize = 12;
/// Smallest encoded record: length, attributes, timestamp delta, offset delta, key
/// length, value length and header count, one byte each.
pub const RECORD_LEN_MIN: usize = 7;
/// Largest batch this format can describe; deployments set a lower limit.
pub const BATCH_LEN_MAX: usize = 64 * 1024 * 1024;
/// Largest records section a compressed batch may expand to: readers (the client)
/// refuse more, so writers (the node at produce) must too. Deployments may set less.
pub const DECOMPRESSED_LEN_MAX: usize = 64 * 1024 * 1024;
/// `producerId` of a batch from a producer that is not idempotent.
pub const PRODUCER_ID_NONE: i64 = -1;
/// `producerEpoch` of a batch from a producer that is not idempotent.
pub const PRODUCER_EPOCH_NONE: i16 = -1;
/// `baseSequence` of a batch from a producer that is not idempotent.
pub const SEQUENCE_NONE: i32 = -1;
/// `partitionLeaderEpoch` a producer sends (the builder writes it).
pub const PARTITION_LEADER_EPOCH_NONE: i32 = -1;
/// Streaming decompressors' output is read in chunks of this size, so a bomb is caught
/// at the bound.
const READ_CHUNK_LEN: usize = 64 * 1024;

const OFF_BASE_OFFSET: usize = 0;
const OFF_BATCH_LEN: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TS: usize = 27;
const OFF_MAX_TS: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORD_COUNT: usize = 57;
const _: () = assert!(OFF_RECORD_COUNT + 4 == HEADER_LEN);
const _: () = assert!(OFF_CRC + 4 == CRC_START);
const _: () = assert!(OFF_ATTRIBUTES == CRC_START);
const _: () = assert!(OFF_LEADER_EPOCH == LENGTH_FIELDS_LEN);

const ATTR_COMPRESSION_MASK: u16 = 0b0000_0111;
const ATTR_LOG_APPEND_TIME: u16 = 0b0000_1000;
const ATTR_TRANSACTIONAL: u16 = 0b0001_0000;
const ATTR_CONTROL: u16 = 0b0010_0000;
const ATTR_DELETE_HORIZON: u16 = 0b0100_0000;
const ATTR_KNOWN: u16 =
    ATTR_COMPRESSION_MASK | ATTR_LOG_APPEND_TIME | ATTR_TRANSACTIONAL | ATTR_CONTROL | ATTR_DELETE_HORIZON;

/// xerial snappy-java's stream header (Kafka's Java clients write snappy this way):
/// 8 magic bytes, then a version and a compatible version (i32 each).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Compression codec of a batch's records section (Kafka's codec numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Records are stored as encoded.
    None,
    /// A gzip stream (RFC 1952).
    Gzip,
    /// Snappy: written raw (as librdkafka writes it); read raw or xerial-framed (as
    /// Kafka's Java clients write it).
    Snappy,
    /// The LZ4 frame format.
    Lz4,
    /// A zstd frame.
    Zstd,
}

impl Compression {
    /// Every codec, `None` first.
    pub const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    /// The attribute bits of this codec.
    pub fn bits(self) -> u16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec's lower-case name, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The codec named by attribute bits, if known.
    pub fn from_bits(bits: u16) -> Option<Self> {
        match bits & ATTR_COMPRESSION_MASK {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Why a batch (or a run of batches) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a header, or than the header's length.
    #[error("batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    /// The whole length (`batchLength + 12`) is below the header size or above
    /// [`BATCH_LEN_MAX`].
    #[error("batch length {0} out of range")]
    BadLength(u32),
    /// The magic byte is not [`MAGIC`].
    #[error("unknown batch magic {0} (only record batch v2 is accepted)")]
    BadMagic(u8),
    /// Unknown attribute bits or compression codec.
    #[error("unknown batch attributes {0:#06x}")]
    BadAttributes(u16),
    /// A transactional batch: transactions are not supported.
    #[error("transactional batches are not supported")]
    Transactional,
    /// A known attribute this node does not accept from producers.
    #[error("batch attribute {feature} is not supported (attributes {attributes:#06x})")]
    UnsupportedAttribute { attributes: u16, feature: &'static str },
    /// The stored CRC does not match the bytes.
    #[error("batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// `recordCount` is not positive or cannot fit in the records section.
    #[error("batch record count {0} invalid")]
    BadRecordCount(u32),
    /// `lastOffsetDelta` is not `recordCount - 1`.
    #[error("batch last offset delta {last_offset_delta} does not match record count {record_count}")]
    BadLastOffsetDelta { last_offset_delta: i32, record_count: u32 },
    /// Producer fields out of range: an id below -1, or an idempotent id with a negative
    /// epoch or sequence.
    #[error("batch producer fields invalid: id {id}, epoch {epoch}, base sequence {sequence}")]
    BadProducer { id: i64, epoch: i16, sequence: i32 },
    /// A record does not parse, or records do not fill the section exactly.
    #[error("malformed record {index}: {reason}")]
    BadRecord { index: u32, reason: &'static str },
    /// `maxTimestamp` is not the largest record timestamp.
    #[error("batch max timestamp {stored} is not the records' largest timestamp {computed}")]
    BadTimestamps { stored: i64, computed: i64 },
    /// The compressed records section does not decompress.
    #[error("cannot decompress {codec} records: {reason}")]
    Decompress { codec: &'static str, reason: String },
    /// The records section expands past the configured bound (`len` is what the batch
    /// claims, or the bound plus one when the codec does not say).
    #[error("{codec} records expand to {len} bytes or more, above the limit of {limit} bytes")]
    DecompressedTooLarge { codec: &'static str, len: u64, limit: usize },
}

/// The decoded fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record. Kafka's field is an i64; Strand offsets are never
    /// negative, so it is read as the same 64 bits unsigned.
    pub base_offset: u64,
    /// The whole batch in bytes, header included: the stored `batchLength` plus
    /// [`LENGTH_FIELDS_LEN`] (0 when the stored value is negative).
    pub batch_len: u32,
    pub partition_leader_epoch: i32,
    pub magic: u8,
    pub crc: u32,
    pub attributes: u16,
    pub last_offset_delta: i32,
    /// `baseTimestamp`: record timestamps are this plus their delta.
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    /// [`PRODUCER_ID_NONE`] for a producer that is not idempotent.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// Kafka's field is an i32; values above `i32::MAX` (negative there) are refused.
    pub record_count: u32,
}

impl BatchHeader {
    /// Decodes the header fields without checking them beyond length.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        let Some(h) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(BatchError::Truncated { needed: HEADER_LEN, available: buf.len() });
        };
        let batch_len = u32::try_from(i64::from(i32_at(h, OFF_BATCH_LEN)) + LENGTH_FIELDS_LEN as i64).unwrap_or(0);
        Ok(BatchHeader {
            base_offset: u64::from_be_bytes(*h[OFF_BASE_OFFSET..].first_chunk().expect("in header")),
            batch_len,
            partition_leader_epoch: i32_at(h, OFF_LEADER_EPOCH),
            magic: h[OFF_MAGIC],
            crc: i32_at(h, OFF_CRC) as u32,
            attributes: i16_at(h, OFF_ATTRIBUTES) as u16,
            last_offset_delta: i32_at(h, OFF_LAST_OFFSET_DELTA),
            first_timestamp: i64_at(h, OFF_BASE_TS),
            max_timestamp: i64_at(h, OFF_MAX_TS),
            producer_id: i64_at(h, OFF_PRODUCER_ID),
            producer_epoch: i16_at(h, OFF_PRODUCER_EPOCH),
            base_sequence: i32_at(h, OFF_BASE_SEQUENCE),
            record_count: i32_at(h, OFF_RECORD_COUNT) as u32,
        })
    }

    /// Offset of the last record: `base_offset + record_count - 1`.
    pub fn last_offset(&self) -> u64 {
        debug_assert!(self.record_count > 0);
        self.base_offset + u64::from(self.record_count) - 1
    }

    /// Offset just past this batch.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    /// The compression codec (valid headers only have known codecs).
    pub fn compression(&self) -> Compression {
        Compression::from_bits(self.attributes).unwrap_or(Compression::None)
    }

    /// Whether this is a control batch (not application data).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Whether the batch comes from an idempotent producer (`producerId` >= 0).
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }

    /// Checks header-only invariants (length, magic, attributes, counts, producer fields).
    fn check(&self) -> Result<(), BatchError> {
        let len = self.batch_len as usize;
        if !(HEADER_LEN..=BATCH_LEN_MAX).contains(&len) {
            return Err(BatchError::BadLength(self.batch_len));
        }
        if self.magic != MAGIC {
            return Err(BatchError::BadMagic(self.magic));
        }
        self.check_attributes()?;
        if self.record_count == 0 || self.record_count > i32::MAX as u32 {
            return Err(BatchError::BadRecordCount(self.record_count));
        }
        if i64::from(self.last_offset_delta) + 1 != i64::from(self.record_count) {
            return Err(BatchError::BadLastOffsetDelta {
                last_offset_delta: self.last_offset_delta,
                record_count: self.record_count,
            });
        }
        let idempotent_ok = self.producer_epoch >= 0 && self.base_sequence >= 0;
        if self.producer_id < PRODUCER_ID_NONE || (self.is_idempotent() && !idempotent_ok) {
            return Err(BatchError::BadProducer {
                id: self.producer_id,
                epoch: self.producer_epoch,
                sequence: self.base_sequence,
            });
        }
        Ok(())
    }

    /// Known attribute bits only, a known codec, and none of the features this node does
    /// not take from producers: transactions, LogAppendTime (the node does not rewrite
    /// timestamps) and the delete horizon (set by compaction, which producers never do).
    fn check_attributes(&self) -> Result<(), BatchError> {
        let a = self.attributes;
        if a & !ATTR_KNOWN != 0 || Compression::from_bits(a).is_none() {
            return Err(BatchError::BadAttributes(a));
        }
        if a & ATTR_TRANSACTIONAL != 0 {
            return Err(BatchError::Transactional);
        }
        if a & ATTR_LOG_APPEND_TIME != 0 {
            return Err(BatchError::UnsupportedAttribute { attributes: a, feature: "timestampType LogAppendTime" });
        }
        if a & ATTR_DELETE_HORIZON != 0 {
            return Err(BatchError::UnsupportedAttribute { attributes: a, feature: "hasDeleteHorizonMs" });
        }
        Ok(())
    }
}

/// Reads the whole length (`batchLength + 12`) from a buffer holding at least the first
/// 12 bytes of a batch; 0 when the stored `batchLength` is negative.
pub fn peek_batch_len(buf: &[u8]) -> Option<u32> {
    (buf.len() >= LENGTH_FIELDS_LEN)
        .then(|| u32::try_from(i64::from(i32_at(buf, OFF_BATCH_LEN)) + LENGTH_FIELDS_LEN as i64).unwrap_or(0))
}

/// Overwrites `baseOffset` in place; the CRC stays valid.
pub fn stamp_base_offset(buf: &mut [u8], base_offset: u64) {
    assert!(buf.len() >= HEADER_LEN, "stamp on a buffer shorter than a batch header");
    buf[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Computes the CRC a batch should carry: CRC-32C of every byte from `attributes` on
/// (`[21, len)`). `baseOffset`, `batchLength`, `partitionLeaderEpoch`, `magic` and the
/// crc itself are not covered (Kafka's choice: the first three are rewritten by brokers).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// The sequence after `count` records from `sequence` (an idempotent producer's next
/// `baseSequence`): Kafka's sequences run over `0..=i32::MAX` and wrap to 0
/// (`DefaultRecordBatch.incrementSequence`).
pub fn next_sequence(sequence: i32, count: u32) -> i32 {
    debug_assert!(sequence >= 0);
    ((i64::from(sequence) + i64::from(count)) % (i64::from(i32::MAX) + 1)) as i32
}

/// Rewrites the CRC of `batch` (at least a header long) to match its bytes: for a caller
/// that changed covered bytes on purpose (tests of hostile input, tools).
pub fn write_crc(batch: &mut [u8]) {
    assert!(batch.len() >= HEADER_LEN, "a batch is at least a header long");
    let crc = compute_crc(batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A batch whose header, CRC and (if uncompressed) records were validated.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Validates the batch at the start of `buf` (which may hold more bytes after it):
    /// header sanity, CRC, and for uncompressed batches every record's structure.
    pub fn parse(buf: &'a [u8]) -> Result<Self, BatchError> {
        let header = BatchHeader::parse(buf)?;
        header.check()?;
        let len = header.batch_len as usize;
        if buf.len() < len {
            return Err(BatchError::Truncated { needed: len, available: buf.len() });
        }
        let bytes = &buf[..len];
        let computed = compute_crc(bytes);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch { stored: header.crc, computed });
        }
        let batch = Batch { header, bytes };
        if header.compression() == Compression::None {
            check_records(batch.records_section(), &header)?;
        }
        Ok(batch)
    }

    /// The decoded header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// All bytes of the batch, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The records section (compressed bytes if the batch is compressed).
    pub fn records_section(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// Iterates the records of an uncompressed batch. For a compressed batch,
    /// decompress [`Batch::records_section`] and use [`RecordIter::new`].
    pub fn records(&self) -> RecordIter<'a> {
        debug_assert_eq!(self.header.compression(), Compression::None);
        RecordIter::new(self.records_section(), self.header.record_count)
    }

    /// For a compressed batch: decompresses the records section (refusing output past
    /// `decompressed_len_max` bytes without allocating past it) and checks the records
    /// exactly as [`Batch::parse`] checks an uncompressed batch. A no-op for an
    /// uncompressed batch, which `parse` checked already.
    pub fn check_compressed(&self, decompressed_len_max: usize) -> Result<(), BatchError> {
        let codec = self.header.compression();
        if codec == Compression::None {
            return Ok(());
        }
        let section = decompress(codec, self.records_section(), decompressed_len_max)?;
        check_records(&section, &self.header)
    }
}

/// Checks an (uncompressed) records section against its batch header: exactly
/// `record_count` records that parse, each filling its `length`, with attributes 0,
/// offset deltas `0..count` in order, no byte after the last one, and a
/// `max_timestamp` equal to the largest record timestamp (`first_timestamp + delta`,
/// wrapping as Kafka's Java code does). Deltas may be negative: Kafka's broker accepts
/// CreateTime records older than the batch's base timestamp.
pub fn check_records(section: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let count = header.record_count;
    if count == 0 || (count as usize).saturating_mul(RECORD_LEN_MIN) > section.len() {
        return Err(BatchError::BadRecordCount(count));
    }
    let mut iter = RecordIter::new(section, count);
    let mut max_timestamp = i64::MIN;
    for expected_delta in 0..i64::from(count) {
        let record = match iter.next() {
            Some(r) => r?,
            None => return Err(BatchError::BadRecordCount(count)),
        };
        if record.offset_delta != expected_delta {
            return Err(BatchError::BadRecord { index: expected_delta as u32, reason: "offset delta out of sequence" });
        }
        max_timestamp = max_timestamp.max(record.timestamp(header));
    }
    if iter.remaining() != 0 {
        return Err(BatchError::BadRecord { index: count, reason: "trailing bytes after last record" });
    }
    if max_timestamp != header.max_timestamp {
        return Err(BatchError::BadTimestamps { stored: header.max_timestamp, computed: max_timestamp });
    }
    Ok(())
}

/// Compresses a records section with `codec` the way this crate writes it (gzip and zstd
/// at their default levels, snappy raw, lz4 as a frame). `None` copies.
pub fn compress(codec: Compression, section: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match codec {
        Compression::None => section.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(section).expect("writing to a Vec cannot fail");
            enc.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Snappy => {
            snap::raw::Encoder::new().compress_vec(section).expect("a section below BATCH_LEN_MAX is compressible")
        }
        Compression::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(section).expect("writing to a Vec cannot fail");
            enc.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Zstd => zstd::bulk::compress(section, 0).expect("zstd compresses any input"),
    }
}

/// Decompresses a records section written by `codec`. Never allocates more than
/// `len_max` bytes of output whatever the batch claims: size claims above it (zstd's
/// frame content size, snappy's length preamble) are refused before allocating,
/// streams (gzip, lz4 frames, zstd) are read in chunks and refused at the bound.
pub fn decompress(codec: Compression, section: &[u8], len_max: usize) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None => Ok(section.to_vec()),
        Compression::Gzip => read_bounded("gzip", flate2::read::MultiGzDecoder::new(section), 0, len_max),
        Compression::Snappy => snappy_bounded(section, len_max),
        Compression::Lz4 => read_bounded("lz4", lz4_flex::frame::FrameDecoder::new(section), 0, len_max),
        Compression::Zstd => zstd_bounded(section, len_max),
    }
}

/// Snappy, raw or in xerial's framing (a 16-byte header, then blocks each preceded by
/// its compressed length as a big-endian u32).
fn snappy_bounded(section: &[u8], len_max: usize) -> Result<Vec<u8>, BatchError> {
    let bad = |reason: String| BatchError::Decompress { codec: "snappy", reason };
    if !section.starts_with(XERIAL_MAGIC) {
        let mut out = Vec::new();
        snappy_block(section, &mut out, len_max)?;
        return Ok(out);
    }
    let mut rest = section
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| bad(format!("{} bytes cannot hold the xerial header", section.len())))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, after) = rest.split_first_chunk::<4>().ok_or_else(|| bad("xerial block length cut short".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = after.get(..len).ok_or_else(|| bad(format!("xerial block of {len} bytes past the end")))?;
        snappy_block(block, &mut out, len_max)?;
        rest = &after[len..];
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, refusing before allocating if its length
/// preamble would take `out` past `len_max`.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, len_max: usize) -> Result<(), BatchError> {
    let bad = |e: snap::Error| BatchError::Decompress { codec: "snappy", reason: e.to_string() };
    let len = snap::raw::decompress_len(block).map_err(bad)?;
    let total = out.len().saturating_add(len);
    if total > len_max {
        return Err(BatchError::DecompressedTooLarge { codec: "snappy", len: total as u64, limit: len_max });
    }
    let start = out.len();
    out.resize(total, 0);
    let n = snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(bad)?;
    out.truncate(start + n);
    Ok(())
}

/// Streams a zstd section into a buffer that never grows past `len_max` bytes.
fn zstd_bounded(section: &[u8], len_max: usize) -> Result<Vec<u8>, BatchError> {
    let bad = |reason: String| BatchError::Decompress { codec: "zstd", reason };
    // The frame header's content size (when present) sizes the buffer once; it is only
    // a hint, the checks in the read loop are what hold.
    let hint = zstd::zstd_safe::get_frame_content_size(section).ok().flatten().unwrap_or(0);
    if hint > len_max as u64 {
        return Err(BatchError::DecompressedTooLarge { codec: "zstd", len: hint, limit: len_max });
    }
    let decoder = zstd::stream::read::Decoder::with_buffer(section).map_err(|e| bad(e.to_string()))?;
    read_bounded("zstd", decoder, hint as usize, len_max)
}

/// Reads a decompressing stream into a buffer that never grows past `len_max` bytes.
fn read_bounded(
    codec: &'static str,
    mut reader: impl Read,
    hint: usize,
    len_max: usize,
) -> Result<Vec<u8>, BatchError> {
    debug_assert!(hint <= len_max);
    let mut out = Vec::with_capacity(hint);
    let mut chunk = vec![0u8; READ_CHUNK_LEN];
    loop {
        let n = reader.read(&mut chunk).map_err(|e| BatchError::Decompress { codec, reason: e.to_string() })?;
        if n == 0 {
            return Ok(out);
        }
        let len = out.len() + n;
        if len > len_max {
            return Err(BatchError::DecompressedTooLarge { codec, len: len_max as u64 + 1, limit: len_max });
        }
        if len > out.capacity() {
            // Grow geometrically, but never past the bound.
            let target = (out.capacity() * 2).max(len).min(len_max);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Walks the headers of a run of concatenated batches without checking CRCs or records:
/// the one header walker of the node (produce payloads, replication frames, log tails).
/// Yields each batch's header and its byte range in the run; a header that does not parse,
/// a length below the header size or past the run, or a record count that is not positive
/// is yielded as an error and ends the walk. Callers that trust the bytes and only want a
/// prefix use `.map_while(Result::ok)`.
pub struct BatchHeaders<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> BatchHeaders<'a> {
    /// Walks the batches of `buf`, from its first byte.
    pub fn new(buf: &'a [u8]) -> Self {
        BatchHeaders { buf, pos: 0, failed: false }
    }
}

impl Iterator for BatchHeaders<'_> {
    type Item = Result<(BatchHeader, std::ops::Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() || self.failed {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let checked = BatchHeader::parse(rest).and_then(|header| {
            let len = header.batch_len as usize;
            if len < HEADER_LEN {
                return Err(BatchError::BadLength(header.batch_len));
            }
            if len > rest.len() {
                return Err(BatchError::Truncated { needed: len, available: rest.len() });
            }
            if header.record_count == 0 || header.record_count > i32::MAX as u32 {
                return Err(BatchError::BadRecordCount(header.record_count));
            }
            Ok((header, len))
        });
        match checked {
            Ok((header, len)) => {
                let range = self.pos..self.pos + len;
                self.pos += len;
                Some(Ok((header, range)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Iterates a run of concatenated batches, validating each; stops at the first error.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> BatchIter<'a> {
    /// Iterates the batches in `buf`, which must consist of whole batches.
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter { buf, failed: false }
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<Batch<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() || self.failed {
            return None;
        }
        match Batch::parse(self.buf) {
            Ok(batch) => {
                self.buf = &self.buf[batch.bytes.len()..];
                Some(Ok(batch))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One record, borrowing its key, value and headers from the batch bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset_delta: i64,
    /// May be negative: the record is older than the batch's base timestamp.
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    /// `None` is a null value (a Kafka tombstone).
    pub value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: u32,
}

impl<'a> Record<'a> {
    /// Iterates `(key, value)` headers of this record.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter { buf: self.headers, remaining: self.header_count }
    }

    /// Number of headers.
    pub fn header_count(&self) -> u32 {
        self.header_count
    }

    /// The record's timestamp in its batch: base timestamp plus delta, wrapping as
    /// Kafka's Java code computes it.
    pub fn timestamp(&self, header: &BatchHeader) -> i64 {
        header.first_timestamp.wrapping_add(self.timestamp_delta)
    }
}

/// Iterates a record's headers; they were validated when the record was parsed.
pub struct HeaderIter<'a> {
    buf: &'a [u8],
    remaining: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut cur = Cursor { buf: self.buf, pos: 0 };
        // The header section was fully parsed when the record was read, so these cannot fail.
        let key = cur.bytes_opt().ok().flatten().unwrap_or_default();
        let value = cur.bytes_opt().ok().flatten();
        self.buf = &self.buf[cur.pos..];
        Some((key, value))
    }
}

/// Iterates records in an (uncompressed) records section.
pub struct RecordIter<'a> {
    cur: Cursor<'a>,
    remaining: u32,
    index: u32,
}

impl<'a> RecordIter<'a> {
    /// Iterates `count` records encoded in `section`.
    pub fn new(section: &'a [u8], count: u32) -> Self {
        RecordIter { cur: Cursor { buf: section, pos: 0 }, remaining: count, index: 0 }
    }

    /// Bytes left unread in the section.
    pub fn remaining(&self) -> usize {
        self.cur.buf.len() - self.cur.pos
    }

    fn read_record(&mut self) -> Result<Record<'a>, &'static str> {
        let len = usize::try_from(self.cur.varint()?).map_err(|_| "negative record length")?;
        let end = self.cur.pos.checked_add(len).ok_or("record length overflow")?;
        let body = self.cur.buf.get(self.cur.pos..end).ok_or("record length past end")?;
        self.cur.pos = end;
        let mut cur = Cursor { buf: body, pos: 0 };
        if cur.u8()? != 0 {
            return Err("record attributes not 0");
        }
        let timestamp_delta = cur.varlong()?;
        let offset_delta = i64::from(cur.varint()?);
        let key = cur.bytes_opt()?;
        let value = cur.bytes_opt()?;
        let header_count = u32::try_from(cur.varint()?).map_err(|_| "negative header count")?;
        let headers_start = cur.pos;
        // Each header takes at least two bytes, so this loop is bounded by the record.
        for _ in 0..header_count {
            cur.bytes_opt()?.ok_or("null header key")?;
            cur.bytes_opt()?;
        }
        if cur.pos != body.len() {
            return Err("record length does not match its fields");
        }
        let headers = &body[headers_start..];
        Ok(Record { offset_delta, timestamp_delta, key, value, headers, header_count })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let index = self.index;
        self.index += 1;
        match self.read_record() {
            Ok(r) => Some(Ok(r)),
            Err(reason) => {
                self.remaining = 0;
                Some(Err(BatchError::BadRecord { index, reason }))
            }
        }
    }
}

/// Builds one batch record by record. `baseOffset` is written as 0 (the owner stamps
/// it), `partitionLeaderEpoch` as -1, `baseTimestamp` is the first record's timestamp
/// (later records may be older: their delta is negative) and `maxTimestamp` the largest.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    /// Scratch for one record's body, reused (its length prefix is written before it).
    record: BytesMut,
    record_count: u32,
    first_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    control: bool,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::with_capacity(1024)
    }

    /// An empty builder with room for `capacity` bytes of batch.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = BytesMut::with_capacity(capacity.max(HEADER_LEN));
        buf.put_bytes(0, HEADER_LEN);
        BatchBuilder {
            buf,
            record: BytesMut::new(),
            record_count: 0,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id: PRODUCER_ID_NONE,
            producer_epoch: PRODUCER_EPOCH_NONE,
            base_sequence: SEQUENCE_NONE,
            control: false,
        }
    }

    /// Marks the batch as coming from idempotent producer `id`/`epoch`, first sequence
    /// `base_sequence` (all non-negative).
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        assert!(id >= 0 && epoch >= 0 && base_sequence >= 0, "idempotent producer fields are non-negative");
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch as a control batch.
    pub fn control(mut self) -> Self {
        self.control = true;
        self
    }

    /// Appends a record with timestamp `timestamp_ms`; `value` `None` is a tombstone.
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) {
        assert!(self.record_count < i32::MAX as u32, "a batch holds at most i32::MAX records");
        if self.record_count == 0 {
            self.first_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let r = &mut self.record;
        r.clear();
        r.put_u8(0);
        put_varint(r, timestamp_ms.wrapping_sub(self.first_timestamp));
        put_varint(r, i64::from(self.record_count));
        put_bytes_opt(r, key);
        put_bytes_opt(r, value);
        put_varint(r, headers.len() as i64);
        for (k, v) in headers {
            put_bytes_opt(r, Some(k));
            put_bytes_opt(r, *v);
        }
        put_varint(&mut self.buf, self.record.len() as i64);
        self.buf.put_slice(&self.record);
        self.record_count += 1;
    }

    /// Records pushed so far.
    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    /// Bytes the finished (uncompressed) batch will take.
    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Encoded records section so far (for a caller that compresses it).
    pub fn records_section(&self) -> &[u8] {
        &self.buf[HEADER_LEN..]
    }

    /// Finishes an uncompressed batch. Panics if no record was pushed.
    pub fn finish(self) -> Bytes {
        let header = self.header_fields(Compression::None);
        let mut buf = self.buf;
        write_header(&mut buf, header);
        buf.freeze()
    }

    /// Finishes a batch whose records section is `compressed`, produced by `codec` from
    /// [`BatchBuilder::records_section`] (see [`compress`]). Panics if no record was pushed.
    pub fn finish_compressed(self, codec: Compression, compressed: &[u8]) -> Bytes {
        let header = self.header_fields(codec);
        let mut buf = BytesMut::with_capacity(HEADER_LEN + compressed.len());
        buf.put_bytes(0, HEADER_LEN);
        buf.put_slice(compressed);
        write_header(&mut buf, header);
        buf.freeze()
    }

    fn header_fields(&self, codec: Compression) -> BatchHeader {
        assert!(self.record_count > 0, "a batch holds at least one record");
        let control = if self.control { ATTR_CONTROL } else { 0 };
        BatchHeader {
            base_offset: 0,
            batch_len: 0,
            partition_leader_epoch: PARTITION_LEADER_EPOCH_NONE,
            magic: MAGIC,
            crc: 0,
            attributes: codec.bits() | control,
            last_offset_delta: self.record_count as i32 - 1,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: self.record_count,
        }
    }
}

/// Writes `h` into the first [`HEADER_LEN`] bytes of `buf`, filling in `batchLength` and
/// the CRC.
fn write_header(buf: &mut [u8], h: BatchHeader) {
    assert!(buf.len() <= BATCH_LEN_MAX, "batch exceeds BATCH_LEN_MAX");
    let batch_length = (buf.len() - LENGTH_FIELDS_LEN) as i32;
    buf[OFF_BASE_OFFSET..][..8].copy_from_slice(&h.base_offset.to_be_bytes());
    buf[OFF_BATCH_LEN..][..4].copy_from_slice(&batch_length.to_be_bytes());
    buf[OFF_LEADER_EPOCH..][..4].copy_from_slice(&h.partition_leader_epoch.to_be_bytes());
    buf[OFF_MAGIC] = h.magic;
    buf[OFF_ATTRIBUTES..][..2].copy_from_slice(&h.attributes.to_be_bytes());
    buf[OFF_LAST_OFFSET_DELTA..][..4].copy_from_slice(&h.last_offset_delta.to_be_bytes());
    buf[OFF_BASE_TS..][..8].copy_from_slice(&h.first_timestamp.to_be_bytes());
    buf[OFF_MAX_TS..][..8].copy_from_slice(&h.max_timestamp.to_be_bytes());
    buf[OFF_PRODUCER_ID..][..8].copy_from_slice(&h.producer_id.to_be_bytes());
    buf[OFF_PRODUCER_EPOCH..][..2].copy_from_slice(&h.producer_epoch.to_be_bytes());
    buf[OFF_BASE_SEQUENCE..][..4].copy_from_slice(&h.base_sequence.to_be_bytes());
    buf[OFF_RECORD_COUNT..][..4].copy_from_slice(&(h.record_count as i32).to_be_bytes());
    let crc = compute_crc(buf);
    buf[OFF_CRC..][..4].copy_from_slice(&crc.to_be_bytes());
}

fn i16_at(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(*buf[at..].first_chunk().expect("caller checked the length"))
}

fn i32_at(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(*buf[at..].first_chunk().expect("caller checked the length"))
}

fn i64_at(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(*buf[at..].first_chunk().expect("caller checked the length"))
}

/// Appends a zigzag varint (Kafka's varint for values that fit an i32, varlong otherwise).
pub fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn put_bytes_opt(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

/// A bounds-checked reader over untrusted bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Result<u8, &'static str> {
        let b = *self.buf.get(self.pos).ok_or("record cut short")?;
        self.pos += 1;
        Ok(b)
    }

    /// A zigzag varlong: at most 10 bytes, 64 bits.
    fn varlong(&mut self) -> Result<i64, &'static str> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let b = self.u8().map_err(|_| "varint past end")?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                return Err("varlong above 64 bits");
            }
            z |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err("varint too long")
    }

    /// A zigzag varint: at most 5 bytes, 32 bits (Kafka's `readVarint`).
    fn varint(&mut self) -> Result<i32, &'static str> {
        let mut z: u32 = 0;
        for i in 0..5 {
            let b = self.u8().map_err(|_| "varint past end")?;
            let bits = u32::from(b & 0x7f);
            if i == 4 && bits > 0x0f {
                return Err("varint above 32 bits");
            }
            z |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i32) ^ -((z & 1) as i32));
            }
        }
        Err("varint too long")
    }

    fn bytes_opt(&mut self) -> Result<Option<&'a [u8]>, &'static str> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| "negative length")?;
        let end = self.pos.checked_add(len).ok_or("length overflow")?;
        let b = self.buf.get(self.pos..end).ok_or("bytes past end")?;
        self.pos = end;
        Ok(Some(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: u32) -> Bytes {
        let mut b = BatchBuilder::new().producer(7, 1, 100);
        for i in 0..n {
            let key = format!("k{i}");
            b.push(1_000 + i64::from(i), Some(key.as_bytes()), Some(b"value"), &[(b"h", Some(b"v"))]);
        }
        b.finish()
    }

    fn reseal(bytes: &mut [u8]) {
        write_crc(bytes);
    }

    #[test]
    fn round_trip_and_stamp() {
        let bytes = sample(3);
        let mut owned = bytes.to_vec();
        stamp_base_offset(&mut owned, 42);
        assert_eq!(owned[..8], 42u64.to_be_bytes());
        let batch = Batch::parse(&owned).expect("valid");
        assert_eq!(batch.header().base_offset, 42);
        assert_eq!(batch.header().last_offset(), 44);
        assert_eq!(batch.header().producer_id, 7);
        assert_eq!(batch.header().partition_leader_epoch, -1);
        assert_eq!(batch.header().last_offset_delta, 2);
        assert_eq!(peek_batch_len(&owned), Some(owned.len() as u32));
        assert_eq!(i32_at(&owned, OFF_BATCH_LEN) as usize, owned.len() - 12);
        let recs: Vec<_> = batch.records().map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2].key, Some(&b"k2"[..]));
        assert_eq!(recs[2].timestamp_delta, 2);
        assert_eq!(recs[0].headers().collect::<Vec<_>>(), vec![(&b"h"[..], Some(&b"v"[..]))]);
    }

    #[test]
    fn tombstones_and_older_records_round_trip() {
        let mut b = BatchBuilder::new();
        b.push(5_000, Some(b"k"), None, &[]);
        b.push(4_000, None, Some(b""), &[]);
        b.push(6_000, None, None, &[]);
        let bytes = b.finish();
        let batch = Batch::parse(&bytes).expect("valid");
        let h = *batch.header();
        assert_eq!((h.first_timestamp, h.max_timestamp), (5_000, 6_000));
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (-1, -1, -1));
        assert!(!h.is_idempotent());
        let recs: Vec<_> = batch.records().map(|r| r.unwrap()).collect();
        assert_eq!(recs.iter().map(|r| r.value).collect::<Vec<_>>(), [None, Some(&b""[..]), None]);
        assert_eq!(recs.iter().map(|r| r.timestamp(&h)).collect::<Vec<_>>(), [5_000, 4_000, 6_000]);
    }

    #[test]
    fn rejects_bad_input() {
        let bytes = sample(2);
        assert!(matches!(Batch::parse(&bytes[..10]), Err(BatchError::Truncated { .. })));
        assert!(matches!(Batch::parse(&bytes[..bytes.len() - 1]), Err(BatchError::Truncated { .. })));
        let mut bad = bytes.to_vec();
        bad[OFF_MAGIC] = 1;
        assert_eq!(Batch::parse(&bad).unwrap_err(), BatchError::BadMagic(1));
        let mut bad = bytes.to_vec();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(Batch::parse(&bad), Err(BatchError::CrcMismatch { .. })));
        let mut bad = bytes.to_vec();
        bad[OFF_BATCH_LEN..][..4].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(Batch::parse(&bad).unwrap_err(), BatchError::BadLength(11));
    }

    /// Each refused header field, with a valid CRC so the field check is what answers.
    #[test]
    fn header_fields_are_validated() {
        type Edit = fn(&mut [u8]);
        let cases: [(Edit, BatchError); 8] = [
            (|b| b[OFF_ATTRIBUTES + 1] |= 0x10, BatchError::Transactional),
            (
                |b| b[OFF_ATTRIBUTES + 1] |= 0x08,
                BatchError::UnsupportedAttribute { attributes: 0x08, feature: "timestampType LogAppendTime" },
            ),
            (
                |b| b[OFF_ATTRIBUTES + 1] |= 0x40,
                BatchError::UnsupportedAttribute { attributes: 0x40, feature: "hasDeleteHorizonMs" },
            ),
            (|b| b[OFF_ATTRIBUTES + 1] |= 0x05, BatchError::BadAttributes(0x05)),
            (|b| b[OFF_ATTRIBUTES] |= 0x01, BatchError::BadAttributes(0x0100)),
            (
                |b| b[OFF_LAST_OFFSET_DELTA..][..4].copy_from_slice(&2i32.to_be_bytes()),
                BatchError::BadLastOffsetDelta { last_offset_delta: 2, record_count: 2 },
            ),
            (
                |b| b[OFF_PRODUCER_ID..][..8].copy_from_slice(&(-2i64).to_be_bytes()),
                BatchError::BadProducer { id: -2, epoch: 1, sequence: 100 },
            ),
            (
                |b| b[OFF_BASE_SEQUENCE..][..4].copy_from_slice(&(-1i32).to_be_bytes()),
                BatchError::BadProducer { id: 7, epoch: 1, sequence: -1 },
            ),
        ];
        for (i, (edit, expected)) in cases.into_iter().enumerate() {
            let mut bad = sample(2).to_vec();
            edit(&mut bad);
            reseal(&mut bad);
            assert_eq!(Batch::parse(&bad).unwrap_err(), expected, "case {i}");
        }
        let mut bad = sample(2).to_vec();
        bad[OFF_RECORD_COUNT..][..4].copy_from_slice(&(-1i32).to_be_bytes());
        reseal(&mut bad);
        assert_eq!(Batch::parse(&bad).unwrap_err(), BatchError::BadRecordCount(u32::MAX));
        let mut bad = sample(2).to_vec();
        bad[OFF_MAX_TS..][..8].copy_from_slice(&1_002i64.to_be_bytes());
        reseal(&mut bad);
        assert_eq!(Batch::parse(&bad).unwrap_err(), BatchError::BadTimestamps { stored: 1_002, computed: 1_001 });
    }

    /// Record-level rules: attributes 0, the length prefix matching the fields.
    #[test]
    fn records_are_validated() {
        let mut b = BatchBuilder::new();
        b.push(1, None, Some(b"v"), &[(b"h", Some(b"v"))]);
        let plain = b.finish().to_vec();
        // Length, attributes, ts delta, offset delta, key len (null), value len + value,
        // header count, header key len + key, header value len + value.
        assert_eq!(plain[HEADER_LEN..], [22, 0, 0, 0, 1, 2, b'v', 2, 2, b'h', 2, b'v']);
        let edits: [(usize, u8, &str); 4] = [
            (1, 1, "record attributes not 0"),
            (7, 0, "record length does not match its fields"),
            (0, 20, "bytes past end"),
            (0, 24, "record length past end"),
        ];
        for (at, value, reason) in edits {
            let mut bad = plain.clone();
            bad[HEADER_LEN + at] = value;
            reseal(&mut bad);
            assert_eq!(Batch::parse(&bad).unwrap_err(), BatchError::BadRecord { index: 0, reason }, "{reason}");
        }
    }

    fn compressed(codec: Compression, section: &[u8], count: u32) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for i in 0..count {
            b.push(1_000 + i64::from(i), Some(format!("k{i}").as_bytes()), Some(b"value"), &[(b"h", Some(b"v"))]);
        }
        b.finish_compressed(codec, &compress(codec, section)).to_vec()
    }

    fn check(batch: &[u8], len_max: usize) -> Result<(), BatchError> {
        Batch::parse(batch)?.check_compressed(len_max)
    }

    #[test]
    fn compressed_batches_are_checked_like_plain_ones() {
        let plain = sample(3);
        let section = &plain[HEADER_LEN..];
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            assert_eq!(check(&compressed(codec, section, 3), 1 << 20), Ok(()), "{codec:?}");
            // At the bound exactly: accepted; one byte less: refused, naming both numbers.
            assert_eq!(check(&compressed(codec, section, 3), section.len()), Ok(()), "{codec:?}");
            let err = check(&compressed(codec, section, 3), section.len() - 1).unwrap_err();
            assert!(matches!(err, BatchError::DecompressedTooLarge { .. }), "{codec:?}: {err}");
            // Valid CRC, wrong record count: the header says 4, the content holds 3.
            let err = check(&compressed(codec, section, 4), 1 << 20).unwrap_err();
            assert!(matches!(err, BatchError::BadRecord { index: 3, .. }), "{codec:?}: {err}");
            // Garbage that is not the codec's format at all, under a valid CRC.
            let mut garbage = compressed(codec, section, 3);
            let len = garbage.len();
            for b in &mut garbage[HEADER_LEN + 4..len] {
                *b = 0xa5;
            }
            reseal(&mut garbage);
            assert!(check(&garbage, 1 << 20).is_err(), "{codec:?}: garbage with a valid CRC");
        }
        // An offset delta out of sequence inside the compressed section (record 0's
        // offset delta is its fourth byte: length, attributes, timestamp delta).
        let mut bad = section.to_vec();
        bad[3] = 0x02;
        let err = check(&compressed(Compression::Lz4, &bad, 3), 1 << 20).unwrap_err();
        assert!(matches!(err, BatchError::BadRecord { index: 0, .. }), "{err}");
    }

    /// Kafka's Java clients frame snappy the xerial way; such a section decodes too.
    #[test]
    fn xerial_snappy_is_read() {
        let plain = sample(3);
        let section = &plain[HEADER_LEN..];
        let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for block in section.chunks(20) {
            let packed = snap::raw::Encoder::new().compress_vec(block).unwrap();
            framed.extend_from_slice(&(packed.len() as u32).to_be_bytes());
            framed.extend_from_slice(&packed);
        }
        assert_eq!(decompress(Compression::Snappy, &framed, 1 << 20).unwrap(), section);
        let err = decompress(Compression::Snappy, &framed, section.len() - 1).unwrap_err();
        assert!(matches!(err, BatchError::DecompressedTooLarge { codec: "snappy", .. }), "{err}");
        framed.pop();
        assert!(matches!(decompress(Compression::Snappy, &framed, 1 << 20), Err(BatchError::Decompress { .. })));
    }

    #[test]
    fn decompression_bombs_are_refused_at_the_bound() {
        let zeros = vec![0u8; 4 << 20];
        let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
        let err = decompress(Compression::Zstd, &bomb, 1 << 20).unwrap_err();
        assert_eq!(err, BatchError::DecompressedTooLarge { codec: "zstd", len: 4 << 20, limit: 1 << 20 });
        // Without a content size in the frame header, the stream is cut at the bound.
        let mut streamed = Vec::new();
        let mut enc = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
        std::io::Write::write_all(&mut enc, &zeros).unwrap();
        enc.finish().unwrap();
        let err = decompress(Compression::Zstd, &streamed, 1 << 20).unwrap_err();
        assert_eq!(err, BatchError::DecompressedTooLarge { codec: "zstd", len: (1 << 20) + 1, limit: 1 << 20 });
        for (codec, name) in [(Compression::Gzip, "gzip"), (Compression::Lz4, "lz4")] {
            let err = decompress(codec, &compress(codec, &zeros), 1 << 20).unwrap_err();
            assert_eq!(err, BatchError::DecompressedTooLarge { codec: name, len: (1 << 20) + 1, limit: 1 << 20 });
        }
        // Snappy's length preamble claims 4 GiB - 1: refused before allocating.
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0];
        let err = decompress(Compression::Snappy, &claim, 1 << 20).unwrap_err();
        assert!(matches!(err, BatchError::DecompressedTooLarge { len: 4_294_967_295, .. }), "{err}");
    }

    #[test]
    fn iterates_concatenated_batches() {
        let mut buf = sample(1).to_vec();
        buf.extend_from_slice(&sample(4));
        let counts: Vec<u32> = BatchIter::new(&buf).map(|b| b.unwrap().header().record_count).collect();
        assert_eq!(counts, vec![1, 4]);
        buf.truncate(buf.len() - 3);
        let results: Vec<_> = BatchIter::new(&buf).collect();
        assert_eq!(results.len(), 2);
        assert!(results[1].is_err());
    }

    #[test]
    fn header_walk_yields_whole_batches_and_stops_at_the_first_bad_one() {
        let mut run = Vec::new();
        for n in 1..=3u32 {
            let mut b = BatchBuilder::new().producer(9, 0, n as i32);
            for _ in 0..n {
                b.push(1, None, Some(b"v"), &[]);
            }
            run.extend_from_slice(&b.finish());
        }
        let walked: Vec<_> = BatchHeaders::new(&run).collect::<Result<_, _>>().expect("whole batches");
        assert_eq!(walked.iter().map(|(h, _)| h.record_count).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(walked.last().unwrap().1.end, run.len());
        assert_eq!(walked[1].1.start, walked[0].1.end);
        let cut = &run[..run.len() - 1];
        let mut walk = BatchHeaders::new(cut);
        assert!(walk.next().unwrap().is_ok());
        assert!(walk.next().unwrap().is_ok());
        assert!(matches!(walk.next(), Some(Err(BatchError::Truncated { .. }))));
        assert!(walk.next().is_none(), "the walk ends at an error");
        assert!(matches!(BatchHeaders::new(&[0u8; 70]).next(), Some(Err(BatchError::BadLength(12)))));
        assert!(BatchHeaders::new(&[]).next().is_none());
    }

    #[test]
    fn varints_are_bounded_like_kafkas() {
        let mut cur = Cursor { buf: &[0xff, 0xff, 0xff, 0xff, 0x0f], pos: 0 };
        assert_eq!(cur.varint(), Ok(i32::MIN));
        let mut cur = Cursor { buf: &[0xff, 0xff, 0xff, 0xff, 0x1f], pos: 0 };
        assert_eq!(cur.varint(), Err("varint above 32 bits"));
        let mut cur = Cursor { buf: &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], pos: 0 };
        assert_eq!(cur.varint(), Err("varint too long"));
        let mut buf = BytesMut::new();
        put_varint(&mut buf, i64::MIN);
        assert_eq!(Cursor { buf: &buf, pos: 0 }.varlong(), Ok(i64::MIN));
    }
}
