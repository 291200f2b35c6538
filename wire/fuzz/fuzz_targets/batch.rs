//! Record-batch reader over arbitrary bytes: validation, batch iteration, record and
//! header iteration must never panic or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strand_wire::batch::{peek_batch_len, write_crc, Batch, BatchIter, Compression, RecordIter, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    walk(data);
    // Random bytes almost never carry a valid CRC; patch it in (over the data-chosen
    // batch_len) so the fuzzer also explores record parsing behind the CRC check.
    if data.len() >= HEADER_LEN {
        let mut patched = data.to_vec();
        let len = peek_batch_len(data).unwrap_or(0) as usize;
        if (HEADER_LEN..=patched.len()).contains(&len) {
            write_crc(&mut patched[..len]);
            walk(&patched);
        }
    }
    // The records section on its own, with a data-chosen count.
    if let Some((&count, rest)) = data.split_first() {
        for record in RecordIter::new(rest, u32::from(count)) {
            match record {
                Ok(r) => {
                    let _ = r.headers().count();
                }
                Err(_) => break,
            }
        }
    }
});

fn walk(data: &[u8]) {
    let mut consumed = 0usize;
    for batch in BatchIter::new(data) {
        let Ok(batch) = batch else { break };
        consumed += batch.as_bytes().len();
        assert!(consumed <= data.len());
        let header = batch.header();
        assert_eq!(header.batch_len as usize, batch.as_bytes().len());
        if header.compression() != Compression::None {
            continue;
        }
        let mut n = 0u32;
        for record in batch.records() {
            let record = record.expect("records of a validated batch parse");
            assert_eq!(record.offset_delta, i64::from(n));
            assert_eq!(record.headers().count() as u32, record.header_count());
            n += 1;
        }
        assert_eq!(n, header.record_count);
    }
    let _ = Batch::parse(data);
}
