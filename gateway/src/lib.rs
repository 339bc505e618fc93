//! The MOM gateway: the REST API clients use.
//!
//! It checks each caller's token, keeps metadata (exchanges, queues, bindings, topics) in the
//! ZooKeeper catalog, finds each publish's partition and its leader itself (from ZooKeeper
//! watches), and forwards message traffic to broker nodes over gRPC.

pub mod api;
pub mod auth_routes;
pub mod caller;
pub mod cluster;
pub mod error;
pub mod grpc;
pub mod mailboxes;
pub mod metrics;
pub mod nack;
pub mod nodes;
pub mod openapi;
pub mod permissions;
pub mod publish_queue;
pub mod publishing;
pub mod stats;
pub mod streams;
pub mod topic_history;
pub mod ui;

use actix_web::{
    error::JsonPayloadError, http::Method, web, App, HttpRequest, HttpResponse, HttpServer,
};
use error::ApiError;
use mom_catalog::access::AccessCache;
use mom_catalog::Catalog;
use mom_common::token::{ServiceCredentials, ServiceIdentity, TokenKeys};
use mom_config::GatewayConfig;
use nodes::Nodes;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::sync::watch;

/// How long the gateway keeps an idle client connection open (nginx's default).
pub const IDLE_CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(75);

pub struct AppState {
    pub catalog: Catalog,
    /// Checks user tokens (signature, issuer, audience, expiry).
    pub tokens: TokenKeys,
    /// Users, owners and grants, for the permission checks of every request.
    pub access: AccessCache,
    /// The gateway's own identity towards the nodes.
    pub credentials: ServiceCredentials,
    /// Renders the process's metrics for `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub nodes: Nodes,
    pub http: reqwest::Client,
    pub auth_url: String,
    pub default_visibility_timeout_ms: u64,
    pub pull_rotation: AtomicUsize,
    /// What the nodes require to acknowledge a write, for `/health`.
    pub min_insync_replicas: u32,
    /// Traffic counters of this gateway, for `/stats` and the dashboard.
    pub stats: stats::Stats,
    /// The receipts this gateway's streams (SSE and gRPC) have in flight, for their credit.
    pub streams: streams::Streams,
    /// The address of the gRPC `Consumer` service, if it serves one, for `/version`.
    pub grpc_address: Option<String>,
    /// Single publishes waiting to be joined into a call to their partition's leader.
    pub publish_queues: publish_queue::PublishQueues,
}

fn json_error(error: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let api_error = match &error {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge(error.to_string())
        }
        _ => ApiError::BadRequest(format!("invalid JSON body: {error}")),
    };
    api_error.into()
}

/// `ok`, `degraded` (some partition has fewer in-sync replicas than replicas) or
/// `unavailable` (some partition cannot take writes: no live leader, or fewer in-sync replicas
/// than `min_insync_replicas`), with the reasons; 503 when unavailable, for load balancers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Every partition can take writes (`ok` or `degraded`)", body = cluster::Health),
        (status = 503, description = "Some partition cannot take writes (`unavailable`)", body = cluster::Health),
    ),
)]
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let report = cluster::health(&state.nodes, state.min_insync_replicas);
    let status = if report.status == "unavailable" {
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    } else {
        actix_web::http::StatusCode::OK
    };
    HttpResponse::build(status).json(report)
}

#[utoipa::path(
    get,
    path = "/version",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The gateway's name and version, and the address of its gRPC service (streaming consume) if it serves one", body = openapi::Version)),
)]
async fn version(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(openapi::Version {
        name: "mom".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        grpc: state.grpc_address.clone(),
    })
}

/// The broker nodes, the partitions with their leaders, replicas and lag, and the controller.
#[utoipa::path(
    get,
    path = "/cluster",
    tag = "operations",
    responses((status = 200, description = "The cluster as this gateway sees it", body = cluster::ClusterView)),
)]
async fn cluster_view(
    state: web::Data<AppState>,
    _: caller::Caller,
) -> Result<HttpResponse, ApiError> {
    let controller = mom_catalog::partitions::controller(&state.catalog.zookeeper()).await?;
    let view = cluster::view_with_lag(&state.nodes, &state.credentials, controller).await;
    Ok(HttpResponse::Ok().json(view))
}

