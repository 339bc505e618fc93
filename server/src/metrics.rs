//! The node's Prometheus gauges, refreshed once a second from what its partitions' tasks
//! publish (their status watch) and from its ZooKeeper connection, and every few seconds the
//! depth of each mailbox in the partitions it serves (from the store). Counters and histograms
//! are recorded where things happen: publishes, deliveries and acks in `service.rs`, commit
//! (fsync) time in `store/writer.rs`. docs/metrics.md lists them all.

use crate::partition_log::PartitionLogs;
use mom_replicator::protocol::Role;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub fn spawn_reporter(logs: Arc<PartitionLogs>, connected: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        let mut mailboxes_seen = BTreeSet::new();
        for round in 0u64.. {
            every_second.tick().await;
            report(&logs, *connected.borrow());
            // Counting messages reads the store: every few seconds is enough.
            if round % DEPTH_EVERY_SECONDS == 0 {
                let logs = logs.clone();
                let seen = std::mem::take(&mut mailboxes_seen);
                mailboxes_seen = tokio::task::spawn_blocking(move || report_depths(&logs, seen))
                    .await
                    .unwrap_or_default();
            }
        }
    });
}

const DEPTH_EVERY_SECONDS: u64 = 5;

/// Messages waiting (and leased) per mailbox over the partitions this node serves; a mailbox
/// reported before and empty now is reported as 0. Returns the mailboxes reported.
fn report_depths(logs: &PartitionLogs, seen_before: BTreeSet<String>) -> BTreeSet<String> {
    let now = crate::service::now_ms();
    let mut depths: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for partition in logs.led() {
        let Some(epoch) = logs.serving(partition) else {
            continue;
        };
        let Ok(pending) = logs.store().pending_by_mailbox(partition, now) else {
            continue;
        };
        for (mailbox, count) in pending {
            let leased = logs
                .with_leases(partition, |leases| leases.active(epoch, &mailbox, now))
                .unwrap_or(0)
                .min(count);
            let entry = depths.entry(mailbox).or_default();
            entry.0 += count - leased;
            entry.1 += leased;
        }
    }
    for gone in seen_before.iter().filter(|m| !depths.contains_key(*m)) {
        metrics::gauge!("mom_mailbox_ready", "mailbox" => gone.clone()).set(0.0);
        metrics::gauge!("mom_mailbox_leased", "mailbox" => gone.clone()).set(0.0);
    }
    for (mailbox, (ready, leased)) in &depths {
        metrics::gauge!("mom_mailbox_ready", "mailbox" => mailbox.clone()).set(*ready as f64);
        metrics::gauge!("mom_mailbox_leased", "mailbox" => mailbox.clone()).set(*leased as f64);
    }
    depths.into_keys().collect()
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
