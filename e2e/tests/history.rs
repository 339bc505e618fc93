//! Topic history against a real cluster: a topic with `retention_ms` keeps its messages also
//! with no subscriber; a new subscription starts at the latest, the earliest, partition
//! offsets or a time; `GET /topics/{t}` shows retention, what is retained and each
//! subscription's lag; retention runs out; a deleted topic's history goes with it.

use mom_client::{Connection, Delivery, MailboxName, SubscriptionStart};
use mom_e2e::{call, connect, drain_mailbox};
use mom_testkit::{poll_until, Cluster};
use reqwest::Method;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

const QUIET: Duration = Duration::from_millis(500);

async fn drain_subscription(conn: &Connection, topic: &str, subscriber: &str) -> Vec<Delivery> {
    let mailbox = MailboxName::Subscription {
        topic: topic.into(),
        subscriber: subscriber.into(),
    };
    drain_mailbox(conn, &mailbox, usize::MAX, QUIET).await
}

fn payloads(deliveries: &[Delivery]) -> Vec<String> {
    let mut all: Vec<String> = deliveries.iter().map(|d| d.payload.clone()).collect();
    all.sort();
    all
}

/// Per routing key, payloads `<key>:<n>` come in publish order.
fn assert_in_order_per_key(deliveries: &[Delivery]) {
    let mut last: HashMap<&str, u32> = HashMap::new();
    for d in deliveries {
        let (key, n) = d.payload.split_once(':').unwrap();
        let n: u32 = n.parse().unwrap();
        if let Some(previous) = last.insert(key, n) {
            assert!(previous < n, "{key}: {n} after {previous}");
        }
    }
}

