//! The partition logs this node replicates, each driven by its own task ([`actor`]) around the
//! protocol core (`mom_replicator::protocol::Replica`).
//!
//! This is the handle the rest of the node uses: propose a record to a partition this node
//! leads and wait until it is committed, ask whether a partition is served here, reach its
//! leases, and pass followers' fetches to the partition's task. Nothing here holds a lock
//! across a network call: each partition's protocol state is owned by its task, and callers
//! talk to it through a channel.

mod actor;
mod follower_apply;

use crate::leases::Leases;
use crate::records::Record;
use crate::store::{Store, MAX_ROWS_READ_IN_PLACE};
use crate::wakeups::Wakeups;
use actor::Event;
pub use actor::PartitionStatus;
use mom_catalog::partitions::Versioned;
use mom_catalog::NodeInfo;
use mom_common::proto;
use mom_replicator::protocol::{Epoch, Offset, Refusal, ReplicaConfig, View};
use mom_replicator::Fetcher;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("this node does not lead partition {partition}")]
    NotLeader {
        partition: u32,
        leader: Option<NodeInfo>,
    },
    #[error("partition {0} is unavailable: {1}")]
    Unavailable(u32, String),
}

/// What the node's partitions share.
pub struct Shared {
    pub me: String,
    pub incarnation: u64,
    pub store: Arc<Store>,
    /// ZooKeeper through the node's current session (it is renewed when one expires).
    pub catalog: mom_catalog::Catalog,
    pub fetcher: Fetcher,
    pub live: watch::Receiver<Vec<NodeInfo>>,
    pub config: ReplicaConfig,
    /// How long applied message ids stay known for deduplication (`dedup_window_ms`).
    pub dedup_window_ms: u64,
}

impl Shared {
    fn node(&self, id: &str) -> Option<NodeInfo> {
        self.live.borrow().iter().find(|n| n.id == id).cloned()
    }
}

struct Partition {
    events: mpsc::UnboundedSender<Event>,
    status: watch::Receiver<PartitionStatus>,
    /// The leader-local leases of this partition; see [`crate::leases`]. Shared with the
    /// partition's task, which takes it once when it stops serving (a fence).
    leases: Arc<Mutex<Leases>>,
}

pub struct PartitionLogs {
    shared: Arc<Shared>,
    partitions: Vec<Partition>,
    views: watch::Receiver<BTreeMap<u32, Versioned>>,
    /// Pulls waiting for messages, woken by the partitions' tasks.
    wakeups: Arc<Wakeups>,
}

pub fn to_view(versioned: &Versioned) -> View {
    View {
        leader: versioned.state.leader.clone(),
        epoch: versioned.state.epoch,
        replicas: versioned.state.replicas.clone(),
        isr: versioned.state.isr.clone(),
        version: versioned.version,
    }
}

/// How long a client waits for its record to be committed before it is told to retry.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

impl PartitionLogs {
    /// Starts one task per partition, each restarting its replica from what the store holds.
    pub fn start(
        shared: Shared,
        partition_count: u32,
        views: watch::Receiver<BTreeMap<u32, Versioned>>,
        connected: watch::Receiver<bool>,
    ) -> anyhow::Result<PartitionLogs> {
        let shared = Arc::new(shared);
        let wakeups = Arc::new(Wakeups::default());
        let mut partitions = Vec::new();
        for partition in 0..partition_count {
            let (log, hw) = shared.store.outline(partition)?;
            let leases = Arc::new(Mutex::default());
            let reads = actor::Reads {
                wakeups: wakeups.clone(),
                leases: Arc::clone(&leases),
            };
            let (events, status) = actor::spawn(
                partition,
                shared.clone(),
                log,
                hw,
                views.clone(),
                connected.clone(),
                reads,
            );
            partitions.push(Partition {
                events,
                status,
                leases,
            });
        }
        Ok(PartitionLogs {
            shared,
            partitions,
            views,
            wakeups,
        })
    }

