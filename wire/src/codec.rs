//! Conversion between [`crate::msg`] types and verified FlatBuffers headers
//! (`wire/schema/strand.fbs`), plus helpers that write whole frames.
//!
//! Invariants:
//! - Decoding uses only verifying accessors ([`flatbuffers::root_with_opts`]) with
//!   bounded depth, table count and apparent size, and every list and string is
//!   checked against [`limits`] before it is copied, so untrusted bytes can never
//!   panic, over-read or make the decoder allocate without bound.
//! - FlatBuffers types never leave this module: callers see only `msg` types.
//! - Encoding enforces exactly what decoding accepts: a header that our own decoder
//!   would refuse (a list or string over [`limits`], or a header over `HEADER_LEN_MAX`
//!   or the verifier's bounds) is an [`EncodeError`] from the `try_*` functions. The
//!   infallible response encoders ([`encode_response`], [`response_frame`],
//!   [`response_prefix_and_header`]) send such a response as a bodiless
//!   `MESSAGE_TOO_LARGE` error with the same correlation id instead, so a peer always
//!   gets a decodable answer. The infallible request encoders ([`encode_request`],
//!   [`request_frame`]) do not check (a peer answers an over-limit request with
//!   `INVALID_REQUEST`); senders that can build large requests use [`try_request_frame`].
//! - The free-text response `message` is truncated to [`limits::STRING_LEN_MAX`] bytes
//!   so an error detail alone never makes a response undecodable.
//! - The check is exact and cheap: a header of at most [`limits::CHECKED_FROM`] bytes
//!   cannot break any limit (see the asserts in [`limits`]); a longer one is run through
//!   the decoder itself.

use bytes::BytesMut;
use flatbuffers::{FlatBufferBuilder, Follow, ForwardsUOffset, UnionWIPOffset, Vector, VerifierOptions, WIPOffset};

use crate::error::ErrorCode;
use crate::frame::{write_frame, FramePrefix, FRAME_PREFIX_LEN, HEADER_LEN_MAX};
use crate::generated as fb;
use crate::msg::*;

/// Bounds applied when decoding a header. Related by compile-time asserts below.
pub mod limits {
    /// Most entries in any list of a header (partitions per request, topics, members, ...).
    pub const LIST_LEN_MAX: usize = 10_000;
    /// Longest string (bytes) in a header: names, ids, metadata, error messages.
    pub const STRING_LEN_MAX: usize = 4096;
    /// Deepest table nesting the verifier accepts (the schema needs 4).
    pub const DEPTH_MAX: usize = 16;
    /// Most tables the verifier visits: one per 4 bytes of the largest header, which no
    /// honest header reaches, yet bounds work on a crafted one that shares sub-tables.
    pub const TABLES_MAX: usize = super::HEADER_LEN_MAX / 4;
    /// Most bytes the verifier visits with shared sub-objects expanded; bounds what a
    /// decode can allocate from a small header that references one object many times.
    pub const APPARENT_SIZE_MAX: usize = 2 * super::HEADER_LEN_MAX;

    /// Encoded headers up to this many bytes are decodable without a check: a string
    /// over [`STRING_LEN_MAX`] or a list over [`LIST_LEN_MAX`] (every element at least
    /// one byte) needs more bytes, and so many bytes hold at most `CHECKED_FROM / 4`
    /// tables (each at least 4 bytes) and a small multiple of that apparent size.
    pub const CHECKED_FROM: usize = STRING_LEN_MAX;

    const _: () = assert!(CHECKED_FROM <= STRING_LEN_MAX && CHECKED_FROM <= LIST_LEN_MAX);
    const _: () = assert!(CHECKED_FROM / 4 <= TABLES_MAX && 8 * CHECKED_FROM <= APPARENT_SIZE_MAX);
    const _: () = assert!(STRING_LEN_MAX < super::HEADER_LEN_MAX);
    const _: () = assert!(LIST_LEN_MAX <= TABLES_MAX);
    const _: () = assert!(APPARENT_SIZE_MAX >= super::HEADER_LEN_MAX);
}

/// Wire values of [`Acks`] (`ProduceRequest.acks`).
const ACKS_NONE: u8 = 0;
const ACKS_LEADER: u8 = 1;
const ACKS_ALL: u8 = 2;
/// Wire values of [`Assignor`].
const ASSIGNOR_RANGE: u8 = 0;
const ASSIGNOR_ROUND_ROBIN: u8 = 1;
/// Wire values of the [`OffsetSpec`] kind (`ListOffsetsPartition.spec_kind`).
const SPEC_EARLIEST: u8 = 0;
const SPEC_LATEST: u8 = 1;
const SPEC_TIMESTAMP: u8 = 2;

/// Why a header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a valid FlatBuffers header of the expected type.
    #[error("header failed verification: {0}")]
    Invalid(String),
    /// The header is valid but names an API this build does not know; answer with
    /// [`ErrorCode::UnknownApi`] using the correlation id.
    #[error("unknown api {api} (correlation id {correlation_id})")]
    UnknownApi { correlation_id: u64, api: u8 },
    /// The header verified but a field violates the protocol (e.g. an unknown enum value).
    #[error("invalid field: {0}")]
    BadField(&'static str),
}

impl DecodeError {
    /// The wire error to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnknownApi { .. } => ErrorCode::UnknownApi,
            _ => ErrorCode::InvalidRequest,
        }
    }
}

/// Why a header cannot be encoded: our own decoder would refuse it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A list, string or the whole header exceeds [`limits`] / `HEADER_LEN_MAX`; the
    /// decoder's reason says which.
    #[error("header exceeds the wire limits: {0}")]
    OverLimit(DecodeError),
}

impl EncodeError {
    /// The wire error that reports it (`MESSAGE_TOO_LARGE`).
    pub fn code(&self) -> ErrorCode {
        ErrorCode::MessageTooLarge
    }
}

/// Encodes a request header without checking [`limits`] (see [`try_encode_request`]).
pub fn encode_request(header: &RequestHeader) -> Vec<u8> {
    build_request(header).finished_data().to_vec()
}

/// Encodes a request header, or refuses one the decoder would not accept.
pub fn try_encode_request(header: &RequestHeader) -> Result<Vec<u8>, EncodeError> {
    let fbb = build_request(header);
    check(fbb.finished_data(), decode_request)?;
    Ok(fbb.finished_data().to_vec())
}

/// Decodes and verifies a request header.
pub fn decode_request(bytes: &[u8]) -> Result<RequestHeader, DecodeError> {
    let root = verified_root::<fb::Request>(bytes)?;
    let correlation_id = root.correlation_id();
    let request = decode_request_body(&root)?;
    Ok(RequestHeader { correlation_id, request })
}

/// Encodes a response header; one over the limits becomes a bodiless `MESSAGE_TOO_LARGE`
/// error response with the same correlation id (see [`try_encode_response`]).
pub fn encode_response(header: &ResponseHeader) -> Vec<u8> {
    checked_response(header).finished_data().to_vec()
}

/// Encodes a response header, or refuses one the decoder would not accept.
pub fn try_encode_response(header: &ResponseHeader) -> Result<Vec<u8>, EncodeError> {
    let fbb = build_response(header);
    check(fbb.finished_data(), decode_response)?;
    Ok(fbb.finished_data().to_vec())
}

/// Decodes and verifies a response header.
pub fn decode_response(bytes: &[u8]) -> Result<ResponseHeader, DecodeError> {
    let root = verified_root::<fb::Response>(bytes)?;
    let correlation_id = root.correlation_id();
    let message = root.message().map(|m| string(Some(m))).transpose()?;
    let response = decode_response_body(&root)?;
    let error = ErrorCode::from_code(root.error());
    Ok(ResponseHeader { correlation_id, error, message, response, throttle_ms: root.throttle_time_ms() })
}

/// Appends a whole request frame (prefix, header, `payload`) to `out`, without checking
/// [`limits`] (see [`try_request_frame`]).
pub fn request_frame(out: &mut BytesMut, header: &RequestHeader, payload: &[u8]) {
    write_frame(out, build_request(header).finished_data(), payload);
}

/// Appends a whole request frame to `out`, or leaves `out` untouched and refuses a
/// header the decoder would not accept.
pub fn try_request_frame(out: &mut BytesMut, header: &RequestHeader, payload: &[u8]) -> Result<(), EncodeError> {
    let fbb = build_request(header);
    check(fbb.finished_data(), decode_request)?;
    write_frame(out, fbb.finished_data(), payload);
    Ok(())
}