/// Passes `/auth/*` (the routes in [`auth_routes`]) to the auth service so clients need only
/// the gateway's address: the method, path, query, body and `Authorization` go on;
/// `X-Forwarded-For` tells the auth service the client's address (it throttles logins per
/// address); `Retry-After` comes back.
async fn auth_proxy(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{path_and_query}", state.auth_url.trim_end_matches('/'));
    let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut call = state
        .http
        .request(method, url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    if let Some(authorization) = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        call = call.header(reqwest::header::AUTHORIZATION, authorization);
    }
    if let Some(peer) = request.peer_addr() {
        call = call.header("x-forwarded-for", peer.ip().to_string());
    }
    let reply = call
        .send()
        .await
        .map_err(|e| ApiError::Unavailable(format!("auth service: {e}")))?;
    let status = actix_web::http::StatusCode::from_u16(reply.status().as_u16())
        .map_err(|e| ApiError::BadGateway(e.to_string()))?;
    let retry_after = reply
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = reply
        .bytes()
        .await
        .map_err(|e| ApiError::BadGateway(format!("auth service: {e}")))?;
    let mut response = HttpResponse::build(status);
    if let Some(retry_after) = retry_after {
        response.insert_header((actix_web::http::header::RETRY_AFTER, retry_after));
    }
    if status == actix_web::http::StatusCode::NO_CONTENT {
        return Ok(response.finish());
    }
    Ok(response.content_type("application/json").body(bytes))
}