    pub fn count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// Where pulls wait for messages ([`crate::wakeups`]).
    pub fn wakeups(&self) -> &Arc<Wakeups> {
        &self.wakeups
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    fn partition(&self, partition: u32) -> Result<&Partition, WriteError> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| WriteError::Unavailable(partition, "no such partition".into()))
    }

    /// The epoch this node serves the partition at: it leads it, is connected to ZooKeeper,
    /// and has applied everything its predecessors committed.
    pub fn serving(&self, partition: u32) -> Option<Epoch> {
        let status = self.partitions.get(partition as usize)?.status.borrow();
        status.serving.then_some(status.epoch)
    }

    /// Whether this node leads the partition (it may not serve reads yet).
    pub fn leads(&self, partition: u32) -> bool {
        self.partitions
            .get(partition as usize)
            .is_some_and(|p| p.status.borrow().role == Some(mom_replicator::protocol::Role::Leader))
    }

    /// Every partition's own status, for metrics.
    pub fn partition_statuses(&self) -> Vec<PartitionStatus> {
        self.partitions
            .iter()
            .map(|p| p.status.borrow().clone())
            .collect()
    }

    /// Every partition's replica status, for operators and tests.
    pub fn statuses(&self) -> Vec<proto::ReplicaStatus> {
        self.partitions
            .iter()
            .enumerate()
            .map(|(partition, p)| {
                let status = p.status.borrow();
                let role = match status.role {
                    Some(mom_replicator::protocol::Role::Leader) => "leader",
                    Some(mom_replicator::protocol::Role::Follower) => "follower",
                    _ => "offline",
                };
                proto::ReplicaStatus {
                    partition: partition as u32,
                    role: role.into(),
                    serving: status.serving,
                    leader_epoch: status.epoch,
                    high_watermark: status.hw,
                }
            })
            .collect()
    }

    pub fn node_id(&self) -> &str {
        &self.shared.me
    }

    /// Partitions this node serves now.
    pub fn led(&self) -> Vec<u32> {
        (0..self.count())
            .filter(|p| self.serving(*p).is_some())
            .collect()
    }

    /// The partitions this node serves, each with the epoch it serves in.
    pub fn served(&self) -> Vec<(u32, Epoch)> {
        (0..self.count())
            .filter_map(|p| Some((p, self.serving(p)?)))
            .collect()
    }

    /// The live leader of a partition, as ZooKeeper says.
    pub fn leader_of(&self, partition: u32) -> Option<NodeInfo> {
        let leader = self.views.borrow().get(&partition)?.state.leader.clone();
        self.shared.node(&leader)
    }

    /// Runs `work` with the partition's leases (leader-local; see [`crate::leases`]).
    pub fn with_leases<T>(&self, partition: u32, work: impl FnOnce(&mut Leases) -> T) -> Option<T> {
        let partition = self.partitions.get(partition as usize)?;
        // Leases hold no invariant a panic could break halfway, so a poisoned lock is usable.
        let mut leases = partition.leases.lock().unwrap_or_else(|p| p.into_inner());
        Some(work(&mut leases))
    }

    /// Runs `work` with the partition's leases if this node still serves it at `epoch`, as
    /// read under the leases lock. Whatever hands out or dead-letters messages goes through
    /// here: the partition's task takes that lock once when it stops serving, before its
    /// first fetch at a new epoch leaves (see [`actor`]), so nothing goes out after that.
    pub fn with_served_leases<T>(
        &self,
        partition: u32,
        epoch: Epoch,
        work: impl FnOnce(&mut Leases) -> T,
    ) -> Option<T> {
        self.with_leases(partition, |leases| {
            (self.serving(partition) == Some(epoch)).then(|| work(leases))
        })
        .flatten()
    }

    fn refusal(&self, partition: u32, refusal: Refusal) -> WriteError {
        match refusal {
            Refusal::NotLeader { .. } => WriteError::NotLeader {
                partition,
                leader: self.leader_of(partition),
            },
            other => WriteError::Unavailable(partition, other.to_string()),
        }
    }

    async fn wait(
        &self,
        partition: u32,
        answer: oneshot::Receiver<Result<Offset, Refusal>>,
    ) -> Result<Offset, WriteError> {
        match tokio::time::timeout(COMMIT_WAIT, answer).await {
            Ok(Ok(Ok(offset))) => Ok(offset),
            Ok(Ok(Err(refusal))) => Err(self.refusal(partition, refusal)),
            Ok(Err(_)) => Err(WriteError::Unavailable(
                partition,
                "the partition's task stopped, or its store failed to apply the commit".into(),
            )),
            Err(_) => Err(WriteError::Unavailable(
                partition,
                format!("not committed within {COMMIT_WAIT:?}"),
            )),
        }
    }

    /// Appends `records` to a partition this node leads, as one batch, and waits until all
    /// are committed (on every in-sync replica's disk, at least `min_insync_replicas` of
    /// them) and applied here.
    ///
    /// Cancel-safe: offsets are taken when the records are appended, so a caller that gives
    /// up leaves records that are committed (or truncated) like any other, never a reused
    /// offset.
    pub async fn propose(
        &self,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<Offset, WriteError> {
        self.propose_after(partition, records, None).await
    }

    async fn propose_after(
        &self,
        partition: u32,
        records: Vec<Record>,
        after: Option<Offset>,
    ) -> Result<Offset, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.partition(partition)?
            .events
            .send(Event::Propose {
                records,
                after,
                reply,
            })
            .map_err(|_| WriteError::Unavailable(partition, "stopping".into()))?;
        self.wait(partition, answer).await
    }

    /// Like [`PartitionLogs::propose`] for publishes, but stores a message id at most once per
    /// partition: a retried publish already in the log waits for that entry instead. The ids
    /// `new_ids` marks (one flag per record) were minted for this call and are not looked for.
    pub async fn publish(
        &self,
        partition: u32,
        records: Vec<Record>,
        new_ids: &[bool],
    ) -> Result<Offset, WriteError> {
        let store = self.store().clone();
        let is_new = |i: usize| new_ids.get(i).copied().unwrap_or(false);
        let ids = || {
            records
                .iter()
                .enumerate()
                .map(|(i, r)| r.message_id.as_deref().filter(|_| !is_new(i)))
        };
        let looked_for = ids().flatten().count();
        let found = if looked_for == 0 {
            vec![None; records.len()]
        } else {
            store
                .read(looked_for <= MAX_ROWS_READ_IN_PLACE, |conn| {
                    Store::find_messages_with(conn, partition, ids())
                })
                .map_err(|e| WriteError::Unavailable(partition, e.to_string()))?
        };
        let mut fresh = Vec::with_capacity(records.len());
        let mut known: Option<Offset> = None;
        for (record, found) in records.into_iter().zip(found) {
            match found {
                Some(offset) => known = known.max(Some(offset)),
                None => fresh.push(record),
            }
        }
        self.propose_after(partition, fresh, known).await
    }

    /// A follower's fetch, answered when the leader has something new (or its wait ran out).
    pub async fn fetch(&self, request: proto::FetchRequest) -> Option<proto::FetchReply> {
        let partition = self.partitions.get(request.partition as usize)?;
        let (reply, answer) = oneshot::channel();
        partition
            .events
            .send(Event::Fetch { request, reply })
            .ok()?;
        answer.await.ok()
    }
}
