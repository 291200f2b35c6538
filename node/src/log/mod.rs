//! Partition log (owned by the storage engine work).
