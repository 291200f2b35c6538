//! Helpers shared by the `log_*` integration tests: an executor runner, batch builders and a
//! reader that walks a whole log checking every batch it gets back.
#![allow(dead_code)] // each test file uses a different subset

use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::path::{Path, PathBuf};
use strand_node::log::{FsyncPolicy, IoMode, LogConfig, PartitionLog};
use strand_wire::batch::{Batch, BatchBuilder};

/// Runs `f` on a fresh glommio executor thread and returns its output.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move { f().await })
        .expect("spawn executor")
        .join()
        .expect("executor thread")
}

/// A test config: no free-space guard, everything else as given.
pub fn config(io_mode: IoMode, fsync: FsyncPolicy) -> LogConfig {
    LogConfig { io_mode, fsync, min_free_bytes: 0, index_interval_bytes: 1024, ..LogConfig::default() }
}

/// One batch of `records` records whose values are `value_len` bytes derived from `tag`.
pub fn batch(records: u32, ts_ms: i64, value_len: usize, tag: u8) -> Bytes {
    let mut b = BatchBuilder::new();
    for r in 0..records {
        let value: Vec<u8> = (0..value_len).map(|i| tag.wrapping_add((i as u8) ^ (r as u8))).collect();
        b.push(ts_ms + i64::from(r), Some(&[tag]), Some(&value), &[]);
    }
    b.finish()
}

pub fn batches(parts: &[Bytes]) -> BytesMut {
    let mut out = BytesMut::new();
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// Reads the whole log from `from` with reads of `max_bytes`, validating each batch; returns
/// (base_offset, record_count, tag of first record) per batch.
pub async fn read_all(log: &PartitionLog, from: u64, max_bytes: u32) -> Vec<(u64, u32, u8)> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let r = log.read(offset, max_bytes).await.expect("read");
        assert!(!r.chunks.is_empty(), "no data at {offset} < log end {}", log.log_end_offset());
        let mut bytes = BytesMut::new();
        for c in &r.chunks {
            bytes.extend_from_slice(&c.to_bytes().await.expect("chunk bytes"));
        }
        assert_eq!(bytes.len() as u32, r.bytes_len);
        let mut at = 0;
        let mut expect = None;
        while at < bytes.len() {
            let b = Batch::parse(&bytes[at..]).expect("stored batch is valid");
            let h = b.header();
            if let Some(e) = expect {
                assert_eq!(h.base_offset, e, "batches contiguous");
            }
            let tag = b.records().next().and_then(|r| r.ok()).and_then(|r| r.key).map_or(0, |k| k[0]);
            out.push((h.base_offset, h.record_count, tag));
            expect = Some(h.next_offset());
            at += h.batch_len as usize;
        }
        assert_eq!(expect, Some(r.next_offset));
        offset = r.next_offset;
    }
    out
}

/// The `.log` files of the log in `dir`, by name (= base offset order).
pub fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}
