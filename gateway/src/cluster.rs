//! What the gateway can tell about the cluster from its ZooKeeper watches: `/cluster` (nodes,
//! partitions, controller) and `/health` (whether every partition can take writes, and with
//! how many copies).

use crate::nodes::Nodes;
use mom_common::proto;
pub use mom_common::rest::{ClusterView, NodeView, PartitionView};
use mom_common::token::ServiceCredentials;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long `/cluster` waits for a node's replica status before it shows its lag as unknown
/// (`PartitionView::lag`).
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `degraded` (some partition has fewer in-sync replicas than replicas) or
    /// `unavailable` (some partition cannot take writes).
    #[schema(value_type = crate::openapi::HealthStatus)]
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
            lag: BTreeMap::new(),
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

/// [`view`] with every replica's lag, from the `Status` of every live node (asked at once).
pub async fn view_with_lag(
    nodes: &Nodes,
    credentials: &ServiceCredentials,
    controller: Option<String>,
) -> ClusterView {
    let mut view = view(nodes, controller);
    let token = credentials.attach();
    let asks = nodes.live().into_iter().map(|node| {
        let token = token.clone();
        async move {
            let mut broker = nodes.broker(&node, &token).ok()?;
            let reply =
                tokio::time::timeout(STATUS_TIMEOUT, broker.status(proto::StatusRequest {}))
                    .await
                    .ok()?
                    .ok()?;
            Some((node.id, reply.into_inner().partitions))
        }
    });
    // (node, partition) -> that replica's high watermark.
    let watermarks: BTreeMap<(String, u32), u64> = futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .flat_map(|(node, partitions)| {
            partitions
                .into_iter()
                .map(move |p| ((node.clone(), p.partition), p.high_watermark))
        })
        .collect();
    for p in &mut view.partitions {
        let leader = watermarks.get(&(p.leader.clone(), p.partition)).copied();
        p.lag = p
            .replicas
            .iter()
            .map(|replica| {
                let own = watermarks.get(&(replica.clone(), p.partition)).copied();
                let lag = leader.zip(own).map(|(l, o)| l.saturating_sub(o));
                (replica.clone(), lag)
            })
            .collect();
    }
    view
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