/// Appends a whole response frame (prefix, header, `payload`) to `out`; an over-limit
/// header is replaced as in [`encode_response`] (the payload is still written).
pub fn response_frame(out: &mut BytesMut, header: &ResponseHeader, payload: &[u8]) {
    write_frame(out, checked_response(header).finished_data(), payload);
}

/// Appends a whole response frame to `out`, or leaves `out` untouched and refuses a
/// header the decoder would not accept.
pub fn try_response_frame(out: &mut BytesMut, header: &ResponseHeader, payload: &[u8]) -> Result<(), EncodeError> {
    let fbb = build_response(header);
    check(fbb.finished_data(), decode_response)?;
    write_frame(out, fbb.finished_data(), payload);
    Ok(())
}

/// Appends the 8-byte frame prefix and the encoded request header to `out`, for a frame
/// whose `payload_len` payload bytes the caller appends next (so a payload gathered
/// from several places is copied once, straight into the frame).
pub fn request_prefix_and_header(out: &mut BytesMut, header: &RequestHeader, payload_len: usize) {
    let fbb = build_request(header);
    let encoded = fbb.finished_data();
    let prefix = FramePrefix::new(encoded.len(), payload_len);
    out.reserve(prefix.frame_len());
    out.extend_from_slice(&prefix.to_bytes());
    out.extend_from_slice(encoded);
}

/// The 8-byte frame prefix followed by the encoded header, for a frame whose
/// `payload_len` payload bytes the caller sends separately (e.g. spliced from a segment
/// file); an over-limit header is replaced as in [`encode_response`].
pub fn response_prefix_and_header(header: &ResponseHeader, payload_len: usize) -> Vec<u8> {
    let fbb = checked_response(header);
    let encoded = fbb.finished_data();
    let prefix = FramePrefix::new(encoded.len(), payload_len);
    let mut out = Vec::with_capacity(FRAME_PREFIX_LEN + encoded.len());
    out.extend_from_slice(&prefix.to_bytes());
    out.extend_from_slice(encoded);
    out
}

/// `Err` when `decode` refuses `encoded`; headers within [`limits::CHECKED_FROM`]
/// bytes are accepted without decoding (they cannot break a limit).
fn check<T>(encoded: &[u8], decode: fn(&[u8]) -> Result<T, DecodeError>) -> Result<(), EncodeError> {
    if encoded.len() <= limits::CHECKED_FROM {
        return Ok(());
    }
    decode(encoded).map(drop).map_err(EncodeError::OverLimit)
}

/// The built `header`, or the `MESSAGE_TOO_LARGE` stand-in when it is over the limits.
fn checked_response(header: &ResponseHeader) -> Fbb<'static> {
    let fbb = build_response(header);
    match check(fbb.finished_data(), decode_response) {
        Ok(()) => fbb,
        Err(e) => build_response(&ResponseHeader {
            correlation_id: header.correlation_id,
            error: e.code(),
            message: Some(format!("response not sent: {e}")),
            response: Response::Empty,
            throttle_ms: header.throttle_ms,
        }),
    }
}

// ---------------------------------------------------------------- verification helpers

type Fbb<'a> = FlatBufferBuilder<'a>;
type TableVec<'a, T> = WIPOffset<Vector<'a, ForwardsUOffset<T>>>;

fn verifier_options() -> VerifierOptions {
    VerifierOptions {
        max_depth: limits::DEPTH_MAX,
        max_tables: limits::TABLES_MAX,
        max_apparent_size: limits::APPARENT_SIZE_MAX,
        ignore_missing_null_terminator: false,
    }
}

fn verified_root<'a, T>(bytes: &'a [u8]) -> Result<T::Inner, DecodeError>
where
    T: 'a + Follow<'a> + flatbuffers::Verifiable,
{
    if bytes.len() > HEADER_LEN_MAX {
        return Err(DecodeError::Invalid(format!("header of {} bytes exceeds {HEADER_LEN_MAX}", bytes.len())));
    }
    flatbuffers::root_with_opts::<T>(&verifier_options(), bytes).map_err(|e| DecodeError::Invalid(e.to_string()))
}

/// A present union body, or `BadField` when the type is set but the table is absent.
fn body<T>(table: Option<T>) -> Result<T, DecodeError> {
    table.ok_or(DecodeError::BadField("union body missing"))
}

/// An owned copy of a verified string; absent = empty.
fn string(s: Option<&str>) -> Result<String, DecodeError> {
    let s = s.unwrap_or_default();
    if s.len() > limits::STRING_LEN_MAX {
        return Err(DecodeError::BadField("string longer than STRING_LEN_MAX"));
    }
    Ok(s.to_owned())
}

/// Converts each element of a verified vector; absent = empty.
fn list<'a, T, U>(
    v: Option<Vector<'a, T>>,
    f: impl FnMut(T::Inner) -> Result<U, DecodeError>,
) -> Result<Vec<U>, DecodeError>
where
    T: Follow<'a> + 'a,
{
    let Some(v) = v else { return Ok(Vec::new()) };
    if v.len() > limits::LIST_LEN_MAX {
        return Err(DecodeError::BadField("list longer than LIST_LEN_MAX"));
    }
    v.iter().map(f).collect()
}

fn strings<'a>(v: Option<Vector<'a, ForwardsUOffset<&'a str>>>) -> Result<Vec<String>, DecodeError> {
    list(v, |s| string(Some(s)))
}

fn copied<'a, T: Follow<'a, Inner = T> + 'a>(v: Option<Vector<'a, T>>) -> Result<Vec<T>, DecodeError> {
    list(v, Ok)
}

fn acks_from_wire(v: u8) -> Result<Acks, DecodeError> {
    match v {
        ACKS_NONE => Ok(Acks::None),
        ACKS_LEADER => Ok(Acks::Leader),
        ACKS_ALL => Ok(Acks::All),
        _ => Err(DecodeError::BadField("unknown acks")),
    }
}

fn acks_to_wire(a: Acks) -> u8 {
    match a {
        Acks::None => ACKS_NONE,
        Acks::Leader => ACKS_LEADER,
        Acks::All => ACKS_ALL,
    }
}

fn assignor_from_wire(v: u8) -> Result<Assignor, DecodeError> {
    match v {
        ASSIGNOR_RANGE => Ok(Assignor::Range),
        ASSIGNOR_ROUND_ROBIN => Ok(Assignor::RoundRobin),
        _ => Err(DecodeError::BadField("unknown assignor")),
    }
}

fn assignor_to_wire(a: Assignor) -> u8 {
    match a {
        Assignor::Range => ASSIGNOR_RANGE,
        Assignor::RoundRobin => ASSIGNOR_ROUND_ROBIN,
    }
}

fn spec_from_wire(kind: u8, timestamp: i64) -> Result<OffsetSpec, DecodeError> {
    match kind {
        SPEC_EARLIEST => Ok(OffsetSpec::Earliest),
        SPEC_LATEST => Ok(OffsetSpec::Latest),
        SPEC_TIMESTAMP => Ok(OffsetSpec::Timestamp(timestamp)),
        _ => Err(DecodeError::BadField("unknown offset spec kind")),
    }
}

fn spec_to_wire(s: OffsetSpec) -> (u8, i64) {
    match s {
        OffsetSpec::Earliest => (SPEC_EARLIEST, 0),
        OffsetSpec::Latest => (SPEC_LATEST, 0),
        OffsetSpec::Timestamp(ts) => (SPEC_TIMESTAMP, ts),
    }
}

// ---------------------------------------------------------------- encoding helpers

fn enc_str<'a>(fbb: &mut Fbb<'a>, s: &str) -> Option<WIPOffset<&'a str>> {
    Some(fbb.create_string(s))
}

fn enc_strs<'a>(fbb: &mut Fbb<'a>, v: &[String]) -> Option<TableVec<'a, &'a str>> {
    let offsets: Vec<_> = v.iter().map(|s| fbb.create_string(s)).collect();
    Some(fbb.create_vector(&offsets))
}

fn enc_tables<'a, T, U>(
    fbb: &mut Fbb<'a>,
    items: &[T],
    mut f: impl FnMut(&mut Fbb<'a>, &T) -> WIPOffset<U>,
) -> Option<TableVec<'a, U>> {
    let offsets: Vec<_> = items.iter().map(|item| f(fbb, item)).collect();
    Some(fbb.create_vector(&offsets))
}

