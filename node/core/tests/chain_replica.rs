//! Transition tests of `ChainReplica`: small hand-driven scenarios that pin down the
//! message-level contract (the simulator in `chain_sim.rs` covers the combinations).

use strand_core::chain::{
    Acks, Action, BatchMeta, ChainConfig, ChainError, ChainLimits, ChainReplica, ClientBatch, Epoch, Msg, NodeId,
    Offset, Position, Role, SuccessorLag,
};

fn config(epoch: u64, members: &[u32]) -> ChainConfig {
    ChainConfig { epoch: Epoch(epoch), members: members.iter().copied().map(NodeId).collect(), learner: None }
}

fn drain(r: &mut ChainReplica) -> Vec<Action> {
    std::iter::from_fn(|| r.poll_action()).collect()
}

fn sends(actions: &[Action]) -> Vec<(NodeId, Msg)> {
    actions
        .iter()
        .filter_map(|a| if let Action::Send { to, msg } = a { Some((*to, msg.clone())) } else { None })
        .collect()
}

fn batch(request_id: u64) -> ClientBatch {
    ClientBatch { request_id, record_count: 2, bytes_len: 100 }
}

/// Shuttles messages between replicas until none is left.
fn settle(replicas: &mut [ChainReplica], queue: Vec<(NodeId, NodeId, Msg)>) -> Vec<Action> {
    settle_at(replicas, queue, 0)
}

/// [`settle`] with every message handled at `now_ms`.
fn settle_at(replicas: &mut [ChainReplica], mut queue: Vec<(NodeId, NodeId, Msg)>, now_ms: u64) -> Vec<Action> {
    let mut other = Vec::new();
    while !queue.is_empty() {
        let (from, to, msg) = queue.remove(0);
        let r = &mut replicas[to.0 as usize];
        r.handle_message(now_ms, from, msg).expect("well-formed");
        for action in drain(r) {
            match action {
                Action::Send { to: next, msg } => queue.push((to, next, msg)),
                a => other.push(a),
            }
        }
    }
    other
}

#[test]
fn single_acks_all_at_local_durability() {
    let mut r = ChainReplica::new(NodeId(0), ChainLimits::default());
    r.handle_config(0, config(1, &[0])).unwrap();
    assert_eq!(r.role(), Role::Single);
    assert_eq!(r.handle_client_append(0, batch(7), Acks::All), Ok(Offset(0)));
    assert!(!drain(&mut r).iter().any(|a| matches!(a, Action::AckClient { .. })), "no ack before fsync");
    r.handle_local_durable(1, Offset(2));
    let actions = drain(&mut r);
    assert!(actions.contains(&Action::AckClient { request_id: 7, offset: Offset(0) }));
    assert!(actions.contains(&Action::ServeReadsUpTo { offset: Offset(2) }));
    assert_eq!(r.commit(), Offset(2));
}

#[test]
fn head_acks_all_only_after_tail_durable() {
    let mut rs = vec![
        ChainReplica::new(NodeId(0), ChainLimits::default()),
        ChainReplica::new(NodeId(1), ChainLimits::default()),
    ];
    for r in rs.iter_mut() {
        r.handle_config(0, config(1, &[0, 1])).unwrap();
    }
    assert_eq!(rs[1].handle_client_append(0, batch(1), Acks::All), Err(ChainError::NotHead { role: Role::Tail }));
    rs[0].handle_client_append(0, batch(1), Acks::All).unwrap();
    rs[0].handle_client_append(0, batch(2), Acks::Leader).unwrap();
    let queue = sends(&drain(&mut rs[0])).into_iter().map(|(to, m)| (NodeId(0), to, m)).collect();
    settle(&mut rs, queue);
    assert_eq!(rs[1].log().end(), Offset(4), "tail has both batches");
    rs[0].handle_local_durable(0, Offset(4));
    let acks: Vec<_> = drain(&mut rs[0]).into_iter().filter(|a| matches!(a, Action::AckClient { .. })).collect();
    assert_eq!(acks, vec![Action::AckClient { request_id: 2, offset: Offset(2) }], "acks=leader only");
    rs[1].handle_local_durable(0, Offset(4));
    let queue = sends(&drain(&mut rs[1])).into_iter().map(|(to, m)| (NodeId(1), to, m)).collect();
    let out = settle(&mut rs, queue);
    assert!(out.contains(&Action::AckClient { request_id: 1, offset: Offset(0) }), "{out:?}");
    assert_eq!(rs[0].commit(), Offset(4));
}