/// Publishes `<key>:<n>` for every n, over five routing keys (several partitions).
async fn publish(cluster: &Cluster, conn: &Connection, topic: &str, range: std::ops::Range<u32>) {
    for n in range {
        let key = format!("k{}", n % 5);
        let body = serde_json::json!({"routing_key": key, "payload": format!("{key}:{n}")});
        let (status, reply) = call(
            cluster,
            Method::POST,
            &format!("/topics/{topic}/publish"),
            Some(conn.token()),
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, 201, "{reply}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscription_starts_at_the_earliest_an_offset_or_a_time() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_topic_with_retention("news", Duration::from_secs(600))
        .await
        .unwrap();
    // Nobody subscribes yet: the messages are kept all the same.
    publish(&cluster, &conn, "news", 0..10).await;
    let info = conn.topic("news").await.unwrap();
    assert_eq!(info.retention_ms, 600_000);
    assert_eq!(info.retained.messages, 10);
    assert!(info.retained.oldest_published_at_ms.is_some());
    let middle = SystemTime::now();
    publish(&cluster, &conn, "news", 10..15).await;

    conn.subscribe_from("news", "late", &SubscriptionStart::Earliest)
        .await
        .unwrap();
    conn.subscribe("news", "fresh").await.unwrap();
    conn.subscribe_from("news", "since", &SubscriptionStart::Time(middle))
        .await
        .unwrap();
    let info = conn.topic("news").await.unwrap();
    let lag: BTreeMap<String, u64> = info
        .subscriptions
        .iter()
        .map(|s| (s.subscriber.clone(), s.lag))
        .collect();
    assert_eq!(
        lag,
        BTreeMap::from([
            ("fresh".to_owned(), 0),
            ("late".to_owned(), 15),
            ("since".to_owned(), 5)
        ])
    );

    let late = drain_subscription(&conn, "news", "late").await;
    assert_eq!(late.len(), 15, "{:?}", payloads(&late));
    assert_in_order_per_key(&late);
    let since = drain_subscription(&conn, "news", "since").await;
    let expected: Vec<String> = {
        let mut e: Vec<String> = (10..15).map(|n| format!("k{}:{n}", n % 5)).collect();
        e.sort();
        e
    };
    assert_eq!(payloads(&since), expected);
    assert!(drain_subscription(&conn, "news", "fresh").await.is_empty());

    // From an offset: the third message of one partition on, everything of the others.
    let receipt = |d: &Delivery| -> (u32, u64) {
        let mut parts = d.receipt.split('/');
        let partition = parts.next().unwrap().parse().unwrap();
        let offset = parts.next().unwrap().parse().unwrap();
        (partition, offset)
    };
    let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for d in &late {
        let (p, o) = receipt(d);
        by_partition.entry(p).or_default().push(o);
    }
    let (&partition, offsets) = by_partition
        .iter()
        .max_by_key(|(_, o)| o.len())
        .expect("some partition");
    assert!(offsets.len() >= 3, "{by_partition:?}");
    let from = offsets[2];
    conn.subscribe_from(
        "news",
        "offset",
        &SubscriptionStart::Offsets(BTreeMap::from([(partition, from)])),
    )
    .await
    .unwrap();
    let got = drain_subscription(&conn, "news", "offset").await;
    assert_eq!(got.len(), 15 - 2, "{:?}", payloads(&got));
    assert!(got
        .iter()
        .all(|d| receipt(d).0 != partition || receipt(d).1 >= from));

    // New messages reach every subscription once, the replayed ones included.
    publish(&cluster, &conn, "news", 15..17).await;
    for subscriber in ["late", "fresh", "since", "offset"] {
        let got = drain_subscription(&conn, "news", subscriber).await;
        assert_eq!(got.len(), 2, "{subscriber}: {:?}", payloads(&got));
    }
    // Subscribing again does not replay again.
    conn.subscribe_from("news", "late", &SubscriptionStart::Earliest)
        .await
        .unwrap();
    assert!(drain_subscription(&conn, "news", "late").await.is_empty());

    // Another retention for an existing topic is a conflict; bad starts are 400.
    let token = conn.token().to_owned();
    let (status, reply) = call(
        &cluster,
        Method::POST,
        "/topics",
        Some(&token),
        Some(r#"{"name":"news","retention_ms":5}"#),
    )
    .await;
    assert_eq!(status, 409, "{reply}");
    let (status, reply) = call(
        &cluster,
        Method::POST,
        "/topics/news/subscriptions",
        Some(&token),
        Some(r#"{"subscriber":"x","start":"earliest","start_time_ms":5}"#),
    )
    .await;
    assert_eq!(status, 400, "{reply}");

    // A deleted topic's history goes with it.
    conn.delete_topic("news").await.unwrap();
    conn.declare_topic_with_retention("news", Duration::from_secs(600))
        .await
        .unwrap();
    conn.subscribe_from("news", "again", &SubscriptionStart::Earliest)
        .await
        .unwrap();
    assert!(drain_subscription(&conn, "news", "again").await.is_empty());
    assert_eq!(conn.topic("news").await.unwrap().retained.messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_out_and_a_topic_without_it_keeps_nothing() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_topic("plain").await.unwrap();
    publish(&cluster, &conn, "plain", 0..3).await;
    conn.subscribe_from("plain", "late", &SubscriptionStart::Earliest)
        .await
        .unwrap();
    assert!(drain_subscription(&conn, "plain", "late").await.is_empty());
    assert_eq!(conn.topic("plain").await.unwrap().retention_ms, 0);

    conn.declare_topic_with_retention("short", Duration::from_millis(1_500))
        .await
        .unwrap();
    publish(&cluster, &conn, "short", 0..3).await;
    assert_eq!(conn.topic("short").await.unwrap().retained.messages, 3);
    let gone = poll_until(Duration::from_secs(20), || async {
        conn.topic("short").await.unwrap().retained.messages == 0
    })
    .await;
    assert!(gone, "retention never ran out");
    conn.subscribe_from("short", "late", &SubscriptionStart::Earliest)
        .await
        .unwrap();
    assert!(drain_subscription(&conn, "short", "late").await.is_empty());
}
