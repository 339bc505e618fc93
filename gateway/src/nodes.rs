//! Reaching broker nodes: the live set from ZooKeeper, owners from the partitioning service,
//! and one reusable gRPC channel per node address.

use crate::error::ApiError;
use mom_catalog::NodeInfo;
use mom_common::proto::{
    broker_client::BrokerClient, partitioning_client::PartitioningClient, OwnerRequest,
};
use mom_common::token::AttachToken;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

pub type Broker = BrokerClient<InterceptedService<Channel, AttachToken>>;

#[derive(Clone)]
pub struct Nodes {
    live: watch::Receiver<Vec<NodeInfo>>,
    partitioning: Channel,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

fn lazy_channel(addr: &str) -> Result<Channel, ApiError> {
    Ok(Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| ApiError::Internal(format!("bad node address {addr:?}: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .connect_lazy())
}

impl Nodes {
    pub fn new(
        live: watch::Receiver<Vec<NodeInfo>>,
        partitioning_addr: &str,
    ) -> Result<Self, ApiError> {
        Ok(Nodes {
            live,
            partitioning: lazy_channel(partitioning_addr)?,
            channels: Arc::default(),
        })
    }

    /// Live nodes, sorted by id.
    pub fn live(&self) -> Vec<NodeInfo> {
        self.live.borrow().clone()
    }

    pub fn broker(&self, node: &NodeInfo, token: &AttachToken) -> Result<Broker, ApiError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(&node.grpc_addr) {
            Some(channel) => channel.clone(),
            None => {
                let channel = lazy_channel(&node.grpc_addr)?;
                channels.insert(node.grpc_addr.clone(), channel.clone());
                channel
            }
        };
        Ok(BrokerClient::with_interceptor(channel, token.clone()))
    }

    /// The node that owns `partition_key`, per the partitioning service.
    pub async fn owner(
        &self,
        partition_key: String,
        token: &AttachToken,
    ) -> Result<NodeInfo, ApiError> {
        let mut client =
            PartitioningClient::with_interceptor(self.partitioning.clone(), token.clone());
        let reply = client
            .owner(OwnerRequest { partition_key })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unauthenticated => ApiError::Unauthorized(status.message().to_owned()),
                _ => ApiError::Unavailable(format!("partitioning service: {}", status.message())),
            })?
            .into_inner();
        let owner = reply
            .owner
            .ok_or_else(|| ApiError::Unavailable("partitioning service named no owner".into()))?;
        Ok(NodeInfo {
            id: owner.id,
            grpc_addr: owner.grpc_addr,
        })
    }
}
