//! A MOM broker node.
//!
//! It stores the messages of the partitions it owns in SQLite and serves the `Broker` gRPC
//! service; it learns exchanges, bindings and topic subscribers from the ZooKeeper catalog and
//! announces itself there so the partitioning service can route to it.

// tonic::Status is what every gRPC handler returns; boxing it only in helpers would add noise.
#![allow(clippy::result_large_err)]

pub mod service;
pub mod store;

use mom_catalog::{register_node, Catalog, NodeInfo};
use mom_common::{proto::broker_server::BrokerServer, token::RequireToken, token::TokenKeys};
use mom_config::NodeConfig;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    mom_common::names::validate_name("node_id", &config.node_id)?;
    let store = Arc::new(store::Store::open(&config.data_dir.join("messages.db"))?);

    let zk = mom_catalog::connect(&config.zookeeper, Duration::from_secs(30)).await?;
    mom_catalog::exit_on_session_loss(&zk, "server");
    let catalog = Catalog::new(zk.clone());
    catalog.ensure_layout().await?;

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

    let broker = BrokerServer::with_interceptor(
        service::BrokerService::new(store, catalog),
        RequireToken(TokenKeys::new(&config.jwt_secret)),
    );
    let server = tonic::transport::Server::builder()
        .add_service(broker)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
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
    tracing::info!(node = %config.node_id, listen = %local, %advertise, "broker node serving");
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
