//! The record-batch format: the unit producers send, the node stores and
//! consumers fetch, byte for byte (see `docs/FORMATS.md`).
//!
//! All integers are little-endian. The fixed header is [`HEADER_LEN`] bytes:
//!
//! ```text
//!  0  base_offset      u64  stamped by the partition owner on append
//!  8  batch_len        u32  whole batch, header included
//! 12  magic            u8   = MAGIC
//! 13  attributes       u8   bits 0-2 compression, bit 5 control batch
//! 14  crc              u32  crc32 (IEEE) of bytes [12, 14) ++ [18, batch_len)
//! 18  record_count     u32
//! 22  first_timestamp  i64  ms since the Unix epoch
//! 30  max_timestamp    i64
//! 38  producer_id      u64  0 = not an idempotent producer
//! 46  producer_epoch   u16
//! 48  base_sequence    u32
//! 52  records…
//! ```
//!
//! A record is a run of zigzag varints: `offset_delta`, `timestamp_delta`,
//! `key_len` (-1 = null key) + key, `value_len` + value, `header_count`, then
//! per header `key_len` + key, `value_len` (-1 = null) + value.
//!
//! The CRC covers `magic`, `attributes` and everything after the crc field, but not
//! `base_offset` and `batch_len`, so the owner can stamp the offset without
//! recomputing it. When the batch is compressed the records
//! section holds the compressed bytes. [`Batch::parse`] checks the header and CRC of
//! such a batch; [`Batch::check_compressed`] decompresses it with a bounded output
//! ([`decompress`]) and runs the same record check as for an uncompressed batch
//! ([`check_records`]). The node calls both at produce, so a batch whose content is
//! garbage is refused, never stored.

use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};

/// Size of the fixed batch header in bytes.
pub const HEADER_LEN: usize = 52;
/// The only batch format version this crate writes and reads.
pub const MAGIC: u8 = 1;
/// Byte range of the fields covered by the CRC starts here.
pub const CRC_START: usize = 18;
/// Smallest encoded record: five one-byte varints.
pub const RECORD_LEN_MIN: usize = 5;
/// Largest batch this format can describe; deployments set a lower limit.
pub const BATCH_LEN_MAX: usize = 64 * 1024 * 1024;
/// Largest records section a compressed batch may expand to: readers (the client)
/// refuse more, so writers (the node at produce) must too. Deployments may set less.
pub const DECOMPRESSED_LEN_MAX: usize = 64 * 1024 * 1024;
/// zstd output is read in chunks of this size, so a bomb is caught at the bound.
const ZSTD_CHUNK_LEN: usize = 64 * 1024;

const OFF_BASE_OFFSET: usize = 0;
const OFF_BATCH_LEN: usize = 8;
const OFF_MAGIC: usize = 12;
const OFF_ATTRIBUTES: usize = 13;
const OFF_CRC: usize = 14;
const OFF_RECORD_COUNT: usize = 18;
const OFF_FIRST_TS: usize = 22;
const OFF_MAX_TS: usize = 30;
const OFF_PRODUCER_ID: usize = 38;
const OFF_PRODUCER_EPOCH: usize = 46;
const OFF_BASE_SEQUENCE: usize = 48;
const _: () = assert!(OFF_BASE_SEQUENCE + 4 == HEADER_LEN);
const _: () = assert!(OFF_CRC + 4 == CRC_START);
const _: () = assert!(OFF_ATTRIBUTES + 1 == OFF_CRC);

const ATTR_COMPRESSION_MASK: u8 = 0b0000_0111;
const ATTR_CONTROL: u8 = 0b0010_0000;
const ATTR_KNOWN: u8 = ATTR_COMPRESSION_MASK | ATTR_CONTROL;

/// Compression codec of a batch's records section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Records are stored as encoded.
    None,
    /// LZ4 block format with the uncompressed size prepended (`lz4_flex` "size prepended").
    Lz4,
    /// A zstd frame.
    Zstd,
}

