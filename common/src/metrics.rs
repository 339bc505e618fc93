//! Prometheus metrics. Services record with the `metrics` crate's macros wherever something
//! happens; this module installs the one process-wide recorder and exposes what it holds in
//! Prometheus' text format, either on a listener of its own (nodes, partitioning services)
//! or through a handle the gateway renders at its `/metrics` route. docs/metrics.md lists
//! every metric.

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;

/// Buckets of every `*_seconds` histogram: from half a millisecond (an fsync here) to ten
/// seconds (a call that waited out a failover).
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
}

/// Installs the recorder and serves `GET /metrics` on `listen` (from the current tokio
/// runtime).
pub fn serve(listen: SocketAddr) -> Result<(), BuildError> {
    builder()?.with_http_listener(listen).install()
}

/// Installs the recorder; the caller renders the handle where it wants.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    builder()?.install_recorder()
}
