//! `strand-core`: the IO-free state machines of the Strand node. Architecture
//! invariant: nothing here does IO, reads a clock or knows glommio — callers pass
//! `now` in and carry out the actions these cores return.
//!
//! - [`recovery`], [`index`]: which bytes of a segment are valid, sparse index math.
//! - [`producer`]: idempotent-producer sequence tracking per partition.
//! - [`placement`], [`topic`]: which shard owns a partition; topic naming rules.
//! - [`group`]: the consumer-group coordinator.
//! - [`chain`]: chain replication of one partition replica.
//! - [`control`]: the controller's chain-assignment decision.
//! - [`auth`]: SASL authentication (SCRAM, PLAIN) and ACL authorization.
//! - [`suspicion`]: fast failure detection (when a reported peer is probed, what convicts it).
//! - [`quota`]: byte-rate quotas (how long a client over its quota must wait).
#![forbid(unsafe_code)]

pub mod auth;
pub mod chain;
pub mod control;
pub mod group;
pub mod index;
pub mod placement;
pub mod producer;
pub mod quota;
pub mod recovery;
pub mod suspicion;
pub mod timestamp;
pub mod topic;

/// Seeds of the seeded unit tests: the one definition shared with the simulations.
#[cfg(test)]
#[path = "../tests/seeds/mod.rs"]
pub(crate) mod seeds;
