//! `strand-node`: the Strand storage node. This crate is the IO shell around
//! the IO-free cores in `strand-core`: `log` (segments on io_uring), `shard`
//! (per-core state), `net` (listeners and connections), `admin` + `metrics`.

pub mod admin;
pub mod config;
pub mod control;
pub mod data_dir;
pub mod fatal;
pub mod groups;
pub mod hostcheck;
pub mod log;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod partition;
pub mod quota;
pub mod replication;
pub mod security;
pub mod server;
pub mod shard;
pub mod sources;
pub mod tls;
pub mod topic;
