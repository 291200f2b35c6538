//! The `strand` CLI's error lines against a real `strand-node`: each says the wire
//! code once and the subject once (`strand: UNKNOWN_TOPIC: topic nosuch does not
//! exist`, not `UNKNOWN_TOPIC: topic nosuch: UNKNOWN_TOPIC`).

mod common;
mod support;

use common::cli::{ok, strand};
use support::Node;

/// Runs the CLI, expects it to fail, and returns its stderr, checked to be one line
/// that starts with `strand: `.
fn failure_line(node: &Node, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = strand(&node.public, args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one-line reason, got {stderr:?}");
    assert!(stderr.starts_with("strand: "), "{args:?}: {stderr:?}");
    stderr
}

#[test]
fn missing_topic_errors_name_the_code_and_the_topic_once() {
    let node = Node::start(1);
    let cases: [(&[&str], Option<&[u8]>); 4] = [
        (&["consume", "nosuch", "--count", "1", "--timeout-ms", "200"], None),
        (&["produce", "nosuch"], Some(b"x\n")),
        (&["topic", "describe", "nosuch"], None),
        (&["topic", "delete", "nosuch"], None),
    ];
    for (args, stdin) in cases {
        let line = failure_line(&node, args, stdin);
        assert_eq!(line.matches("UNKNOWN_TOPIC").count(), 1, "{args:?}: {line:?}");
        assert_eq!(line.matches("nosuch").count(), 1, "{args:?}: {line:?}");
        assert!(line.contains("topic nosuch does not exist"), "{args:?}: {line:?}");
    }
}

#[test]
fn refused_create_names_the_code_and_the_topic_once() {
    let node = Node::start(1);
    ok(&strand(&node.public, &["topic", "create", "events", "--partitions", "1"], None));
    let line = failure_line(&node, &["topic", "create", "events", "--partitions", "1"], None);
    assert_eq!(line.matches("TOPIC_ALREADY_EXISTS").count(), 1, "{line:?}");
    assert_eq!(line.matches("events").count(), 1, "{line:?}");
    let line = failure_line(&node, &["topic", "create", "other", "--partitions", "0"], None);
    assert_eq!(line.matches("INVALID_CONFIG").count(), 1, "{line:?}");
}
