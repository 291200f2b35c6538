//! The coordinator side: answering a group request on the shard that coordinates
//! the group, and carrying out the coordinator's actions (late answers to parked
//! joins and commits, appends of commit records to the offsets partition).
//!
//! Invariant: after every coordinator call the action queue is drained
//! ([`Shard::drain_group_actions`]) before the next await, so a late answer is never
//! left queued while its requester waits.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use strand_core::group::{
    Action, GroupCoordinator, GroupError, GroupView, JoinInput, KafkaSyncInput, Outcome, Reply as CoreReply, RequestId,
    SnapshotMarker,
};
use strand_wire::batch::BatchBuilder;
use strand_wire::msg::*;
use strand_wire::ErrorCode;
use tracing::{info, warn};

use crate::groups::{coordinator_of, GroupCall, GroupReply, KafkaAnswer, OFFSETS_TOPIC};
use crate::shard::forward::{ShardAnswer, ShardCall};
use crate::shard::Shard;

/// Largest batch a snapshot of the offsets topic is cut into (a snapshot may restate
/// hundreds of thousands of offsets; all its batches go in one append).
const SNAPSHOT_BATCH_BYTES: usize = 512 * 1024;

fn refused(e: GroupError) -> GroupReply {
    let mut reply = GroupReply::error(e.code(), e.to_string());
    if let GroupError::MemberIdRequired { member_id } = e {
        reply.kafka = Some(KafkaAnswer::MemberId(member_id));
    }
    reply
}

impl Shard {
    /// Answers a group call on its coordinator shard (this one).
    pub(crate) async fn group_request(self: &Rc<Self>, call: GroupCall) -> GroupReply {
        if let Some(refusal) = self.cluster_refusal(&call) {
            return refusal;
        }
        let request = match call {
            GroupCall::Native(request) => request,
            GroupCall::KafkaJoin(input) => return self.kafka_join(input).await,
            GroupCall::KafkaSync(input) => return self.kafka_sync(input).await,
            GroupCall::KafkaDescribe(group_id) => {
                let view = self.groups.coordinator.borrow().describe_group(&group_id);
                return GroupReply::kafka(KafkaAnswer::Describe(view));
            }
        };
        let now = self.groups.now_ms();
        match request {
            Request::JoinGroup(r) => self.group_join(r).await,
            Request::OffsetCommit(r) => self.group_commit(r).await,
            Request::SyncGroup(r) => {
                let result =
                    self.groups.coordinator.borrow_mut().handle_sync(now, &r.group_id, r.generation, &r.member_id);
                self.drain_group_actions();
                match result {
                    Ok(assignment) => GroupReply::ok(Response::SyncGroup(SyncGroupResponse { assignment })),
                    Err(e) => refused(e),
                }
            }
            Request::Heartbeat(r) => {
                let mut coordinator = self.groups.coordinator.borrow_mut();
                let result = coordinator.handle_heartbeat(now, &r.group_id, r.generation, &r.member_id);
                drop(coordinator);
                self.drain_group_actions();
                result.map_or_else(refused, |()| GroupReply::ok(Response::Empty))
            }
            Request::LeaveGroup(r) => {
                let result = self.groups.coordinator.borrow_mut().handle_leave(now, &r.group_id, &r.member_id);
                self.drain_group_actions();
                result.map_or_else(refused, |()| GroupReply::ok(Response::Empty))
            }
            Request::OffsetFetch(r) => {
                let result = self.groups.coordinator.borrow().handle_offset_fetch(&r.group_id, &r.partitions);
                match result {
                    Ok(offsets) => GroupReply::ok(Response::OffsetFetch(OffsetFetchResponse { offsets })),
                    Err(e) => refused(e),
                }
            }
            Request::ListGroups => {
                GroupReply::ok(Response::ListGroups(ListGroupsResponse { groups: self.local_groups() }))
            }
            Request::DescribeGroup(r) => self.group_describe(&r.group_id).await,
            Request::DeleteGroup(r) => self.group_delete(&r.group_id).await,
            other => GroupReply::error(ErrorCode::InvalidRequest, format!("not a group request: {other:?}")),
        }
    }

