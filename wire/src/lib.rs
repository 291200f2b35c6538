//! `strand-wire`: everything two Strand peers must agree on — the FlatBuffers
//! header schema, the frame codec, the record-batch format and error codes.
//! Architecture invariant: this crate does no IO and knows nothing of glommio or tokio.
#![deny(unsafe_code)]

pub mod batch;
pub mod codec;
pub mod error;
pub mod frame;
/// Generated FlatBuffers accessors; their unsafe code reads only verified buffers.
#[allow(unsafe_code)] // flatc's accessors are unsafe internally; decode reaches them only after verification.
pub(crate) mod generated;
pub mod msg;

pub use error::ErrorCode;