/// Every route the gateway serves. `run` registers them on the app; the tests in
/// [`openapi`] check that each one is in the OpenAPI document, so a route added here (or in
/// the modules' `routes`) needs a `#[utoipa::path]` on its handler, listed in
/// [`openapi::ApiDoc`].
pub fn routes<R: openapi::Routes>(r: &mut R) {
    r.add(Method::GET, "/health", health)
        .add(Method::GET, "/metrics", metrics::render)
        .add(Method::GET, "/version", version)
        .add(Method::GET, "/cluster", cluster_view)
        .add(Method::GET, "/openapi.json", openapi::serve);
    auth_routes::routes(r);
    api::routes(r);
    permissions::routes(r);
    stats::routes(r);
    ui::routes(r);
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

/// The gateway outlives its ZooKeeper sessions: when one expires (ZooKeeper was away longer
/// than the session timeout) it keeps routing on the last views it had, opens a new session
/// as soon as ZooKeeper answers, and follows nodes and partitions again into the same views.
/// Metadata calls answer 503 meanwhile.
async fn renew_sessions(
    config: mom_config::ZooKeeperConfig,
    mut zk: zookeeper_client::Client,
    catalog: Catalog,
    live: watch::Sender<Vec<mom_catalog::NodeInfo>>,
    partitions: watch::Sender<BTreeMap<u32, mom_catalog::partitions::Versioned>>,
) {
    loop {
        mom_catalog::session_ended(&zk).await;
        tracing::warn!("zookeeper session ended; serving on the last views while reconnecting");
        zk = loop {
            let Ok(next) = mom_catalog::connect(&config, Duration::from_secs(3_600)).await else {
                continue;
            };
            let followed = async {
                mom_catalog::partitions::follow_partitions(next.clone(), partitions.clone())
                    .await?;
                mom_catalog::follow_nodes(next.clone(), live.clone()).await
            };
            match followed.await {
                Ok(()) => break next,
                Err(e) => {
                    tracing::warn!(error = %e, "new zookeeper session cannot watch yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        catalog.use_session(zk.clone());
        tracing::info!("zookeeper session renewed");
    }
}

pub async fn run(config: GatewayConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.jwt_secret.is_empty() && !config.cluster_secret.is_empty(),
        "jwt_secret and cluster_secret must not be empty"
    );
    anyhow::ensure!(
        config.jwt_secret != config.cluster_secret,
        "jwt_secret and cluster_secret must differ: the cluster secret is the services' own"
    );
    let zk = mom_catalog::connect(&config.zookeeper, Duration::from_secs(30)).await?;
    let catalog = Catalog::new(zk.clone());
    catalog.ensure_layout().await?;
    tracing::info!("waiting for the cluster settings from the partitioning service");
    let settings = mom_catalog::partitions::wait_cluster_settings(&zk).await?;
    let (partitions_sender, partitions) = watch::channel(BTreeMap::new());
    mom_catalog::partitions::follow_partitions(zk.clone(), partitions_sender.clone()).await?;
    let (live_sender, live) = watch::channel(Vec::new());
    mom_catalog::follow_nodes(zk.clone(), live_sender.clone()).await?;
    tokio::spawn(renew_sessions(
        config.zookeeper.clone(),
        zk,
        catalog.clone(),
        live_sender,
        partitions_sender,
    ));

    let access = AccessCache::start(catalog.clone()).await?;
    let grpc_listener = match config.grpc_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
        None => None,
    };
    let grpc_address = match &grpc_listener {
        Some(listener) => Some(mom_common::advertise::advertised_address(
            listener.local_addr()?,
            None,
        )),
        None => None,
    };
    let metrics = mom_common::metrics::install()?;
    let state = web::Data::new(AppState {
        catalog,
        tokens: TokenKeys::new(&config.jwt_secret),
        access,
        credentials: ServiceCredentials::new(&config.cluster_secret, ServiceIdentity::Gateway),
        metrics,
        nodes: Nodes::new(
            live,
            partitions,
            settings.partitions,
            Duration::from_millis(config.retry_window_ms),
        ),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        auth_url: config.auth_url.clone(),
        default_visibility_timeout_ms: config.default_visibility_timeout_ms,
        pull_rotation: AtomicUsize::new(0),
        min_insync_replicas: config.min_insync_replicas,
        stats: stats::Stats::default(),
        streams: streams::Streams::default(),
        grpc_address,
        publish_queues: publish_queue::PublishQueues::default(),
    });
    if let Some(listener) = grpc_listener {
        let consumer = mom_common::proto::consumer_server::ConsumerServer::new(
            grpc::ConsumerService::new(state.clone().into_inner()),
        )
        .max_encoding_message_size(mom_common::message::MAX_GRPC_MESSAGE_BYTES);
        let addr = listener.local_addr()?;
        let server = tonic::transport::Server::builder()
            // Pings keep an idle stream's connection open through proxies and tell a client
            // whose gateway died that it is gone.
            .http2_keepalive_interval(Some(streams::KEEP_ALIVE))
            .add_service(consumer)
            .serve_with_incoming(
                mom_common::channels::incoming(listener).map_err(anyhow::Error::from_boxed)?,
            );
        tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "gRPC service ended");
            }
        });
        tracing::info!(listen = %addr, "gateway serving gRPC (Consumer)");
    }
    tokio::spawn(stats::forget_deleted(state.clone().into_inner()));
    let max_body = config.max_body_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body)
                    .error_handler(json_error),
            )
            .app_data(web::PayloadConfig::default().limit(max_body))
            .wrap(actix_web::middleware::from_fn(metrics::record))
            .configure(routes)
            .default_service(web::to(not_found))
    })
    // Nagle's algorithm would hold a stream's next small event until the client ACKs the one
    // before, which a delayed ACK makes tens of milliseconds.
    .on_connect(|connection, _| {
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    // A client that closes its connection is gone, even while its response is still being
    // sent: that drops an SSE stream's body at once, which ends the stream's pulling (HTTP
    // clients do not half-close a connection they still read from).
    .h1_allow_half_closed(false)
    // An idle keep-alive connection is closed after this, longer than clients keep theirs
    // idle (`mom_client` 30 s): a client that sends on a connection just as the server closes
    // it gets a failed request it cannot safely retry (a publish may have been stored). With
    // actix's default of 5 s, a publisher idle for about that long hit exactly that.
    .keep_alive(IDLE_CONNECTION_TIMEOUT);
    let server = match config.workers {
        Some(workers) => server.workers(workers.get()),
        None => server,
    }
    .bind(config.listen)?;
    for addr in server.addrs() {
        let advertise = mom_common::advertise::advertised_address(addr, None);
        tracing::info!(listen = %addr, %advertise, "gateway serving");
    }
    server.run().await?;
    Ok(())
}