/// Longest prefix of `s` within [`limits::STRING_LEN_MAX`] bytes, cut at a char boundary.
fn truncate_message(s: &str) -> &str {
    let mut end = s.len().min(limits::STRING_LEN_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn build_request(header: &RequestHeader) -> Fbb<'static> {
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    let (body_type, body) = enc_request_body(&mut fbb, &header.request);
    let args = fb::RequestArgs { correlation_id: header.correlation_id, body_type, body: Some(body) };
    let root = fb::Request::create(&mut fbb, &args);
    fbb.finish_minimal(root);
    fbb
}

fn build_response(header: &ResponseHeader) -> Fbb<'static> {
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    let message = header.message.as_deref().map(|m| fbb.create_string(truncate_message(m)));
    let (body_type, body) = enc_response_body(&mut fbb, &header.response);
    let args = fb::ResponseArgs {
        correlation_id: header.correlation_id,
        error: header.error.code(),
        message,
        body_type,
        body,
        throttle_time_ms: header.throttle_ms,
    };
    let root = fb::Response::create(&mut fbb, &args);
    fbb.finish_minimal(root);
    fbb
}

// ---------------------------------------------------------------- requests: encode

type Union = WIPOffset<UnionWIPOffset>;

fn enc_request_body(fbb: &mut Fbb<'_>, r: &Request) -> (fb::RequestBody, Union) {
    use fb::RequestBody as B;
    match r {
        Request::Handshake(m) => (B::HandshakeRequest, enc_handshake_req(fbb, m).as_union_value()),
        Request::Metadata(m) => {
            let topics = enc_strs(fbb, &m.topics);
            (B::MetadataRequest, fb::MetadataRequest::create(fbb, &fb::MetadataRequestArgs { topics }).as_union_value())
        }
        Request::CreateTopic(m) => (B::CreateTopicRequest, enc_create_topic_req(fbb, m).as_union_value()),
        Request::DeleteTopic(m) => {
            let name = enc_str(fbb, &m.name);
            let args = fb::DeleteTopicRequestArgs { name };
            (B::DeleteTopicRequest, fb::DeleteTopicRequest::create(fbb, &args).as_union_value())
        }
        Request::ListTopics => {
            let args = fb::ListTopicsRequestArgs {};
            (B::ListTopicsRequest, fb::ListTopicsRequest::create(fbb, &args).as_union_value())
        }
        Request::InitProducerId => {
            let args = fb::InitProducerIdRequestArgs {};
            (B::InitProducerIdRequest, fb::InitProducerIdRequest::create(fbb, &args).as_union_value())
        }
        Request::Produce(m) => (B::ProduceRequest, enc_produce_req(fbb, m).as_union_value()),
        Request::Fetch(m) => (B::FetchRequest, enc_fetch_req(fbb, m).as_union_value()),
        Request::ListOffsets(m) => (B::ListOffsetsRequest, enc_list_offsets_req(fbb, m).as_union_value()),
        Request::JoinGroup(m) => (B::JoinGroupRequest, enc_join_group_req(fbb, m).as_union_value()),
        Request::SyncGroup(m) => (B::SyncGroupRequest, enc_sync_group_req(fbb, m).as_union_value()),
        Request::Heartbeat(m) => (B::HeartbeatRequest, enc_heartbeat_req(fbb, m).as_union_value()),
        Request::LeaveGroup(m) => (B::LeaveGroupRequest, enc_leave_group_req(fbb, m).as_union_value()),
        Request::OffsetCommit(m) => (B::OffsetCommitRequest, enc_offset_commit_req(fbb, m).as_union_value()),
        Request::OffsetFetch(m) => (B::OffsetFetchRequest, enc_offset_fetch_req(fbb, m).as_union_value()),
        Request::ListGroups => {
            let args = fb::ListGroupsRequestArgs {};
            (B::ListGroupsRequest, fb::ListGroupsRequest::create(fbb, &args).as_union_value())
        }
        Request::DescribeGroup(m) => {
            let group_id = enc_str(fbb, &m.group_id);
            let args = fb::DescribeGroupRequestArgs { group_id };
            (B::DescribeGroupRequest, fb::DescribeGroupRequest::create(fbb, &args).as_union_value())
        }
        Request::ReplicaAppend(m) => (B::ReplicaAppendRequest, enc_replica_append_req(fbb, m).as_union_value()),
        Request::ReplicaAck(m) => (B::ReplicaAckRequest, enc_replica_ack_req(fbb, m).as_union_value()),
        Request::DeleteGroup(m) => {
            let group_id = enc_str(fbb, &m.group_id);
            let args = fb::DeleteGroupRequestArgs { group_id };
            (B::DeleteGroupRequest, fb::DeleteGroupRequest::create(fbb, &args).as_union_value())
        }
        Request::AlterTopicConfig(m) => {
            (B::AlterTopicConfigRequest, enc_alter_topic_config_req(fbb, m).as_union_value())
        }
        Request::CreatePartitions(m) => {
            let args = fb::CreatePartitionsRequestArgs { name: enc_str(fbb, &m.name), partitions: m.partitions };
            (B::CreatePartitionsRequest, fb::CreatePartitionsRequest::create(fbb, &args).as_union_value())
        }
        Request::Authenticate(m) => {
            let args = fb::AuthenticateRequestArgs {
                mechanism: enc_str(fbb, &m.mechanism),
                auth_bytes: Some(fbb.create_vector(&m.auth_bytes)),
            };
            (B::AuthenticateRequest, fb::AuthenticateRequest::create(fbb, &args).as_union_value())
        }
        Request::AlterUser(m) => (B::AlterUserRequest, enc_alter_user_req(fbb, m).as_union_value()),
        Request::ListUsers => {
            (B::ListUsersRequest, fb::ListUsersRequest::create(fbb, &fb::ListUsersRequestArgs {}).as_union_value())
        }
        Request::AlterAcl(m) => {
            let entry = Some(enc_acl_entry(fbb, &m.entry));
            let args = fb::AlterAclRequestArgs { op: if m.add { ACL_ADD } else { ACL_REMOVE }, entry };
            (B::AlterAclRequest, fb::AlterAclRequest::create(fbb, &args).as_union_value())
        }
        Request::ListAcls => {
            (B::ListAclsRequest, fb::ListAclsRequest::create(fbb, &fb::ListAclsRequestArgs {}).as_union_value())
        }
    }
}

// ---------------------------------------------------------------- security (issue 20)

const USER_UPSERT: u8 = 0;
const USER_DELETE: u8 = 1;
const ACL_ADD: u8 = 0;
const ACL_REMOVE: u8 = 1;

fn enc_alter_user_req<'a>(fbb: &mut Fbb<'a>, m: &AlterUserRequest) -> WIPOffset<fb::AlterUserRequest<'a>> {
    let (op, name, credentials) = match m {
        AlterUserRequest::Upsert { name, credentials } => (USER_UPSERT, name, credentials.as_slice()),
        AlterUserRequest::Delete { name } => (USER_DELETE, name, &[][..]),
    };
    let name = enc_str(fbb, name);
    let credentials = enc_tables(fbb, credentials, |fbb, c| {
        let args = fb::ScramCredentialEntryArgs {
            mechanism: enc_str(fbb, &c.mechanism),
            salt: Some(fbb.create_vector(&c.salt)),
            iterations: c.iterations,
            stored_key: Some(fbb.create_vector(&c.stored_key)),
            server_key: Some(fbb.create_vector(&c.server_key)),
        };
        fb::ScramCredentialEntry::create(fbb, &args)
    });
    fb::AlterUserRequest::create(fbb, &fb::AlterUserRequestArgs { op, name, credentials })
}

fn dec_alter_user_req(t: fb::AlterUserRequest<'_>) -> Result<AlterUserRequest, DecodeError> {
    let name = string(t.name())?;
    match t.op() {
        USER_UPSERT => {
            let credentials = list(t.credentials(), |c| {
                Ok(ScramCredentialEntry {
                    mechanism: string(c.mechanism())?,
                    salt: copied(c.salt())?,
                    iterations: c.iterations(),
                    stored_key: copied(c.stored_key())?,
                    server_key: copied(c.server_key())?,
                })
            })?;
            Ok(AlterUserRequest::Upsert { name, credentials })
        }
        USER_DELETE => Ok(AlterUserRequest::Delete { name }),
        _ => Err(DecodeError::BadField("unknown user operation")),
    }
}

