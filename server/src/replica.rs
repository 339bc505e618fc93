//! The follower's side of replication: the `Replica` gRPC service.

use crate::partitions::{InstallError, Partitions};
use crate::store::{Position, Store, StoreError};
use mom_common::proto::{self, replica_server::Replica};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ReplicaService {
    store: Arc<Store>,
    partitions: Arc<Partitions>,
}

impl ReplicaService {
    pub fn new(partitions: Arc<Partitions>) -> Self {
        ReplicaService {
            store: partitions.store().clone(),
            partitions,
        }
    }
}

/// Tells the leader what to do: resend as a snapshot, or step down.
fn status(error: StoreError) -> Status {
    match error {
        StoreError::OutOfOrder {
            epoch, have_epoch, ..
        } if epoch < have_epoch => Status::aborted(error.to_string()),
        StoreError::OutOfOrder { .. } => Status::failed_precondition(error.to_string()),
        StoreError::StaleSnapshot { .. } => Status::aborted(error.to_string()),
        other => Status::unavailable(other.to_string()),
    }
}

#[tonic::async_trait]
impl Replica for ReplicaService {
    async fn apply(
        &self,
        request: Request<proto::ApplyRequest>,
    ) -> Result<Response<proto::ApplyReply>, Status> {
        let request = request.into_inner();
        let change = request.change.unwrap_or_default();
        tokio::task::block_in_place(|| {
            self.store.apply(
                request.partition,
                request.epoch,
                request.seq,
                &change,
                crate::store::Order::Follow,
            )
        })
        .map_err(status)?;
        Ok(Response::new(proto::ApplyReply {}))
    }

    async fn install_snapshot(
        &self,
        request: Request<proto::SnapshotRequest>,
    ) -> Result<Response<proto::SnapshotReply>, Status> {
        let request = request.into_inner();
        let position = Position {
            epoch: request.epoch,
            seq: request.seq,
        };
        match self
            .partitions
            .install_snapshot(request.partition, position, &request.messages)
        {
            Ok(()) => {}
            // The leader tries again later, once this node's view has caught up.
            Err(e @ InstallError::NotAReplica(_)) => {
                return Err(Status::unavailable(e.to_string()))
            }
            Err(InstallError::Store(e)) => return Err(status(e)),
        }
        tracing::info!(
            partition = request.partition,
            epoch = request.epoch,
            seq = request.seq,
            messages = request.messages.len(),
            "installed snapshot"
        );
        Ok(Response::new(proto::SnapshotReply {}))
    }
}
