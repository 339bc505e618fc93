//! Delivery options of a publish, against a real cluster: delayed delivery (`delay_ms`),
//! through JSON bodies, batches and octet-stream publishes; the publisher's own message id,
//! stored once within the deduplication window.

use mom_client::PublishOptions;
use mom_e2e::{call, connect, drain};
use mom_testkit::{poll_until, Cluster, ClusterOptions};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_never_arrive_early_and_wake_a_waiting_pull_when_due() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_queue("later").await.unwrap();
    let delay = Duration::from_millis(1_500);
    let published = Instant::now();
    conn.publish_to_queue("later", "delayed", PublishOptions::default().delay(delay))
        .await
        .unwrap();
    conn.publish_to_queue("later", "at once", PublishOptions::default())
        .await
        .unwrap();
    // A batch entry and an octet-stream publish may be delayed too.
    let token = conn.token().to_owned();
    let (status, reply) = call(
        &cluster,
        Method::POST,
        "/queues/later/publish",
        Some(&token),
        Some(&json!({"messages": [{"payload": "batch delayed", "delay_ms": 1_500}]}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    let raw = reqwest::Client::new()
        .post(format!(
            "{}/queues/later/publish?delay_ms=1500",
            cluster.gateway_url()
        ))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body("raw delayed")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 201);

    let first = conn
        .pull("later", 10, None, Duration::from_millis(200))
        .await
        .unwrap();
    let payloads: Vec<&str> = first.iter().map(|d| d.payload.as_str()).collect();
    assert_eq!(payloads, ["at once"], "a delayed message came early");
    conn.ack("later", &[first[0].receipt.as_str()])
        .await
        .unwrap();

    // A pull waiting now is woken when the first delayed message is due, not before.
    let mut got = Vec::new();
    while got.len() < 3 {
        let batch = conn
            .pull("later", 10, None, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(!batch.is_empty(), "delayed messages never came");
        let arrived = published.elapsed();
        assert!(
            arrived >= delay,
            "delivered after {arrived:?}, before {delay:?}"
        );
        assert!(
            arrived < delay + Duration::from_secs(3),
            "delivered only after {arrived:?}"
        );
        got.extend(batch.into_iter().map(|d| d.payload));
    }
    got.sort();
    assert_eq!(got, ["batch delayed", "delayed", "raw delayed"]);

    // Out of range: refused, naming the field.
    let (status, reply) = call(
        &cluster,
        Method::POST,
        "/queues/later/publish",
        Some(&token),
        Some(r#"{"payload":"x","delay_ms":99999999999999}"#),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("delay_ms"),
        "{reply}"
    );
}

/// How many times each node's log and dedup table hold `message_id`.
fn copies_of(cluster: &Cluster, nodes: usize, message_id: &str) -> (usize, usize) {
    let mut in_log = 0;
    let mut remembered = 0;
    for index in 0..nodes {
        let db = rusqlite::Connection::open_with_flags(
            cluster.node_data_dir(index).join("messages.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let count = |table: &str| -> usize {
            db.query_row(
                &format!("SELECT COUNT(*) FROM {table} WHERE message_id = ?1"),
                [message_id],
                |row| row.get::<_, i64>(0),
            )
            .unwrap() as usize
        };
        in_log += count("log");
        remembered += count("dedup");
    }
    (in_log, remembered)
}

/// A publisher's own message id is stored once within the deduplication window, also after
/// the message was consumed and its log entry compacted away; past the window it is new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_id_is_stored_once_within_the_window_even_after_it_was_consumed() {
    let window = Duration::from_secs(20);
    let mut cluster = Cluster::start_with(ClusterOptions {
        node_settings: Some(format!("dedup_window_ms = {}", window.as_millis())),
        ..Default::default()
    })
    .await;
    let conn = connect(&cluster).await;
    conn.declare_queue("orders").await.unwrap();
    let once = || PublishOptions {
        message_id: Some("order-17".into()),
        ..Default::default()
    };
    let published = Instant::now();
    conn.publish_to_queue("orders", "first", once())
        .await
        .unwrap();
    let got = drain(&conn, "orders", 10, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);

    // Consumed and acked: compaction drops the entry from every log, the id stays known.
    let compacted = poll_until(Duration::from_secs(20), || async {
        copies_of(&cluster, 3, "order-17") == (0, 3)
    })
    .await;
    assert!(compacted, "{:?}", copies_of(&cluster, 3, "order-17"));
    // Restarted, no node has the id in memory any more: only the stored ids remember it.
    for node in 0..3 {
        cluster.kill_node(node);
    }
    for node in 0..3 {
        cluster.restart_node(node);
    }
    cluster.wait_until_in_sync().await;
    assert!(published.elapsed() < window, "the test machine is too slow");
    let retry = conn
        .publish_to_queue("orders", "retry", once())
        .await
        .unwrap();
    assert_eq!(retry.message_id, "order-17");
    let again = drain(&conn, "orders", 10, Duration::from_millis(300)).await;
    assert!(again.is_empty(), "stored twice: {:?}", again);

    // Past the window, the id is forgotten and a publish with it is a new message.
    let forgotten = poll_until(Duration::from_secs(20), || async {
        copies_of(&cluster, 3, "order-17") == (0, 0)
    })
    .await;
    assert!(forgotten, "{:?}", copies_of(&cluster, 3, "order-17"));
    assert!(published.elapsed() >= window, "forgotten inside the window");
    conn.publish_to_queue("orders", "later", once())
        .await
        .unwrap();
    let later = drain(&conn, "orders", 10, Duration::from_millis(300)).await;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].payload, "later");
}
