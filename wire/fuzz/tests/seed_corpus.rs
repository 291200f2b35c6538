//! The committed seed corpus (`corpus/<target>/seed-*`): a few valid inputs per fuzz
//! target, so a run starts from real frames and batches instead of having to discover
//! the formats. This test builds them with the real encoders, checks that the decoders
//! accept them as the targets expect, and checks that the committed files are exactly
//! these bytes. After a format change, regenerate with
//! `STRAND_WRITE_SEEDS=1 cargo test --manifest-path wire/fuzz/Cargo.toml`.
//! (The corpus directories are git-ignored for fuzzer output; seeds are added with
//! `git add -f`.)

use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use strand_client::records::{decode_batches, seal_batch};
use strand_wire::batch::{stamp_base_offset, Batch, BatchBuilder, BatchIter, Compression, HEADER_LEN};
use strand_wire::codec::{self, decode_request, decode_response};
use strand_wire::frame::FrameDecoder;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

/// Named seed inputs of one target.
type Seeds = Vec<(&'static str, Vec<u8>)>;
/// Asserts a named seed is what its target expects.
type Check = fn(&str, &[u8]);

/// A batch of `n` records with keys, headers and repetitive values (so it compresses).
fn builder(n: u32) -> BatchBuilder {
    let mut b = BatchBuilder::new();
    for i in 0..n {
        let key = format!("key-{}", i % 3);
        let value = format!("value {i} value value value value value");
        b.push(1_700_000_000_000 + i64::from(i), Some(key.as_bytes()), Some(value.as_bytes()), &[(b"h", Some(b"v"))]);
    }
    b
}

/// `batch` with its base offset stamped (not covered by the CRC).
fn at_offset(batch: &[u8], base_offset: u64) -> Vec<u8> {
    let mut out = batch.to_vec();
    stamp_base_offset(&mut out, base_offset);
    out
}

fn compressed(codec: Compression) -> Bytes {
    let batch = seal_batch(builder(20), codec);
    let parsed = Batch::parse(&batch).expect("valid compressed batch");
    assert_eq!(parsed.header().compression(), codec, "the seed batch must really be compressed");
    batch
}

fn request(correlation_id: u64, request: Request, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    codec::try_request_frame(&mut out, &RequestHeader { correlation_id, request }, payload).expect("encodable");
    out.to_vec()
}

fn response(correlation_id: u64, error: ErrorCode, message: Option<&str>, response: Response) -> Vec<u8> {
    let mut out = BytesMut::new();
    let header = ResponseHeader { correlation_id, error, message: message.map(str::to_string), response, throttle_ms: 0 };
    codec::try_response_frame(&mut out, &header, &[]).expect("encodable");
    out.to_vec()
}

fn frame_header_seeds() -> Seeds {
    let batch = builder(3).finish();
    let produce = Request::Produce(ProduceRequest {
        acks: Acks::All,
        timeout_ms: 5_000,
        partitions: vec![ProducePartition { topic: "events".into(), partition: 1, bytes_len: batch.len() as u32 }],
    });
    let fetch = Request::Fetch(FetchRequest {
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 1 << 20,
        partitions: vec![FetchPartition { topic: "events".into(), partition: 0, offset: 42, max_bytes: 1 << 20 }],
    });
    let join = Request::JoinGroup(JoinGroupRequest {
        group_id: "group".into(),
        member_id: String::new(),
        client_id: "client".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        topics: vec!["events".into(), "clicks".into()],
        assignor: Assignor::RoundRobin,
    });
    let metadata = Response::Metadata(MetadataResponse {
        nodes: vec![NodeInfo { node_id: 1, host: "127.0.0.1".into(), port: 9092, shard_ports: vec![9100, 9101] }],
        topics: vec![TopicMetadata {
            name: "events".into(),
            error: ErrorCode::None,
            partitions: vec![PartitionMetadata {
                partition: 0,
                error: ErrorCode::None,
                leader_node: 1,
                leader_shard: 1,
                replicas: vec![1, 2, 3],
                epoch: 4,
                log_start_offset: 0,
                log_end_offset: 100,
                commit_offset: 90,
                preferred_leader: 1,
            }],
        }],
    });
    let produce_frame = request(1, produce, &batch);
    let mut two = request(2, fetch.clone(), &[]);
    two.extend_from_slice(&request(3, Request::ListTopics, &[]));
    let header_only = codec::try_encode_request(&RequestHeader {
        correlation_id: 4,
        request: Request::Metadata(MetadataRequest { topics: vec!["events".into()] }),
    })
    .expect("encodable");
    vec![
        ("seed-produce-request", produce_frame),
        ("seed-fetch-then-list-topics", two),
        ("seed-join-group-request", request(5, join, &[])),
        ("seed-metadata-response", response(6, ErrorCode::None, None, metadata)),
        ("seed-error-response", response(7, ErrorCode::NotOwner, Some("partition events/0 moved"), Response::Empty)),
        ("seed-metadata-request-header", header_only),
    ]
}

fn batch_seeds() -> Seeds {
    let first = builder(3).finish();
    let mut run = first.to_vec();
    run.extend_from_slice(&at_offset(&builder(2).finish(), 3));
    let idempotent = builder(2).producer(7, 1, 10).finish();
    vec![
        ("seed-three-records", first.to_vec()),
        ("seed-two-batches", run),
        ("seed-idempotent", idempotent.to_vec()),
        ("seed-gzip", compressed(Compression::Gzip).to_vec()),
        ("seed-snappy", compressed(Compression::Snappy).to_vec()),
        ("seed-lz4", compressed(Compression::Lz4).to_vec()),
        ("seed-zstd", compressed(Compression::Zstd).to_vec()),
    ]
}

/// Selector byte (bits 0-2 codec: 0 lz4, 1 zstd, 2 none, 3 gzip, 4 snappy; bits 3-7
/// offset_min) + bytes.
fn decompress_seeds() -> Seeds {
    let with = |selector: u8, bytes: &[u8]| [&[selector][..], bytes].concat();
    let lz4 = compressed(Compression::Lz4);
    let zstd = compressed(Compression::Zstd);
    let gzip = compressed(Compression::Gzip);
    let snappy = compressed(Compression::Snappy);
    let mut run = at_offset(&lz4, 0);
    run.extend_from_slice(&at_offset(&zstd, 20));
    run.extend_from_slice(&at_offset(&builder(3).finish(), 40));
    vec![
        ("seed-lz4-section", with(0, &lz4[HEADER_LEN..])),
        ("seed-zstd-section", with(1, &zstd[HEADER_LEN..])),
        ("seed-gzip-section", with(3, &gzip[HEADER_LEN..])),
        ("seed-snappy-section", with(4, &snappy[HEADER_LEN..])),
        ("seed-lz4-batch", with(0, &lz4)),
        ("seed-zstd-batch-from-5", with(1 | (5 << 3), &zstd)),
        ("seed-mixed-run-from-30", with(2 | (30 << 3), &run)),
    ]
}

/// Checks a frame_header seed: whole frames whose headers decode (or a bare header).
fn check_frames(name: &str, bytes: &[u8]) {
    if decode_request(bytes).is_ok() {
        return;
    }
    let mut buf = BytesMut::from(bytes);
    let mut frames = 0;
    while let Some(frame) = FrameDecoder::new(64 * 1024).decode(&mut buf).expect("valid frame") {
        let request = decode_request(&frame.header).is_ok();
        assert!(request || decode_response(&frame.header).is_ok(), "{name}: header does not decode");
        frames += 1;
    }
    assert!(frames > 0 && buf.is_empty(), "{name}: not whole frames");
}

fn check_batches(name: &str, bytes: &[u8]) {
    let batches: Vec<_> = BatchIter::new(bytes).collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(!batches.is_empty(), "{name}");
}

fn check_decompress(name: &str, bytes: &[u8]) {
    let (selector, rest) = bytes.split_first().expect("selector");
    let codec = match selector & 7 {
        0 => Compression::Lz4,
        1 => Compression::Zstd,
        3 => Compression::Gzip,
        4 => Compression::Snappy,
        _ => Compression::None,
    };
    if rest.len() >= HEADER_LEN && Batch::parse(rest).is_ok() {
        let offset_min = u64::from(selector >> 3);
        let mut out = Vec::new();
        let payload = Bytes::copy_from_slice(rest);
        decode_batches(&Arc::from("t"), 0, &payload, offset_min, &mut out).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!out.is_empty() && out.iter().all(|r| r.offset >= offset_min), "{name}");
    } else {
        let section = strand_client::records::decompress(codec, rest).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(section.len() > rest.len(), "{name}: decompresses to more bytes");
    }
}

#[test]
fn committed_seeds_are_current_and_valid() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let write = std::env::var_os("STRAND_WRITE_SEEDS").is_some();
    let targets: [(&str, Seeds, Check); 3] = [
        ("frame_header", frame_header_seeds(), check_frames),
        ("batch", batch_seeds(), check_batches),
        ("decompress", decompress_seeds(), check_decompress),
    ];
    for (target, seeds, check) in targets {
        let dir = root.join(target);
        for (name, bytes) in seeds {
            check(name, &bytes);
            let path = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).expect("corpus dir");
                std::fs::write(&path, &bytes).expect("write seed");
            }
            let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(committed == bytes, "{} is stale: regenerate with STRAND_WRITE_SEEDS=1", path.display());
        }
    }
}
