//! Reliability harness support: spawning and killing real `strand-node` processes,
//! recording acknowledged records, and verifying that none was lost.
#![forbid(unsafe_code)]
