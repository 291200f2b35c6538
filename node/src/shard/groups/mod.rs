//! The shard side of consumer groups: the `impl Shard` adapters that connect a shard's
//! [`GroupHost`](crate::groups::GroupHost) (the coordinator and its parked requests,
//! owned by `crate::groups`) to the rest of the shard — routing a group request to its
//! coordinator shard (`route.rs`), answering it and carrying out the coordinator's
//! actions through the shard's partitions (`handle.rs`), replaying the offsets
//! partitions and driving the timer (`load.rs`), deleting what the offsets snapshots
//! made redundant (`compact.rs`), and cluster mode's head-following
//! coordinator (`cluster.rs`). `crate::groups` never names the shard; the shard calls
//! into it.

mod cluster;
mod compact;
mod handle;
mod load;
mod route;
