//! The Python Kafka client (`confluent-kafka`, librdkafka inside its wheel) against the real
//! binary: topic admin (create with a config, describe, grow, delete), the idempotent
//! producer in every codec, and a subscribed consumer group with manual commits that a new
//! member resumes from. The steps live in `tests/kafka/python_client.py`, which prints
//! `ok STEP` per step and exits non-zero with the failed assertion.

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
