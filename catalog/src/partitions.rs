//! Partition leadership, kept in ZooKeeper so that every change is a compare-and-set.
//!
//! `/mom/partitions/<n>` holds a JSON [`PartitionState`]. The controller (one elected
//! partitioning service) elects leaders and assigns replicas; a leader shrinks and grows the
//! in-sync set. Both write with the znode version they read, so a stale writer always loses.
//! `/mom/cluster` holds the [`ClusterSettings`] the controller was started with.

use crate::{persistent, CatalogError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use zookeeper_client::{AddWatchMode, Client, Error as ZkError, EventType};

pub const PARTITIONS: &str = "/mom/partitions";
const CLUSTER: &str = "/mom/cluster";
const CONTROLLER: &str = "/mom/controller";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub leader: String,
    /// Grows with every change of leader; replicas refuse writes from older epochs.
    pub epoch: u64,
    /// Nodes that hold or are catching up with a copy.
    pub replicas: Vec<String>,
    /// Replicas known to hold every acknowledged change (the leader among them).
    pub isr: Vec<String>,
}

/// A partition state with the znode version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub state: PartitionState,
    pub version: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    pub partitions: u32,
    pub replication_factor: u32,
}

fn partition_path(partition: u32) -> String {
    format!("{PARTITIONS}/{partition}")
}

