//! The leader's side of replication: the `Replica` gRPC service, through which followers fetch
//! a partition's log. Each fetch goes to the partition's task, which answers at once if it has
//! entries the follower lacks and otherwise holds it until it does, or until the wait runs out
//! (long poll). The leader's HW rides on every answer.
//!
//! Only broker nodes may call it (service tokens, see `mom_common::token`), each only as
//! itself: a fetch names its follower, and that must be the node whose credentials made the
//! call. The partition's core then serves only the replicas ZooKeeper names. Data flows
//! only from leader to follower in answer to the follower's own fetch, sent to the node
//! ZooKeeper names as leader, and the follower checks the reply's leader epoch: so nothing
//! but the partition's current leader can write into a follower's log.

use crate::partition_log::PartitionLogs;
use mom_common::proto::{self, replica_server::Replica};
use mom_common::token::{caller_identity, ServiceIdentity};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct FetchService {
    logs: Arc<PartitionLogs>,
}

impl FetchService {
    pub fn new(logs: Arc<PartitionLogs>) -> Self {
        FetchService { logs }
    }
}

#[tonic::async_trait]
impl Replica for FetchService {
    async fn fetch(
        &self,
        request: Request<proto::FetchRequest>,
    ) -> Result<Response<proto::FetchReply>, Status> {
        let caller = caller_identity(&request).cloned();
        let request = request.into_inner();
        if caller != Some(ServiceIdentity::Node(request.follower.clone())) {
            return Err(Status::permission_denied(format!(
                "a fetch for follower {:?} must come with that node's credentials",
                request.follower
            )));
        }
        if request.partition >= self.logs.count() {
            return Err(Status::invalid_argument(format!(
                "no partition {}",
                request.partition
            )));
        }
        // None: a newer fetch from the same follower took this one's place.
        self.logs
            .fetch(request)
            .await
            .map(Response::new)
            .ok_or_else(|| Status::cancelled("superseded by a newer fetch"))
    }
}
