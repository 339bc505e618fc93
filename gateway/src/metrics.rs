//! The gateway's Prometheus metrics: every request counted by route pattern, method and
//! status, with its latency, and the gauges of what the gateway sees of the cluster, served
//! at `GET /metrics`. docs/metrics.md lists them all.

use crate::AppState;
use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web, HttpResponse,
};
use std::time::Instant;

/// Middleware: counts and times every request. The route label is the matched pattern
/// (`/queues/{name}/pull`), so names do not multiply the series.
pub async fn record(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.call(request).await?;
    let status = response.status().as_u16().to_string();
    metrics::counter!("mom_http_requests_total",
        "method" => method.clone(), "route" => route.clone(), "status" => status)
    .increment(1);
    metrics::histogram!("mom_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(response)
}

/// `GET /metrics`: Prometheus' text format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The gateway's metrics in Prometheus' text format (docs/metrics.md)", body = String, content_type = "text/plain; version=0.0.4")),
)]
pub async fn render(state: web::Data<AppState>) -> HttpResponse {
    let live = state.nodes.live();
    metrics::gauge!("mom_live_nodes").set(live.len() as f64);
    let partitions = state.nodes.partition_states();
    let without_leader = partitions
        .iter()
        .filter(|(_, v)| !live.iter().any(|n| n.id == v.state.leader))
        .count();
    metrics::gauge!("mom_partitions_without_live_leader").set(without_leader as f64);
    for (partition, versioned) in &partitions {
        metrics::gauge!("mom_partition_isr_size", "partition" => partition.to_string())
            .set(versioned.state.isr.len() as f64);
    }
    let connected = matches!(
        state.catalog.zookeeper().state(),
        zookeeper_client::SessionState::SyncConnected
    );
    metrics::gauge!("mom_zookeeper_connected").set(if connected { 1.0 } else { 0.0 });
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