#[test]
fn stale_epoch_is_fenced_and_fails_pending() {
    let mut old_head = ChainReplica::new(NodeId(0), ChainLimits::default());
    let mut tail = ChainReplica::new(NodeId(1), ChainLimits::default());
    old_head.handle_config(0, config(1, &[0, 1])).unwrap();
    tail.handle_config(0, config(2, &[1])).unwrap();
    drain(&mut old_head);
    old_head.handle_client_append(0, batch(9), Acks::All).unwrap();
    let to_tail = sends(&drain(&mut old_head));
    assert!(!to_tail.is_empty());
    for (_, msg) in to_tail {
        tail.handle_message(0, NodeId(0), msg).unwrap();
    }
    let replies = sends(&drain(&mut tail));
    assert!(replies.iter().all(|(to, m)| *to == NodeId(0) && *m == Msg::Fenced { epoch: Epoch(2) }));
    assert_eq!(tail.log().end(), Offset(0), "nothing appended from a stale epoch");
    old_head.handle_message(0, NodeId(1), replies[0].1.clone()).unwrap();
    let actions = drain(&mut old_head);
    assert!(actions.contains(&Action::FailClient { request_id: 9, error: ChainError::Fenced }));
    assert!(actions.contains(&Action::ConfigStale { seen: Epoch(2) }));
    assert_eq!(old_head.handle_client_append(0, batch(10), Acks::All), Err(ChainError::Fenced));
}

#[test]
fn restarted_successor_is_cut_to_the_predecessors_log() {
    let meta =
        |base: u64, epoch: u64| BatchMeta { base: Offset(base), record_count: 1, bytes_len: 10, epoch: Epoch(epoch) };
    // The successor holds an uncommitted suffix from epoch 1 that the new head never had.
    let head_log = [meta(0, 1), meta(1, 1), meta(2, 3)];
    let succ_log = [meta(0, 1), meta(1, 1), meta(2, 1), meta(3, 1)];
    let limits = ChainLimits::default();
    let mut rs = vec![
        ChainReplica::recover(NodeId(0), limits, &head_log, Epoch(0)).unwrap(),
        ChainReplica::recover(NodeId(1), limits, &succ_log, Epoch(3)).unwrap(),
    ];
    rs[1].handle_config(0, config(3, &[0, 1])).unwrap();
    assert_eq!(rs[1].role(), Role::Outside, "a restarted replica waits for a newer epoch");
    for r in rs.iter_mut() {
        r.handle_config(0, config(4, &[0, 1])).unwrap();
    }
    let queue = sends(&drain(&mut rs[0])).into_iter().map(|(to, m)| (NodeId(0), to, m)).collect();
    let out = settle(&mut rs, queue);
    assert!(out.contains(&Action::TruncateLocal { to: Offset(2) }), "{out:?}");
    assert_eq!(rs[1].log().batches(), rs[0].log().batches());
    assert_eq!(rs[1].matched(), Some(Offset(3)));
}

