//! The leader's side of replication: the `Replica` gRPC service, through which followers fetch
//! a partition's log. Each fetch goes to the partition's task, which answers at once if it has
//! something new for the follower and otherwise holds it until it does (long poll).

use crate::partition_log::PartitionLogs;
use mom_common::proto::{self, replica_server::Replica};
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
        let request = request.into_inner();
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
