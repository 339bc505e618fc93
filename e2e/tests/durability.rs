//! Acknowledged publishes survive broker nodes being SIGKILLed and restarted.

use mom_client::ExchangeKind;
use mom_e2e::{connect, drain};
use mom_testkit::Cluster;
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test]
async fn killed_nodes_come_back_with_every_acknowledged_message() {
    let mut cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_exchange("ledger", ExchangeKind::Topic)
        .await
        .unwrap();
    conn.declare_queue("entries").await.unwrap();
    conn.bind("ledger", "entries", "#").await.unwrap();

    // Many keys, so every node owns some of the messages.
    let mut acknowledged = HashMap::new();
    for n in 0..90 {
        let published = conn
            .publish(
                "ledger",
                &format!("account{}", n % 15),
                format!("entry-{n}"),
            )
            .await
            .unwrap();
        assert_eq!(published.routed, 1);
        acknowledged.insert(published.message_id, format!("entry-{n}"));
    }
    let per_node: Vec<u64> = (0..3)
        .map(|i| {
            std::fs::metadata(cluster.node_data_dir(i).join("messages.db"))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .collect();
    assert!(
        per_node.iter().all(|&bytes| bytes > 0),
        "some node holds no data: {per_node:?}"
    );

    for node in 0..3 {
        cluster.kill_node(node);
    }
    for node in 0..3 {
        cluster.restart_node(node);
    }
    cluster.wait_for_live_nodes(3).await;
    cluster.wait_until_in_sync().await;

    let delivered = drain(&conn, "entries", acknowledged.len(), Duration::from_secs(2)).await;
    let mut seen = HashMap::new();
    for delivery in &delivered {
        assert_eq!(
            acknowledged.get(&delivery.message_id),
            Some(&delivery.payload)
        );
        *seen.entry(delivery.message_id.clone()).or_insert(0) += 1;
    }
    let missing: Vec<_> = acknowledged
        .keys()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "lost {} acknowledged messages:\n{}",
        missing.len(),
        cluster.logs()
    );
    assert!(seen.values().all(|&n| n == 1), "duplicates after restart");
}