fn enc_acl_entry<'a>(fbb: &mut Fbb<'a>, e: &AclEntry) -> WIPOffset<fb::AclEntry<'a>> {
    let resource = match e.resource {
        AclResource::Topic => 0,
        AclResource::Group => 1,
        AclResource::Cluster => 2,
    };
    let operation = match e.operation {
        AclOperation::Read => 0,
        AclOperation::Write => 1,
        AclOperation::Describe => 2,
        AclOperation::Admin => 3,
    };
    let args = fb::AclEntryArgs {
        principal: enc_str(fbb, &e.principal),
        resource,
        name: enc_str(fbb, &e.name),
        prefix: e.prefix,
        operation,
    };
    fb::AclEntry::create(fbb, &args)
}

fn dec_acl_entry(t: fb::AclEntry<'_>) -> Result<AclEntry, DecodeError> {
    let resource = match t.resource() {
        0 => AclResource::Topic,
        1 => AclResource::Group,
        2 => AclResource::Cluster,
        _ => return Err(DecodeError::BadField("unknown ACL resource")),
    };
    let operation = match t.operation() {
        0 => AclOperation::Read,
        1 => AclOperation::Write,
        2 => AclOperation::Describe,
        3 => AclOperation::Admin,
        _ => return Err(DecodeError::BadField("unknown ACL operation")),
    };
    Ok(AclEntry { principal: string(t.principal())?, resource, name: string(t.name())?, prefix: t.prefix(), operation })
}

fn enc_config_entries<'a>(fbb: &mut Fbb<'a>, v: &[(String, String)]) -> Option<TableVec<'a, fb::ConfigEntry<'a>>> {
    enc_tables(fbb, v, |fbb, (k, v)| {
        let args = fb::ConfigEntryArgs { key: enc_str(fbb, k), value: enc_str(fbb, v) };
        fb::ConfigEntry::create(fbb, &args)
    })
}

fn enc_alter_topic_config_req<'a>(
    fbb: &mut Fbb<'a>,
    m: &AlterTopicConfigRequest,
) -> WIPOffset<fb::AlterTopicConfigRequest<'a>> {
    let name = enc_str(fbb, &m.name);
    let set = enc_config_entries(fbb, &m.set);
    let delete = enc_strs(fbb, &m.delete);
    fb::AlterTopicConfigRequest::create(fbb, &fb::AlterTopicConfigRequestArgs { name, set, delete })
}

fn enc_handshake_req<'a>(fbb: &mut Fbb<'a>, m: &HandshakeRequest) -> WIPOffset<fb::HandshakeRequest<'a>> {
    let client_id = enc_str(fbb, &m.client_id);
    fb::HandshakeRequest::create(fbb, &fb::HandshakeRequestArgs { protocol_version: m.protocol_version, client_id })
}

fn enc_create_topic_req<'a>(fbb: &mut Fbb<'a>, m: &CreateTopicRequest) -> WIPOffset<fb::CreateTopicRequest<'a>> {
    let name = enc_str(fbb, &m.name);
    let configs = enc_config_entries(fbb, &m.configs);
    let args = fb::CreateTopicRequestArgs {
        name,
        partitions: m.partitions,
        replication_factor: m.replication_factor,
        configs,
    };
    fb::CreateTopicRequest::create(fbb, &args)
}

fn enc_produce_req<'a>(fbb: &mut Fbb<'a>, m: &ProduceRequest) -> WIPOffset<fb::ProduceRequest<'a>> {
    let partitions = enc_tables(fbb, &m.partitions, |fbb, p| {
        let topic = enc_str(fbb, &p.topic);
        let args = fb::ProducePartitionArgs { topic, partition: p.partition, bytes_len: p.bytes_len };
        fb::ProducePartition::create(fbb, &args)
    });
    let args = fb::ProduceRequestArgs { acks: acks_to_wire(m.acks), timeout_ms: m.timeout_ms, partitions };
    fb::ProduceRequest::create(fbb, &args)
}

fn enc_fetch_req<'a>(fbb: &mut Fbb<'a>, m: &FetchRequest) -> WIPOffset<fb::FetchRequest<'a>> {
    let partitions = enc_tables(fbb, &m.partitions, |fbb, p| {
        let topic = enc_str(fbb, &p.topic);
        let args = fb::FetchPartitionArgs { topic, partition: p.partition, offset: p.offset, max_bytes: p.max_bytes };
        fb::FetchPartition::create(fbb, &args)
    });
    let args =
        fb::FetchRequestArgs { max_wait_ms: m.max_wait_ms, min_bytes: m.min_bytes, max_bytes: m.max_bytes, partitions };
    fb::FetchRequest::create(fbb, &args)
}

fn enc_list_offsets_req<'a>(fbb: &mut Fbb<'a>, m: &ListOffsetsRequest) -> WIPOffset<fb::ListOffsetsRequest<'a>> {
    let partitions = enc_tables(fbb, &m.partitions, |fbb, p| {
        let topic = enc_str(fbb, &p.topic);
        let (spec_kind, timestamp) = spec_to_wire(p.spec);
        let args = fb::ListOffsetsPartitionArgs { topic, partition: p.partition, spec_kind, timestamp };
        fb::ListOffsetsPartition::create(fbb, &args)
    });
    fb::ListOffsetsRequest::create(fbb, &fb::ListOffsetsRequestArgs { partitions })
}

fn enc_join_group_req<'a>(fbb: &mut Fbb<'a>, m: &JoinGroupRequest) -> WIPOffset<fb::JoinGroupRequest<'a>> {
    let args = fb::JoinGroupRequestArgs {
        group_id: enc_str(fbb, &m.group_id),
        member_id: enc_str(fbb, &m.member_id),
        client_id: enc_str(fbb, &m.client_id),
        session_timeout_ms: m.session_timeout_ms,
        rebalance_timeout_ms: m.rebalance_timeout_ms,
        topics: enc_strs(fbb, &m.topics),
        assignor: assignor_to_wire(m.assignor),
    };
    fb::JoinGroupRequest::create(fbb, &args)
}

fn enc_sync_group_req<'a>(fbb: &mut Fbb<'a>, m: &SyncGroupRequest) -> WIPOffset<fb::SyncGroupRequest<'a>> {
    let args = fb::SyncGroupRequestArgs {
        group_id: enc_str(fbb, &m.group_id),
        generation: m.generation,
        member_id: enc_str(fbb, &m.member_id),
    };
    fb::SyncGroupRequest::create(fbb, &args)
}

fn enc_heartbeat_req<'a>(fbb: &mut Fbb<'a>, m: &HeartbeatRequest) -> WIPOffset<fb::HeartbeatRequest<'a>> {
    let args = fb::HeartbeatRequestArgs {
        group_id: enc_str(fbb, &m.group_id),
        generation: m.generation,
        member_id: enc_str(fbb, &m.member_id),
    };
    fb::HeartbeatRequest::create(fbb, &args)
}

fn enc_leave_group_req<'a>(fbb: &mut Fbb<'a>, m: &LeaveGroupRequest) -> WIPOffset<fb::LeaveGroupRequest<'a>> {
    let args = fb::LeaveGroupRequestArgs { group_id: enc_str(fbb, &m.group_id), member_id: enc_str(fbb, &m.member_id) };
    fb::LeaveGroupRequest::create(fbb, &args)
}

fn enc_committed_offsets<'a>(
    fbb: &mut Fbb<'a>,
    v: &[CommittedOffset],
) -> Option<TableVec<'a, fb::CommittedOffset<'a>>> {
    enc_tables(fbb, v, |fbb, o| {
        let args = fb::CommittedOffsetArgs {
            topic: enc_str(fbb, &o.topic),
            partition: o.partition,
            offset: o.offset,
            metadata: enc_str(fbb, &o.metadata),
        };
        fb::CommittedOffset::create(fbb, &args)
    })
}

fn enc_topic_partitions<'a>(fbb: &mut Fbb<'a>, v: &[TopicPartition]) -> Option<TableVec<'a, fb::TopicPartition<'a>>> {
    enc_tables(fbb, v, |fbb, tp| {
        let args = fb::TopicPartitionArgs { topic: enc_str(fbb, &tp.topic), partition: tp.partition };
        fb::TopicPartition::create(fbb, &args)
    })
}

