//! The `strand` CLI and kcat (librdkafka) on one node: records the CLI writes are read by
//! kcat through the Kafka port, and records kcat writes (keyed, compressed) are read by the
//! CLI through the native port — one stored format for both protocols.

mod common;
mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use common::cli::{ok, strand};
use support::Node;

fn kcat(broker: &str, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("kcat")
        .args(["-b", broker])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat is installed (Debian package kcat; test.sh and .ci/run install it)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kcat {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn records_cross_between_the_cli_and_kcat() {
    let node = Node::start(2);
    ok(&strand(&node.public, &["topic", "create", "mixed", "--partitions", "1"], None));

    // The CLI writes (keyed, zstd), kcat reads.
    ok(&strand(&node.public, &["produce", "mixed", "--key", "cli", "--compression", "zstd"], Some(b"one\ntwo\n")));
    let read = kcat(&node.kafka, &["-C", "-t", "mixed", "-o", "beginning", "-e", "-f", "%o %k %s\n"], b"");
    assert_eq!(read, "0 cli one\n1 cli two\n");

    // kcat writes (keyed, gzip), the CLI reads.
    kcat(&node.kafka, &["-P", "-t", "mixed", "-K", ":", "-z", "gzip"], b"k1:three\nk2:four\n");
    let consumed = ok(&strand(
        &node.public,
        &["consume", "mixed", "--from-beginning", "--count", "4", "--print-key", "--print-offset"],
        None,
    ));
    let lines: Vec<&str> = consumed.lines().collect();
    assert_eq!(lines.len(), 4, "{consumed}");
    assert!(lines[2].contains("k1") && lines[2].contains("three"), "{consumed}");
    assert!(lines[3].contains("k2") && lines[3].contains("four"), "{consumed}");
}
