//! Hostile offset commits against the real node binary (issue #15, groups row): a
//! client outside a group's current generation cannot move the offsets of a group that
//! has members (nor can a member move a partition it does not own); the group count,
//! commit metadata size and committed-offset state per coordinator are bounded with
//! clear errors; the node's RSS stays bounded under a commit flood and after a restart;
//! an Empty group's offsets expire and stay expired across a restart.

mod common;
#[path = "common/groups.rs"]
mod groups;

use std::time::Duration;

use common::{batch, Client, Node};
use groups::{describe, fetch_offsets, wait_for, wait_stable, Member, MemberConfig};
use strand_wire::batch::BatchIter;
use strand_wire::msg::*;
use strand_wire::ErrorCode;

const STABLE_WAIT: Duration = Duration::from_secs(20);
/// Defaults of `strand_core::group` the tests run against (no config file).
const GROUPS_MAX: usize = 4096;
/// The wire's string bound and the default `offset_metadata_max_bytes`.
const METADATA_MAX: usize = 4096;
const OFFSETS_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Commits `offsets` as `(topic, partition, offset, metadata)`; code and message.
fn commit_raw(
    c: &mut Client,
    group: &str,
    generation: u32,
    member_id: &str,
    offsets: Vec<CommittedOffset>,
) -> (ErrorCode, String) {
    let request = OffsetCommitRequest { group_id: group.into(), generation, member_id: member_id.into(), offsets };
    let (h, _) = c.call(Request::OffsetCommit(request), &[]);
    (h.error, h.message.unwrap_or_default())
}

fn offset(topic: &str, partition: u32, offset: u64, metadata: &str) -> CommittedOffset {
    CommittedOffset { topic: topic.into(), partition, offset, metadata: metadata.into() }
}

/// Record values of `topic/partition` from `from` to the log end.
fn read_from(c: &mut Client, topic: &str, partition: u32, from: u64) -> usize {
    let mut count = 0;
    let mut at = from;
    loop {
        let (p, bytes) = c.fetch(topic, partition, at, 0);
        assert_eq!(p.error, ErrorCode::None);
        if bytes.is_empty() {
            return count;
        }
        for b in BatchIter::new(&bytes) {
            let b = b.expect("valid batch");
            count += b.records().count();
            at = b.header().next_offset();
        }
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).expect("VmRSS value").parse().expect("VmRSS number")
}

#[test]
fn hostile_commits_cannot_move_an_active_groups_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 2, &["--fsync", "never"]);
    let mut c = node.client();
    assert_eq!(c.create_topic("orders", 2).error, ErrorCode::None);
    for p in 0..2 {
        for chunk in 0..4 {
            let values: Vec<Vec<u8>> = (0..100).map(|i| format!("p{p}-{chunk}-{i}").into_bytes()).collect();
            let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            c.produce("orders", p, &batch(&refs, 1_700_000_000_000));
        }
    }
    let victims = [
        Member::start(node.public, MemberConfig::new("victim", &["orders"])),
        Member::start(node.public, MemberConfig::new("victim", &["orders"])),
    ];
    let states = wait_stable(&mut c, "victim", &[&victims[0], &victims[1]], STABLE_WAIT);
    let generation = states[0].generation;
    let (a, b) = (&states[0], &states[1]);
    assert_eq!((a.assignment.len(), b.assignment.len()), (1, 1), "{states:?}");
    let a_owns = a.assignment[0].partition;
    let b_owns = b.assignment[0].partition;

    let end = |p: u32| vec![offset("orders", p, 400, "")];
    let attempts: [(&str, u32, &str, Vec<CommittedOffset>, ErrorCode); 6] = [
        ("standalone", 0, "", end(0), ErrorCode::UnknownMember),
        ("empty member, a generation", generation, "", end(0), ErrorCode::UnknownMember),
        ("made-up member", generation, "intruder-1", end(0), ErrorCode::UnknownMember),
        ("made-up member, generation 0", 0, "intruder-2", end(1), ErrorCode::UnknownMember),
        ("stale generation", generation - 1, &a.member_id, end(a_owns), ErrorCode::IllegalGeneration),
        ("a member, another's partition", generation, &a.member_id, end(b_owns), ErrorCode::IllegalGeneration),
    ];
    for (what, generation, member, offsets, expect) in attempts {
        let (code, message) = commit_raw(&mut c, "victim", generation, member, offsets);
        eprintln!("{what}: {code}: {message}");
        assert_eq!(code, expect, "{what}: {message}");
        assert!(!message.is_empty(), "{what}: the refusal says why");
    }
    assert_eq!(fetch_offsets(&mut c, "victim"), Vec::<(String, u32, u64)>::new(), "nothing moved");
    // The owner's own commit is still accepted.
    assert_eq!(commit_raw(&mut c, "victim", generation, &a.member_id, end(a_owns)).0, ErrorCode::None);
    assert_eq!(fetch_offsets(&mut c, "victim"), vec![("orders".to_string(), a_owns, 400)]);
    // The victim reads every record it has not committed past.
    let unread: usize = (0..2).map(|p| read_from(&mut c, "orders", p, if p == a_owns { 400 } else { 0 })).sum();
    assert_eq!(unread, 400, "the victim still reads all its unread records");
    assert_eq!(describe(&mut c, "victim").members.len(), 2);
}