fn enc_offset_commit_req<'a>(fbb: &mut Fbb<'a>, m: &OffsetCommitRequest) -> WIPOffset<fb::OffsetCommitRequest<'a>> {
    let args = fb::OffsetCommitRequestArgs {
        group_id: enc_str(fbb, &m.group_id),
        generation: m.generation,
        member_id: enc_str(fbb, &m.member_id),
        offsets: enc_committed_offsets(fbb, &m.offsets),
    };
    fb::OffsetCommitRequest::create(fbb, &args)
}

fn enc_offset_fetch_req<'a>(fbb: &mut Fbb<'a>, m: &OffsetFetchRequest) -> WIPOffset<fb::OffsetFetchRequest<'a>> {
    let args = fb::OffsetFetchRequestArgs {
        group_id: enc_str(fbb, &m.group_id),
        partitions: enc_topic_partitions(fbb, &m.partitions),
    };
    fb::OffsetFetchRequest::create(fbb, &args)
}

fn enc_replica_append_req<'a>(fbb: &mut Fbb<'a>, m: &ReplicaAppendRequest) -> WIPOffset<fb::ReplicaAppendRequest<'a>> {
    let args = fb::ReplicaAppendRequestArgs {
        topic: enc_str(fbb, &m.topic),
        partition: m.partition,
        epoch: m.epoch,
        start_offset: m.start_offset,
        commit_offset: m.commit_offset,
        bytes_len: m.bytes_len,
        from_node: m.from_node,
        prev_offset: m.prev_offset,
        prev_epoch: m.prev_epoch,
        batch_epochs: Some(fbb.create_vector(&m.batch_epochs)),
    };
    fb::ReplicaAppendRequest::create(fbb, &args)
}

fn enc_replica_ack_req<'a>(fbb: &mut Fbb<'a>, m: &ReplicaAckRequest) -> WIPOffset<fb::ReplicaAckRequest<'a>> {
    let args = fb::ReplicaAckRequestArgs {
        topic: enc_str(fbb, &m.topic),
        partition: m.partition,
        epoch: m.epoch,
        durable_offset: m.durable_offset,
        from_node: m.from_node,
        error: m.error.code(),
        log_end_offset: m.log_end_offset,
        log_end_epoch: m.log_end_epoch,
        durable_epoch: m.durable_epoch,
    };
    fb::ReplicaAckRequest::create(fbb, &args)
}

// ---------------------------------------------------------------- requests: decode

fn decode_request_body(root: &fb::Request<'_>) -> Result<Request, DecodeError> {
    use fb::RequestBody as B;
    Ok(match root.body_type() {
        B::HandshakeRequest => Request::Handshake(dec_handshake_req(body(root.body_as_handshake_request())?)?),
        B::MetadataRequest => {
            let t = body(root.body_as_metadata_request())?;
            Request::Metadata(MetadataRequest { topics: strings(t.topics())? })
        }
        B::CreateTopicRequest => {
            Request::CreateTopic(dec_create_topic_req(body(root.body_as_create_topic_request())?)?)
        }
        B::DeleteTopicRequest => {
            let t = body(root.body_as_delete_topic_request())?;
            Request::DeleteTopic(DeleteTopicRequest { name: string(t.name())? })
        }
        B::ListTopicsRequest => body(root.body_as_list_topics_request()).map(|_| Request::ListTopics)?,
        B::InitProducerIdRequest => body(root.body_as_init_producer_id_request()).map(|_| Request::InitProducerId)?,
        B::ProduceRequest => Request::Produce(dec_produce_req(body(root.body_as_produce_request())?)?),
        B::FetchRequest => Request::Fetch(dec_fetch_req(body(root.body_as_fetch_request())?)?),
        B::ListOffsetsRequest => {
            Request::ListOffsets(dec_list_offsets_req(body(root.body_as_list_offsets_request())?)?)
        }
        B::JoinGroupRequest => Request::JoinGroup(dec_join_group_req(body(root.body_as_join_group_request())?)?),
        B::SyncGroupRequest => {
            let t = body(root.body_as_sync_group_request())?;
            let (group_id, generation, member_id) = (string(t.group_id())?, t.generation(), string(t.member_id())?);
            Request::SyncGroup(SyncGroupRequest { group_id, generation, member_id })
        }
        B::HeartbeatRequest => {
            let t = body(root.body_as_heartbeat_request())?;
            let (group_id, generation, member_id) = (string(t.group_id())?, t.generation(), string(t.member_id())?);
            Request::Heartbeat(HeartbeatRequest { group_id, generation, member_id })
        }
        B::LeaveGroupRequest => {
            let t = body(root.body_as_leave_group_request())?;
            Request::LeaveGroup(LeaveGroupRequest {
                group_id: string(t.group_id())?,
                member_id: string(t.member_id())?,
            })
        }
        B::OffsetCommitRequest => {
            Request::OffsetCommit(dec_offset_commit_req(body(root.body_as_offset_commit_request())?)?)
        }
        B::OffsetFetchRequest => {
            let t = body(root.body_as_offset_fetch_request())?;
            let partitions = dec_topic_partitions(t.partitions())?;
            Request::OffsetFetch(OffsetFetchRequest { group_id: string(t.group_id())?, partitions })
        }
        B::ListGroupsRequest => body(root.body_as_list_groups_request()).map(|_| Request::ListGroups)?,
        B::DescribeGroupRequest => {
            let t = body(root.body_as_describe_group_request())?;
            Request::DescribeGroup(DescribeGroupRequest { group_id: string(t.group_id())? })
        }
        B::ReplicaAppendRequest => {
            Request::ReplicaAppend(dec_replica_append_req(body(root.body_as_replica_append_request())?)?)
        }
        B::ReplicaAckRequest => Request::ReplicaAck(dec_replica_ack_req(body(root.body_as_replica_ack_request())?)?),
        B::DeleteGroupRequest => {
            let t = body(root.body_as_delete_group_request())?;
            Request::DeleteGroup(DeleteGroupRequest { group_id: string(t.group_id())? })
        }
        B::AlterTopicConfigRequest => {
            let t = body(root.body_as_alter_topic_config_request())?;
            Request::AlterTopicConfig(AlterTopicConfigRequest {
                name: string(t.name())?,
                set: list(t.set(), |c| Ok((string(c.key())?, string(c.value())?)))?,
                delete: strings(t.delete())?,
            })
        }
        B::CreatePartitionsRequest => {
            let t = body(root.body_as_create_partitions_request())?;
            Request::CreatePartitions(CreatePartitionsRequest { name: string(t.name())?, partitions: t.partitions() })
        }
        B::AuthenticateRequest => {
            let t = body(root.body_as_authenticate_request())?;
            Request::Authenticate(AuthenticateRequest {
                mechanism: string(t.mechanism())?,
                auth_bytes: copied(t.auth_bytes())?,
            })
        }
        B::AlterUserRequest => Request::AlterUser(dec_alter_user_req(body(root.body_as_alter_user_request())?)?),
        B::ListUsersRequest => body(root.body_as_list_users_request()).map(|_| Request::ListUsers)?,
        B::AlterAclRequest => {
            let t = body(root.body_as_alter_acl_request())?;
            let add = match t.op() {
                ACL_ADD => true,
                ACL_REMOVE => false,
                _ => return Err(DecodeError::BadField("unknown ACL operation kind")),
            };
            Request::AlterAcl(AlterAclRequest { add, entry: dec_acl_entry(body(t.entry())?)? })
        }
        B::ListAclsRequest => body(root.body_as_list_acls_request()).map(|_| Request::ListAcls)?,
        other => return Err(DecodeError::UnknownApi { correlation_id: root.correlation_id(), api: other.0 }),
    })
}

fn dec_handshake_req(t: fb::HandshakeRequest<'_>) -> Result<HandshakeRequest, DecodeError> {
    Ok(HandshakeRequest { protocol_version: t.protocol_version(), client_id: string(t.client_id())? })
}

fn dec_create_topic_req(t: fb::CreateTopicRequest<'_>) -> Result<CreateTopicRequest, DecodeError> {
    Ok(CreateTopicRequest {
        name: string(t.name())?,
        partitions: t.partitions(),
        replication_factor: t.replication_factor(),
        configs: list(t.configs(), |c| Ok((string(c.key())?, string(c.value())?)))?,
    })
}

