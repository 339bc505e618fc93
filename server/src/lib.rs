//! A MOM broker node.
//!
//! It keeps copies of the partitions assigned to it in SQLite, leads some of them (taking
//! writes and pushing them to the other replicas) and follows others. It serves the `Broker`
//! gRPC service to the gateway and the `Replica` service to other nodes, learns exchanges,
//! bindings and subscribers from the ZooKeeper catalog, and announces itself there.

// tonic::Status is what every gRPC handler returns; boxing it only in helpers would add noise.
#![allow(clippy::result_large_err)]

pub mod partitions;
pub mod replica;
pub mod service;
pub mod store;

use mom_catalog::{partitions as zk_partitions, register_node, Catalog, NodeInfo};
use mom_common::proto::{broker_server::BrokerServer, replica_server::ReplicaServer};
use mom_common::token::{RequireToken, TokenKeys};
use mom_config::NodeConfig;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    mom_common::names::validate_name("node_id", &config.node_id)?;
    let database = config.data_dir.join("messages.db");
    // No database: whatever ZooKeeper says this node held, it holds nothing now.
    let fresh = !database.exists();
    let store = Arc::new(store::Store::open(&database)?);

    let zk = mom_catalog::connect(&config.zookeeper, Duration::from_secs(30)).await?;
    mom_catalog::exit_on_session_loss(&zk, "server");
    let catalog = Catalog::new(zk.clone());
    catalog.ensure_layout().await?;
    tracing::info!("waiting for the cluster settings from the partitioning service");
    let settings = zk_partitions::wait_cluster_settings(&zk).await?;
    if fresh {
        let left =
            zk_partitions::leave_in_sync_sets(&zk, &config.node_id, settings.partitions).await?;
        if left > 0 {
            tracing::warn!(
                partitions = left,
                "started without data: left the in-sync sets to be caught up"
            );
        }
    }
    let live = mom_catalog::watch_nodes(zk.clone()).await?;
    let views = zk_partitions::watch_partitions(zk.clone()).await?;

    let replicator = mom_replicator::Replicator::new(
        &config.node_id,
        &config.jwt_secret,
        Duration::from_millis(config.replication_timeout_ms),
    );
    let partitions = Arc::new(partitions::Partitions::new(
        config.node_id.clone(),
        settings.partitions,
        config.min_insync_replicas,
        store.clone(),
        zk.clone(),
        replicator,
        views,
        live,
    ));

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local = listener.local_addr()?;
    let advertise = config
        .advertise
        .clone()
        .unwrap_or_else(|| local.to_string());

    spawn_expiry_sweeper(
        store.clone(),
        Duration::from_millis(config.sweep_interval_ms),
    );
    partitions::spawn_maintenance(partitions.clone(), Duration::from_millis(250));

    let tokens = RequireToken(TokenKeys::new(&config.jwt_secret));
    let broker = BrokerServer::with_interceptor(
        service::BrokerService::new(partitions.clone(), catalog),
        tokens.clone(),
    );
    let replica = tonic::service::interceptor::InterceptedService::new(
        ReplicaServer::new(replica::ReplicaService::new(partitions))
            .max_decoding_message_size(mom_replicator::MAX_MESSAGE_BYTES),
        tokens,
    );
    let server = tonic::transport::Server::builder()
        .add_service(broker)
        .add_service(replica)
        .serve_with_incoming(
            mom_common::channels::incoming(listener).map_err(anyhow::Error::from_boxed)?,
        );
    let serving = tokio::spawn(server);

    // Announce only once the port accepts calls, so nobody is routed to a node that can't answer.
    register_node(
        &zk,
        &NodeInfo {
            id: config.node_id.clone(),
            grpc_addr: advertise.clone(),
        },
    )
    .await?;
    tracing::info!(node = %config.node_id, listen = %local, %advertise, ?settings, "broker node serving");
    serving.await??;
    Ok(())
}

fn spawn_expiry_sweeper(store: Arc<store::Store>, every: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.sweep_expired(service::now_ms())).await
            {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::debug!(expired = n, "swept expired messages"),
                Ok(Err(e)) => tracing::warn!(error = %e, "expiry sweep failed"),
                Err(e) => tracing::warn!(error = %e, "expiry sweep task failed"),
            }
        }
    });
}
