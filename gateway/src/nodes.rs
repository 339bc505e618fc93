//! Reaching broker nodes: the live set from ZooKeeper, partition leaders from the
//! partitioning service, and one reusable gRPC channel per node address.

use crate::error::ApiError;
use mom_catalog::NodeInfo;
use mom_common::channels::ChannelPool;
use mom_common::proto::{
    broker_client::BrokerClient, partitioning_client::PartitioningClient, OwnerRequest,
};
use mom_common::token::AttachToken;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

pub type Broker = BrokerClient<InterceptedService<Channel, AttachToken>>;

/// How long a request keeps trying while a partition's leader is down or moving. Failover
/// takes a ZooKeeper session timeout plus an election, a few seconds.
pub const FAILOVER_WAIT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct Nodes {
    live: watch::Receiver<Vec<NodeInfo>>,
    partitioning_addr: String,
    channels: ChannelPool,
}

impl Nodes {
    pub fn new(live: watch::Receiver<Vec<NodeInfo>>, partitioning_addr: &str) -> Self {
        Nodes {
            live,
            partitioning_addr: partitioning_addr.to_owned(),
            channels: ChannelPool::new(Duration::from_secs(30)),
        }
    }

    /// Live nodes, sorted by id.
    pub fn live(&self) -> Vec<NodeInfo> {
        self.live.borrow().clone()
    }

    fn channel(&self, addr: &str) -> Result<Channel, ApiError> {
        self.channels
            .get(addr)
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    pub fn broker(&self, node: &NodeInfo, token: &AttachToken) -> Result<Broker, ApiError> {
        Ok(BrokerClient::with_interceptor(
            self.channel(&node.grpc_addr)?,
            token.clone(),
        ))
    }

    /// The current leader of the partition `request` names, and that partition.
    pub async fn owner(
        &self,
        request: OwnerRequest,
        token: &AttachToken,
    ) -> Result<(NodeInfo, u32), ApiError> {
        let mut client = PartitioningClient::with_interceptor(
            self.channel(&self.partitioning_addr)?,
            token.clone(),
        );
        let reply = client
            .owner(request)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unauthenticated => ApiError::Unauthorized(status.message().to_owned()),
                tonic::Code::InvalidArgument => ApiError::BadRequest(status.message().to_owned()),
                _ => ApiError::Unavailable(format!("partitioning service: {}", status.message())),
            })?
            .into_inner();
        let owner = reply
            .owner
            .ok_or_else(|| ApiError::Unavailable("partitioning service named no owner".into()))?;
        Ok((
            NodeInfo {
                id: owner.id,
                grpc_addr: owner.grpc_addr,
            },
            reply.partition,
        ))
    }
}

/// Runs `attempt` again while it fails as unavailable (a leader down or moving), for up to
/// [`FAILOVER_WAIT`]. Callers make attempts that are safe to repeat.
pub async fn retry_while_unavailable<T, F, Fut>(mut attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let deadline = Instant::now() + FAILOVER_WAIT;
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
