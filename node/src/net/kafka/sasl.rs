//! SASL on the Kafka port (`crate::security`): SaslHandshake v1 names the mechanism (v0,
//! whose tokens follow unframed, is refused),
//! SaslAuthenticate v0-2 carries each step, as a Kafka broker's SASL listener does. The
//! gate here runs in the connection's reader, before a request is handed to its handler:
//!
//! - SaslHandshake and SaslAuthenticate are answered at once, in order;
//! - a failed authentication is answered `SASL_AUTHENTICATION_FAILED` with a generic
//!   message, then the connection is closed;
//! - with `--require-auth`, any request but ApiVersions and the SASL ones before
//!   authentication closes the connection, as a Kafka broker closes it (the client sees the
//!   connection drop: its `security.protocol` does not match the listener's).

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use strand_core::auth::Mechanism;

use super::apis::{encoded, Answer};
use super::codes::kafka as code;
use super::Incoming;
use crate::security::{Access, SaslAnswer, Session};
use crate::shard::Shard;

/// What the reader does with a parsed request.
pub(super) enum Gate {
    /// Hand it to its handler with these rights.
    Pass(Access, Incoming),
    /// Answer this (in turn); then close for this reason, if given.
    Answer(Answer, Option<String>),
    /// Close without an answer, for this reason.
    Close(String),
}

pub(super) fn gate(shard: &Shard, session: &Session, peer: &str, incoming: Incoming) -> Gate {
    let security = &shard.shared.security;
    match incoming.api {
        ApiKey::SaslHandshake => handshake(shard, session, peer, incoming),
        ApiKey::SaslAuthenticate => authenticate(shard, session, peer, incoming),
        _ => {
            let access = Access::new(security, session);
            if access.authenticated() || incoming.api == ApiKey::ApiVersions {
                return Gate::Pass(access, incoming);
            }
            shard.metrics.authorization_denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Gate::Close(format!(
                "kafka: {:?} before SASL authentication on a node that requires it (--require-auth)",
                incoming.api
            ))
        }
    }
}

fn handshake(shard: &Shard, session: &Session, peer: &str, incoming: Incoming) -> Gate {
    let Incoming { version, mut body, .. } = incoming;
    let req = match SaslHandshakeRequest::decode(&mut body, version) {
        Ok(req) => req,
        Err(e) => return Gate::Close(format!("kafka: SaslHandshake does not decode: {e}")),
    };
    let mut response = SaslHandshakeResponse::default();
    response.mechanisms = Mechanism::ALL.iter().map(|m| StrBytes::from_static_str(m.name())).collect();
    if version == 0 {
        response.error_code = code::ILLEGAL_SASL_STATE;
        let reason = "kafka: SaslHandshake v0 (unframed SASL tokens) is not supported; use v1 with SaslAuthenticate";
        return Gate::Answer(encoded(&response, version), Some(reason.into()));
    }
    let close = match session.begin(&shard.shared.security, req.mechanism.as_str()) {
        Ok(_) => None,
        Err(reason) => {
            shard.metrics.auth_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(peer, mechanism = %req.mechanism.as_str(), %reason, "kafka: SASL handshake refused");
            let offered = Mechanism::parse(req.mechanism.as_str()).is_some();
            response.error_code = if offered { code::ILLEGAL_SASL_STATE } else { code::UNSUPPORTED_SASL_MECHANISM };
            Some(format!("kafka: SASL handshake refused: {reason}"))
        }
    };
    Gate::Answer(encoded(&response, version), close)
}

fn authenticate(shard: &Shard, session: &Session, peer: &str, incoming: Incoming) -> Gate {
    let Incoming { version, mut body, .. } = incoming;
    let req = match SaslAuthenticateRequest::decode(&mut body, version) {
        Ok(req) => req,
        Err(e) => return Gate::Close(format!("kafka: SaslAuthenticate does not decode: {e}")),
    };
    let mut response = SaslAuthenticateResponse::default();
    let close = match session.step(&shard.shared.security, &shard.metrics, peer, &req.auth_bytes) {
        SaslAnswer::Challenge(bytes) => {
            response.auth_bytes = Bytes::from(bytes);
            None
        }
        SaslAnswer::Done { final_message, .. } => {
            response.auth_bytes = Bytes::from(final_message);
            None
        }
        SaslAnswer::Failed(text) => {
            response.error_code = code::SASL_AUTHENTICATION_FAILED;
            response.error_message = Some(StrBytes::from_string(text.clone()));
            Some(format!("kafka: {text}"))
        }
    };
    Gate::Answer(encoded(&response, version), close)
}
