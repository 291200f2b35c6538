//! The `strand` CLI against a real `strand-node`: topic commands, a 10 000-line
//! produce/consume round trip, exit codes and one-line errors.

mod common;
mod support;

use std::process::{Command, Stdio};

use common::cli::{ok, strand};
use support::{cli_binary, Node};

#[test]
fn topic_commands_and_errors() {
    let node = Node::start(2);
    assert_eq!(
        ok(&strand(&node.public, &["topic", "create", "events", "--partitions", "3"], None)),
        "created events\t3\n"
    );
    assert_eq!(ok(&strand(&node.public, &["topic", "list"], None)), "events\t3\t1\n");
    let lines_in = b"a\nb\nc\nd\n";
    let produced =
        ok(&strand(&node.public, &["produce", "events", "--partition", "1", "--acks", "all"], Some(lines_in)));
    assert_eq!(produced, "4\n");
    let described = ok(&strand(&node.public, &["topic", "describe", "events"], None));
    let lines: Vec<Vec<&str>> = described.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 13, "two tables of 3 partitions + headers, then 4 configs: {described}");
    let header = ["partition", "leader", "shard", "chain", "epoch", "commit", "log_start", "log_end", "preferred"];
    assert_eq!(lines[0], header);
    assert_eq!(lines[4], ["partition", "replica", "role", "log_end", "commit", "lag"]);
    // A single node: a chain of one (the node itself), everything committed, no lag.
    let node_id = lines[1][1];
    for (i, row) in lines[1..4].iter().enumerate() {
        let end = if i == 1 { "4" } else { "0" };
        let cells = (row[0], row[3], row[5], row[6], row[7], row[8]);
        assert_eq!(cells, (&*i.to_string(), node_id, end, "0", end, "-"), "no preferred head on one node: {described}");
    }
    for (i, row) in lines[5..8].iter().enumerate() {
        let end = if i == 1 { "4" } else { "0" };
        assert_eq!(row, &[&*i.to_string(), node_id, "head", end, end, "0"], "{described}");
    }

    let again = strand(&node.public, &["topic", "create", "events", "--partitions", "3"], None);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.lines().count(), 1, "one-line reason: {stderr}");
    assert!(stderr.contains("TOPIC_ALREADY_EXISTS"), "{stderr}");

    let missing = strand(&node.public, &["consume", "nope", "--count", "1", "--timeout-ms", "100"], None);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("UNKNOWN_TOPIC"));
    assert_eq!(ok(&strand(&node.public, &["group", "list"], None)), "", "no groups yet");

    assert_eq!(ok(&strand(&node.public, &["topic", "delete", "events"], None)), "deleted events\n");
    assert_eq!(ok(&strand(&node.public, &["topic", "list"], None)), "");
}

#[test]
fn produce_then_consume_ten_thousand_lines_round_trips_exactly() {
    let node = Node::start(2);
    ok(&strand(&node.public, &["topic", "create", "lines", "--partitions", "1"], None));
    let input: String = (0..10_000).map(|i| format!("line {i} with some text {}\n", i * 7)).collect();
    let produced = ok(&strand(&node.public, &["produce", "lines", "--acks", "all"], Some(input.as_bytes())));
    assert_eq!(produced, "10000\n");
    let consumed = ok(&strand(&node.public, &["consume", "lines", "--count", "10000", "--from-beginning"], None));
    assert_eq!(consumed, input, "consume prints exactly what was produced");

    // From an offset, and stopping after --timeout-ms of no data without --count.
    let tail = ok(&strand(&node.public, &["consume", "lines", "--offset", "9998", "--timeout-ms", "300"], None));
    assert_eq!(tail, "line 9998 with some text 69986\nline 9999 with some text 69993\n");
    // Asking for more than exists times out with a non-zero exit.
    let short =
        strand(&node.public, &["consume", "lines", "--offset", "9999", "--count", "2", "--timeout-ms", "300"], None);
    assert!(!short.status.success());
    assert_eq!(String::from_utf8_lossy(&short.stdout), "line 9999 with some text 69993\n");
}

#[test]
fn keyed_compressed_produce_across_partitions() {
    let node = Node::start(2);
    ok(&strand(&node.public, &["topic", "create", "multi", "--partitions", "3"], None));
    let input: String = (0..3000).map(|i| format!("v{i}\n")).collect();
    let args = ["produce", "multi", "--compression", "zstd", "--partition", "2"];
    assert_eq!(ok(&strand(&node.public, &args, Some(input.as_bytes()))), "3000\n");
    let keyed = ["produce", "multi", "--key", "k", "--compression", "lz4"];
    assert_eq!(ok(&strand(&node.public, &keyed, Some(b"a\nb\n"))), "2\n");
    let p2 = ok(&strand(
        &node.public,
        &["consume", "multi", "--partition", "2", "--from-beginning", "--count", "3000"],
        None,
    ));
    assert_eq!(p2, input);
    let all = ok(&strand(&node.public, &["consume", "multi", "--from-beginning", "--count", "3002"], None));
    let mut lines: Vec<&str> = all.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines.len(), 3002);
    assert!(lines.contains(&"a") && lines.contains(&"b"));
}

#[test]
fn consume_without_limits_runs_until_interrupted() {
    use std::io::{BufRead, BufReader};
    let node = Node::start(1);
    ok(&strand(&node.public, &["topic", "create", "live", "--partitions", "1"], None));
    assert_eq!(ok(&strand(&node.public, &["produce", "live"], Some(b"first\n"))), "1\n");
    let mut child = Command::new(cli_binary())
        .args(["--bootstrap", &node.public, "consume", "live", "--from-beginning"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strand consume");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first value");
    assert_eq!(line, "first\n");
    // The value was printed, so the Ctrl-C handler is installed; it is still waiting for more.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(child.try_wait().expect("status").is_none(), "consume without --count/--timeout-ms keeps running");
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("status") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("consume did not stop on SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "Ctrl-C ends consume with exit 0: {status:?}");
}
