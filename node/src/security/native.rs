//! The security side of native requests: the SASL step (`Authenticate`), the check each
//! request passes before `Shard::dispatch`, the filtering of listings to what the
//! principal may describe, and the user and ACL admin APIs.
//!
//! Which permission each request needs:
//!
//! | request | needs |
//! |---|---|
//! | Produce | write on each topic |
//! | Fetch, ListOffsets | read on each topic |
//! | Metadata, ListTopics | describe per topic (others are left out, or marked refused when named) |
//! | CreateTopic, DeleteTopic, AlterTopicConfig, CreatePartitions | admin on the cluster or the topic |
//! | JoinGroup, SyncGroup, Heartbeat, LeaveGroup | read on the group |
//! | OffsetCommit, OffsetFetch | read on the group and on each topic named (an OffsetFetch of all lists readable topics only) |
//! | DescribeGroup | describe on the group; ListGroups lists the describable ones |
//! | DeleteGroup | admin on the group |
//! | AlterUser, ListUsers, AlterAcl, ListAcls | admin on the cluster |
//! | Handshake, InitProducerId, Authenticate | nothing beyond authentication |

use strand_core::auth::acl::{Entry, Kind, Operation, Pattern};
use strand_core::auth::{ScramCredential, ScramMechanism};
use strand_wire::msg::*;
use strand_wire::ErrorCode;

use super::{Access, Refusal, SaslAnswer, Security, Session, User};
use crate::shard::dispatch::Reply;

/// The answer to an `Authenticate` step; `true` = close the connection after it.
pub fn authenticate(
    security: &Security,
    session: &Session,
    metrics: &crate::metrics::ShardMetrics,
    peer: &str,
    cid: u64,
    req: &AuthenticateRequest,
) -> (Reply, bool) {
    let started = session.principal().is_none() && session.exchange.borrow().is_some();
    if !started {
        if let Err(reason) = session.begin(security, &req.mechanism) {
            metrics.auth_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(peer, %reason, "authentication refused");
            return (Reply::error(cid, ErrorCode::AuthenticationFailed, reason), true);
        }
    }
    match session.step(security, metrics, peer, &req.auth_bytes) {
        SaslAnswer::Challenge(auth_bytes) => {
            let response = AuthenticateResponse { auth_bytes, principal: String::new() };
            (Reply::new(cid, Response::Authenticate(response)), false)
        }
        SaslAnswer::Done { principal, final_message } => {
            let response = AuthenticateResponse { auth_bytes: final_message, principal: principal.to_string() };
            (Reply::new(cid, Response::Authenticate(response)), false)
        }
        SaslAnswer::Failed(text) => (Reply::error(cid, ErrorCode::AuthenticationFailed, text), true),
    }
}

/// Whether `request` may be dispatched for `access`.
pub fn authorize(security: &Security, access: &Access, request: &Request) -> Result<(), Refusal> {
    let topic = |op, name: &str| access.topic(security, op, name);
    let group = |op, name: &str| access.group(security, op, name);
    let cluster_admin = || access.check(security, Operation::Admin, strand_core::auth::acl::Target::Cluster);
    match request {
        Request::Produce(r) => r.partitions.iter().try_for_each(|p| topic(Operation::Write, &p.topic)),
        Request::Fetch(r) => r.partitions.iter().try_for_each(|p| topic(Operation::Read, &p.topic)),
        Request::ListOffsets(r) => r.partitions.iter().try_for_each(|p| topic(Operation::Read, &p.topic)),
        Request::CreateTopic(r) => access.topic_admin(security, &r.name),
        Request::DeleteTopic(r) => access.topic_admin(security, &r.name),
        Request::AlterTopicConfig(r) => access.topic_admin(security, &r.name),
        Request::CreatePartitions(r) => access.topic_admin(security, &r.name),
        Request::JoinGroup(r) => group(Operation::Read, &r.group_id),
        Request::SyncGroup(r) => group(Operation::Read, &r.group_id),
        Request::Heartbeat(r) => group(Operation::Read, &r.group_id),
        Request::LeaveGroup(r) => group(Operation::Read, &r.group_id),
        Request::OffsetCommit(r) => {
            group(Operation::Read, &r.group_id)?;
            r.offsets.iter().try_for_each(|o| topic(Operation::Read, &o.topic))
        }
        Request::OffsetFetch(r) => {
            group(Operation::Read, &r.group_id)?;
            r.partitions.iter().try_for_each(|p| topic(Operation::Read, &p.topic))
        }
        Request::DescribeGroup(r) => group(Operation::Describe, &r.group_id),
        Request::DeleteGroup(r) => group(Operation::Admin, &r.group_id),
        Request::AlterUser(_) | Request::ListUsers | Request::AlterAcl(_) | Request::ListAcls => cluster_admin(),
        Request::Metadata(_) | Request::ListTopics | Request::ListGroups => Ok(()),
        Request::Handshake(_) | Request::InitProducerId | Request::Authenticate(_) => Ok(()),
        Request::ReplicaAppend(_) | Request::ReplicaAck(_) => Ok(()),
    }
}

