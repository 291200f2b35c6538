//! `strand-core`: the IO-free state machines of the Strand node. Architecture
//! invariant: nothing here does IO, reads a clock or knows glommio — callers pass
//! `now` in and carry out the actions these cores return.
#![forbid(unsafe_code)]
pub mod placement;
pub mod producer;
pub mod topic;
pub mod index;
pub mod recovery;
pub mod group;
pub mod chain;
