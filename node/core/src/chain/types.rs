//! The number spaces and plain data of chain replication: offsets, epochs, node ids,
//! chain configurations, batch metadata and log positions. No behaviour beyond small
//! pure helpers; every other chain module speaks in these types.

/// A record offset in a partition's log (the first record is offset 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Offset(pub u64);

/// A chain configuration's epoch. Only grows; `Epoch(0)` is "no configuration yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Epoch(pub u64);

/// A node of the cluster (as registered with the control plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// The shell's handle for a client produce whose answer comes later as an action.
pub type RequestId = u64;

/// One partition's chain as the control plane decided it.
///
/// `members` is the chain, head first; it is never empty in a valid configuration. The
/// optional `learner` is a catching-up node fed by the tail; it is not part of the chain
/// (its acknowledgements do not count until the tail reports it in sync, see
/// [`super::ChainReplica::learner_in_sync`]) and is promoted to tail by a later epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    pub epoch: Epoch,
    pub members: Vec<NodeId>,
    pub learner: Option<NodeId>,
}

impl ChainConfig {
    /// The role `node` plays in this configuration.
    pub fn role_of(&self, node: NodeId) -> Role {
        if self.learner == Some(node) {
            return Role::Learner;
        }
        match self.members.iter().position(|m| *m == node) {
            None => Role::Outside,
            Some(_) if self.members.len() == 1 => Role::Single,
            Some(0) => Role::Head,
            Some(i) if i + 1 == self.members.len() => Role::Tail,
            Some(_) => Role::Middle,
        }
    }

    /// The node `node` receives data from (`None` for the head and for outsiders).
    pub fn predecessor_of(&self, node: NodeId) -> Option<NodeId> {
        if self.learner == Some(node) {
            return self.members.last().copied();
        }
        let index = self.members.iter().position(|m| *m == node)?;
        index.checked_sub(1).map(|i| self.members[i])
    }

    /// The node `node` sends data to: the next member, or the learner for the tail.
    pub fn successor_of(&self, node: NodeId) -> Option<NodeId> {
        let index = self.members.iter().position(|m| *m == node)?;
        self.members.get(index + 1).copied().or(if index + 1 == self.members.len() { self.learner } else { None })
    }

    /// Structural validity: non-empty, no duplicates, learner not a member.
    pub fn is_valid(&self) -> bool {
        let mut seen: Vec<NodeId> = self.members.clone();
        seen.sort();
        seen.dedup();
        !self.members.is_empty()
            && seen.len() == self.members.len()
            && self.learner.is_none_or(|l| !self.members.contains(&l))
    }
}

/// A replica's place in its chain at its current epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// First of several members: takes produces.
    Head,
    /// Neither first nor last.
    Middle,
    /// Last member: its durable offset becomes the commit offset.
    Tail,
    /// The only member: head and tail at once.
    Single,
    /// Catching up behind the tail, not yet part of the chain.
    Learner,
    /// Not in the configuration, or not allowed to act in it (restarted before this
    /// epoch existed, see [`super::ChainReplica::recover`]), or fenced by a newer epoch.
    Outside,
}

/// How a client wants its produce acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// After the head's local durability policy (may be lost if the head dies).
    Leader,
    /// At commit: durable on every chain member.
    All,
}

/// What the shell tells the head about one client batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientBatch {
    pub request_id: RequestId,
    pub record_count: u32,
    pub bytes_len: u32,
}

/// The core's view of one stored batch. The bytes live in the shell's log; the core
/// keeps boundaries, sizes and the epoch in which the head appended the batch.
///
/// `epoch` is the batch's identity tag: in one epoch only one head appends, only in
/// increasing offsets, and a restarted node never acts again in an epoch it lived
/// through, so `(epoch, end offset)` names at most one batch — and, as in Raft's log
/// matching, two logs holding the same batch at the same place agree on everything
/// before it. The shell must persist it with the batch (Kafka keeps the same thing as
/// `partition_leader_epoch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub base: Offset,
    pub record_count: u32,
    pub bytes_len: u32,
    pub epoch: Epoch,
}

impl BatchMeta {
    /// Offset + 1 of the batch's last record.
    pub fn end(&self) -> Offset {
        Offset(self.base.0 + u64::from(self.record_count))
    }
}

/// A point in a log named by offset and the epoch of the batch that ends there
/// (`Epoch(0)` at offset 0). Equal positions in two logs imply equal prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub offset: Offset,
    pub epoch: Epoch,
}

impl Position {
    /// The start of every log.
    pub const ZERO: Position = Position { offset: Offset(0), epoch: Epoch(0) };
}
