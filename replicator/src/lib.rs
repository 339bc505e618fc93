//! The leader's side of replication: pushes each change (or a whole-partition snapshot) to a
//! follower replica over gRPC and classifies what went wrong, so the leader knows whether to
//! send a snapshot, drop the follower from the in-sync set, or step down.

pub mod protocol;

use mom_common::channels::ChannelPool;
use mom_common::proto::{replica_client::ReplicaClient, ApplyRequest, SnapshotRequest};
use mom_common::token::{AttachToken, TokenKeys};
use std::time::Duration;
use tonic::{service::interceptor::InterceptedService, transport::Channel, Code, Status};

/// Snapshots carry a whole partition; gRPC's 4 MiB default would cap a partition's backlog.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The follower's copy does not end where this change starts: send a snapshot.
    #[error("follower needs a snapshot: {0}")]
    NeedsSnapshot(String),
    /// The follower already follows a newer leader: this node's leadership is over.
    #[error("follower is on a newer epoch: {0}")]
    Deposed(String),
    /// No answer in time, or a broken connection: the follower cannot count as in sync.
    #[error("follower unreachable: {0}")]
    Unreachable(String),
}

impl From<Status> for ReplicationError {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::FailedPrecondition => ReplicationError::NeedsSnapshot(message),
            Code::Aborted => ReplicationError::Deposed(message),
            _ => ReplicationError::Unreachable(format!("{}: {message}", status.code())),
        }
    }
}

/// One per node; keeps a channel per follower address.
pub struct Replicator {
    node_id: String,
    keys: TokenKeys,
    channels: ChannelPool,
}

impl Replicator {
    pub fn new(node_id: &str, jwt_secret: &str, timeout: Duration) -> Self {
        Replicator {
            node_id: node_id.to_owned(),
            keys: TokenKeys::new(jwt_secret),
            channels: ChannelPool::new(timeout),
        }
    }

    fn client(
        &self,
        addr: &str,
    ) -> Result<ReplicaClient<InterceptedService<Channel, AttachToken>>, ReplicationError> {
        let channel = self
            .channels
            .get(addr)
            .map_err(|e| ReplicationError::Unreachable(e.to_string()))?;
        // Nodes authenticate to each other with short-lived tokens of their own.
        let token = self
            .keys
            .issue(&format!("node:{}", self.node_id), Duration::from_secs(300));
        let attach =
            AttachToken::new(&token).map_err(|e| ReplicationError::Unreachable(e.to_string()))?;
        Ok(ReplicaClient::with_interceptor(channel, attach)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    pub async fn apply(&self, addr: &str, request: ApplyRequest) -> Result<(), ReplicationError> {
        self.client(addr)?.apply(request).await?;
        Ok(())
    }

    pub async fn install_snapshot(
        &self,
        addr: &str,
        request: SnapshotRequest,
    ) -> Result<(), ReplicationError> {
        self.client(addr)?.install_snapshot(request).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_the_leader_must_do() {
        assert!(matches!(
            Status::failed_precondition("gap").into(),
            ReplicationError::NeedsSnapshot(_)
        ));
        assert!(matches!(
            Status::aborted("epoch").into(),
            ReplicationError::Deposed(_)
        ));
        assert!(matches!(
            Status::unavailable("down").into(),
            ReplicationError::Unreachable(_)
        ));
        assert!(matches!(
            Status::deadline_exceeded("slow").into(),
            ReplicationError::Unreachable(_)
        ));
    }
}
