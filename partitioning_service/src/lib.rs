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
    catalog: mom_catalog::Catalog,
    live: watch::Receiver<Vec<NodeInfo>>,
    states: watch::Receiver<BTreeMap<u32, Versioned>>,
) {
    tokio::spawn(async move {
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        loop {
            every_second.tick().await;
            let connected = matches!(
                catalog.zookeeper().state(),
                zookeeper_client::SessionState::SyncConnected
            );
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

/// What a session of this service does: take part in the controller election (and, once
/// elected, keep partitions assigned) until the session ends.
struct SessionDuties {
    advertise: String,
    settings: ClusterSettings,
    virtual_nodes: u32,
    live: watch::Receiver<Vec<NodeInfo>>,
}

impl SessionDuties {
    /// Serves one session to its end. A controller whose session ended cannot write any
    /// more (ZooKeeper refuses an expired session), and its controller znode is gone, so
    /// another service (or this one, in its next session) is elected.
    async fn serve(&self, zk: zookeeper_client::Client) {
        let controller = tokio::spawn(controller::run(
            zk.clone(),
            self.advertise.clone(),
            self.settings,
            self.virtual_nodes,
            self.live.clone(),
        ));
        mom_catalog::session_ended(&zk).await;
        controller.abort();
        metrics::gauge!("mom_controller").set(0.0);
    }
}

/// A new session once ZooKeeper answers again, following nodes and partitions into the same
/// views the gRPC service reads (they keep their last values meanwhile).
async fn renew_session(
    config: &mom_config::ZooKeeperConfig,
    live: &watch::Sender<Vec<NodeInfo>>,
    states: &watch::Sender<BTreeMap<u32, Versioned>>,
) -> zookeeper_client::Client {
    loop {
        let Ok(zk) = mom_catalog::connect(config, Duration::from_secs(3_600)).await else {
            continue;
        };
        let followed = async {
            partitions::follow_partitions(zk.clone(), states.clone()).await?;
            mom_catalog::follow_nodes(zk.clone(), live.clone()).await
        };
        match followed.await {
            Ok(()) => return zk,
            Err(e) => {
                tracing::warn!(error = %e, "new zookeeper session cannot watch yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Runs the service. It outlives its ZooKeeper sessions: when one expires it keeps answering
/// from its last views, opens a new session as soon as ZooKeeper is back, follows nodes and
/// partitions again and stands for controller again.
pub async fn run(config: PartitioningConfig) -> anyhow::Result<()> {
    if let Some(listen) = config.metrics_listen {
        mom_common::metrics::serve(listen)?;
        metrics::gauge!("mom_controller").set(0.0);
        tracing::info!(%listen, "metrics at GET /metrics");
    }
    let mut zk = mom_catalog::connect(&config.zookeeper, Duration::from_secs(30)).await?;
    let catalog = mom_catalog::Catalog::new(zk.clone());
    catalog.ensure_layout().await?;
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
    let (live_sender, live) = watch::channel(Vec::new());
    mom_catalog::follow_nodes(zk.clone(), live_sender.clone()).await?;
    let (states_sender, states) = watch::channel(BTreeMap::new());
    partitions::follow_partitions(zk.clone(), states_sender.clone()).await?;
    spawn_reporter(catalog.clone(), live.clone(), states.clone());

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local = listener.local_addr()?;
    let advertise = mom_common::advertise::advertised_address(local, None);
    tracing::info!(listen = %local, %advertise, ?settings, "partitioning service serving");
    let server = tonic::transport::Server::builder()
        .add_service(PartitioningServer::with_interceptor(
            PartitioningService {
                settings,
                live: live.clone(),
                states,
            },
            // Any MOM service may read the cluster view; users may not.
            RequireService::new(ServiceKeys::new(&config.cluster_secret), |_| true),
        ))
        .serve_with_incoming(
            mom_common::channels::incoming(listener).map_err(anyhow::Error::from_boxed)?,
        );
    let mut serving = tokio::spawn(server);

    let duties = SessionDuties {
        advertise,
        settings,
        virtual_nodes: config.virtual_nodes,
        live,
    };
    loop {
        tokio::select! {
            served = &mut serving => return Ok(served??),
            () = duties.serve(zk.clone()) => {}
        }
        tracing::warn!("zookeeper session ended; answering from the last views while reconnecting");
        zk = tokio::select! {
            served = &mut serving => return Ok(served??),
            renewed = renew_session(&config.zookeeper, &live_sender, &states_sender) => renewed,
        };
        catalog.use_session(zk.clone());
        tracing::info!("zookeeper session renewed");
    }
}
