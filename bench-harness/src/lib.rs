//! `strand-bench`: OpenMessaging-style latency and throughput benchmarks for Strand.
//!
//! Code map: [`config`] (flags + TOML workloads → a validated [`config::Workload`]),
//! [`pacing`] (fixed-rate schedules and the 16-byte measurement header in every value),
//! [`stats`] (HDR histograms, throughput, the JSON report types), [`report`] (stdout table,
//! JSON file), [`plot`] (SVG percentile curve), [`node`] (the embedded strand-node process),
//! [`limits`] (the machine's fio and loopback limits), [`suite`] (`strand-bench suite`: the
//! limits and the standard workloads in one table).
//!
//! Architecture invariant: measurement never trusts the node's clock or counters — every
//! latency and rate is computed from timestamps this process wrote into the messages.
#![forbid(unsafe_code)]

pub mod config;
pub mod driver;
pub mod kafka;
pub mod limits;
pub mod node;
pub mod pacing;
pub mod plot;
pub mod report;
pub mod run;
pub mod stats;
pub mod suite;
