//! The controller: one partitioning service at a time (elected through ZooKeeper) decides who
//! leads and who replicates each partition.
//!
//! The ring is built over every node the cluster knows: the live ones and every node that is
//! a replica of some partition, dead or alive. So a dead node keeps its replica slots (and its
//! data, for when it comes back) and leaves only the in-sync set, and a partition keeps
//! `replication_factor` replicas; slots move only when a node joins.
//!
//! Rules, applied to every partition whenever membership changes (and periodically):
//! - A new partition gets the ring's `replication_factor` nodes, the first as leader.
//! - A dead leader, or one no longer in the in-sync set, is replaced by a live in-sync replica (preferring the ring's order) with a
//!   higher epoch. With no live in-sync replica the partition stays offline: electing a replica
//!   that may lack acknowledged messages would lose them.
//! - Dead nodes leave the in-sync set (never the last member, who must come back to lead).
//! - Nodes the ring now names are added as replicas; the leader catches them up and adds them
//!   to the in-sync set. Once every ring-named node is in sync, the others are dropped, and
//!   leadership moves to the ring's first node (the preferred leader) if another node leads.

use crate::ring::HashRing;
use mom_catalog::partitions::{self, ClusterSettings, PartitionState, Versioned};
use mom_catalog::NodeInfo;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::watch;
use zookeeper_client::Client;

/// What the partition's state should become, or None when it is right as it is.
pub fn plan(
    partition: u32,
    current: Option<&PartitionState>,
    ring: &HashRing,
    live: &BTreeSet<String>,
    replication_factor: u32,
) -> Option<PartitionState> {
    let target: Vec<String> = ring
        .owners(
            &format!("partition-{partition}"),
            replication_factor as usize,
        )
        .iter()
        .map(|n| n.id.clone())
        .collect();
    let first = target.first()?.clone();
    let Some(current) = current else {
        if !target.iter().all(|id| live.contains(id)) {
            return None;
        }
        return Some(PartitionState {
            leader: first,
            epoch: 1,
            replicas: target.clone(),
            isr: target,
        });
    };
    let is_live = |id: &String| live.contains(id);
    let live_isr: Vec<String> = current
        .isr
        .iter()
        .filter(|id| is_live(id))
        .cloned()
        .collect();
    if live_isr.is_empty() {
        return None;
    }
    let mut next = current.clone();
    next.isr = live_isr;
    // A leader outside the in-sync set (it resigned, or left with its disk) cannot lead.
    if !is_live(&current.leader) || !next.isr.contains(&current.leader) {
        next.leader = target
            .iter()
            .find(|id| next.isr.contains(id))
            .unwrap_or(&next.isr[0])
            .clone();
        next.epoch += 1;
    }
    for id in &target {
        if !next.replicas.contains(id) {
            next.replicas.push(id.clone());
        }
    }
    if target.iter().all(|id| next.isr.contains(id)) {
        // The ring's first node leads, which spreads leadership evenly (new nodes get theirs).
        if next.leader != first {
            next.leader = first;
            next.epoch += 1;
        }
        next.replicas = target.clone();
        next.isr.retain(|id| target.contains(id));
    }
    (next != *current).then_some(next)
}

/// Every node the cluster knows: the live ones and every replica named anywhere.
fn known_nodes(live: &[NodeInfo], states: &BTreeMap<u32, Versioned>) -> Vec<NodeInfo> {
    let mut known: BTreeMap<String, NodeInfo> =
        live.iter().map(|n| (n.id.clone(), n.clone())).collect();
    for state in states.values() {
        for id in &state.state.replicas {
            known.entry(id.clone()).or_insert_with(|| NodeInfo {
                id: id.clone(),
                grpc_addr: String::new(),
                incarnation: 0,
            });
        }
    }
    known.into_values().collect()
}

async fn reconcile(
    zk: &Client,
    settings: ClusterSettings,
    virtual_nodes: u32,
    live_nodes: &[NodeInfo],
) -> mom_catalog::Result<()> {
    let mut states = BTreeMap::new();
    for partition in 0..settings.partitions {
        if let Some(state) = partitions::read_partition(zk, partition).await? {
            states.insert(partition, state);
        }
    }
    let ring = HashRing::new(known_nodes(live_nodes, &states), virtual_nodes);
    let live: BTreeSet<String> = live_nodes.iter().map(|n| n.id.clone()).collect();
    // Partitions this pass changes: 0 once every one has its ring-named replicas in sync,
    // led by the preferred one (operators and tests wait for that after membership changes).
    let mut unsettled = 0u32;
    for partition in 0..settings.partitions {
        let current = states.get(&partition);
        let Some(next) = plan(
            partition,
            current.map(|v| &v.state),
            &ring,
            &live,
            settings.replication_factor,
        ) else {
            continue;
        };
        unsettled += 1;
        if partitions::write_partition(zk, partition, &next, current.map(|v| v.version)).await? {
            tracing::info!(partition, leader = %next.leader, epoch = next.epoch, isr = ?next.isr, replicas = ?next.replicas, "partition reassigned");
        }
    }
    metrics::gauge!("mom_controller_unsettled_partitions").set(f64::from(unsettled));
    Ok(())
}

