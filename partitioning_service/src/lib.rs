//! The partitioning service: follows the live broker nodes in ZooKeeper and answers which node
//! owns a partition key.

pub mod ring;

use mom_common::proto::{
    self, partitioning_server::Partitioning, partitioning_server::PartitioningServer,
};
use mom_common::token::{RequireToken, TokenKeys};
use mom_config::PartitioningConfig;
use ring::HashRing;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tonic::{Request, Response, Status};

pub struct PartitioningService {
    ring: Arc<RwLock<HashRing>>,
}

fn to_proto(node: &mom_catalog::NodeInfo) -> proto::Node {
    proto::Node {
        id: node.id.clone(),
        grpc_addr: node.grpc_addr.clone(),
    }
}

#[tonic::async_trait]
impl Partitioning for PartitioningService {
    async fn owner(
        &self,
        request: Request<proto::OwnerRequest>,
    ) -> Result<Response<proto::OwnerReply>, Status> {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        let owner = ring
            .owner(&request.get_ref().partition_key)
            .ok_or_else(|| Status::unavailable("no live broker nodes"))?;
        Ok(Response::new(proto::OwnerReply {
            owner: Some(to_proto(owner)),
        }))
    }

    async fn nodes(
        &self,
        _request: Request<proto::NodesRequest>,
    ) -> Result<Response<proto::NodesReply>, Status> {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        Ok(Response::new(proto::NodesReply {
            nodes: ring.nodes().iter().map(to_proto).collect(),
        }))
    }
}

pub async fn run(config: PartitioningConfig) -> anyhow::Result<()> {
    let zk = mom_catalog::connect(&config.zookeeper, Duration::from_secs(30)).await?;
    mom_catalog::exit_on_session_loss(&zk, "partitioning");
    mom_catalog::Catalog::new(zk.clone())
        .ensure_layout()
        .await?;
    let mut live = mom_catalog::watch_nodes(zk).await?;

    let virtual_nodes = config.virtual_nodes;
    let ring = Arc::new(RwLock::new(HashRing::new(
        live.borrow_and_update().clone(),
        virtual_nodes,
    )));
    let updated = ring.clone();
    tokio::spawn(async move {
        while live.changed().await.is_ok() {
            let nodes = live.borrow_and_update().clone();
            *updated.write().unwrap_or_else(|p| p.into_inner()) =
                HashRing::new(nodes, virtual_nodes);
        }
    });

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "partitioning service serving");
    tonic::transport::Server::builder()
        .add_service(PartitioningServer::with_interceptor(
            PartitioningService { ring },
            RequireToken(TokenKeys::new(&config.jwt_secret)),
        ))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}