/// The paused-head report: a replica whose log holds a cut-off suffix learns a commit
/// beyond it in the same message that cuts it. Until its shell has executed the cut and
/// the new bytes are durable, the file still holds the old suffix, so reads stay at the
/// cut point.
#[test]
fn reads_stay_below_a_cut_until_the_new_bytes_are_durable() {
    let meta =
        |base: u64, epoch: u64| BatchMeta { base: Offset(base), record_count: 1, bytes_len: 10, epoch: Epoch(epoch) };
    let mut r = ChainReplica::recover(NodeId(1), ChainLimits::default(), &[meta(0, 1), meta(1, 1)], Epoch(1)).unwrap();
    r.handle_config(0, config(2, &[0, 1])).unwrap();
    let batches = vec![meta(1, 2), meta(2, 2)];
    let prev = Position { offset: Offset(1), epoch: Epoch(1) };
    r.handle_message(0, NodeId(0), Msg::Append { epoch: Epoch(2), prev, batches, commit: Offset(3) }).unwrap();
    let actions = drain(&mut r);
    assert!(actions.contains(&Action::TruncateLocal { to: Offset(1) }), "{actions:?}");
    assert_eq!(r.commit(), Offset(3));
    assert_eq!(r.reads_up_to(), Offset(1), "the file may still hold the cut batch at 1");
    assert!(!actions.iter().any(|a| matches!(a, Action::ServeReadsUpTo { offset } if *offset > Offset(1))));
    r.handle_local_durable(1, Offset(3));
    assert_eq!(r.reads_up_to(), Offset(3));
    assert!(drain(&mut r).contains(&Action::ServeReadsUpTo { offset: Offset(3) }));
}

/// Retention at the tail removed what a restarted learner still needs: the tail resets
/// it, the learner drops its log (through the shell), continues from the tail's start and
/// catches up; a duplicate reset after that changes nothing.
#[test]
fn a_learner_behind_the_tails_log_start_is_reset_and_catches_up() {
    let meta =
        |base: u64, epoch: u64| BatchMeta { base: Offset(base), record_count: 1, bytes_len: 10, epoch: Epoch(epoch) };
    let tail_log: Vec<BatchMeta> = (0..6).map(|b| meta(b, 1)).collect();
    let limits = ChainLimits::default();
    let mut rs = vec![
        ChainReplica::recover(NodeId(0), limits, &tail_log, Epoch(0)).unwrap(),
        ChainReplica::recover(NodeId(1), limits, &[meta(0, 1)], Epoch(0)).unwrap(),
    ];
    rs[0].handle_config(0, config(1, &[0])).unwrap();
    assert_eq!(rs[0].reads_up_to(), Offset(6));
    assert!(rs[0].handle_log_start(0, Offset(7)).is_err(), "never beyond served reads");
    rs[0].handle_log_start(0, Offset(4)).unwrap();
    assert_eq!(rs[0].log().start(), Position { offset: Offset(4), epoch: Epoch(1) });
    drain(&mut rs[0]);
    let with_learner = ChainConfig { epoch: Epoch(2), members: vec![NodeId(0)], learner: Some(NodeId(1)) };
    for r in rs.iter_mut() {
        r.handle_config(0, with_learner.clone()).unwrap();
    }
    assert_eq!(rs[1].role(), Role::Learner);
    let queue = sends(&drain(&mut rs[0])).into_iter().map(|(to, m)| (NodeId(0), to, m)).collect();
    let out = settle(&mut rs, queue);
    let reset = Position { offset: Offset(4), epoch: Epoch(1) };
    assert!(out.contains(&Action::ResetLocal { start: reset }), "{out:?}");
    assert_eq!(rs[1].log().start(), reset);
    assert_eq!(rs[1].log().batches(), rs[0].log().batches());
    // The learner's shell made the new log durable; the tail counts it once it has all.
    rs[1].handle_local_durable(1, Offset(6));
    let queue = sends(&drain(&mut rs[1])).into_iter().map(|(to, m)| (NodeId(1), to, m)).collect();
    settle(&mut rs, queue);
    assert!(rs[0].learner_in_sync());
    rs[1].handle_message(2, NodeId(0), Msg::Reset { epoch: Epoch(2), start: reset }).unwrap();
    assert!(!drain(&mut rs[1]).iter().any(|a| matches!(a, Action::ResetLocal { .. })), "a stale reset is ignored");
    assert_eq!(rs[1].log().end(), Offset(6));
}