#[test]
fn group_count_is_bounded_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 1, &["--fsync", "never"]);
    let mut c = node.client();
    for i in 0..GROUPS_MAX {
        let (code, message) = commit_raw(&mut c, &format!("squat-{i}"), 0, "", vec![offset("t", 0, 1, "")]);
        assert_eq!(code, ErrorCode::None, "group {i} of {GROUPS_MAX}: {message}");
    }
    // One past the limit: a standalone commit and a join of a new group are refused.
    let (code, message) = commit_raw(&mut c, "one-more", 0, "", vec![offset("t", 0, 1, "")]);
    assert_eq!(code, ErrorCode::TooManyGroups, "{message}");
    assert!(message.contains(&GROUPS_MAX.to_string()) && message.contains("groups_max"), "{message}");
    let join = JoinGroupRequest {
        group_id: "newcomer".into(),
        member_id: String::new(),
        client_id: "t".into(),
        session_timeout_ms: 3_000,
        rebalance_timeout_ms: 3_000,
        topics: vec!["t".into()],
        assignor: Assignor::Range,
    };
    let (h, _) = c.call(Request::JoinGroup(join), &[]);
    assert_eq!(h.error, ErrorCode::TooManyGroups, "{:?}", h.message);
    assert!(!h.error.is_retriable(), "a client must not retry it forever");
    // Existing groups are still served.
    assert_eq!(commit_raw(&mut c, "squat-7", 0, "", vec![offset("t", 0, 2, "")]).0, ErrorCode::None);
}

#[test]
fn commit_metadata_is_bounded_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strand.toml");
    std::fs::write(&config, "offset_metadata_max_bytes = 1024\n").unwrap();
    let data = dir.path().join("data");
    let node = Node::start(&data, 1, &["--fsync", "never", "--config", config.to_str().unwrap()]);
    let mut c = node.client();
    let at_limit = "m".repeat(1024);
    assert_eq!(commit_raw(&mut c, "meta", 0, "", vec![offset("t", 0, 5, &at_limit)]).0, ErrorCode::None);
    let over = "m".repeat(1025);
    let (code, message) = commit_raw(&mut c, "meta", 0, "", vec![offset("t", 0, 9, &over)]);
    assert_eq!(code, ErrorCode::OffsetMetadataTooLarge, "{message}");
    assert!(message.contains("1025") && message.contains("offset_metadata_max_bytes 1024"), "{message}");
    assert_eq!(fetch_offsets(&mut c, "meta"), vec![("t".to_string(), 0, 5)], "the refused commit changed nothing");
}