fn dec_produce_req(t: fb::ProduceRequest<'_>) -> Result<ProduceRequest, DecodeError> {
    Ok(ProduceRequest {
        acks: acks_from_wire(t.acks())?,
        timeout_ms: t.timeout_ms(),
        partitions: list(t.partitions(), |p| {
            Ok(ProducePartition { topic: string(p.topic())?, partition: p.partition(), bytes_len: p.bytes_len() })
        })?,
    })
}

fn dec_fetch_req(t: fb::FetchRequest<'_>) -> Result<FetchRequest, DecodeError> {
    Ok(FetchRequest {
        max_wait_ms: t.max_wait_ms(),
        min_bytes: t.min_bytes(),
        max_bytes: t.max_bytes(),
        partitions: list(t.partitions(), |p| {
            Ok(FetchPartition {
                topic: string(p.topic())?,
                partition: p.partition(),
                offset: p.offset(),
                max_bytes: p.max_bytes(),
            })
        })?,
    })
}

fn dec_list_offsets_req(t: fb::ListOffsetsRequest<'_>) -> Result<ListOffsetsRequest, DecodeError> {
    let partitions = list(t.partitions(), |p| {
        Ok(ListOffsetsPartition {
            topic: string(p.topic())?,
            partition: p.partition(),
            spec: spec_from_wire(p.spec_kind(), p.timestamp())?,
        })
    })?;
    Ok(ListOffsetsRequest { partitions })
}

fn dec_join_group_req(t: fb::JoinGroupRequest<'_>) -> Result<JoinGroupRequest, DecodeError> {
    Ok(JoinGroupRequest {
        group_id: string(t.group_id())?,
        member_id: string(t.member_id())?,
        client_id: string(t.client_id())?,
        session_timeout_ms: t.session_timeout_ms(),
        rebalance_timeout_ms: t.rebalance_timeout_ms(),
        topics: strings(t.topics())?,
        assignor: assignor_from_wire(t.assignor())?,
    })
}

fn dec_committed_offsets<'a>(
    v: Option<Vector<'a, ForwardsUOffset<fb::CommittedOffset<'a>>>>,
) -> Result<Vec<CommittedOffset>, DecodeError> {
    list(v, |o| {
        Ok(CommittedOffset {
            topic: string(o.topic())?,
            partition: o.partition(),
            offset: o.offset(),
            metadata: string(o.metadata())?,
        })
    })
}

fn dec_topic_partitions<'a>(
    v: Option<Vector<'a, ForwardsUOffset<fb::TopicPartition<'a>>>>,
) -> Result<Vec<TopicPartition>, DecodeError> {
    list(v, |tp| Ok(TopicPartition { topic: string(tp.topic())?, partition: tp.partition() }))
}

fn dec_offset_commit_req(t: fb::OffsetCommitRequest<'_>) -> Result<OffsetCommitRequest, DecodeError> {
    Ok(OffsetCommitRequest {
        group_id: string(t.group_id())?,
        generation: t.generation(),
        member_id: string(t.member_id())?,
        offsets: dec_committed_offsets(t.offsets())?,
    })
}

fn dec_replica_append_req(t: fb::ReplicaAppendRequest<'_>) -> Result<ReplicaAppendRequest, DecodeError> {
    Ok(ReplicaAppendRequest {
        topic: string(t.topic())?,
        partition: t.partition(),
        epoch: t.epoch(),
        start_offset: t.start_offset(),
        commit_offset: t.commit_offset(),
        bytes_len: t.bytes_len(),
        from_node: t.from_node(),
        prev_offset: t.prev_offset(),
        prev_epoch: t.prev_epoch(),
        batch_epochs: t.batch_epochs().map(|v| v.iter().collect()).unwrap_or_default(),
    })
}

fn dec_replica_ack_req(t: fb::ReplicaAckRequest<'_>) -> Result<ReplicaAckRequest, DecodeError> {
    Ok(ReplicaAckRequest {
        topic: string(t.topic())?,
        partition: t.partition(),
        epoch: t.epoch(),
        durable_offset: t.durable_offset(),
        from_node: t.from_node(),
        error: ErrorCode::from_code(t.error()),
        log_end_offset: t.log_end_offset(),
        log_end_epoch: t.log_end_epoch(),
        durable_epoch: t.durable_epoch(),
    })
}

// ---------------------------------------------------------------- responses: encode

fn enc_response_body(fbb: &mut Fbb<'_>, r: &Response) -> (fb::ResponseBody, Option<Union>) {
    use fb::ResponseBody as B;
    let (ty, off) = match r {
        Response::Empty => return (B::NONE, None),
        Response::Handshake(m) => (B::HandshakeResponse, enc_handshake_resp(fbb, m).as_union_value()),
        Response::Metadata(m) => (B::MetadataResponse, enc_metadata_resp(fbb, m).as_union_value()),
        Response::CreateTopic(m) => {
            let args = fb::CreateTopicResponseArgs { name: enc_str(fbb, &m.name), partitions: m.partitions };
            (B::CreateTopicResponse, fb::CreateTopicResponse::create(fbb, &args).as_union_value())
        }
        Response::ListTopics(m) => (B::ListTopicsResponse, enc_list_topics_resp(fbb, m).as_union_value()),
        Response::InitProducerId(m) => {
            let args = fb::InitProducerIdResponseArgs { producer_id: m.producer_id, producer_epoch: m.producer_epoch };
            (B::InitProducerIdResponse, fb::InitProducerIdResponse::create(fbb, &args).as_union_value())
        }
        Response::Produce(m) => (B::ProduceResponse, enc_produce_resp(fbb, m).as_union_value()),
        Response::Fetch(m) => (B::FetchResponse, enc_fetch_resp(fbb, m).as_union_value()),
        Response::ListOffsets(m) => (B::ListOffsetsResponse, enc_list_offsets_resp(fbb, m).as_union_value()),
        Response::JoinGroup(m) => (B::JoinGroupResponse, enc_join_group_resp(fbb, m).as_union_value()),
        Response::SyncGroup(m) => {
            let assignment = enc_topic_partitions(fbb, &m.assignment);
            let args = fb::SyncGroupResponseArgs { assignment };
            (B::SyncGroupResponse, fb::SyncGroupResponse::create(fbb, &args).as_union_value())
        }
        Response::OffsetFetch(m) => {
            let offsets = enc_committed_offsets(fbb, &m.offsets);
            let args = fb::OffsetFetchResponseArgs { offsets };
            (B::OffsetFetchResponse, fb::OffsetFetchResponse::create(fbb, &args).as_union_value())
        }
        Response::ListGroups(m) => (B::ListGroupsResponse, enc_list_groups_resp(fbb, m).as_union_value()),
        Response::DescribeGroup(m) => (B::DescribeGroupResponse, enc_describe_group_resp(fbb, m).as_union_value()),
        Response::Authenticate(m) => {
            let args = fb::AuthenticateResponseArgs {
                auth_bytes: Some(fbb.create_vector(&m.auth_bytes)),
                principal: enc_str(fbb, &m.principal),
            };
            (B::AuthenticateResponse, fb::AuthenticateResponse::create(fbb, &args).as_union_value())
        }
        Response::ListUsers(m) => {
            let users = enc_tables(fbb, &m.users, |fbb, u| {
                let args = fb::UserInfoArgs {
                    name: enc_str(fbb, &u.name),
                    mechanisms: enc_strs(fbb, &u.mechanisms),
                    superuser: u.superuser,
                };
                fb::UserInfo::create(fbb, &args)
            });
            (
                B::ListUsersResponse,
                fb::ListUsersResponse::create(fbb, &fb::ListUsersResponseArgs { users }).as_union_value(),
            )
        }
        Response::ListAcls(m) => {
            let entries = enc_tables(fbb, &m.entries, enc_acl_entry);
            (
                B::ListAclsResponse,
                fb::ListAclsResponse::create(fbb, &fb::ListAclsResponseArgs { entries }).as_union_value(),
            )
        }
        Response::ReplicaAppend(m) => {
            let args = fb::ReplicaAppendResponseArgs {
                error: m.error.code(),
                epoch: m.epoch,
                log_end_offset: m.log_end_offset,
                durable_offset: m.durable_offset,
            };
            (B::ReplicaAppendResponse, fb::ReplicaAppendResponse::create(fbb, &args).as_union_value())
        }
    };
    (ty, Some(off))
}