/// Waits to be elected, then keeps every partition's assignment right until the process ends.
pub async fn run(
    zk: Client,
    id: String,
    settings: ClusterSettings,
    virtual_nodes: u32,
    mut live: watch::Receiver<Vec<NodeInfo>>,
) {
    if let Err(e) = partitions::become_controller(&zk, &id).await {
        tracing::error!(error = %e, "cannot take part in the controller election");
        return;
    }
    tracing::info!(%id, "elected controller");
    metrics::gauge!("mom_controller").set(1.0);
    loop {
        let nodes = live.borrow_and_update().clone();
        if let Err(e) = reconcile(&zk, settings, virtual_nodes, &nodes).await {
            tracing::warn!(error = %e, "reconciling partitions failed; retrying");
        }
        // Leaders change the in-sync sets too, so look again now and then even without news.
        let _ = tokio::time::timeout(Duration::from_millis(500), live.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[&str]) -> HashRing {
        HashRing::new(
            ids.iter()
                .map(|id| NodeInfo {
                    id: id.to_string(),
                    grpc_addr: String::new(),
                    incarnation: 0,
                })
                .collect(),
            32,
        )
    }

    fn live(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn state(leader: &str, epoch: u64, replicas: &[&str], isr: &[&str]) -> PartitionState {
        let strings = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect();
        PartitionState {
            leader: leader.into(),
            epoch,
            replicas: strings(replicas),
            isr: strings(isr),
        }
    }

    #[test]
    fn a_new_partition_gets_replication_factor_replicas() {
        let next = plan(
            0,
            None,
            &ring(&["a", "b", "c", "d"]),
            &live(&["a", "b", "c", "d"]),
            3,
        )
        .unwrap();
        assert_eq!((next.epoch, next.replicas.len()), (1, 3));
        assert_eq!(next.leader, next.replicas[0]);
        assert_eq!(next.isr, next.replicas);
    }

    #[test]
    fn a_stable_partition_is_left_alone() {
        let r = ring(&["a", "b", "c"]);
        let all = live(&["a", "b", "c"]);
        let first = plan(7, None, &r, &all, 3).unwrap();
        assert_eq!(plan(7, Some(&first), &r, &all, 3), None);
    }

    #[test]
    fn a_dead_leader_is_replaced_by_an_in_sync_replica_with_a_new_epoch() {
        let current = state("a", 4, &["a", "b", "c"], &["a", "b"]);
        let next = plan(
            0,
            Some(&current),
            &ring(&["a", "b", "c"]),
            &live(&["b", "c"]),
            3,
        )
        .unwrap();
        assert_eq!((next.leader.as_str(), next.epoch), ("b", 5));
        assert_eq!(next.isr, ["b"]);
        // The dead node keeps its replica slot; c is out of sync and stays a replica too.
        assert_eq!(next.replicas, current.replicas);
    }

    #[test]
    fn a_leader_outside_the_in_sync_set_is_replaced() {
        let ring = ring(&["a", "b", "c"]);
        let target = ring.owners("partition-0", 3);
        let ids: Vec<&str> = target.iter().map(|n| n.id.as_str()).collect();
        let current = state(ids[0], 4, &ids, &ids[1..]);
        let next = plan(0, Some(&current), &ring, &live(&["a", "b", "c"]), 3).unwrap();
        assert_eq!((next.leader.as_str(), next.epoch), (ids[1], 5));
    }

    #[test]
    fn without_a_live_in_sync_replica_the_partition_waits() {
        let current = state("a", 2, &["a", "b", "c"], &["a"]);
        assert_eq!(
            plan(
                0,
                Some(&current),
                &ring(&["a", "b", "c"]),
                &live(&["b", "c"]),
                3
            ),
            None
        );
    }

    #[test]
    fn a_joining_node_is_added_and_old_replicas_dropped_only_once_it_is_in_sync() {
        let before = ring(&["a", "b"]);
        let current = plan(3, None, &before, &live(&["a", "b"]), 2).unwrap();
        let after = ring(&["a", "b", "c", "d", "e"]);
        let all = live(&["a", "b", "c", "d", "e"]);
        let Some(next) = plan(3, Some(&current), &after, &all, 2) else {
            return; // the ring kept this partition where it was
        };
        let target: Vec<String> = after
            .owners("partition-3", 2)
            .iter()
            .map(|n| n.id.clone())
            .collect();
        for id in &target {
            assert!(next.replicas.contains(id));
        }
        assert_eq!(
            next.isr, current.isr,
            "nobody is in sync before catching up"
        );
        assert_eq!(next.leader, current.leader);
        let caught_up = PartitionState {
            isr: next.replicas.clone(),
            ..next.clone()
        };
        let last = plan(3, Some(&caught_up), &after, &all, 2).unwrap();
        assert_eq!(last.replicas, target);
        assert_eq!(last.isr, target);
        assert_eq!(
            last.leader, target[0],
            "the preferred leader leads once in sync"
        );
    }

    #[test]
    fn with_two_of_three_nodes_dead_the_replica_set_keeps_its_size() {
        let r = ring(&["a", "b", "c"]);
        let current = plan(1, None, &r, &live(&["a", "b", "c"]), 3).unwrap();
        let survivor = current.replicas[2].clone();
        let next = plan(1, Some(&current), &r, &live(&[survivor.as_str()]), 3).unwrap();
        assert_eq!(next.replicas, current.replicas);
        assert_eq!(
            (next.leader.clone(), next.isr.clone()),
            (survivor.clone(), vec![survivor])
        );
    }

    #[test]
    fn known_nodes_include_dead_replicas() {
        let states = BTreeMap::from([(
            0,
            Versioned {
                state: state("a", 1, &["a", "b", "c"], &["a"]),
                version: 3,
            },
        )]);
        let live = vec![NodeInfo {
            id: "a".into(),
            grpc_addr: "x".into(),
            incarnation: 1,
        }];
        let ids: Vec<String> = known_nodes(&live, &states)
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }
}
