//! A MOM broker node.
//!
//! It keeps copies of the partitions assigned to it in SQLite, leads some of them (taking
//! writes and pushing them to the other replicas) and follows others. It serves the `Broker`
//! gRPC service to the gateway and the `Replica` service to other nodes, learns exchanges,
//! bindings and subscribers from the ZooKeeper catalog, and announces itself there.

// tonic::Status is what every gRPC handler returns; boxing it only in helpers would add noise.
#![allow(clippy::result_large_err)]

pub mod fetch_service;
pub mod leases;
pub mod metrics;
pub mod partition_log;
pub mod records;
pub mod service;
pub mod store;
pub mod wakeups;

use mom_catalog::{partitions as zk_partitions, register_node, Catalog, NodeInfo};
use mom_common::proto::{broker_server::BrokerServer, replica_server::ReplicaServer};
use mom_common::token::{RequireService, ServiceCredentials, ServiceIdentity, ServiceKeys};
use mom_config::NodeConfig;
use mom_replicator::protocol::ReplicaConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use zookeeper_client::SessionState;

/// How long a leader holds a follower's fetch when it has nothing new.
const MAX_FETCH_WAIT_MS: u64 = 250;
/// Most entries one fetch reply carries.
const MAX_FETCH_ENTRIES: u64 = 2_000;

pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    mom_common::names::validate_name("node_id", &config.node_id)?;
    anyhow::ensure!(
        !config.cluster_secret.is_empty(),
        "cluster_secret must not be empty"
    );
    // Before the store: its writer and syncer threads make their metric handles once, when
    // they start, and a handle made before the recorder is installed records nothing, ever.
    if let Some(listen) = config.metrics_listen {
        mom_common::metrics::serve(listen)?;
        tracing::info!(%listen, "metrics at GET /metrics");
    }
    let database = config.data_dir.join("messages.db");
    // No database: whatever ZooKeeper says this node held, it holds nothing now.
    let fresh = !database.exists();
    let store = Arc::new(store::Store::open(&database)?);
    // Grows with every start, so peers never count what an earlier life of this node fetched.
    let incarnation = service::now_ms();
    let zk = mom_catalog::connect(&config.zookeeper, Duration::from_secs(30)).await?;
    let catalog = Catalog::new(zk.clone());
    catalog.ensure_layout().await?;
    tracing::info!("waiting for the cluster settings from the partitioning service");
    let settings = zk_partitions::wait_cluster_settings(&zk).await?;
    anyhow::ensure!(
        settings.partitions <= store::MAX_PARTITIONS,
        "the cluster has {} partitions; a node holds at most {}",
        settings.partitions,
        store::MAX_PARTITIONS
    );
    if fresh {
        let left =
            zk_partitions::leave_in_sync_sets(&zk, &config.node_id, settings.partitions).await?;
        if left > 0 {
            tracing::warn!(
                partitions = left,
                "started without data: left the in-sync sets to be caught up"
            );
        }
    } else {
        let restarted =
            zk_partitions::restart_leaderships(&zk, &config.node_id, settings.partitions).await?;
        if restarted > 0 {
            tracing::info!(partitions = restarted, "leading again under new epochs");
        }
    }
    let (live_sender, live) = watch::channel(Vec::new());
    mom_catalog::follow_nodes(zk.clone(), live_sender.clone()).await?;
    let (views_sender, views) = watch::channel(BTreeMap::new());
    zk_partitions::follow_partitions(zk.clone(), views_sender.clone()).await?;
    let (connected_sender, connected) = watch::channel(true);
    follow_connection(&zk, connected_sender.clone());

    let replica_config = ReplicaConfig {
        min_insync: config.min_insync_replicas.max(1) as usize,
        lag_timeout_ms: config.replication_timeout_ms,
        max_fetch_wait_ms: MAX_FETCH_WAIT_MS,
        fetch_timeout_ms: MAX_FETCH_WAIT_MS + 1_500,
        max_fetch_entries: MAX_FETCH_ENTRIES,
    };
    let fetcher = mom_replicator::Fetcher::new(
        &config.node_id,
        &config.cluster_secret,
        Duration::from_millis(replica_config.fetch_timeout_ms),
    );
    let logs = Arc::new(partition_log::PartitionLogs::start(
        partition_log::Shared {
            me: config.node_id.clone(),
            incarnation,
            store: store.clone(),
            catalog: catalog.clone(),
            fetcher,
            live,
            config: replica_config,
            dedup_window_ms: config.dedup_window_ms,
        },
        settings.partitions,
        views,
        connected.clone(),
    )?);
    metrics::spawn_reporter(logs.clone(), connected);

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let local = listener.local_addr()?;
    // What peers and the gateway dial: `advertise`, or the listen address, or (listening on
    // a wildcard address) this machine's first non-loopback interface address.
    let advertise = mom_common::advertise::advertised_address(local, config.advertise.as_deref());

    // Internal services: service tokens only, never a user's. The gateway (and a node
    // passing a call on) reaches Broker; only nodes reach Replica.
    let keys = ServiceKeys::new(&config.cluster_secret);
    let broker_callers = RequireService::new(keys.clone(), |caller| {
        matches!(caller, ServiceIdentity::Gateway | ServiceIdentity::Node(_))
    });
    let replica_callers =
        RequireService::new(keys, |caller| matches!(caller, ServiceIdentity::Node(_)));
    let credentials = ServiceCredentials::new(
        &config.cluster_secret,
        ServiceIdentity::Node(config.node_id.clone()),
    );
    let access = mom_catalog::access::AccessCache::start(catalog.clone()).await?;
    let routes = mom_catalog::RouteCache::new(catalog.clone()).await?;
    // Publishes carry payloads of up to 4 MiB, batches many: tonic's default 4 MiB limit
    // would refuse a maximal message with its envelope.
    let broker_service =
        service::BrokerService::new(logs.clone(), routes.clone(), access, credentials);
    broker_service.spawn_dead_letter_sweep();
    let broker = tonic::service::interceptor::InterceptedService::new(
        BrokerServer::new(broker_service)
            .max_decoding_message_size(mom_common::message::MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(mom_common::message::MAX_GRPC_MESSAGE_BYTES),
        broker_callers,
    );
    let replica = tonic::service::interceptor::InterceptedService::new(
        ReplicaServer::new(fetch_service::FetchService::new(logs))
            .max_decoding_message_size(mom_replicator::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(mom_replicator::MAX_MESSAGE_BYTES),
        replica_callers,
    );
    let server = tonic::transport::Server::builder()
        .add_service(broker)
        .add_service(replica)
        .serve_with_incoming(
            mom_common::channels::incoming(listener).map_err(anyhow::Error::from_boxed)?,
        );
    let serving = tokio::spawn(server);

    // Announce only once the port accepts calls, so nobody is routed to a node that can't answer.
    let me = NodeInfo {
        id: config.node_id.clone(),
        grpc_addr: advertise.clone(),
        incarnation,
    };
    register_node(&zk, &me).await?;
    tracing::info!(node = %config.node_id, listen = %local, %advertise, ?settings, "broker node serving");
    let renewal = SessionRenewal {
        config: config.zookeeper.clone(),
        catalog,
        routes,
        live: live_sender,
        views: views_sender,
        connected: connected_sender,
        me,
    };
    tokio::select! {
        served = serving => served??,
        () = renewal.run(zk) => {}
    }
    Ok(())
}

/// A node outlives its ZooKeeper sessions. When one expires (ZooKeeper was away, or the node
/// was paused, longer than the session timeout) its ephemeral registration is gone, so the
/// controller has moved leadership of its partitions to other in-sync replicas where it could,
/// and this node can write nothing to ZooKeeper through the old session: it stops serving
/// (not connected), opens a new session as soon as ZooKeeper answers, follows nodes and
/// partitions again into the same views (its partitions become followers of their new
/// leaders and catch up, truncating what the new leaders do not have), renews its route
/// cache and registers again with the same incarnation: its log and memory are those of the
/// same process, so what peers counted of it still holds.
struct SessionRenewal {
    config: mom_config::ZooKeeperConfig,
    catalog: Catalog,
    routes: mom_catalog::RouteCache,
    live: watch::Sender<Vec<NodeInfo>>,
    views: watch::Sender<BTreeMap<u32, zk_partitions::Versioned>>,
    connected: watch::Sender<bool>,
    me: NodeInfo,
}

impl SessionRenewal {
    async fn run(self, mut zk: zookeeper_client::Client) {
        loop {
            mom_catalog::session_ended(&zk).await;
            self.connected.send_replace(false);
            tracing::warn!("zookeeper session ended; not serving until a new session is up");
            zk = self.renew().await;
            tracing::info!(node = %self.me.id, "zookeeper session renewed; registered again");
        }
    }

    async fn renew(&self) -> zookeeper_client::Client {
        loop {
            let Ok(zk) = mom_catalog::connect(&self.config, Duration::from_secs(3_600)).await
            else {
                continue;
            };
            self.catalog.use_session(zk.clone());
            let renewed = async {
                zk_partitions::follow_partitions(zk.clone(), self.views.clone()).await?;
                mom_catalog::follow_nodes(zk.clone(), self.live.clone()).await?;
                self.routes.renew().await?;
                register_node(&zk, &self.me).await
            };
            match renewed.await {
                Ok(()) => {
                    follow_connection(&zk, self.connected.clone());
                    return zk;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "new zookeeper session not usable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// Keeps `sender` saying whether session `zk` is connected right now, until it ends. A leader
/// stops serving reads while it is not: the client notices a lost connection before the
/// server expires the session, so by the time ZooKeeper could elect a successor this node has
/// stopped handing out messages.
fn follow_connection(zk: &zookeeper_client::Client, sender: watch::Sender<bool>) {
    let mut states = zk.state_watcher();
    sender.send_replace(matches!(zk.state(), SessionState::SyncConnected));
    tokio::spawn(async move {
        loop {
            let state = states.changed().await;
            let connected = matches!(state, SessionState::SyncConnected);
            sender.send_replace(connected);
            if matches!(
                state,
                SessionState::Expired | SessionState::Closed | SessionState::AuthFailed
            ) {
                return;
            }
        }
    });
}
