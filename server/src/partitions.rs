//! The partitions this node replicates, and leading them.
//!
//! Every change to a partition goes through its leader, one at a time (a per-partition lock):
//! the leader applies it locally, pushes it to every in-sync follower, and succeeds only when
//! all of them have it durably and they are at least `min_insync` copies. A follower that does
//! not answer is dropped from the in-sync set (a compare-and-set in ZooKeeper, which fails if
//! leadership moved meanwhile). Followers out of step get a snapshot of the whole partition.

use crate::store::{Order, Position, Store, StoreError};
use mom_catalog::partitions::{self, PartitionState, Versioned};
use mom_catalog::NodeInfo;
use mom_common::proto::{ApplyRequest, Change, SnapshotRequest, StoredMessage};
use mom_replicator::{ReplicationError, Replicator};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};
use zookeeper_client::Client;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("this node is not (yet) a replica of partition {0}")]
    NotAReplica(u32),
    #[error(transparent)]
    Store(StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("this node does not lead partition {partition}")]
    NotLeader {
        partition: u32,
        leader: Option<NodeInfo>,
    },
    #[error("partition {0} is unavailable: {1}")]
    Unavailable(u32, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A follower follows a newer leader: this node's leadership of the partition is over.
fn step_down(partition: u32, lead: &mut Leadership, why: &str) -> WriteError {
    lead.epoch = 0;
    WriteError::Unavailable(partition, format!("leadership moved: {why}"))
}

/// What the leader of one partition remembers between changes.
#[derive(Default)]
struct Leadership {
    /// The epoch this node leads at; 0 when not leading.
    epoch: u64,
    seq: u64,
    /// Followers known to hold exactly this node's copy in this epoch.
    synced: HashSet<String>,
}

pub struct Partitions {
    me: String,
    min_insync: usize,
    store: Arc<Store>,
    zk: Client,
    replicator: Replicator,
    views: watch::Receiver<BTreeMap<u32, Versioned>>,
    live: watch::Receiver<Vec<NodeInfo>>,
    leadership: Vec<Mutex<Leadership>>,
    /// Orders installing a copy against dropping one, see [`Partitions::install_snapshot`].
    replica_guard: Vec<std::sync::Mutex<()>>,
}

fn run_blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

impl Partitions {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: String,
        partition_count: u32,
        min_insync: u32,
        store: Arc<Store>,
        zk: Client,
        replicator: Replicator,
        views: watch::Receiver<BTreeMap<u32, Versioned>>,
        live: watch::Receiver<Vec<NodeInfo>>,
    ) -> Self {
        Partitions {
            me,
            min_insync: min_insync.max(1) as usize,
            store,
            zk,
            replicator,
            views,
            live,
            leadership: (0..partition_count).map(|_| Mutex::default()).collect(),
            replica_guard: (0..partition_count)
                .map(|_| std::sync::Mutex::default())
                .collect(),
        }
    }

    pub fn count(&self) -> u32 {
        self.leadership.len() as u32
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn view(&self, partition: u32) -> Option<Versioned> {
        self.views.borrow().get(&partition).cloned()
    }

    fn node(&self, id: &str) -> Option<NodeInfo> {
        self.live.borrow().iter().find(|n| n.id == id).cloned()
    }

    /// Partitions this node leads right now.
    pub fn led(&self) -> Vec<u32> {
        self.views
            .borrow()
            .iter()
            .filter(|(_, v)| v.state.leader == self.me)
            .map(|(p, _)| *p)
            .collect()
    }

    pub fn leader_of(&self, partition: u32) -> Option<NodeInfo> {
        self.view(partition)
            .and_then(|v| self.node(&v.state.leader))
    }

    /// Runs `decide` under the partition's lock and, if it yields a change, commits that change
    /// on the in-sync replicas. Returns what `decide` returned alongside the change.
    pub async fn write<R>(
        &self,
        partition: u32,
        decide: impl FnOnce(&Store) -> Result<Option<(Change, R)>, StoreError>,
    ) -> Result<Option<R>, WriteError> {
        let lock = self
            .leadership
            .get(partition as usize)
            .ok_or_else(|| WriteError::Unavailable(partition, "no such partition".into()))?;
        let mut lead = lock.lock().await;
        let mut view = self.leading_view(partition, &mut lead)?;
        view = self.sync_followers(partition, &mut lead, view).await?;

        let Some((change, result)) = run_blocking(|| decide(&self.store))? else {
            return Ok(None);
        };
        let (epoch, seq) = (lead.epoch, lead.seq + 1);
        // The leader's own fsync runs alongside the followers' round trips: a change is
        // acknowledged only when all of them finished, so nothing is promised earlier, and a
        // copy that got ahead of a failed local write is fixed by the next snapshot.
        let local = {
            let (store, change) = (self.store.clone(), change.clone());
            tokio::task::spawn_blocking(move || {
                store.apply(partition, epoch, seq, &change, Order::Lead)
            })
        };
        let followers: Vec<String> = view
            .state
            .isr
            .iter()
            .filter(|id| **id != self.me)
            .cloned()
            .collect();
        let pushes = followers.iter().map(|id| {
            let request = ApplyRequest {
                partition,
                epoch,
                seq,
                change: Some(change.clone()),
            };
            let addr = self.node(id).map(|n| n.grpc_addr);
            async move {
                match addr {
                    Some(addr) => self.replicator.apply(&addr, request).await,
                    None => Err(ReplicationError::Unreachable("not live".into())),
                }
            }
        });
        let (local, outcomes) = tokio::join!(local, futures::future::join_all(pushes));
        match local
            .map_err(|e| WriteError::Unavailable(partition, format!("storage task failed: {e}")))?
        {
            Ok(()) => lead.seq = seq,
            Err(e @ StoreError::OutOfOrder { .. }) => {
                return Err(step_down(partition, &mut lead, &e.to_string()))
            }
            Err(e) => return Err(e.into()),
        }
        let mut failed = Vec::new();
        for (id, outcome) in followers.iter().zip(outcomes) {
            let outcome = match outcome {
                // It missed something (e.g. it restarted): the snapshot includes this change.
                Err(ReplicationError::NeedsSnapshot(_)) => self.send_snapshot(partition, id).await,
                other => other,
            };
            match outcome {
                Ok(()) => {}
                Err(ReplicationError::Deposed(why)) => {
                    return Err(step_down(partition, &mut lead, &why))
                }
                Err(e) => {
                    tracing::warn!(partition, follower = %id, error = %e, "follower missed a change");
                    lead.synced.remove(id);
                    failed.push(id.clone());
                }
            }
        }
        if !failed.is_empty() {
            self.shrink_isr(partition, &view, &failed).await?;
        }
        Ok(Some(result))
    }

    /// The partition's view if this node leads it; starts a new leadership on a new epoch.
    fn leading_view(&self, partition: u32, lead: &mut Leadership) -> Result<Versioned, WriteError> {
        let view = self
            .view(partition)
            .ok_or_else(|| WriteError::Unavailable(partition, "not assigned yet".into()))?;
        if view.state.leader != self.me {
            return Err(WriteError::NotLeader {
                partition,
                leader: self.node(&view.state.leader),
            });
        }
        if lead.epoch != view.state.epoch {
            let position = run_blocking(|| self.store.begin_epoch(partition, view.state.epoch))?;
            lead.epoch = view.state.epoch;
            lead.seq = position.seq;
            lead.synced.clear();
            tracing::info!(partition, epoch = lead.epoch, "leading partition");
        }
        Ok(view)
    }

    /// Makes sure every in-sync follower holds this leader's copy before a change goes out,
    /// and that there are enough of them.
    async fn sync_followers(
        &self,
        partition: u32,
        lead: &mut Leadership,
        view: Versioned,
    ) -> Result<Versioned, WriteError> {
        let required = self.min_insync.min(view.state.replicas.len()).max(1);
        let mut failed = Vec::new();
        let unsynced: Vec<String> = view
            .state
            .isr
            .iter()
            .filter(|id| **id != self.me && !lead.synced.contains(*id))
            .cloned()
            .collect();
        for id in &unsynced {
            match self.send_snapshot(partition, id).await {
                Ok(()) => {
                    lead.synced.insert(id.clone());
                }
                Err(ReplicationError::Deposed(why)) => {
                    return Err(step_down(partition, lead, &why))
                }
                Err(e) => {
                    tracing::warn!(partition, follower = %id, error = %e, "cannot sync follower");
                    failed.push(id.clone());
                }
            }
        }
        let view = if failed.is_empty() {
            view
        } else {
            self.shrink_isr(partition, &view, &failed).await?
        };
        if view.state.isr.len() < required {
            return Err(WriteError::Unavailable(
                partition,
                format!(
                    "{} in-sync replicas, {required} needed",
                    view.state.isr.len()
                ),
            ));
        }
        Ok(view)
    }

    async fn send_snapshot(&self, partition: u32, follower: &str) -> Result<(), ReplicationError> {
        let addr = self
            .node(follower)
            .ok_or_else(|| ReplicationError::Unreachable("not live".into()))?
            .grpc_addr;
        let (position, messages) = run_blocking(|| self.store.snapshot(partition))
            .map_err(|e| ReplicationError::Unreachable(e.to_string()))?;
        let Position { epoch, seq } = position;
        self.replicator
            .install_snapshot(
                &addr,
                SnapshotRequest {
                    partition,
                    epoch,
                    seq,
                    messages,
                },
            )
            .await
    }

    /// Drops followers from the in-sync set; fails if that leaves too few copies or if the
    /// state changed under us (then leadership may have moved).
    async fn shrink_isr(
        &self,
        partition: u32,
        view: &Versioned,
        failed: &[String],
    ) -> Result<Versioned, WriteError> {
        let mut state = view.state.clone();
        state.isr.retain(|id| !failed.contains(id));
        let required = self.min_insync.min(state.replicas.len()).max(1);
        if state.isr.len() < required {
            return Err(WriteError::Unavailable(
                partition,
                format!(
                    "followers {failed:?} are out of sync and only {} copies would remain",
                    state.isr.len()
                ),
            ));
        }
        self.compare_and_set(partition, view, state).await
    }

    async fn compare_and_set(
        &self,
        partition: u32,
        view: &Versioned,
        state: PartitionState,
    ) -> Result<Versioned, WriteError> {
        let written = partitions::write_partition(&self.zk, partition, &state, Some(view.version))
            .await
            .map_err(|e| WriteError::Unavailable(partition, e.to_string()))?;
        if !written {
            return Err(WriteError::Unavailable(
                partition,
                "partition state changed meanwhile".into(),
            ));
        }
        tracing::info!(partition, isr = ?state.isr, "in-sync replicas changed");
        Ok(Versioned {
            state,
            version: view.version + 1,
        })
    }

    /// Brings replicas that are not in sync (new, or back from a crash) up to date and adds
    /// them to the in-sync set. Runs on the leader for every partition it leads.
    pub async fn catch_up_followers(&self) {
        for partition in self.led() {
            let Some(view) = self.view(partition) else {
                continue;
            };
            let lagging: Vec<String> = view
                .state
                .replicas
                .iter()
                .filter(|id| !view.state.isr.contains(id) && self.node(id).is_some())
                .cloned()
                .collect();
            for follower in lagging {
                let mut lead = self.leadership[partition as usize].lock().await;
                let Ok(view) = self.leading_view(partition, &mut lead) else {
                    break;
                };
                if view.state.isr.contains(&follower) {
                    continue;
                }
                match self.send_snapshot(partition, &follower).await {
                    Ok(()) => {
                        let mut state = view.state.clone();
                        state.isr.push(follower.clone());
                        if self.compare_and_set(partition, &view, state).await.is_ok() {
                            lead.synced.insert(follower.clone());
                            tracing::info!(partition, %follower, "follower caught up");
                        }
                    }
                    Err(e) => {
                        tracing::debug!(partition, %follower, error = %e, "catch-up failed; will retry")
                    }
                }
            }
        }
    }

    /// Forgets the data of partitions this node no longer replicates.
    fn is_replica(&self, partition: u32) -> bool {
        self.view(partition)
            .is_some_and(|v| v.state.replicas.contains(&self.me))
    }

    fn guard(&self, partition: u32) -> Option<std::sync::MutexGuard<'_, ()>> {
        let guard = self.replica_guard.get(partition as usize)?;
        Some(guard.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Installs a leader's copy, but only once this node's own view names it a replica.
    ///
    /// Together with [`Partitions::drop_unassigned`] (same guard, same check) this keeps a
    /// stale view from dropping a copy just installed: views only move forward, so after a
    /// view that names this node, only a newer one that does not can drop the copy.
    pub fn install_snapshot(
        &self,
        partition: u32,
        position: Position,
        messages: &[StoredMessage],
    ) -> Result<(), InstallError> {
        let _guard = self
            .guard(partition)
            .ok_or(InstallError::NotAReplica(partition))?;
        if !self.is_replica(partition) {
            return Err(InstallError::NotAReplica(partition));
        }
        run_blocking(|| self.store.install_snapshot(partition, position, messages))
            .map_err(InstallError::Store)
    }

    /// Forgets the data of partitions this node no longer replicates.
    pub fn drop_unassigned(&self) {
        for partition in 0..self.count() {
            if self.is_replica(partition)
                || !run_blocking(|| self.store.holds(partition)).unwrap_or(false)
            {
                continue;
            }
            let Some(_guard) = self.guard(partition) else {
                continue;
            };
            // Unassigned views exist only for assigned partitions; no view yet means no opinion.
            if self.view(partition).is_none() || self.is_replica(partition) {
                continue;
            }
            match run_blocking(|| self.store.drop_partition(partition)) {
                Ok(n) => tracing::info!(
                    partition,
                    messages = n,
                    "dropped a partition moved elsewhere"
                ),
                Err(e) => tracing::warn!(partition, error = %e, "cannot drop partition"),
            }
        }
    }
}

/// Keeps followers caught up and unassigned data gone, until the process ends.
pub fn spawn_maintenance(partitions: Arc<Partitions>, every: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            partitions.catch_up_followers().await;
            partitions.drop_unassigned();
        }
    });
}