fn enc_handshake_resp<'a>(fbb: &mut Fbb<'a>, m: &HandshakeResponse) -> WIPOffset<fb::HandshakeResponse<'a>> {
    let args = fb::HandshakeResponseArgs {
        protocol_version_min: m.protocol_version_min,
        protocol_version_max: m.protocol_version_max,
        node_id: m.node_id,
        frame_len_max: m.frame_len_max,
    };
    fb::HandshakeResponse::create(fbb, &args)
}

fn enc_metadata_resp<'a>(fbb: &mut Fbb<'a>, m: &MetadataResponse) -> WIPOffset<fb::MetadataResponse<'a>> {
    let nodes = enc_tables(fbb, &m.nodes, |fbb, n| {
        let args = fb::NodeInfoArgs {
            node_id: n.node_id,
            host: enc_str(fbb, &n.host),
            port: n.port,
            shard_ports: Some(fbb.create_vector(&n.shard_ports)),
        };
        fb::NodeInfo::create(fbb, &args)
    });
    let topics = enc_tables(fbb, &m.topics, |fbb, t| {
        let name = enc_str(fbb, &t.name);
        let partitions = enc_tables(fbb, &t.partitions, enc_partition_metadata);
        fb::TopicMetadata::create(fbb, &fb::TopicMetadataArgs { name, error: t.error.code(), partitions })
    });
    fb::MetadataResponse::create(fbb, &fb::MetadataResponseArgs { nodes, topics })
}

fn enc_partition_metadata<'a>(fbb: &mut Fbb<'a>, p: &PartitionMetadata) -> WIPOffset<fb::PartitionMetadata<'a>> {
    let args = fb::PartitionMetadataArgs {
        partition: p.partition,
        error: p.error.code(),
        leader_node: p.leader_node,
        leader_shard: p.leader_shard,
        replicas: Some(fbb.create_vector(&p.replicas)),
        epoch: p.epoch,
        log_start_offset: p.log_start_offset,
        log_end_offset: p.log_end_offset,
        commit_offset: p.commit_offset,
        preferred_leader: p.preferred_leader,
    };
    fb::PartitionMetadata::create(fbb, &args)
}

fn enc_list_topics_resp<'a>(fbb: &mut Fbb<'a>, m: &ListTopicsResponse) -> WIPOffset<fb::ListTopicsResponse<'a>> {
    let topics = enc_tables(fbb, &m.topics, |fbb, t| {
        let name = enc_str(fbb, &t.name);
        let configs = enc_tables(fbb, &t.configs, |fbb, c| {
            let args = fb::TopicConfigValueArgs {
                key: enc_str(fbb, &c.key),
                value: enc_str(fbb, &c.value),
                is_override: c.is_override,
            };
            fb::TopicConfigValue::create(fbb, &args)
        });
        let args =
            fb::TopicSummaryArgs { name, partitions: t.partitions, replication_factor: t.replication_factor, configs };
        fb::TopicSummary::create(fbb, &args)
    });
    fb::ListTopicsResponse::create(fbb, &fb::ListTopicsResponseArgs { topics })
}

fn enc_produce_resp<'a>(fbb: &mut Fbb<'a>, m: &ProduceResponse) -> WIPOffset<fb::ProduceResponse<'a>> {
    let partitions = enc_tables(fbb, &m.partitions, |fbb, p| {
        let args = fb::ProducePartitionResponseArgs {
            topic: enc_str(fbb, &p.topic),
            partition: p.partition,
            error: p.error.code(),
            base_offset: p.base_offset,
            log_end_offset: p.log_end_offset,
            log_start_offset: p.log_start_offset,
        };
        fb::ProducePartitionResponse::create(fbb, &args)
    });
    fb::ProduceResponse::create(fbb, &fb::ProduceResponseArgs { partitions })
}

fn enc_fetch_resp<'a>(fbb: &mut Fbb<'a>, m: &FetchResponse) -> WIPOffset<fb::FetchResponse<'a>> {
    let partitions = enc_tables(fbb, &m.partitions, |fbb, p| {
        let args = fb::FetchPartitionResponseArgs {
            topic: enc_str(fbb, &p.topic),
            partition: p.partition,
            error: p.error.code(),
            log_start_offset: p.log_start_offset,
            log_end_offset: p.log_end_offset,
            high_watermark: p.high_watermark,
            bytes_len: p.bytes_len,
        };
        fb::FetchPartitionResponse::create(fbb, &args)
    });
    fb::FetchResponse::create(fbb, &fb::FetchResponseArgs { partitions })
}

fn enc_list_offsets_resp<'a>(fbb: &mut Fbb<'a>, m: &ListOffsetsResponse) -> WIPOffset<fb::ListOffsetsResponse<'a>> {
    let partitions = enc_tables(fbb, &m.partitions, |fbb, p| {
        let args = fb::ListOffsetsPartitionResponseArgs {
            topic: enc_str(fbb, &p.topic),
            partition: p.partition,
            error: p.error.code(),
            offset: p.offset,
            timestamp: p.timestamp,
        };
        fb::ListOffsetsPartitionResponse::create(fbb, &args)
    });
    fb::ListOffsetsResponse::create(fbb, &fb::ListOffsetsResponseArgs { partitions })
}

fn enc_join_group_resp<'a>(fbb: &mut Fbb<'a>, m: &JoinGroupResponse) -> WIPOffset<fb::JoinGroupResponse<'a>> {
    let args = fb::JoinGroupResponseArgs {
        generation: m.generation,
        member_id: enc_str(fbb, &m.member_id),
        leader_member_id: enc_str(fbb, &m.leader_member_id),
        members: enc_strs(fbb, &m.members),
    };
    fb::JoinGroupResponse::create(fbb, &args)
}

fn enc_list_groups_resp<'a>(fbb: &mut Fbb<'a>, m: &ListGroupsResponse) -> WIPOffset<fb::ListGroupsResponse<'a>> {
    let groups = enc_tables(fbb, &m.groups, |fbb, g| {
        let args = fb::GroupSummaryArgs {
            group_id: enc_str(fbb, &g.group_id),
            state: enc_str(fbb, &g.state),
            member_count: g.member_count,
        };
        fb::GroupSummary::create(fbb, &args)
    });
    fb::ListGroupsResponse::create(fbb, &fb::ListGroupsResponseArgs { groups })
}

fn enc_describe_group_resp<'a>(
    fbb: &mut Fbb<'a>,
    m: &DescribeGroupResponse,
) -> WIPOffset<fb::DescribeGroupResponse<'a>> {
    let members = enc_tables(fbb, &m.members, |fbb, mem| {
        let args = fb::GroupMemberInfoArgs {
            member_id: enc_str(fbb, &mem.member_id),
            client_id: enc_str(fbb, &mem.client_id),
            assignment: enc_topic_partitions(fbb, &mem.assignment),
        };
        fb::GroupMemberInfo::create(fbb, &args)
    });
    let partitions = enc_tables(fbb, &m.partitions, |fbb, p| {
        let args = fb::GroupPartitionLagArgs {
            topic: enc_str(fbb, &p.topic),
            partition: p.partition,
            committed: p.committed,
            log_end_offset: p.log_end_offset,
            lag: p.lag,
        };
        fb::GroupPartitionLag::create(fbb, &args)
    });
    let args = fb::DescribeGroupResponseArgs {
        group_id: enc_str(fbb, &m.group_id),
        state: enc_str(fbb, &m.state),
        generation: m.generation,
        assignor: assignor_to_wire(m.assignor),
        members,
        partitions,
    };
    fb::DescribeGroupResponse::create(fbb, &args)
}

// ---------------------------------------------------------------- responses: decode

