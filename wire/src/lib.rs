//! `strand-wire`: everything two Strand peers must agree on — the FlatBuffers
//! header schema, the frame codec, the record-batch format and error codes.
//! Architecture invariant: this crate does no IO and knows nothing of glommio or tokio.
#![forbid(unsafe_code)]

pub mod batch;
pub mod codec;
pub mod error;
pub mod frame;
pub mod msg;

pub use error::ErrorCode;