    /// The groups this shard coordinates, for ListGroups.
    pub(crate) fn local_groups(&self) -> Vec<GroupSummary> {
        let coordinator = self.groups.coordinator.borrow();
        coordinator
            .list_groups()
            .into_iter()
            .map(|g| GroupSummary {
                group_id: g.group_id,
                state: g.state.name().to_string(),
                member_count: g.member_count,
            })
            .collect()
    }

    async fn group_join(self: &Rc<Self>, r: JoinGroupRequest) -> GroupReply {
        let input = JoinInput::from(r);
        let answer = self
            .parked_call(
                "join",
                |c, now, id| c.handle_join(now, id, input),
                |reply| match reply {
                    CoreReply::Join(result) => Ok(result),
                    other => Err(Box::new(other)),
                },
            )
            .await;
        match answer {
            Ok(Ok(joined)) => GroupReply::ok(Response::JoinGroup(joined.into())),
            Ok(Err(e)) => refused(e),
            Err(reply) => reply,
        }
    }

    /// A Kafka JoinGroup: parked like a native join; answered with the Kafka-mode result
    /// (protocol, and for the leader every member's metadata).
    async fn kafka_join(self: &Rc<Self>, input: JoinInput) -> GroupReply {
        debug_assert!(input.kafka.is_some(), "the Kafka listener fills the protocol list");
        let answer = self
            .parked_call(
                "join",
                |c, now, id| c.handle_join(now, id, input),
                |reply| match reply {
                    CoreReply::Join(result) => Ok(result),
                    other => Err(Box::new(other)),
                },
            )
            .await;
        match answer {
            Ok(Ok(joined)) => GroupReply::kafka(KafkaAnswer::Join(joined)),
            Ok(Err(e)) => refused(e),
            Err(reply) => reply,
        }
    }

    /// A Kafka SyncGroup: a follower's parks until the leader's assignments arrive.
    async fn kafka_sync(self: &Rc<Self>, input: KafkaSyncInput) -> GroupReply {
        let answer = self
            .parked_call(
                "sync",
                |c, now, id| c.handle_kafka_sync(now, id, input),
                |reply| match reply {
                    CoreReply::Sync(result) => Ok(result),
                    other => Err(Box::new(other)),
                },
            )
            .await;
        match answer {
            Ok(Ok(assignment)) => GroupReply::kafka(KafkaAnswer::Sync(assignment)),
            Ok(Err(e)) => refused(e),
            Err(reply) => reply,
        }
    }

    async fn group_commit(self: &Rc<Self>, r: OffsetCommitRequest) -> GroupReply {
        let answer = self
            .parked_call(
                "commit",
                |c, now, id| c.handle_commit(now, id, r.into()),
                |reply| match reply {
                    CoreReply::Commit(result) => Ok(result),
                    other => Err(Box::new(other)),
                },
            )
            .await;
        match answer {
            Ok(Ok(())) => GroupReply::ok(Response::Empty),
            Ok(Err(e)) => refused(e),
            Err(reply) => reply,
        }
    }

    /// Deletes an Empty group: answered once its tombstones are durable (see
    /// `GroupCoordinator::handle_delete_group`).
    async fn group_delete(self: &Rc<Self>, group_id: &str) -> GroupReply {
        let answer = self
            .parked_call(
                "delete",
                |c, now, id| c.handle_delete_group(now, id, group_id),
                |reply| match reply {
                    CoreReply::Delete(result) => Ok(result),
                    other => Err(Box::new(other)),
                },
            )
            .await;
        match answer {
            Ok(Ok(())) => {
                info!(shard = self.id.0, group = %group_id, "group deleted");
                GroupReply::ok(Response::Empty)
            }
            Ok(Err(e)) => refused(e),
            Err(reply) => reply,
        }
    }