/// Leaves out of a listing what `access` may not describe; a topic asked for by name is
/// kept, marked refused, so the client sees why.
pub fn filter(security: &Security, access: &Access, reply: &mut Reply) {
    let describable = |kind: Kind, name: &str| {
        let target = strand_core::auth::acl::Target::Named(kind, name);
        access.check(security, Operation::Describe, target).is_ok()
    };
    match &mut reply.header.response {
        Response::Metadata(m) => {
            for t in m.topics.iter_mut().filter(|t| !describable(Kind::Topic, &t.name)) {
                t.error = ErrorCode::TopicAuthorizationFailed;
                t.partitions.clear();
            }
        }
        Response::ListTopics(l) => l.topics.retain(|t| describable(Kind::Topic, &t.name)),
        Response::ListGroups(l) => l.groups.retain(|g| describable(Kind::Group, &g.group_id)),
        // "Every committed offset" lists only topics the principal may read.
        Response::OffsetFetch(o) => {
            o.offsets.retain(|c| access.topic(security, Operation::Read, &c.topic).is_ok());
        }
        _ => {}
    }
}

/// Metadata asking for every topic: the ones the principal may not describe are left
/// out (not marked), as a Kafka broker leaves them out.
pub fn drop_refused_topics(security: &Security, access: &Access, reply: &mut Reply) {
    if let Response::Metadata(m) = &mut reply.header.response {
        m.topics.retain(|t| access.topic(security, Operation::Describe, &t.name).is_ok());
    }
}

/// Answers the user and ACL admin APIs (already authorized); `None` for other requests.
pub async fn admin(security: &Security, cid: u64, request: &Request) -> Option<Reply> {
    let outcome = match request {
        Request::AlterUser(AlterUserRequest::Upsert { name, credentials }) => {
            upsert_user(security, name, credentials).await
        }
        Request::AlterUser(AlterUserRequest::Delete { name }) => {
            security
                .change(|t| {
                    t.users.remove(name).ok_or_else(|| format!("no user {name}"))?;
                    t.acls.remove_principal(name);
                    Ok(Response::Empty)
                })
                .await
        }
        Request::ListUsers => Ok(Response::ListUsers(ListUsersResponse {
            users: security.read(|t| {
                t.users
                    .iter()
                    .map(|(name, u)| UserInfo {
                        name: name.clone(),
                        mechanisms: u.credentials.iter().map(|c| c.mechanism.name().to_string()).collect(),
                        superuser: u.superuser,
                    })
                    .collect()
            }),
        })),
        Request::AlterAcl(r) => alter_acl(security, r).await,
        Request::ListAcls => Ok(Response::ListAcls(ListAclsResponse {
            entries: security.read(|t| t.acls.entries().map(wire_entry).collect()),
        })),
        _ => return None,
    };
    Some(match outcome {
        Ok(response) => Reply::new(cid, response),
        Err(message) => Reply::error(cid, ErrorCode::InvalidRequest, message),
    })
}

async fn upsert_user(
    security: &Security,
    name: &str,
    credentials: &[ScramCredentialEntry],
) -> Result<Response, String> {
    if name.is_empty() || name.len() > strand_core::auth::USER_NAME_LEN_MAX {
        return Err("user names are 1 to 255 bytes".into());
    }
    if credentials.is_empty() {
        return Err("a user needs at least one SCRAM credential".into());
    }
    let mut parsed: Vec<ScramCredential> = Vec::new();
    for c in credentials {
        let mechanism =
            ScramMechanism::parse(&c.mechanism).ok_or_else(|| format!("unknown SCRAM mechanism {:?}", c.mechanism))?;
        if parsed.iter().any(|p| p.mechanism == mechanism) {
            return Err(format!("two credentials for {}", mechanism.name()));
        }
        let credential = ScramCredential::from_parts(
            mechanism,
            c.salt.clone(),
            c.iterations,
            c.stored_key.clone(),
            c.server_key.clone(),
        )
        .map_err(|e| format!("{}: {e}", mechanism.name()))?;
        parsed.push(credential);
    }
    security
        .change(|t| {
            if !t.users.contains_key(name) && t.users.len() >= super::store::USERS_MAX {
                return Err(format!("the node keeps at most {} users", super::store::USERS_MAX));
            }
            let superuser = t.users.get(name).is_some_and(|u| u.superuser);
            t.users.insert(name.to_string(), User { superuser, credentials: parsed.clone() });
            Ok(Response::Empty)
        })
        .await
}

