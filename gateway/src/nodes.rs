//! Reaching broker nodes: the live set and every partition's leader from ZooKeeper watches,
//! and one reusable gRPC channel per node address. The partition of a key is computed here,
//! so finding where a publish goes costs no call at all.

use crate::error::ApiError;
use mom_catalog::partitions::Versioned;
use mom_catalog::NodeInfo;
use mom_common::channels::ChannelPool;
use mom_common::proto::broker_client::BrokerClient;
use mom_common::routing::partition_of;
use mom_common::token::AttachService;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

pub type Broker = BrokerClient<InterceptedService<Channel, AttachService>>;

/// How long one call to a node may take before it counts as failed (and is retried on the
/// partition's new leader): shorter than [`FAILOVER_WAIT`], so a stalled node cannot use up
/// the whole retry window.
pub const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Nodes {
    live: watch::Receiver<Vec<NodeInfo>>,
    partitions: watch::Receiver<BTreeMap<u32, Versioned>>,
    partition_count: u32,
    channels: ChannelPool,
    /// How long a request keeps trying while a partition's leader is down or moving.
    pub failover_wait: Duration,
}

impl Nodes {
    pub fn new(
        live: watch::Receiver<Vec<NodeInfo>>,
        partitions: watch::Receiver<BTreeMap<u32, Versioned>>,
        partition_count: u32,
        failover_wait: Duration,
    ) -> Self {
        Nodes {
            live,
            partitions,
            partition_count,
            channels: ChannelPool::new(NODE_CALL_TIMEOUT),
            failover_wait,
        }
    }

    /// How many partitions keys hash into.
    pub fn partition_count(&self) -> u32 {
        self.partition_count
    }

    /// Live nodes, sorted by id.
    pub fn live(&self) -> Vec<NodeInfo> {
        self.live.borrow().clone()
    }

    pub fn broker(&self, node: &NodeInfo, token: &AttachService) -> Result<Broker, ApiError> {
        let channel = self
            .channels
            .get(&node.grpc_addr)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        // A pull's reply may hold several maximal (4 MiB) messages: above tonic's default limit.
        Ok(BrokerClient::with_interceptor(channel, token.clone())
            .max_decoding_message_size(mom_common::message::MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(mom_common::message::MAX_GRPC_MESSAGE_BYTES))
    }

    /// Every partition's state, as the last ZooKeeper watch event left it.
    pub fn partition_states(&self) -> Vec<(u32, Versioned)> {
        self.partitions
            .borrow()
            .iter()
            .map(|(p, v)| (*p, v.clone()))
            .collect()
    }

    /// The partition a partition key (`e/<exchange>/<key>`, `t/<topic>/<key>`) belongs to.
    pub fn partition_of(&self, partition_key: &str) -> u32 {
        partition_of(partition_key, self.partition_count)
    }

    /// The partition's current leader, if it is live.
    pub fn leader_of(&self, partition: u32) -> Result<NodeInfo, ApiError> {
        if partition >= self.partition_count {
            return Err(ApiError::BadRequest(format!("no partition {partition}")));
        }
        let leader = self
            .partitions
            .borrow()
            .get(&partition)
            .map(|v| v.state.leader.clone())
            .ok_or_else(|| {
                ApiError::Unavailable(format!("partition {partition} is not assigned yet"))
            })?;
        self.live
            .borrow()
            .iter()
            .find(|n| n.id == leader)
            .cloned()
            .ok_or_else(|| {
                ApiError::Unavailable(format!(
                    "partition {partition} has no live leader ({leader:?}); electing"
                ))
            })
    }

    /// Runs `call`, made to `leader` of `partition`, unless ZooKeeper names another leader
    /// first: then it answers unavailable, so that the retry goes to the new leader at once
    /// rather than after [`NODE_CALL_TIMEOUT`] on a node that may be cut off. Abandoning the
    /// call is safe: a deposed leader commits nothing new (its HW needs the new leader, which
    /// no longer fetches from it), and a publish retried keeps its message id.
    pub async fn unless_leader_moves<T>(
        &self,
        partition: u32,
        leader: &str,
        call: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let mut partitions = self.partitions.clone();
        let moved = async move {
            loop {
                let named = partitions
                    .borrow_and_update()
                    .get(&partition)
                    .map(|v| v.state.leader.clone());
                if named.as_deref() != Some(leader) {
                    return;
                }
                if partitions.changed().await.is_err() {
                    // No more news: only the call itself can end this.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            biased;
            outcome = call => outcome,
            () = moved => Err(ApiError::Unavailable(format!(
                "partition {partition}: leadership moved away from {leader}"
            ))),
        }
    }
}

/// How long a request keeps trying while a partition's leader is down or moving, by default.
/// Failover takes a ZooKeeper session timeout plus an election, a few seconds.
pub const FAILOVER_WAIT: Duration = Duration::from_secs(15);

/// Runs `attempt` again while it fails as unavailable (a leader down or moving), for up to
/// `window`. Callers make attempts that are safe to repeat.
pub async fn retry_while_unavailable<T, F, Fut>(
    window: Duration,
    mut attempt: F,
) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let deadline = Instant::now() + window;
    let mut backoff = Duration::from_millis(50);
    loop {
        match attempt().await {
            Err(ApiError::Unavailable(why)) if Instant::now() < deadline => {
                tracing::debug!(%why, "unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            outcome => return outcome,
        }
    }
}
