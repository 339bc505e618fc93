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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
    /// Every partitioning service; any of them can answer.
    partitioning_addrs: Vec<String>,
    answering: Arc<AtomicUsize>,
    channels: ChannelPool,
}

impl Nodes {
    pub fn new(live: watch::Receiver<Vec<NodeInfo>>, partitioning_addrs: &str) -> Self {
        Nodes {
            live,
            partitioning_addrs: partitioning_addrs
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            answering: Arc::default(),
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

    /// The current leader of the partition `request` names, and that partition. Any
    /// partitioning service can answer; the last one that did is asked first.
    pub async fn owner(
        &self,
        request: OwnerRequest,
        token: &AttachToken,
    ) -> Result<(NodeInfo, u32), ApiError> {
        let count = self.partitioning_addrs.len();
        let first = self.answering.load(Ordering::Relaxed);
        let mut last_error = ApiError::Unavailable("no partitioning service configured".into());
        for index in (first..first + count).map(|i| i % count) {
            let channel = self.channel(&self.partitioning_addrs[index])?;
            let mut client = PartitioningClient::with_interceptor(channel, token.clone());
            match client.owner(request.clone()).await {
                Ok(reply) => {
                    self.answering.store(index, Ordering::Relaxed);
                    let reply = reply.into_inner();
                    let owner = reply.owner.ok_or_else(|| {
                        ApiError::Unavailable("partitioning service named no owner".into())
                    })?;
                    return Ok((
                        NodeInfo {
                            id: owner.id,
                            grpc_addr: owner.grpc_addr,
                            incarnation: 0,
                        },
                        reply.partition,
                    ));
                }
                Err(status) => match status.code() {
                    tonic::Code::Unauthenticated => {
                        return Err(ApiError::Unauthorized(status.message().to_owned()))
                    }
                    tonic::Code::InvalidArgument => {
                        return Err(ApiError::BadRequest(status.message().to_owned()))
                    }
                    _ => {
                        last_error = ApiError::Unavailable(format!(
                            "partitioning service: {}",
                            status.message()
                        ))
                    }
                },
            }
        }
        Err(last_error)
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