async fn alter_acl(security: &Security, r: &AlterAclRequest) -> Result<Response, String> {
    let entry = core_entry(&r.entry)?;
    security
        .change(|t| {
            if r.add {
                if t.acls.entries().count() >= super::store::ACLS_MAX {
                    return Err(format!("the node keeps at most {} ACL entries", super::store::ACLS_MAX));
                }
                t.acls.add(entry.clone()).map_err(|e| e.to_string())?;
            } else if !t.acls.remove(&entry) {
                return Err(format!("no such ACL: {entry}"));
            }
            Ok(Response::Empty)
        })
        .await
}

fn core_entry(e: &AclEntry) -> Result<Entry, String> {
    let operation = match e.operation {
        AclOperation::Read => Operation::Read,
        AclOperation::Write => Operation::Write,
        AclOperation::Describe => Operation::Describe,
        AclOperation::Admin => Operation::Admin,
    };
    let kind = match e.resource {
        AclResource::Topic => Kind::Topic,
        AclResource::Group => Kind::Group,
        AclResource::Cluster => {
            return Ok(Entry { principal: e.principal.clone(), pattern: Pattern::Cluster, operation });
        }
    };
    let pattern = if e.prefix { Pattern::Prefix(kind, e.name.clone()) } else { Pattern::Literal(kind, e.name.clone()) };
    Ok(Entry { principal: e.principal.clone(), pattern, operation })
}

fn wire_entry(e: &Entry) -> AclEntry {
    let operation = match e.operation {
        Operation::Read => AclOperation::Read,
        Operation::Write => AclOperation::Write,
        Operation::Describe => AclOperation::Describe,
        Operation::Admin => AclOperation::Admin,
    };
    let (resource, name, prefix) = match &e.pattern {
        Pattern::Literal(k, n) => (resource(*k), n.clone(), false),
        Pattern::Prefix(k, n) => (resource(*k), n.clone(), true),
        Pattern::Cluster => (AclResource::Cluster, String::new(), false),
    };
    AclEntry { principal: e.principal.clone(), resource, name, prefix, operation }
}

fn resource(kind: Kind) -> AclResource {
    match kind {
        Kind::Topic => AclResource::Topic,
        Kind::Group => AclResource::Group,
    }
}

/// What the reader does with a decoded native request.
pub enum Gate {
    /// Dispatch it; filter its answer with this access.
    Pass(Access),
    /// Answer with this reply (in order, from the reader); close after it when `true`.
    Answer(Reply, bool),
}

/// The auth gate of a native connection: SASL steps and the security admin APIs are
/// answered here; with `--require-auth` nothing but the handshake passes before
/// authentication (answered `AUTHENTICATION_REQUIRED`, then closed); every other request
/// is checked against the ACLs.
pub async fn gate(shard: &crate::shard::Shard, session: &Session, peer: &str, header: &RequestHeader) -> Gate {
    let security = &shard.shared.security;
    let metrics = &shard.metrics;
    let cid = header.correlation_id;
    if let Request::Authenticate(req) = &header.request {
        metrics.requests[ApiKey::Authenticate.index()].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (reply, close) = authenticate(security, session, metrics, peer, cid, req);
        return Gate::Answer(reply, close);
    }
    let access = Access::new(security, session);
    let refused = |refusal: Refusal, close: bool| {
        metrics.authorization_denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics.request_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Gate::Answer(Reply::error(cid, refusal.code, refusal.message), close)
    };
    if !access.authenticated() && !matches!(header.request, Request::Handshake(_)) {
        tracing::info!(peer, api = header.request.api().name(), "request before authentication refused; closing");
        let message = "this node requires authentication (SASL SCRAM-SHA-256/512) before any other request";
        return refused(Refusal { code: ErrorCode::AuthenticationRequired, message: message.into() }, true);
    }
    if let Err(refusal) = authorize(security, &access, &header.request) {
        return refused(refusal, false);
    }
    match admin(security, cid, &header.request).await {
        Some(reply) => {
            metrics.requests[header.request.api().index()].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Gate::Answer(reply, false)
        }
        None => Gate::Pass(access),
    }
}

/// Filters a dispatched answer to what `access` may see (see [`filter`]).
pub fn filter_answer(shard: &crate::shard::Shard, access: &Access, asked_all_topics: bool, reply: &mut Reply) {
    let security = &shard.shared.security;
    if asked_all_topics {
        drop_refused_topics(security, access, reply);
    }
    filter(security, access, reply);
}
