//! What the gateway can tell about the cluster from its ZooKeeper watches: `/cluster` (nodes,
//! partitions, controller) and `/health` (whether every partition can take writes, and with
//! how many copies).

use crate::nodes::Nodes;
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    pub address: String,
    pub live: bool,
}

#[derive(Debug, Serialize)]
pub struct PartitionView {
    pub partition: u32,
    pub leader: String,
    pub leader_live: bool,
    pub epoch: u64,
    pub replicas: Vec<String>,
    pub isr: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub controller: Option<String>,
    pub nodes: Vec<NodeView>,
    pub partitions: Vec<PartitionView>,
}

#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub nodes: usize,
    pub reasons: Vec<String>,
}

fn partitions(nodes: &Nodes) -> Vec<PartitionView> {
    let live: BTreeSet<String> = nodes.live().into_iter().map(|n| n.id).collect();
    nodes
        .partition_states()
        .into_iter()
        .map(|(partition, v)| PartitionView {
            partition,
            leader_live: live.contains(&v.state.leader),
            leader: v.state.leader,
            epoch: v.state.epoch,
            replicas: v.state.replicas,
            isr: v.state.isr,
        })
        .collect()
}

pub fn view(nodes: &Nodes, controller: Option<String>) -> ClusterView {
    let live = nodes.live();
    let partitions = partitions(nodes);
    // Dead nodes are known from the replica sets that still name them.
    let mut known: BTreeSet<String> = partitions
        .iter()
        .flat_map(|p| p.replicas.iter().cloned())
        .collect();
    known.extend(live.iter().map(|n| n.id.clone()));
    let nodes = known
        .into_iter()
        .map(|id| {
            let found = live.iter().find(|n| n.id == id);
            NodeView {
                address: found.map(|n| n.grpc_addr.clone()).unwrap_or_default(),
                live: found.is_some(),
                id,
            }
        })
        .collect();
    ClusterView {
        controller,
        nodes,
        partitions,
    }
}

pub fn health(nodes: &Nodes, min_insync: u32) -> Health {
    let partitions = partitions(nodes);
    let mut unavailable = Vec::new();
    let mut degraded = Vec::new();
    for p in &partitions {
        if !p.leader_live {
            unavailable.push(format!("partition {}: no live leader", p.partition));
        } else if p.isr.len() < min_insync as usize {
            unavailable.push(format!(
                "partition {}: {} in-sync replicas, {min_insync} needed to write",
                p.partition,
                p.isr.len()
            ));
        } else if p.isr.len() < p.replicas.len() {
            degraded.push(format!(
                "partition {}: {} of {} replicas in sync",
                p.partition,
                p.isr.len(),
                p.replicas.len()
            ));
        }
    }
    if partitions.is_empty() {
        unavailable.push("no partition is assigned yet".into());
    }
    let status = if !unavailable.is_empty() {
        "unavailable"
    } else if !degraded.is_empty() {
        "degraded"
    } else {
        "ok"
    };
    unavailable.extend(degraded);
    Health {
        status,
        nodes: nodes.live().len(),
        reasons: unavailable,
    }
}