/// Sends of replica `from`'s pending actions, as a [`settle`] queue.
fn outbox(rs: &mut [ChainReplica], from: u32) -> Vec<(NodeId, NodeId, Msg)> {
    sends(&drain(&mut rs[from as usize])).into_iter().map(|(to, m)| (NodeId(from), to, m)).collect()
}

#[test]
fn successor_lag_counts_what_the_successor_lacks_and_since_when() {
    let mut rs = vec![
        ChainReplica::new(NodeId(0), ChainLimits::default()),
        ChainReplica::new(NodeId(1), ChainLimits::default()),
    ];
    for r in rs.iter_mut() {
        r.handle_config(0, config(1, &[0, 1])).unwrap();
    }
    let queue = outbox(&mut rs, 0);
    settle_at(&mut rs, queue, 0);
    let lag = |rs: &[ChainReplica], now| rs[0].successor_lag(now).expect("the head feeds node 1");
    let caught_up = SuccessorLag { node: NodeId(1), is_learner: false, records: 0, bytes: 0, since_caught_up_ms: 0 };
    assert_eq!(lag(&rs, 5), caught_up);
    assert_eq!(rs[1].successor_lag(5), None, "the tail feeds nobody");

    // Two batches (2 records, 100 bytes each) reach the tail at t=10; nothing durable there.
    rs[0].handle_client_append(10, batch(1), Acks::All).unwrap();
    rs[0].handle_client_append(10, batch(2), Acks::All).unwrap();
    let queue = outbox(&mut rs, 0);
    settle_at(&mut rs, queue, 10);
    assert_eq!(rs[1].log().end(), Offset(4));
    assert_eq!(lag(&rs, 100), SuccessorLag { records: 4, bytes: 200, since_caught_up_ms: 90, ..caught_up });
    // Half durable at t=120: half the bytes, still behind what it lacked since t=10.
    rs[1].handle_local_durable(120, Offset(2));
    let queue = outbox(&mut rs, 1);
    settle_at(&mut rs, queue, 120);
    assert_eq!(lag(&rs, 130), SuccessorLag { records: 2, bytes: 100, since_caught_up_ms: 120, ..caught_up });
    rs[1].handle_local_durable(150, Offset(4));
    let queue = outbox(&mut rs, 1);
    settle_at(&mut rs, queue, 150);
    assert_eq!(lag(&rs, 200), caught_up);

    // Under steady load the successor never holds the whole log when a batch arrives: the
    // time lag follows its acknowledgements, not the last moment it held everything.
    let step = |rs: &mut Vec<ChainReplica>, t: u64, request: u64, durable: Option<u64>| {
        rs[0].handle_client_append(t, batch(request), Acks::All).unwrap();
        let queue = outbox(rs, 0);
        settle_at(rs, queue, t);
        if let Some(durable) = durable {
            rs[1].handle_local_durable(t + 10, Offset(durable));
            let queue = outbox(rs, 1);
            settle_at(rs, queue, t + 10);
        }
    };
    step(&mut rs, 300, 5, None);
    step(&mut rs, 310, 6, Some(6));
    step(&mut rs, 330, 7, Some(8));
    step(&mut rs, 350, 8, Some(10));
    assert_eq!(lag(&rs, 370), SuccessorLag { records: 2, bytes: 100, since_caught_up_ms: 30, ..caught_up });
    rs[1].handle_local_durable(380, Offset(12));
    let queue = outbox(&mut rs, 1);
    settle_at(&mut rs, queue, 380);
    assert_eq!(lag(&rs, 390), caught_up);
}
