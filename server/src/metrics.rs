//! The node's Prometheus gauges, refreshed once a second from what its partitions' tasks
//! publish (their status watch) and from its ZooKeeper connection. Counters and histograms
//! are recorded where things happen: publishes, deliveries and acks in `service.rs`, commit
//! (fsync) time in `store/writer.rs`. docs/metrics.md lists them all.

use crate::partition_log::PartitionLogs;
use mom_replicator::protocol::Role;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub fn spawn_reporter(logs: Arc<PartitionLogs>, connected: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        loop {
            every_second.tick().await;
            report(&logs, *connected.borrow());
        }
    });
}

fn report(logs: &PartitionLogs, connected: bool) {
    metrics::gauge!("mom_zookeeper_connected").set(if connected { 1.0 } else { 0.0 });
    for (partition, status) in logs.partition_statuses().into_iter().enumerate() {
        let partition = partition.to_string();
        let leader = status.role == Some(Role::Leader);
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        metrics::gauge!("mom_partition_leader", "partition" => partition.clone()).set(flag(leader));
        metrics::gauge!("mom_partition_serving", "partition" => partition.clone())
            .set(flag(status.serving));
        metrics::gauge!("mom_partition_high_watermark", "partition" => partition.clone())
            .set(status.hw as f64);
        metrics::gauge!("mom_partition_log_end", "partition" => partition.clone())
            .set(status.log_end as f64);
        metrics::gauge!("mom_partition_isr_size", "partition" => partition.clone())
            .set(status.isr_size as f64);
        // Only a leader knows its followers' lag; elsewhere it is 0.
        metrics::gauge!("mom_partition_replication_lag", "partition" => partition).set(if leader {
            status.follower_lag as f64
        } else {
            0.0
        });
    }
}
