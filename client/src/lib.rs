//! `strand-client`: the async (tokio) Rust client for Strand.
//!
//! Layers, bottom up:
//! - [`proto`]: the sans-IO protocol core of one connection (framing, correlation
//!   ids, deadlines driven by a `now` the caller passes in).
//! - [`conn`]: the tokio shell around it: one TCP connection, a writer task behind
//!   a bounded queue, a reader task that wakes callers.
//! - [`Client`]: bootstrap (with fallback to every known node), metadata cache,
//!   connection pool keyed by owner-shard port; [`route`] decides which node a
//!   partition request goes to (chain head, or a nearby replica for reads).
//! - [`Admin`], [`Producer`], [`Consumer`]: the APIs applications use.
//! - [`group`]: consumer-group membership (join/sync, heartbeats, commits) behind
//!   [`Consumer::subscribe`].
//!
//! Architecture invariant: only [`conn`] touches sockets; [`proto`] and
//! [`records`] do no IO and read no clock.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod client;
pub mod conn;
pub mod consumer;
pub mod error;
pub mod group;
pub mod producer;
pub mod proto;
pub mod records;
pub mod route;
pub mod tls;

pub use admin::Admin;
pub use auth::{Credentials, ScramMechanism};
pub use client::{Client, ClientConfig, ReadPreference};
pub use consumer::{Consumer, ConsumerConfig, OffsetReset, SeekTo};
pub use error::{ClientError, Result};
pub use group::{Assignor, RebalanceListener, TopicPartition};
pub use producer::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata, UnknownOutcome};
pub use records::ConsumerRecord;
pub use strand_wire::batch::Compression;
pub use strand_wire::msg::Acks;
pub use strand_wire::ErrorCode;
pub use tls::ClientTls;
