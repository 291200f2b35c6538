//! The `strand` CLI's error lines against a real `strand-node`: each says the wire
//! code once and the subject once (`strand: UNKNOWN_TOPIC: topic nosuch does not
//! exist`, not `UNKNOWN_TOPIC: topic nosuch: UNKNOWN_TOPIC`).

mod common;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::cli::{ok, strand};
use support::{node_binary, Node};

/// A `strand-node` started with a config file, for limits the shared harness does not
/// set; killed on drop.
struct ConfiguredNode {
    child: Child,
    public: String,
    _dir: tempfile::TempDir,
}

impl ConfiguredNode {
    fn start(config_toml: &str) -> ConfiguredNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("strand.toml");
        std::fs::write(&config, config_toml).expect("write config");
        let mut child = Command::new(node_binary())
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--kafka-listen",
                "127.0.0.1:0",
                "--shard-port-base",
                "0",
                "--shards",
                "1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strand-node");
        let stderr = BufReader::new(child.stderr.take().expect("stderr piped"));
        let mut lines = stderr.lines().map_while(Result::ok);
        let listening = lines.find(|l| l.contains("strand-node listening:")).expect("node exited before listening");
        // Keep draining stderr so the node never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let public = listening.split_whitespace().find_map(|f| f.strip_prefix("public=")).expect("public=").to_string();
        ConfiguredNode { child, public, _dir: dir }
    }
}

impl Drop for ConfiguredNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI, expects it to fail, and returns its stderr, checked to be one line
/// that starts with `strand: `.
fn failure_line(bootstrap: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = strand(bootstrap, args, stdin);
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
        let line = failure_line(&node.public, args, stdin);
        assert_eq!(line.matches("UNKNOWN_TOPIC").count(), 1, "{args:?}: {line:?}");
        assert_eq!(line.matches("nosuch").count(), 1, "{args:?}: {line:?}");
        assert!(line.contains("topic nosuch does not exist"), "{args:?}: {line:?}");
    }
}

#[test]
fn refused_create_names_the_code_and_the_topic_once() {
    let node = Node::start(1);
    ok(&strand(&node.public, &["topic", "create", "events", "--partitions", "1"], None));
    let line = failure_line(&node.public, &["topic", "create", "events", "--partitions", "1"], None);
    assert_eq!(line.matches("TOPIC_ALREADY_EXISTS").count(), 1, "{line:?}");
    assert_eq!(line.matches("events").count(), 1, "{line:?}");
    let line = failure_line(&node.public, &["topic", "create", "other", "--partitions", "0"], None);
    assert_eq!(line.matches("INVALID_CONFIG").count(), 1, "{line:?}");
}

/// A produce refused for want of space says `STORAGE_FULL` once and names the partition
/// (it read `STORAGE_FULL: STORAGE_FULL`). The node keeps `min_free_bytes` free; a limit
/// larger than any disk makes every append hit it.
#[test]
fn storage_full_says_the_code_once_and_names_the_partition() {
    let node = ConfiguredNode::start("min_free_bytes = 1000000000000000000\n");
    ok(&strand(&node.public, &["topic", "create", "events", "--partitions", "1"], None));
    for acks in ["leader", "all"] {
        let line = failure_line(&node.public, &["produce", "events", "--acks", acks], Some(b"x\n"));
        assert_eq!(line.matches("STORAGE_FULL").count(), 1, "{line:?}");
        assert!(line.contains("STORAGE_FULL: events/0"), "{line:?}");
    }
}
