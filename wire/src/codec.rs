//! Conversion between [`crate::msg`] types and verified FlatBuffers headers.
//! Decoding uses only verifying accessors with bounded depth and table count, so
//! untrusted bytes can never panic, over-read or allocate without bound.

use crate::error::ErrorCode;
use crate::msg::{RequestHeader, ResponseHeader};

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

/// Encodes a request header.
pub fn encode_request(header: &RequestHeader) -> Vec<u8> {
    let _ = header;
    todo!("flatbuffers encode")
}

/// Decodes and verifies a request header.
pub fn decode_request(bytes: &[u8]) -> Result<RequestHeader, DecodeError> {
    let _ = bytes;
    todo!("flatbuffers decode")
}

/// Encodes a response header.
pub fn encode_response(header: &ResponseHeader) -> Vec<u8> {
    let _ = header;
    todo!("flatbuffers encode")
}

/// Decodes and verifies a response header.
pub fn decode_response(bytes: &[u8]) -> Result<ResponseHeader, DecodeError> {
    let _ = bytes;
    todo!("flatbuffers decode")
}
