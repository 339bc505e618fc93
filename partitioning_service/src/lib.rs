//! The partitioning service: maps keys to partitions and partitions to their current leader,
//! and (when elected controller) assigns partitions to broker nodes by consistent hashing.

pub mod controller;
pub mod ring;

use mom_catalog::partitions::{self, ClusterSettings, Versioned};
use mom_catalog::NodeInfo;
use mom_common::proto::{
    self, partitioning_server::Partitioning, partitioning_server::PartitioningServer,
};
use mom_common::token::{RequireService, ServiceKeys};
use mom_config::PartitioningConfig;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

pub use mom_common::routing::partition_of;

pub struct PartitioningService {
    settings: ClusterSettings,
    live: watch::Receiver<Vec<NodeInfo>>,
    states: watch::Receiver<BTreeMap<u32, Versioned>>,
}

fn to_proto(node: &NodeInfo) -> proto::Node {
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
        let request = request.into_inner();
        let partition = match request.partition {
            Some(p) if p < self.settings.partitions => p,
            Some(p) => return Err(Status::invalid_argument(format!("no partition {p}"))),
            None => partition_of(&request.partition_key, self.settings.partitions),
        };
        let leader = self
            .states
            .borrow()
            .get(&partition)
            .map(|v| v.state.leader.clone())
            .ok_or_else(|| {
                Status::unavailable(format!("partition {partition} is not assigned yet"))
            })?;
        let owner = self
            .live
            .borrow()
            .iter()
            .find(|n| n.id == leader)
            .map(to_proto)
            .ok_or_else(|| {
                Status::unavailable(format!(
                    "leader {leader} of partition {partition} is down; electing"
                ))
            })?;
        Ok(Response::new(proto::OwnerReply {
            owner: Some(owner),
            partition,
        }))
    }

    async fn nodes(
        &self,
        _request: Request<proto::NodesRequest>,
    ) -> Result<Response<proto::NodesReply>, Status> {
        Ok(Response::new(proto::NodesReply {
            nodes: self.live.borrow().iter().map(to_proto).collect(),
        }))
    }

    async fn partitions(
        &self,
        _request: Request<proto::PartitionsRequest>,
    ) -> Result<Response<proto::PartitionsReply>, Status> {
        let partitions = self
            .states
            .borrow()
            .iter()
            .map(|(partition, v)| proto::PartitionInfo {
                partition: *partition,
                leader: v.state.leader.clone(),
                epoch: v.state.epoch,
                replicas: v.state.replicas.clone(),
                isr: v.state.isr.clone(),
            })
            .collect();
        Ok(Response::new(proto::PartitionsReply { partitions }))
    }
}

/// Gauges of what this service sees, once a second (docs/metrics.md).
fn spawn_reporter(
    zk: zookeeper_client::Client,
    live: watch::Receiver<Vec<NodeInfo>>,
    states: watch::Receiver<BTreeMap<u32, Versioned>>,
) {
    tokio::spawn(async move {
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        loop {
            every_second.tick().await;
            let connected = matches!(zk.state(), zookeeper_client::SessionState::SyncConnected);
            metrics::gauge!("mom_zookeeper_connected").set(if connected { 1.0 } else { 0.0 });
            let live_ids: Vec<String> = live.borrow().iter().map(|n| n.id.clone()).collect();
            metrics::gauge!("mom_live_nodes").set(live_ids.len() as f64);
            let without_leader = states
                .borrow()
                .values()
                .filter(|v| !live_ids.contains(&v.state.leader))
                .count();
            metrics::gauge!("mom_partitions_without_live_leader").set(without_leader as f64);
        }
    });
}

pub async fn run(config: PartitioningConfig) -> anyhow::Result<()> {
    if let Some(listen) = config.metrics_listen {
        mom_common::metrics::serve(listen)?;
        metrics::gauge!("mom_controller").set(0.0);
        tracing::info!(%listen, "metrics at GET /metrics");
    }
    let zk = mom_catalog::connect(&config.zookeeper, Duration::from_secs(30)).await?;
    mom_catalog::exit_on_session_loss(&zk, "partitioning");
    mom_catalog::Catalog::new(zk.clone())
        .ensure_layout()
        .await?;
    let wanted = ClusterSettings {
        partitions: config.partitions,
        replication_factor: config.replication_factor,
    };
    let settings = partitions::cluster_settings(&zk, wanted).await?;
    if settings != wanted {
        tracing::warn!(
            ?settings,
            ?wanted,
            "the cluster was created with other settings; keeping those"
        );
    }
    let live = mom_catalog::watch_nodes(zk.clone()).await?;
    let states = partitions::watch_partitions(zk.clone()).await?;
    spawn_reporter(zk.clone(), live.clone(), states.clone());

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local = listener.local_addr()?;
    let advertise = mom_common::advertise::advertised_address(local, None);
    tracing::info!(listen = %local, %advertise, "partitioning service address");
    tokio::spawn(controller::run(
        zk,
        advertise,
        settings,
        config.virtual_nodes,
        live.clone(),
    ));

    tracing::info!(listen = %local, ?settings, "partitioning service serving");
    tonic::transport::Server::builder()
        .add_service(PartitioningServer::with_interceptor(
            PartitioningService {
                settings,
                live,
                states,
            },
            // Any MOM service may read the cluster view; users may not.
            RequireService::new(ServiceKeys::new(&config.cluster_secret), |_| true),
        ))
        .serve_with_incoming(
            mom_common::channels::incoming(listener).map_err(anyhow::Error::from_boxed)?,
        )
        .await?;
    Ok(())
}