    /// One coordinator call that may park its request (`call(coordinator, now, request
    /// id)`): its result at once, or the late answer `pick` takes out of the coordinator's
    /// reply. `Err` is the reply to send as is (shutdown, coordinator moved, or a reply of
    /// the wrong kind — `what` names the API in that message).
    async fn parked_call<T>(
        self: &Rc<Self>,
        what: &str,
        call: impl FnOnce(&mut GroupCoordinator, u64, RequestId) -> Result<Outcome<T>, GroupError>,
        pick: impl FnOnce(CoreReply) -> Result<Result<T, GroupError>, Box<CoreReply>>,
    ) -> Result<Result<T, GroupError>, GroupReply> {
        let (id, rx) = self.groups.park();
        let now = self.groups.now_ms();
        let outcome = call(&mut self.groups.coordinator.borrow_mut(), now, id);
        self.drain_group_actions();
        let answer = match outcome {
            Err(e) => Err(e),
            Ok(Outcome::Done(done)) => Ok(done),
            Ok(Outcome::Parked) => match pick(self.wait_parked(rx).await?) {
                Ok(result) => result,
                Err(other) => {
                    let message = format!("{what} answered as {other:?}");
                    return Err(GroupReply::error(ErrorCode::Unknown, message));
                }
            },
        };
        self.groups.unpark(id);
        Ok(answer)
    }

    /// Waits for a parked request's late answer; shutdown ends the wait.
    async fn wait_parked(&self, rx: flume::Receiver<CoreReply>) -> Result<CoreReply, GroupReply> {
        let stop = self.stop.listen();
        if self.is_stopping() {
            return Err(GroupReply::error(ErrorCode::ShuttingDown, "node is shutting down"));
        }
        let answer = futures_lite::future::or(async { rx.recv_async().await.ok() }, async {
            stop.await;
            None
        })
        .await;
        answer.ok_or_else(|| match self.is_stopping() {
            true => GroupReply::error(ErrorCode::ShuttingDown, "node is shutting down"),
            // The waiter was dropped: the coordinator was replaced (cluster mode).
            false => GroupReply::error(ErrorCode::NotCoordinator, "the group's coordinator moved; find it again"),
        })
    }

    /// Tells the coordinator a topic's partition count (0 = deleted); groups that
    /// subscribe to it rebalance. Called on topic create/delete (and at start); the
    /// timer task drains what this queues.
    pub(crate) fn groups_topic_changed(&self, topic: &str, partition_count: u32) {
        if crate::topic::is_internal_topic(topic) {
            return;
        }
        let now = self.groups.now_ms();
        self.groups.coordinator.borrow_mut().handle_topic_partitions_changed(now, topic, partition_count);
        self.groups.changed.notify_all();
    }

    /// Carries out every queued coordinator action, then wakes the timer task (a call
    /// may have moved the next deadline).
    pub(crate) fn drain_group_actions(self: &Rc<Self>) {
        self.run_group_actions();
        self.groups.changed.notify_all();
    }

    /// Carries out every queued coordinator action; returns how many.
    pub(crate) fn run_group_actions(self: &Rc<Self>) -> usize {
        let mut count = 0;
        loop {
            let action = self.groups.coordinator.borrow_mut().poll_action();
            count += usize::from(action.is_some());
            match action {
                None => break,
                Some(Action::Respond { request_id, reply }) => {
                    match self.groups.waiters.borrow_mut().remove(&request_id) {
                        // The receiver may be gone (shutdown); nothing else waits for it.
                        Some(tx) => drop(tx.try_send(reply)),
                        None => warn!(shard = self.id.0, request_id, "late group answer for no waiter"),
                    }
                }
                Some(Action::PersistOffsets { persist_id, records }) => {
                    let shard = self.clone();
                    glommio::spawn_local(async move { shard.persist_offsets(persist_id, records).await }).detach();
                }
                Some(Action::PersistSnapshot { persist_id, partition, records }) => {
                    let shard = self.clone();
                    let persist = shard.persist_snapshot(persist_id, partition, records);
                    glommio::spawn_local(persist).detach();
                }
                Some(Action::MemberRemoved { group_id, member_id, reason }) => {
                    self.metrics.group_members_removed.fetch_add(1, Relaxed);
                    info!(shard = self.id.0, group = %group_id, member = %member_id, reason, "group member removed");
                }
            }
        }
        count
    }

