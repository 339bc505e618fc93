//! Delivery options of a publish, against a real cluster: delayed delivery (`delay_ms`),
//! through JSON bodies, batches and octet-stream publishes; the publisher's own message id,
//! stored once within the deduplication window; dead letters after a delivery limit or a
//! rejection, and `nack` with requeue.

use mom_client::{ClientError, ExchangeKind, PublishOptions, QueueOptions};
use mom_e2e::{call, connect, drain};
use mom_testkit::{poll_until, Cluster, ClusterOptions};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

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
    assert_eq!(
        payloads,
        ["at once"],
        "a delayed message came early\n{}",
        cluster.logs()
    );
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
        assert!(
            !batch.is_empty(),
            "delayed messages never came\n{}",
            cluster.logs()
        );
        let arrived = published.elapsed();
        assert!(
            arrived >= delay,
            "delivered after {arrived:?}, before {delay:?}"
        );
        assert!(
            arrived < delay + Duration::from_secs(3),
            "delivered only after {arrived:?}\n{}",
            cluster.logs()
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
    assert!(
        again.is_empty(),
        "stored twice: {again:?}; log and dedup rows: {:?}",
        copies_of(&cluster, 3, "order-17")
    );

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

/// A queue with a dead-letter exchange and a delivery limit: a message delivered that many
/// times without an ack, or rejected, goes to the exchange with headers saying why; a nack
/// with requeue makes it ready again at once; a stale nack changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_past_their_delivery_limit_or_rejected_are_dead_lettered() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    mom_e2e::declare_bound(&conn, ("dlx", ExchangeKind::Fanout), "dead", "").await;
    let options = QueueOptions {
        dead_letter_exchange: Some("dlx".into()),
        max_deliveries: Some(2),
    };
    conn.declare_queue_with("work", &options).await.unwrap();
    // The same settings again are fine; others are a conflict.
    conn.declare_queue_with("work", &options).await.unwrap();
    let other = QueueOptions {
        max_deliveries: Some(3),
        ..options.clone()
    };
    let conflict = conn.declare_queue_with("work", &other).await.unwrap_err();
    assert!(
        matches!(conflict, ClientError::Api { status: 409, .. }),
        "{conflict}"
    );

    let lease = Some(Duration::from_millis(300));
    let poison = PublishOptions::default().header("trace-id", "t-9");
    conn.publish_to_queue("work", "poison", poison)
        .await
        .unwrap();
    for delivery in 1..=2 {
        let got = conn
            .pull("work", 1, lease, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "delivery {delivery}");
        assert_eq!(got[0].delivery_count, delivery);
        // Not acked: its lease runs out.
    }
    let dead = drain_until(&conn, "dead", 1).await;
    assert_eq!(dead[0].payload, "poison");
    let headers = &dead[0].headers;
    assert_eq!(headers["x-death-reason"], "max_deliveries");
    assert_eq!(headers["x-death-queue"], "work");
    assert_eq!(headers["x-death-deliveries"], "2");
    assert_eq!(headers["trace-id"], "t-9", "the original headers go along");
    assert!(
        conn.pull("work", 1, lease, Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty(),
        "a dead-lettered message is still in its queue"
    );

    // Requeued: ready again at once, the delivery counted.
    conn.publish_to_queue("work", "retry", PublishOptions::default())
        .await
        .unwrap();
    let first = conn.pull("work", 1, None, WAIT).await.unwrap();
    let outcome = conn
        .nack("work", &[first[0].receipt.as_str()], true)
        .await
        .unwrap();
    assert_eq!((outcome.nacked, outcome.stale.len()), (1, 0));
    let again = conn.pull("work", 1, None, Duration::ZERO).await.unwrap();
    assert_eq!(again[0].payload, "retry");
    assert_eq!(again[0].delivery_count, 2);
    // The first receipt is stale now; rejecting with the current one dead-letters it.
    let stale = conn
        .nack("work", &[first[0].receipt.as_str()], false)
        .await
        .unwrap();
    assert_eq!((stale.nacked, stale.stale.len()), (0, 1));
    let rejected = conn
        .nack("work", &[again[0].receipt.as_str()], false)
        .await
        .unwrap();
    assert_eq!(rejected.nacked, 1);
    let dead = drain_until(&conn, "dead", 1).await;
    assert_eq!(dead[0].payload, "retry");
    assert_eq!(dead[0].headers["x-death-reason"], "rejected");

    // Without a dead-letter exchange, such messages are dropped.
    conn.declare_queue_with(
        "once",
        &QueueOptions {
            dead_letter_exchange: None,
            max_deliveries: Some(1),
        },
    )
    .await
    .unwrap();
    conn.publish_to_queue("once", "only once", PublishOptions::default())
        .await
        .unwrap();
    let got = conn.pull("once", 1, lease, WAIT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(conn
        .pull("once", 1, lease, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    // A dead-letter exchange that does not exist is refused at declare time.
    let missing = conn
        .declare_queue_with(
            "nowhere",
            &QueueOptions {
                dead_letter_exchange: Some("missing".into()),
                max_deliveries: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(missing, ClientError::Api { status: 404, .. }),
        "{missing}"
    );
}

/// Pulls (and acks) until `count` messages came; panics after 10 s.
async fn drain_until(
    conn: &mom_client::Connection,
    queue: &str,
    count: usize,
) -> Vec<mom_client::Delivery> {
    let got = drain(conn, queue, count, Duration::from_secs(10)).await;
    assert_eq!(got.len(), count, "{queue}: {got:?}");
    got
}
