//! The Python Kafka client (`confluent-kafka`, librdkafka inside its wheel) against the real
//! binary: topic admin (create with a config, describe, grow, delete), the idempotent
//! producer in every codec, and a subscribed consumer group with manual commits that a new
//! member resumes from. The steps live in `tests/kafka/python_client.py`, which prints
//! `ok STEP` per step and exits non-zero with the failed assertion. A second test shows a
//! produce quota throttling librdkafka.

mod common;

use std::path::Path;
use std::process::Command;

use common::Node;

#[test]
fn confluent_kafka_admin_idempotent_producer_and_consumer_group() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &[]);
    let kafka = node.kafka.expect("Kafka port").to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/python_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&kafka)
        .output()
        .expect("python3 with confluent-kafka (test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python client failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    for step in ["ok admin", "ok idempotent producer", "ok consumer group"] {
        assert!(stdout.lines().any(|l| l == step), "missing {step:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    }
}

/// A produce quota seen by a Kafka client (issue #20): librdkafka reports the answers'
/// `throttle_time_ms` through its throttle callback, and 1.5 MiB at 512 KiB/s (after a
/// 512 KiB burst) takes at least the time the quota allows.
#[test]
fn confluent_kafka_producer_is_throttled_by_a_quota() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strand.toml");
    std::fs::write(&config, "quota_produce_bytes_per_sec = \"512KiB\"\n").unwrap();
    let node = Node::start(&dir.path().join("data"), 1, &["--config", config.to_str().unwrap()]);
    let kafka = node.kafka.expect("Kafka port").to_string();
    let script = r#"
import sys, time
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
for f in admin.create_topics([NewTopic("quota", num_partitions=1, replication_factor=1)]).values():
    f.result(timeout=30)
throttles = []
p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1, "batch.size": 65536,
              "throttle_cb": lambda ev: throttles.append(ev.throttle_time)})
start = time.monotonic()
for i in range(24):
    p.produce("quota", value=bytes([i]) * 65000)
    p.poll(0)
assert p.flush(60) == 0, "undelivered messages"
p.poll(0.5)
took = time.monotonic() - start
print("took", took, "throttles", throttles, flush=True)
assert throttles and max(throttles) > 0, throttles
assert took >= 1.0, took
print("ok throttled", flush=True)
"#;
    let out = Command::new("python3").arg("-c").arg(script).arg(&kafka).output().expect("python3 with confluent-kafka");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python client failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.lines().any(|l| l == "ok throttled"), "stdout:\n{stdout}\nstderr:\n{stderr}");
}
