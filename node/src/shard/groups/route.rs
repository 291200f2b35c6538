//! The receiving side: a group request arriving on any shard goes to its group's
//! coordinator shard — a direct call when that is this shard, otherwise a bounded
//! hop through the coordinator's group inbox. ListGroups asks every shard.
//!
//! Invariant: every group request gets exactly one reply; a coordinator shard that is
//! gone (shutdown) is answered with `SHUTTING_DOWN`.

use std::rc::Rc;

use strand_wire::msg::{ListGroupsResponse, Request, Response};
use strand_wire::ErrorCode;

use crate::groups::{coordinator_of, GroupCall, GroupMsg, GroupReply};
use crate::shard::Shard;

impl Shard {
    /// Routes a native group request to its coordinator and returns the coordinator's answer.
    pub async fn group_dispatch(self: &Rc<Self>, request: Request) -> GroupReply {
        self.group_call(GroupCall::Native(request)).await
    }

    /// Routes a group call (native or Kafka) to its coordinator and returns its answer.
    pub async fn group_call(self: &Rc<Self>, request: GroupCall) -> GroupReply {
        if matches!(request, GroupCall::Native(Request::ListGroups)) {
            return self.list_all_groups().await;
        }
        let Some(group) = request.group_id() else {
            return GroupReply::error(ErrorCode::InvalidRequest, "not a group request");
        };
        if group.is_empty() {
            return GroupReply::error(ErrorCode::InvalidGroupId, "empty group id");
        }
        let (_, owner) = coordinator_of(group, self.groups.offsets_partitions(), self.shard_count());
        if owner == self.id {
            return self.group_request(request).await;
        }
        self.forward_group(usize::from(owner.0), request).await
    }

    async fn forward_group(&self, owner: usize, request: GroupCall) -> GroupReply {
        self.metrics.forwarded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = flume::bounded(1);
        let gone = || GroupReply::error(ErrorCode::ShuttingDown, format!("coordinator shard {owner} is gone"));
        let Some(inbox) = self.shared.group_inboxes.get(owner) else { return gone() };
        if inbox.send_async(GroupMsg { request, reply: tx }).await.is_err() {
            return gone();
        }
        rx.recv_async().await.unwrap_or_else(|_| gone())
    }

    async fn list_all_groups(self: &Rc<Self>) -> GroupReply {
        let mut groups = Vec::new();
        for s in 0..self.shard_count() {
            let reply = if s == self.id.0 {
                GroupReply::ok(Response::ListGroups(ListGroupsResponse { groups: self.local_groups() }))
            } else {
                self.forward_group(usize::from(s), GroupCall::Native(Request::ListGroups)).await
            };
            match reply.response {
                Response::ListGroups(r) if reply.error == ErrorCode::None => groups.extend(r.groups),
                _ => return reply,
            }
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        GroupReply::ok(Response::ListGroups(ListGroupsResponse { groups }))
    }

    /// Serves group calls forwarded by other shards until the inbox closes.
    pub async fn serve_group_inbox(self: Rc<Self>, inbox: flume::Receiver<GroupMsg>) {
        while let Ok(msg) = inbox.recv_async().await {
            let shard = self.clone();
            glommio::spawn_local(async move {
                let reply = if shard.is_stopping() {
                    GroupReply::error(ErrorCode::ShuttingDown, "node is shutting down")
                } else {
                    shard.group_request(msg.request).await
                };
                let _ = msg.reply.send_async(reply).await;
            })
            .detach();
        }
    }
}