fn parse<T: for<'de> Deserialize<'de>>(path: &str, data: &[u8]) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| CatalogError::Corrupt {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

pub async fn read_partition(zk: &Client, partition: u32) -> Result<Option<Versioned>> {
    let path = partition_path(partition);
    match zk.get_data(&path).await {
        Ok((data, stat)) => Ok(Some(Versioned {
            state: parse(&path, &data)?,
            version: stat.version,
        })),
        Err(ZkError::NoNode) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `state` if the znode is still at `expected` (None: if it does not exist yet).
/// Returns false when someone else changed it first.
pub async fn write_partition(
    zk: &Client,
    partition: u32,
    state: &PartitionState,
    expected: Option<i32>,
) -> Result<bool> {
    let path = partition_path(partition);
    let data = serde_json::to_vec(state).expect("partition state serializes");
    let outcome = match expected {
        None => zk.create(&path, &data, &persistent()).await.map(|_| ()),
        Some(version) => zk.set_data(&path, &data, Some(version)).await.map(|_| ()),
    };
    match outcome {
        Ok(()) => Ok(true),
        Err(ZkError::NodeExists | ZkError::BadVersion | ZkError::NoNode) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Records the settings on first start; later starts get the recorded ones, because
/// changing the partition count would move every key.
pub async fn cluster_settings(zk: &Client, wanted: ClusterSettings) -> Result<ClusterSettings> {
    let data = serde_json::to_vec(&wanted).expect("settings serialize");
    match zk.create(CLUSTER, &data, &persistent()).await {
        Ok(_) => Ok(wanted),
        Err(ZkError::NodeExists) => {
            let (data, _) = zk.get_data(CLUSTER).await?;
            parse(CLUSTER, &data)
        }
        Err(e) => Err(e.into()),
    }
}

/// Waits for the recorded cluster settings (the controller writes them).
pub async fn wait_cluster_settings(zk: &Client) -> Result<ClusterSettings> {
    loop {
        match zk.get_data(CLUSTER).await {
            Ok((data, _)) => return parse(CLUSTER, &data),
            Err(ZkError::NoNode) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The elected controller's id, if one is elected now.
pub async fn controller(zk: &Client) -> Result<Option<String>> {
    match zk.get_data(CONTROLLER).await {
        Ok((data, _)) => Ok(Some(String::from_utf8_lossy(&data).into_owned())),
        Err(ZkError::NoNode) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Blocks until this process holds the controller znode (ephemeral: it is freed when the
/// holder's session ends, and the next waiter takes over).
pub async fn become_controller(zk: &Client, id: &str) -> Result<()> {
    let ephemeral = crate::session::create_options(zookeeper_client::CreateMode::Ephemeral);
    loop {
        match zk.create(CONTROLLER, id.as_bytes(), &ephemeral).await {
            Ok(_) => return Ok(()),
            Err(ZkError::NodeExists) => {
                let (stat, watcher) = zk.check_and_watch_stat(CONTROLLER).await?;
                if stat.is_some() {
                    watcher.changed().await;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn read_all(zk: &Client) -> Result<BTreeMap<u32, Versioned>> {
    let mut states = BTreeMap::new();
    for name in zk.list_children(PARTITIONS).await? {
        let Ok(partition) = name.parse::<u32>() else {
            continue;
        };
        if let Some(state) = read_partition(zk, partition).await? {
            states.insert(partition, state);
        }
    }
    Ok(states)
}

/// Replaces what changed with `all` (read after it): a state only ever moves to a newer version.
fn merge(sender: &watch::Sender<BTreeMap<u32, Versioned>>, all: BTreeMap<u32, Versioned>) {
    sender.send_if_modified(|current| {
        let mut changed = false;
        for (partition, state) in all {
            let newer = current
                .get(&partition)
                .is_none_or(|known| known.version < state.version);
            if newer {
                current.insert(partition, state);
                changed = true;
            }
        }
        changed
    });
}

async fn read_all_retrying(zk: &Client) -> Option<BTreeMap<u32, Versioned>> {
    for _ in 0..50 {
        match read_all(zk).await {
            Ok(all) => return Some(all),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read partition states, retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    None
}

/// How often every partition's state is read again, in case a watch event was lost (around a
/// reconnection, say): views must not stay stale for good.
const RESYNC: Duration = Duration::from_secs(3);

/// Follows every partition's state; the receiver always holds the latest view.
pub async fn watch_partitions(zk: Client) -> Result<watch::Receiver<BTreeMap<u32, Versioned>>> {
    let (sender, receiver) = watch::channel(BTreeMap::new());
    follow_partitions(zk, sender).await?;
    Ok(receiver)
}

/// Keeps `sender` holding every partition's state as seen through `zk`, until that session
/// ends (a service that renews its session then follows again, into the same sender).
pub async fn follow_partitions(
    zk: Client,
    sender: watch::Sender<BTreeMap<u32, Versioned>>,
) -> Result<()> {
    let mut watcher = zk
        .watch(PARTITIONS, AddWatchMode::PersistentRecursive)
        .await?;
    merge(&sender, read_all(&zk).await?);
    tokio::spawn(async move {
        let mut resync = tokio::time::interval(RESYNC);
        loop {
            let event = tokio::select! {
                event = watcher.changed() => event,
                _ = resync.tick() => {
                    if let Ok(all) = read_all(&zk).await {
                        merge(&sender, all);
                    }
                    if sender.is_closed() {
                        return;
                    }
                    continue;
                }
            };
            if event.event_type == EventType::Session {
                if event.session_state.is_terminated() {
                    return;
                }
                // Reconnected: events may have been missed, read everything again.
                if let Some(all) = read_all_retrying(&zk).await {
                    merge(&sender, all);
                }
                continue;
            }
            let Some(partition) = event
                .path
                .rsplit('/')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            loop {
                match read_partition(&zk, partition).await {
                    Ok(state) => {
                        sender.send_modify(|all| match state {
                            Some(state) => {
                                all.insert(partition, state);
                            }
                            None => {
                                all.remove(&partition);
                            }
                        });
                        break;
                    }
                    Err(CatalogError::ZooKeeper(
                        ZkError::SessionExpired | ZkError::ClientClosed,
                    )) => return,
                    Err(e) => {
                        tracing::warn!(partition, error = %e, "cannot read partition state, retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            if sender.is_closed() {
                return;
            }
        }
    });
    Ok(())
}

/// Takes `node` out of every in-sync set (handing over leadership to another in-sync replica)
/// because its copies are gone: a node that lost its disk must not lead, or be counted as a
/// copy, before a leader has caught it up again. Returns how many partitions it left.
pub async fn leave_in_sync_sets(zk: &Client, node: &str, partitions: u32) -> Result<usize> {
    let mut left = 0;
    for partition in 0..partitions {
        loop {
            let Some(current) = read_partition(zk, partition).await? else {
                break;
            };
            if !current.state.isr.iter().any(|id| id == node) {
                break;
            }
            let mut next = current.state.clone();
            next.isr.retain(|id| id != node);
            if next.isr.is_empty() {
                // No copy is known to hold what was acknowledged: the partition stays offline
                // (no leader) rather than let an empty copy lead and overwrite the others.
                tracing::error!(
                    partition,
                    node,
                    "the only in-sync copy of this partition is lost; it stays offline"
                );
                next.leader.clear();
                next.epoch += 1;
            } else if next.leader == node {
                next.leader = next.isr[0].clone();
                next.epoch += 1;
            }
            if write_partition(zk, partition, &next, Some(current.version)).await? {
                left += 1;
                break;
            }
        }
    }
    Ok(left)
}

/// Starts a new epoch for every partition `node` leads, before it serves again after a
/// restart: entries its previous life served to followers but had not fsync'd yet must never
/// be confused with new entries at the same offsets under the same epoch. Returns how many.
pub async fn restart_leaderships(zk: &Client, node: &str, partitions: u32) -> Result<usize> {
    let mut restarted = 0;
    for partition in 0..partitions {
        loop {
            let Some(current) = read_partition(zk, partition).await? else {
                break;
            };
            if current.state.leader != node {
                break;
            }
            let mut next = current.state.clone();
            next.epoch += 1;
            if write_partition(zk, partition, &next, Some(current.version)).await? {
                restarted += 1;
                break;
            }
        }
    }
    Ok(restarted)
}