fn decode_response_body(root: &fb::Response<'_>) -> Result<Response, DecodeError> {
    use fb::ResponseBody as B;
    Ok(match root.body_type() {
        B::NONE => Response::Empty,
        B::HandshakeResponse => Response::Handshake(dec_handshake_resp(body(root.body_as_handshake_response())?)),
        B::MetadataResponse => Response::Metadata(dec_metadata_resp(body(root.body_as_metadata_response())?)?),
        B::CreateTopicResponse => {
            let t = body(root.body_as_create_topic_response())?;
            Response::CreateTopic(CreateTopicResponse { name: string(t.name())?, partitions: t.partitions() })
        }
        B::ListTopicsResponse => {
            Response::ListTopics(dec_list_topics_resp(body(root.body_as_list_topics_response())?)?)
        }
        B::InitProducerIdResponse => {
            let t = body(root.body_as_init_producer_id_response())?;
            let (producer_id, producer_epoch) = (t.producer_id(), t.producer_epoch());
            Response::InitProducerId(InitProducerIdResponse { producer_id, producer_epoch })
        }
        B::ProduceResponse => Response::Produce(dec_produce_resp(body(root.body_as_produce_response())?)?),
        B::FetchResponse => Response::Fetch(dec_fetch_resp(body(root.body_as_fetch_response())?)?),
        B::ListOffsetsResponse => {
            Response::ListOffsets(dec_list_offsets_resp(body(root.body_as_list_offsets_response())?)?)
        }
        B::JoinGroupResponse => Response::JoinGroup(dec_join_group_resp(body(root.body_as_join_group_response())?)?),
        B::SyncGroupResponse => {
            let t = body(root.body_as_sync_group_response())?;
            Response::SyncGroup(SyncGroupResponse { assignment: dec_topic_partitions(t.assignment())? })
        }
        B::OffsetFetchResponse => {
            let t = body(root.body_as_offset_fetch_response())?;
            Response::OffsetFetch(OffsetFetchResponse { offsets: dec_committed_offsets(t.offsets())? })
        }
        B::ListGroupsResponse => {
            Response::ListGroups(dec_list_groups_resp(body(root.body_as_list_groups_response())?)?)
        }
        B::DescribeGroupResponse => {
            Response::DescribeGroup(dec_describe_group_resp(body(root.body_as_describe_group_response())?)?)
        }
        B::ReplicaAppendResponse => {
            let t = body(root.body_as_replica_append_response())?;
            Response::ReplicaAppend(ReplicaAppendResponse {
                error: ErrorCode::from_code(t.error()),
                epoch: t.epoch(),
                log_end_offset: t.log_end_offset(),
                durable_offset: t.durable_offset(),
            })
        }
        B::AuthenticateResponse => {
            let t = body(root.body_as_authenticate_response())?;
            Response::Authenticate(AuthenticateResponse {
                auth_bytes: copied(t.auth_bytes())?,
                principal: string(t.principal())?,
            })
        }
        B::ListUsersResponse => {
            let t = body(root.body_as_list_users_response())?;
            let users = list(t.users(), |u| {
                Ok(UserInfo { name: string(u.name())?, mechanisms: strings(u.mechanisms())?, superuser: u.superuser() })
            })?;
            Response::ListUsers(ListUsersResponse { users })
        }
        B::ListAclsResponse => {
            let t = body(root.body_as_list_acls_response())?;
            Response::ListAcls(ListAclsResponse { entries: list(t.entries(), dec_acl_entry)? })
        }
        other => return Err(DecodeError::UnknownApi { correlation_id: root.correlation_id(), api: other.0 }),
    })
}

fn dec_handshake_resp(t: fb::HandshakeResponse<'_>) -> HandshakeResponse {
    HandshakeResponse {
        protocol_version_min: t.protocol_version_min(),
        protocol_version_max: t.protocol_version_max(),
        node_id: t.node_id(),
        frame_len_max: t.frame_len_max(),
    }
}

fn dec_metadata_resp(t: fb::MetadataResponse<'_>) -> Result<MetadataResponse, DecodeError> {
    let nodes = list(t.nodes(), |n| {
        Ok(NodeInfo {
            node_id: n.node_id(),
            host: string(n.host())?,
            port: n.port(),
            shard_ports: copied(n.shard_ports())?,
        })
    })?;
    let topics = list(t.topics(), |tm| {
        Ok(TopicMetadata {
            name: string(tm.name())?,
            error: ErrorCode::from_code(tm.error()),
            partitions: list(tm.partitions(), dec_partition_metadata)?,
        })
    })?;
    Ok(MetadataResponse { nodes, topics })
}

fn dec_partition_metadata(p: fb::PartitionMetadata<'_>) -> Result<PartitionMetadata, DecodeError> {
    Ok(PartitionMetadata {
        partition: p.partition(),
        error: ErrorCode::from_code(p.error()),
        leader_node: p.leader_node(),
        leader_shard: p.leader_shard(),
        replicas: copied(p.replicas())?,
        epoch: p.epoch(),
        log_start_offset: p.log_start_offset(),
        log_end_offset: p.log_end_offset(),
        commit_offset: p.commit_offset(),
        preferred_leader: p.preferred_leader(),
    })
}

fn dec_list_topics_resp(t: fb::ListTopicsResponse<'_>) -> Result<ListTopicsResponse, DecodeError> {
    let topics = list(t.topics(), |s| {
        Ok(TopicSummary {
            name: string(s.name())?,
            partitions: s.partitions(),
            replication_factor: s.replication_factor(),
            configs: list(s.configs(), |c| {
                Ok(TopicConfigValue { key: string(c.key())?, value: string(c.value())?, is_override: c.is_override() })
            })?,
        })
    })?;
    Ok(ListTopicsResponse { topics })
}

fn dec_produce_resp(t: fb::ProduceResponse<'_>) -> Result<ProduceResponse, DecodeError> {
    let partitions = list(t.partitions(), |p| {
        Ok(ProducePartitionResponse {
            topic: string(p.topic())?,
            partition: p.partition(),
            error: ErrorCode::from_code(p.error()),
            base_offset: p.base_offset(),
            log_end_offset: p.log_end_offset(),
            log_start_offset: p.log_start_offset(),
        })
    })?;
    Ok(ProduceResponse { partitions })
}

fn dec_fetch_resp(t: fb::FetchResponse<'_>) -> Result<FetchResponse, DecodeError> {
    let partitions = list(t.partitions(), |p| {
        Ok(FetchPartitionResponse {
            topic: string(p.topic())?,
            partition: p.partition(),
            error: ErrorCode::from_code(p.error()),
            log_start_offset: p.log_start_offset(),
            log_end_offset: p.log_end_offset(),
            high_watermark: p.high_watermark(),
            bytes_len: p.bytes_len(),
        })
    })?;
    Ok(FetchResponse { partitions })
}

fn dec_list_offsets_resp(t: fb::ListOffsetsResponse<'_>) -> Result<ListOffsetsResponse, DecodeError> {
    let partitions = list(t.partitions(), |p| {
        Ok(ListOffsetsPartitionResponse {
            topic: string(p.topic())?,
            partition: p.partition(),
            error: ErrorCode::from_code(p.error()),
            offset: p.offset(),
            timestamp: p.timestamp(),
        })
    })?;
    Ok(ListOffsetsResponse { partitions })
}

fn dec_join_group_resp(t: fb::JoinGroupResponse<'_>) -> Result<JoinGroupResponse, DecodeError> {
    Ok(JoinGroupResponse {
        generation: t.generation(),
        member_id: string(t.member_id())?,
        leader_member_id: string(t.leader_member_id())?,
        members: strings(t.members())?,
    })
}

fn dec_list_groups_resp(t: fb::ListGroupsResponse<'_>) -> Result<ListGroupsResponse, DecodeError> {
    let groups = list(t.groups(), |g| {
        Ok(GroupSummary { group_id: string(g.group_id())?, state: string(g.state())?, member_count: g.member_count() })
    })?;
    Ok(ListGroupsResponse { groups })
}

fn dec_describe_group_resp(t: fb::DescribeGroupResponse<'_>) -> Result<DescribeGroupResponse, DecodeError> {
    let members = list(t.members(), |m| {
        Ok(GroupMemberInfo {
            member_id: string(m.member_id())?,
            client_id: string(m.client_id())?,
            assignment: dec_topic_partitions(m.assignment())?,
        })
    })?;
    let partitions = list(t.partitions(), |p| {
        Ok(GroupPartitionLag {
            topic: string(p.topic())?,
            partition: p.partition(),
            committed: p.committed(),
            log_end_offset: p.log_end_offset(),
            lag: p.lag(),
        })
    })?;
    Ok(DescribeGroupResponse {
        group_id: string(t.group_id())?,
        state: string(t.state())?,
        generation: t.generation(),
        assignor: assignor_from_wire(t.assignor())?,
        members,
        partitions,
    })
}
