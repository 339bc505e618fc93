//! Moving each partition's log from its leader to its followers.
//!
//! - [`protocol`]: the replication protocol as a state machine with no I/O (leader, follower,
//!   catch-up, in-sync changes), after Kafka's design.
//! - [`wire`]: its fetch request and reply as gRPC messages.
//! - [`Fetcher`]: a follower's gRPC client for the leader's `Replica.Fetch`.

// tonic::Status is what every gRPC call returns; boxing it only here would add noise.
#![allow(clippy::result_large_err)]

pub mod protocol;
pub mod wire;

use mom_common::channels::ChannelPool;
use mom_common::proto::{self, replica_client::ReplicaClient};
use mom_common::token::{AttachService, ServiceCredentials, ServiceIdentity};
use std::time::Duration;
use tonic::{service::interceptor::InterceptedService, transport::Channel, Status};

/// A fetch reply carries at most this many bytes of entries (plus one entry), so catch-up of a
/// large backlog streams in bounded chunks.
pub const MAX_FETCH_BYTES: usize = 4 << 20;
/// gRPC's own limit on a decoded message, above one fetch reply's worth.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// One per node; keeps a channel per leader address.
pub struct Fetcher {
    /// This node's service credentials: leaders serve fetches to replicas only.
    credentials: ServiceCredentials,
    channels: ChannelPool,
}

impl Fetcher {
    /// `timeout` bounds each fetch, which a leader may hold for its long-poll wait.
    pub fn new(node_id: &str, cluster_secret: &str, timeout: Duration) -> Self {
        Fetcher {
            credentials: ServiceCredentials::new(
                cluster_secret,
                ServiceIdentity::Node(node_id.to_owned()),
            ),
            channels: ChannelPool::new(timeout),
        }
    }

    fn client(
        &self,
        addr: &str,
    ) -> Result<ReplicaClient<InterceptedService<Channel, AttachService>>, Status> {
        let channel = self
            .channels
            .get(addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(
            ReplicaClient::with_interceptor(channel, self.credentials.attach())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
    }

    pub async fn fetch(
        &self,
        addr: &str,
        request: proto::FetchRequest,
    ) -> Result<proto::FetchReply, Status> {
        Ok(self.client(addr)?.fetch(request).await?.into_inner())
    }
}