    /// Appends commit records to the group's offsets partition (owned by this shard),
    /// then reports the outcome to the coordinator.
    async fn persist_offsets(self: Rc<Self>, persist_id: u64, records: Vec<strand_core::group::CommitRecord>) {
        let incarnation = self.groups.incarnation.get();
        let result = match records.first() {
            None => Ok(()),
            Some(first) => {
                let (partition, owner) =
                    coordinator_of(&first.group_id, self.groups.offsets_partitions(), self.shard_count());
                assert_eq!(owner, self.id, "a coordinator owns its groups' offsets partition");
                let mut builder = BatchBuilder::new();
                for record in &records {
                    let ts = i64::try_from(record.commit_ms).unwrap_or(i64::MAX);
                    builder.push(ts, Some(&record.encode_key()), Some(&record.encode()), &[]);
                }
                self.append_offsets(partition, builder.finish()).await
            }
        };
        if result.is_ok() {
            self.metrics.group_commits_persisted.fetch_add(1, Relaxed);
        }
        if incarnation != self.groups.incarnation.get() {
            // The coordinator that issued this persist was replaced; its waiter is gone.
            return;
        }
        let known = self.groups.coordinator.borrow_mut().handle_persisted(persist_id, result);
        if !known {
            warn!(shard = self.id.0, persist_id, "persist completion for an unknown persist id");
        }
        self.drain_group_actions();
    }

    /// Appends a snapshot of offsets partition `partition` (marker, then `records`, in
    /// batches of at most [`SNAPSHOT_BATCH_BYTES`], one append), then reports it.
    async fn persist_snapshot(
        self: Rc<Self>,
        persist_id: u64,
        partition: u32,
        records: Vec<strand_core::group::CommitRecord>,
    ) {
        let incarnation = self.groups.incarnation.get();
        let now = self.groups.now_ms();
        let ts = i64::try_from(now).unwrap_or(i64::MAX);
        let count = u32::try_from(records.len()).expect("a coordinator holds far fewer offsets than u32::MAX");
        let marker = SnapshotMarker { count, written_ms: now };
        let mut payload = bytes::BytesMut::new();
        let mut builder = BatchBuilder::new();
        builder.push(ts, Some(&SnapshotMarker::encode_key()), Some(&marker.encode()), &[]);
        for record in &records {
            if builder.len_bytes() >= SNAPSHOT_BATCH_BYTES {
                payload.extend_from_slice(&std::mem::take(&mut builder).finish());
            }
            let commit_ts = i64::try_from(record.commit_ms).unwrap_or(i64::MAX);
            builder.push(commit_ts, Some(&record.encode_key()), Some(&record.encode()), &[]);
        }
        payload.extend_from_slice(&builder.finish());
        let started = std::time::Instant::now();
        let result = self.append_offsets(partition, payload.freeze()).await;
        match &result {
            Ok(()) => {
                self.metrics.group_offsets_snapshots.fetch_add(1, Relaxed);
                let elapsed_ms = started.elapsed().as_millis() as u64;
                info!(shard = self.id.0, partition, offsets = count, elapsed_ms, "offsets snapshot written");
            }
            Err(code) => warn!(shard = self.id.0, partition, error = ?code, "offsets snapshot failed; retried later"),
        }
        if incarnation != self.groups.incarnation.get() {
            return;
        }
        let known = self.groups.coordinator.borrow_mut().handle_persisted(persist_id, result);
        assert!(known, "the coordinator of this incarnation issued snapshot {persist_id}");
        self.drain_group_actions();
    }

    /// Persists a commit batch on the group's offsets partition through the one produce
    /// path: the local partition, or in cluster mode the chain this node heads (acks=all).
    /// A storage failure stops the node there, as for user partitions.
    async fn append_offsets(self: &Rc<Self>, partition: u32, batch: bytes::Bytes) -> Result<(), ErrorCode> {
        let part = match self.cluster() {
            None => self.partition(OFFSETS_TOPIC, partition)?,
            Some(_) => {
                self.held(OFFSETS_TOPIC, partition).filter(|p| p.takes_produce()).ok_or(ErrorCode::NotCoordinator)?
            }
        };
        let _guard = self.append_started();
        part.append(batch, Acks::All).outcome().await.map(|_| ()).map_err(|refusal| {
            warn!(shard = self.id.0, partition, error = %refusal.message, "persisting offsets failed");
            refusal.code
        })
    }

