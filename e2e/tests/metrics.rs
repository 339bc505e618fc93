//! Prometheus metrics on the gateway, every node and the partitioning service, scraped from
//! a real cluster after some traffic.

use mom_e2e::{connect, declare_ledger, drain, metric_sum as sum, publish_batch, scrape};
use mom_testkit::{poll_until, Cluster};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_exposes_prometheus_metrics() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let published = publish_batch(&conn, 0, 20).await;
    // The queue's depth, summed over the nodes (each reports the partitions it serves).
    let depth_reported = poll_until(Duration::from_secs(15), || async {
        let mut ready = 0.0;
        for index in 0..3 {
            let text = scrape(&cluster.node_metrics_url(index)).await;
            ready += sum(&text, "mom_mailbox_ready", &[r#"mailbox="q/entries""#]);
        }
        ready == 20.0
    })
    .await;
    assert!(depth_reported, "queue depth not in the nodes' metrics");
    let delivered = drain(&conn, "entries", published.len(), Duration::from_secs(3)).await;
    assert_eq!(delivered.len(), 20);

    let gateway = scrape(&format!("{}/metrics", cluster.gateway_url())).await;
    assert!(
        sum(
            &gateway,
            "mom_http_requests_total",
            &[r#"route="/exchanges/{name}/publish""#, r#"status="201""#]
        ) >= 20.0,
        "{gateway}"
    );
    assert!(
        sum(
            &gateway,
            "mom_http_request_duration_seconds_count",
            &[r#"route="/queues/{name}/pull""#]
        ) >= 1.0
    );
    assert_eq!(sum(&gateway, "mom_live_nodes", &[]), 3.0);
    assert_eq!(sum(&gateway, "mom_zookeeper_connected", &[]), 1.0);
    assert_eq!(
        sum(&gateway, "mom_partitions_without_live_leader", &[]),
        0.0
    );

    // Gauges are refreshed once a second: wait for the nodes to report the traffic.
    let partitions = f64::from(cluster_partitions(&cluster).await);
    let nodes_report = poll_until(Duration::from_secs(10), || async {
        let mut texts = Vec::new();
        for index in 0..3 {
            texts.push(scrape(&cluster.node_metrics_url(index)).await);
        }
        let total = |name: &str| texts.iter().map(|t| sum(t, name, &[])).sum::<f64>();
        total("mom_partition_leader") == partitions
            && total("mom_published_messages_total") >= 20.0
            && total("mom_delivered_messages_total") >= 20.0
            && total("mom_acked_messages_total") >= 20.0
            && total("mom_zookeeper_connected") == 3.0
            && total("mom_store_commit_seconds_count") > 0.0
            && total("mom_store_queue_seconds_count") > 0.0
            && total("mom_store_sync_seconds_count") > 0.0
            && total("mom_partition_isr_size") >= partitions * 3.0
    })
    .await;
    let mut texts = String::new();
    for index in 0..3 {
        texts.push_str(&scrape(&cluster.node_metrics_url(index)).await);
    }
    assert!(
        nodes_report,
        "nodes' metrics do not show the traffic:\n{texts}"
    );

    let partitioning = scrape(&cluster.partitioning_metrics_url(0)).await;
    let reported = poll_until(Duration::from_secs(5), || async {
        let text = scrape(&cluster.partitioning_metrics_url(0)).await;
        sum(&text, "mom_live_nodes", &[]) == 3.0 && sum(&text, "mom_controller", &[]) == 1.0
    })
    .await;
    assert!(reported, "{partitioning}");
}

async fn cluster_partitions(cluster: &Cluster) -> u32 {
    cluster.partitions().await.expect("partitions").len() as u32
}
