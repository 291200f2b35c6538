//! Reliability harness support: spawning and killing real `strand-node` processes,
//! talking to them with a minimal blocking client, recording acknowledged records, and
//! verifying that none was lost. The tests live in `reliability/tests/`; what they promise
//! and how to run them is in `docs/RELIABILITY.md`.
//!
//! Code map: [`node`] (processes, RSS, logs) · [`client`] (blocking wire client) ·
//! [`ledger`] (acknowledgements and the checker) · [`history`] (the Jepsen-style log checker, IO-free) · [`jepsen`] (its consumers, nemesis and deliberate damage) · [`loopfs`] (an ext4 image that can lose power) · [`monitor`] (background RSS sampling and a
//! canary client that must keep being served) · [`profile`] (quick/long, seeds, summaries) · [`soak`] (time series, CSV/JSON/SVG) · [`writer`] (the crash tests' acknowledging writer).
//!
//! Architecture invariant: the harness depends only on `strand-wire` for the protocol; it
//! never links the node, so every test exercises the real binary over real sockets.
#![forbid(unsafe_code)]

pub mod client;
pub mod cluster;
pub mod error;
pub mod history;
pub mod jepsen;
pub mod ledger;
pub mod loopfs;
pub mod monitor;
pub mod node;
pub mod profile;
pub mod soak;
pub mod writer;

pub use client::{StoredRecord, WireClient};
pub use error::HarnessError;
pub use ledger::{Ledger, VerifyReport, Violation};
pub use node::NodeProcess;
pub use profile::{Profile, Summary};