    async fn group_describe(self: &Rc<Self>, group_id: &str) -> GroupReply {
        let view = self.groups.coordinator.borrow().describe_group(group_id);
        let Some(view) = view else {
            return GroupReply::ok(Response::DescribeGroup(DescribeGroupResponse {
                group_id: group_id.to_string(),
                state: "Dead".into(),
                generation: 0,
                assignor: Assignor::Range,
                members: Vec::new(),
                partitions: Vec::new(),
            }));
        };
        let committed = self.group_partitions(&view);
        let keys: Vec<(String, u32)> = committed.keys().cloned().collect();
        let offsets = self.log_offsets(&keys).await;
        let partitions = committed
            .into_iter()
            .zip(offsets)
            .map(|((tp, committed), (start, end))| GroupPartitionLag {
                topic: tp.0,
                partition: tp.1,
                committed: committed.unwrap_or(u64::MAX),
                log_end_offset: end,
                lag: strand_core::group::lag(start, end, committed),
            })
            .collect();
        // A Kafka consumer group's members show the partitions its leader assigned them.
        let members = view
            .members
            .iter()
            .map(|m| GroupMemberInfo {
                member_id: m.member_id.clone(),
                client_id: m.client_id.clone(),
                assignment: crate::groups::member_partitions(&view, m),
            })
            .collect();
        GroupReply::ok(Response::DescribeGroup(DescribeGroupResponse {
            group_id: view.group_id,
            state: view.state.name().to_string(),
            generation: view.generation,
            assignor: view.assignor,
            members,
            partitions,
        }))
    }

    /// Every partition of the topics the group's members subscribe to, plus every
    /// partition with a durable commit: `(topic, partition) → committed`.
    pub(crate) fn group_partitions(&self, view: &GroupView) -> BTreeMap<(String, u32), Option<u64>> {
        let mut out: BTreeMap<(String, u32), Option<u64>> = BTreeMap::new();
        let coordinator = self.groups.coordinator.borrow();
        for topic in view.members.iter().flat_map(|m| m.topics.iter()) {
            for p in 0..coordinator.partition_count(topic) {
                out.insert((topic.clone(), p), None);
            }
        }
        for c in &view.offsets {
            out.insert((c.topic.clone(), c.partition), Some(c.offset));
        }
        out
    }

    /// `(log start, readable end)` of each partition, asked of its owner; `(0, 0)` for a
    /// partition that does not exist (any more) or, in cluster mode, has no replica here.
    async fn log_offsets(self: &Rc<Self>, keys: &[(String, u32)]) -> Vec<(u64, u64)> {
        let mut out = vec![(0, 0); keys.len()];
        let mut by_owner: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, (topic, partition)) in keys.iter().enumerate() {
            if let Ok(owner) = self.route(topic, *partition) {
                by_owner.entry(owner.0).or_default().push(i);
            }
        }
        for (owner, indexes) in by_owner {
            let asked: Vec<(String, u32)> = indexes.iter().map(|i| keys[*i].clone()).collect();
            let answers: Vec<Result<crate::partition::PartitionOffsets, ErrorCode>> = if owner == self.id.0 {
                asked.iter().map(|(t, p)| self.partition(t, *p).map(|x| x.offsets())).collect()
            } else {
                match self.forward(owner, ShardCall::Offsets(asked)).await {
                    Ok(ShardAnswer::Offsets(answers)) => answers,
                    _ => Vec::new(),
                }
            };
            for (i, answer) in indexes.into_iter().zip(answers) {
                out[i] = answer.map_or((0, 0), |o| (o.log_start.0, o.commit.0));
            }
        }
        out
    }
}
