//! Helpers shared by the client's integration tests beyond the node harness in
//! `support` (which a test binary must declare too: `mod support;`).
#![allow(dead_code, reason = "each test binary uses a different part of the helpers")]

pub mod cli;
pub mod read;
