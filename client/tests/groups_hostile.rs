//! A coordinator full of squatted groups (issue #15, groups row): a new group's
//! consumer, here the real `strand consume --group` CLI, must fail at once with a
//! clear `TOO_MANY_GROUPS` error naming the limit, never hang retrying.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strand_client::{Admin, Client, ClientConfig};
use strand_wire::msg::{CommittedOffset, OffsetCommitRequest, Request};
use support::{cli_binary, Node};

/// The node's default `groups_max` (per coordinator shard).
const GROUPS_MAX: usize = 4096;
/// Far more than a refused join needs; the unfixed node kept the CLI retrying past it.
const CLI_WAIT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn new_group_on_a_full_coordinator_fails_the_cli_clearly() {
    let node = Node::start(1);
    let client = Client::connect(ClientConfig::new(node.public.clone())).await.expect("connect");
    Admin::new(client.clone()).create_topic("t", 1, 1).await.expect("create topic");
    for i in 0..GROUPS_MAX {
        let offsets = vec![CommittedOffset { topic: "t".into(), partition: 0, offset: 0, metadata: String::new() }];
        let commit =
            OffsetCommitRequest { group_id: format!("squat-{i}"), generation: 0, member_id: String::new(), offsets };
        client.call_bootstrap(Request::OffsetCommit(commit), &[]).await.unwrap_or_else(|e| panic!("squat {i}: {e}"));
    }
    let mut child = Command::new(cli_binary())
        .args(["--bootstrap", &node.public, "consume", "t", "--group", "newcomer", "--timeout-ms", "2000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strand");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait strand") {
            break status;
        }
        if started.elapsed() > CLI_WAIT {
            let _ = child.kill();
            let output = child.wait_with_output().expect("strand output");
            panic!("strand consume still running after {CLI_WAIT:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = child.wait_with_output().expect("strand output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("strand exited {status} after {:?}: {stderr}", started.elapsed());
    assert!(!status.success(), "a refused group must fail the CLI");
    assert!(stderr.contains("TOO_MANY_GROUPS") && stderr.contains("groups_max"), "{stderr}");
}
