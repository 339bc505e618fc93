//! The replication protocol of one partition, as a plain state machine with no I/O.
//!
//! It follows Kafka's published design: a log per partition with offsets and leader epochs,
//! followers that fetch from the leader, a high watermark (HW) that advances once every
//! in-sync replica has an offset on disk, and truncation by leader epoch when a follower
//! rejoins (KIP-101, KIP-279). ZooKeeper, through the [`View`] the shell feeds in, is the only
//! source of truth for who leads, at which epoch, and who is in sync; this module never decides
//! that on its own, it only proposes in-sync changes that the shell writes by compare-and-set.
//!
//! The shell (see the server's `partition_log`) drives a [`Replica`] with events — views,
//! proposals, fetches, fetch replies, "persisted up to", ticks — and carries out the
//! [`Action`]s it returns, in order: append or truncate the log, apply committed entries,
//! send fetches and replies, write the in-sync set, answer clients. The deterministic
//! simulation in `tests/simulation.rs` drives the same type over a faulty network.
//!
//! Safety rests on these invariants (checked by the simulation after every step):
//! - An entry below the HW of any replica is on disk on every in-sync replica, so whichever
//!   of them ZooKeeper makes leader next has it; replicas agree on every entry below their HWs.
//! - A client is told "committed" only when the HW passed its entry while at least
//!   `min_insync` replicas were counted for that HW.
//! - A follower only appends right after an entry it has been shown to share with the leader
//!   (same offset, same epoch), and truncates only what lies above its own HW.

mod log;
mod replica;

pub use log::LogOutline;
pub use replica::{Replica, ReplicaConfig, Role};

pub type Offset = u64;
pub type Epoch = u64;
/// Broker node ids, as registered in ZooKeeper.
pub type NodeId = String;

/// A partition's state as ZooKeeper holds it, with the znode version it was read at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// Empty when the partition has no leader (no in-sync replica is alive).
    pub leader: NodeId,
    pub epoch: Epoch,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub version: i32,
}

/// One log entry. `data` is opaque to the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<D> {
    pub offset: Offset,
    pub epoch: Epoch,
    pub data: D,
}

/// What a log entry can carry; the protocol itself writes one kind: the marker a new leader
/// appends first, so that its epoch has an entry (and committing it commits what came before).
pub trait Payload: Clone + std::fmt::Debug {
    fn epoch_start() -> Self;
}

/// A follower asks its leader for entries from `fetch_offset` on. Everything before
/// `fetch_offset` is on the follower's disk, and the entry just before it has
/// `last_fetched_epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Names this request among the follower's; only the reply to the latest one counts.
    pub seq: u64,
    /// Grows with every start of the follower's process, so that a request from an earlier
    /// life (or from before its disk was wiped) cannot vouch for data it no longer has.
    pub incarnation: u64,
    /// The epoch the follower believes the leader leads at.
    pub epoch: Epoch,
    pub fetch_offset: Offset,
    pub last_fetched_epoch: Epoch,
}

/// The leader's answer to a fetch, without the entries (the shell reads those from the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Entries `[from, to)` follow (possibly none), and the leader's HW.
    Records {
        from: Offset,
        to: Offset,
        hw: Offset,
    },
    /// The follower's log diverges: truncate to the smaller of `end_offset` and its own end
    /// for `epoch`, then fetch again (KIP-279).
    Diverging { epoch: Epoch, end_offset: Offset },
    /// The follower is behind the leader's log start: start over, empty, at `log_start`.
    OutOfRange {
        log_start: Offset,
        prev_epoch: Epoch,
    },
    /// The follower's epoch is older than the leader's: it must learn the new view first.
    Fenced,
    /// This replica does not lead the partition at the asked epoch (or does not know yet).
    NotLeader,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReply<D> {
    pub seq: u64,
    pub leader_epoch: Epoch,
    pub outcome: FetchOutcome,
    /// The entries `Records` announces, in offset order.
    pub entries: Vec<Entry<D>>,
}

/// Why a proposal was not committed. The entry may still be in some log (and may even be
/// committed later): the client does not know, and retries with the same message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not the leader of this partition (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("{in_sync} in-sync replicas, {required} needed")]
    NotEnoughReplicas { in_sync: usize, required: usize },
    #[error("leadership moved before the entry was committed")]
    LeadershipLost,
}

/// Identifies a client request waiting for its entries to be committed.
pub type RequestId = u64;

/// What the shell must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<D> {
    /// Append these entries at the log's end, durably; report with `on_persisted`, in the
    /// order the appends were issued.
    Append(Vec<Entry<D>>),
    /// Drop every entry at or after this offset (never one below the HW).
    Truncate(Offset),
    /// Drop the whole log and applied state; the log now starts, empty, at `start`. Report
    /// with `on_persisted(start)` once that is durable: the follower fetches only then.
    Reset { start: Offset, prev_epoch: Epoch },
    /// Apply entries below this offset to the partition's state and remember the HW.
    Commit(Offset),
    /// Send a fetch to the leader.
    Fetch {
        leader: NodeId,
        request: FetchRequest,
    },
    /// Answer a follower's fetch (attach the entries `Records` names).
    Respond {
        follower: NodeId,
        seq: u64,
        leader_epoch: Epoch,
        outcome: FetchOutcome,
    },
    /// Write this in-sync set to ZooKeeper if the partition's znode is still at
    /// `expected_version`; report with `on_isr_written`. With `hand_over_to`, the leader
    /// resigns: the write also names that in-sync follower leader, at the next epoch (the
    /// leader is cut off from followers ZooKeeper still sees alive, and only a leader they
    /// can reach makes the partition writable again).
    WriteIsr {
        isr: Vec<NodeId>,
        expected_version: i32,
        hand_over_to: Option<NodeId>,
    },
    /// Answer a client: its entries up to `last` are committed (after the preceding `Commit`
    /// was applied), or they were refused.
    Reply {
        id: RequestId,
        result: Result<Offset, Refusal>,
    },
}