impl Compression {
    /// The attribute bits of this codec.
    pub fn bits(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }

    /// The codec's lower-case name, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The codec named by attribute bits, if known.
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits & ATTR_COMPRESSION_MASK {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            2 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Why a batch (or a run of batches) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a header, or than the header's `batch_len`.
    #[error("batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    /// `batch_len` is below the header size or above [`BATCH_LEN_MAX`].
    #[error("batch length {0} out of range")]
    BadLength(u32),
    /// The magic byte is not [`MAGIC`].
    #[error("unknown batch magic {0}")]
    BadMagic(u8),
    /// Unknown attribute bits or compression codec.
    #[error("unknown batch attributes {0:#04x}")]
    BadAttributes(u8),
    /// The stored CRC does not match the bytes.
    #[error("batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// `record_count` is zero or cannot fit in the records section.
    #[error("batch record count {0} invalid")]
    BadRecordCount(u32),
    /// A record does not parse, or records do not fill the section exactly.
    #[error("malformed record {index}: {reason}")]
    BadRecord { index: u32, reason: &'static str },
    /// `max_timestamp` is below `first_timestamp`.
    #[error("batch timestamps inverted")]
    BadTimestamps,
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
    pub base_offset: u64,
    pub batch_len: u32,
    pub magic: u8,
    pub attributes: u8,
    pub crc: u32,
    pub record_count: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: u64,
    pub producer_epoch: u16,
    pub base_sequence: u32,
}

impl BatchHeader {
    /// Decodes the header fields without checking them beyond length.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated { needed: HEADER_LEN, available: buf.len() });
        }
        Ok(BatchHeader {
            base_offset: u64_at(buf, OFF_BASE_OFFSET),
            batch_len: u32_at(buf, OFF_BATCH_LEN),
            magic: buf[OFF_MAGIC],
            attributes: buf[OFF_ATTRIBUTES],
            crc: u32_at(buf, OFF_CRC),
            record_count: u32_at(buf, OFF_RECORD_COUNT),
            first_timestamp: u64_at(buf, OFF_FIRST_TS) as i64,
            max_timestamp: u64_at(buf, OFF_MAX_TS) as i64,
            producer_id: u64_at(buf, OFF_PRODUCER_ID),
            producer_epoch: u16::from_le_bytes([buf[OFF_PRODUCER_EPOCH], buf[OFF_PRODUCER_EPOCH + 1]]),
            base_sequence: u32_at(buf, OFF_BASE_SEQUENCE),
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

    /// Checks header-only invariants (length, magic, attributes, counts).
    fn check(&self) -> Result<(), BatchError> {
        let len = self.batch_len as usize;
        if !(HEADER_LEN..=BATCH_LEN_MAX).contains(&len) {
            return Err(BatchError::BadLength(self.batch_len));
        }
        if self.magic != MAGIC {
            return Err(BatchError::BadMagic(self.magic));
        }
        if self.attributes & !ATTR_KNOWN != 0 || Compression::from_bits(self.attributes).is_none() {
            return Err(BatchError::BadAttributes(self.attributes));
        }
        if self.record_count == 0 {
            return Err(BatchError::BadRecordCount(0));
        }
        if self.max_timestamp < self.first_timestamp {
            return Err(BatchError::BadTimestamps);
        }
        Ok(())
    }
}

/// Reads `batch_len` from a buffer holding at least the first 12 bytes of a batch.
pub fn peek_batch_len(buf: &[u8]) -> Option<u32> {
    (buf.len() >= OFF_BATCH_LEN + 4).then(|| u32_at(buf, OFF_BATCH_LEN))
}

/// Overwrites `base_offset` in place; the CRC stays valid.
pub fn stamp_base_offset(buf: &mut [u8], base_offset: u64) {
    assert!(buf.len() >= HEADER_LEN, "stamp on a buffer shorter than a batch header");
    buf[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_le_bytes());
}

/// Computes the CRC a batch should carry: over `magic` and `attributes` (bytes
/// `[12, 14)`) and every byte after the crc field (`[18, len)`). Covering the two
/// attribute bytes means a bit flip cannot silently turn a plain batch into a
/// "compressed" one that passes the header check (the content check would then
/// have to catch it).
pub fn compute_crc(batch: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&batch[OFF_MAGIC..OFF_CRC]);
    hasher.update(&batch[CRC_START..]);
    hasher.finalize()
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
            batch.check_records()?;
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

    fn check_records(&self) -> Result<(), BatchError> {
        check_records(self.records_section(), self.header.record_count)
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
        check_records(&section, self.header.record_count)
    }
}

/// Checks an (uncompressed) records section: exactly `count` records that parse, with
/// offset deltas `0..count` in order, and no byte after the last one.
pub fn check_records(section: &[u8], count: u32) -> Result<(), BatchError> {
    if count == 0 || (count as usize).saturating_mul(RECORD_LEN_MIN) > section.len() {
        return Err(BatchError::BadRecordCount(count));
    }
    let mut iter = RecordIter::new(section, count);
    for expected_delta in 0..i64::from(count) {
        let record = match iter.next() {
            Some(r) => r?,
            None => return Err(BatchError::BadRecordCount(count)),
        };
        if record.offset_delta != expected_delta {
            return Err(BatchError::BadRecord { index: expected_delta as u32, reason: "offset delta out of sequence" });
        }
    }
    if iter.remaining() != 0 {
        return Err(BatchError::BadRecord { index: count, reason: "trailing bytes after last record" });
    }
    Ok(())
}

/// Decompresses a records section written by `codec`. Never allocates more than
/// `len_max` bytes of output whatever the batch claims: an lz4 size prefix above it is
/// refused before allocating, zstd output is read in chunks and refused at the bound.
pub fn decompress(codec: Compression, section: &[u8], len_max: usize) -> Result<Vec<u8>, BatchError> {
    let name = codec.name();
    let bad = |reason: String| BatchError::Decompress { codec: name, reason };
    match codec {
        Compression::None => Ok(section.to_vec()),
        Compression::Lz4 => {
            let claimed = section
                .first_chunk::<4>()
                .map(|b| u32::from_le_bytes(*b))
                .ok_or_else(|| bad(format!("{} bytes cannot hold the 4-byte size prefix", section.len())))?;
            if claimed as usize > len_max {
                return Err(BatchError::DecompressedTooLarge { codec: name, len: u64::from(claimed), limit: len_max });
            }
            lz4_flex::decompress_size_prepended(section).map_err(|e| bad(e.to_string()))
        }
        Compression::Zstd => zstd_bounded(section, len_max),
    }
}

/// Streams a zstd section into a buffer that never grows past `len_max` bytes.
fn zstd_bounded(section: &[u8], len_max: usize) -> Result<Vec<u8>, BatchError> {
    let bad = |reason: String| BatchError::Decompress { codec: "zstd", reason };
    let too_large = |len: u64| BatchError::DecompressedTooLarge { codec: "zstd", len, limit: len_max };
    // The frame header's content size (when present) sizes the buffer once; it is only
    // a hint, the checks in the loop are what hold.
    let hint = zstd::zstd_safe::get_frame_content_size(section).ok().flatten().unwrap_or(0);
    if hint > len_max as u64 {
        return Err(too_large(hint));
    }
    let mut decoder = zstd::stream::read::Decoder::with_buffer(section).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(hint as usize);
    let mut chunk = vec![0u8; ZSTD_CHUNK_LEN];
    loop {
        let n = decoder.read(&mut chunk).map_err(|e| bad(e.to_string()))?;
        if n == 0 {
            return Ok(out);
        }
        let len = out.len() + n;
        if len > len_max {
            return Err(too_large(len_max as u64 + 1));
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
/// a length below the header size or past the run, or a record count of zero is yielded as
/// an error and ends the walk. Callers that trust the bytes and only want a prefix use
/// `.map_while(Result::ok)`.
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
            if header.record_count == 0 {
                return Err(BatchError::BadRecordCount(0));
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
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
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
        let offset_delta = self.cur.varint()?;
        let timestamp_delta = self.cur.varint()?;
        let key = self.cur.bytes_opt()?;
        let value = self.cur.bytes_opt()?.ok_or("null value")?;
        let header_count = self.cur.varint()?;
        if !(0..=i64::from(u16::MAX)).contains(&header_count) {
            return Err("header count out of range");
        }
        let headers_start = self.cur.pos;
        for _ in 0..header_count {
            self.cur.bytes_opt()?.ok_or("null header key")?;
            self.cur.bytes_opt()?;
        }
        let headers = &self.cur.buf[headers_start..self.cur.pos];
        Ok(Record { offset_delta, timestamp_delta, key, value, headers, header_count: header_count as u32 })
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

/// Builds one batch record by record. `base_offset` is written as 0; the owner stamps it.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    record_count: u32,
    first_timestamp: i64,
    max_timestamp: i64,
    producer_id: u64,
    producer_epoch: u16,
    base_sequence: u32,
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
            record_count: 0,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id: 0,
            producer_epoch: 0,
            base_sequence: 0,
            control: false,
        }
    }

    /// Marks the batch as coming from idempotent producer `id`/`epoch`, first sequence `base_sequence`.
    pub fn producer(mut self, id: u64, epoch: u16, base_sequence: u32) -> Self {
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

    /// Appends a record with timestamp `timestamp_ms`.
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: &[u8], headers: &[(&[u8], Option<&[u8]>)]) {
        if self.record_count == 0 {
            self.first_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        // A timestamp below the first one is clamped to keep deltas non-negative.
        let ts_delta = timestamp_ms.saturating_sub(self.first_timestamp).max(0);
        put_varint(&mut self.buf, i64::from(self.record_count));
        put_varint(&mut self.buf, ts_delta);
        put_bytes_opt(&mut self.buf, key);
        put_bytes_opt(&mut self.buf, Some(value));
        put_varint(&mut self.buf, headers.len() as i64);
        for (k, v) in headers {
            put_bytes_opt(&mut self.buf, Some(k));
            put_bytes_opt(&mut self.buf, *v);
        }
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
    /// [`BatchBuilder::records_section`]. Panics if no record was pushed.
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
            magic: MAGIC,
            attributes: codec.bits() | control,
            crc: 0,
            record_count: self.record_count,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
        }
    }
}

/// Writes `h` into the first [`HEADER_LEN`] bytes of `buf`, filling in `batch_len` and the CRC.
fn write_header(buf: &mut [u8], h: BatchHeader) {
    assert!(buf.len() <= BATCH_LEN_MAX, "batch exceeds BATCH_LEN_MAX");
    buf[OFF_BASE_OFFSET..][..8].copy_from_slice(&h.base_offset.to_le_bytes());
    let batch_len = buf.len() as u32;
    buf[OFF_BATCH_LEN..][..4].copy_from_slice(&batch_len.to_le_bytes());
    buf[OFF_MAGIC] = h.magic;
    buf[OFF_ATTRIBUTES] = h.attributes;
    buf[OFF_RECORD_COUNT..][..4].copy_from_slice(&h.record_count.to_le_bytes());
    buf[OFF_FIRST_TS..][..8].copy_from_slice(&h.first_timestamp.to_le_bytes());
    buf[OFF_MAX_TS..][..8].copy_from_slice(&h.max_timestamp.to_le_bytes());
    buf[OFF_PRODUCER_ID..][..8].copy_from_slice(&h.producer_id.to_le_bytes());
    buf[OFF_PRODUCER_EPOCH..][..2].copy_from_slice(&h.producer_epoch.to_le_bytes());
    buf[OFF_BASE_SEQUENCE..][..4].copy_from_slice(&h.base_sequence.to_le_bytes());
    let crc = compute_crc(buf);
    buf[OFF_CRC..][..4].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Appends a zigzag varint.
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
    fn varint(&mut self) -> Result<i64, &'static str> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or("varint past end")?;
            self.pos += 1;
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
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
            b.push(1_000 + i64::from(i), Some(key.as_bytes()), b"value", &[(b"h", Some(b"v"))]);
        }
        b.finish()
    }

    #[test]
    fn round_trip_and_stamp() {
        let bytes = sample(3);
        let mut owned = bytes.to_vec();
        stamp_base_offset(&mut owned, 42);
        let batch = Batch::parse(&owned).expect("valid");
        assert_eq!(batch.header().base_offset, 42);
        assert_eq!(batch.header().last_offset(), 44);
        assert_eq!(batch.header().producer_id, 7);
        let recs: Vec<_> = batch.records().map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2].key, Some(&b"k2"[..]));
        assert_eq!(recs[2].timestamp_delta, 2);
        assert_eq!(recs[0].headers().collect::<Vec<_>>(), vec![(&b"h"[..], Some(&b"v"[..]))]);
    }

    #[test]
    fn rejects_bad_input() {
        let bytes = sample(2);
        assert!(matches!(Batch::parse(&bytes[..10]), Err(BatchError::Truncated { .. })));
        assert!(matches!(Batch::parse(&bytes[..bytes.len() - 1]), Err(BatchError::Truncated { .. })));
        let mut bad = bytes.to_vec();
        bad[OFF_MAGIC] = 9;
        assert_eq!(Batch::parse(&bad).unwrap_err(), BatchError::BadMagic(9));
        let mut bad = bytes.to_vec();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(Batch::parse(&bad), Err(BatchError::CrcMismatch { .. })));
    }

    fn compressed(codec: Compression, section: &[u8], count: u32) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for _ in 0..count {
            b.push(1_000, None, b"v", &[]);
        }
        let packed = match codec {
            Compression::Lz4 => lz4_flex::compress_prepend_size(section),
            Compression::Zstd => zstd::bulk::compress(section, 3).unwrap(),
            Compression::None => section.to_vec(),
        };
        b.finish_compressed(codec, &packed).to_vec()
    }

    fn check(batch: &[u8], len_max: usize) -> Result<(), BatchError> {
        Batch::parse(batch)?.check_compressed(len_max)
    }

    #[test]
    fn compressed_batches_are_checked_like_plain_ones() {
        let plain = sample(3);
        let section = &plain[HEADER_LEN..];
        for codec in [Compression::Lz4, Compression::Zstd] {
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
            let crc = compute_crc(&garbage);
            garbage[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
            assert!(check(&garbage, 1 << 20).is_err(), "{codec:?}: garbage with a valid CRC");
        }
        // An offset delta out of sequence inside the compressed section.
        let mut bad = section.to_vec();
        bad[0] = 0x09;
        let err = check(&compressed(Compression::Lz4, &bad, 3), 1 << 20).unwrap_err();
        assert!(matches!(err, BatchError::BadRecord { index: 0, .. }), "{err}");
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
        let mut claim = u32::MAX.to_le_bytes().to_vec();
        claim.extend_from_slice(&[0; 16]);
        let err = decompress(Compression::Lz4, &claim, 1 << 20).unwrap_err();
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
            let mut b = BatchBuilder::new().producer(9, 0, n);
            for _ in 0..n {
                b.push(1, None, b"v", &[]);
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
        assert!(matches!(BatchHeaders::new(&[0u8; 60]).next(), Some(Err(BatchError::BadLength(0)))));
        assert!(BatchHeaders::new(&[]).next().is_none());
    }
}