/// Commits 4 KiB of metadata per offset until the node refuses (or 3x the budget went
/// in); returns the bytes of metadata accepted.
fn flood(c: &mut Client) -> u64 {
    let metadata = "x".repeat(METADATA_MAX);
    // 200 offsets of 4 KiB stay under the wire's 1 MiB header bound.
    let per_request = 200u32;
    let mut accepted = 0u64;
    for round in 0..(3 * OFFSETS_BYTES_MAX / (u64::from(per_request) * METADATA_MAX as u64)) as u32 {
        let offsets = (0..per_request).map(|i| offset("flood", round * per_request + i, 1, &metadata)).collect();
        let (code, message) = commit_raw(c, &format!("flood-{}", round % 16), 0, "", offsets);
        match code {
            ErrorCode::None => accepted += u64::from(per_request) * METADATA_MAX as u64,
            ErrorCode::OffsetMetadataTooLarge => {
                assert!(message.contains("group_offsets_bytes_max"), "{message}");
                return accepted;
            }
            other => panic!("round {round}: {other}: {message}"),
        }
    }
    accepted
}

#[test]
fn commit_state_and_rss_stay_bounded_and_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), 1, &["--fsync", "never"]);
    let mut c = node.client();
    let rss_start = vm_rss_kib(node.child.id());
    let accepted = flood(&mut c);
    let rss_flooded = vm_rss_kib(node.child.id());
    eprintln!("accepted {accepted} bytes of metadata; RSS {rss_start} -> {rss_flooded} KiB");
    assert!(accepted <= OFFSETS_BYTES_MAX, "accepted {accepted} bytes, budget {OFFSETS_BYTES_MAX}");
    let rss_bound_kib = rss_start + 2 * OFFSETS_BYTES_MAX / 1024;
    assert!(rss_flooded <= rss_bound_kib, "RSS {rss_flooded} KiB over {rss_bound_kib} KiB");
    drop(c);
    node.signal_and_wait(libc::SIGTERM, Duration::from_secs(20));
    let node = Node::start(dir.path(), 1, &["--fsync", "never"]);
    let rss_restarted = vm_rss_kib(node.child.id());
    eprintln!("after restart RSS {rss_restarted} KiB");
    assert!(rss_restarted <= rss_bound_kib, "RSS after restart {rss_restarted} KiB over {rss_bound_kib} KiB");
    let mut c = node.client();
    let more = (0..200).map(|i| offset("more", i, 2, &"x".repeat(METADATA_MAX))).collect();
    let (code, message) = commit_raw(&mut c, "flood-0", 0, "", more);
    assert_eq!(code, ErrorCode::OffsetMetadataTooLarge, "the budget holds after the replay: {message}");
}

#[test]
fn empty_group_offsets_expire_durably() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strand.toml");
    std::fs::write(&config, "offsets_retention_ms = 1500\n").unwrap();
    let data = dir.path().join("data");
    let args = ["--fsync", "always", "--config", config.to_str().unwrap()];
    let mut node = Node::start(&data, 1, &args);
    let mut c = node.client();
    assert_eq!(commit_raw(&mut c, "idle", 0, "", vec![offset("t", 0, 42, "")]).0, ErrorCode::None);
    assert_eq!(fetch_offsets(&mut c, "idle"), vec![("t".to_string(), 0, 42)]);
    wait_for(Duration::from_secs(10), "the idle group's offsets to expire", || {
        fetch_offsets(&mut c, "idle").is_empty().then_some(())
    });
    assert_eq!(describe(&mut c, "idle").state, "Dead");
    drop(c);
    node.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
    let node = Node::start(&data, 1, &args);
    let mut c = node.client();
    assert_eq!(fetch_offsets(&mut c, "idle"), Vec::<(String, u32, u64)>::new(), "expiry survives a restart");
}
