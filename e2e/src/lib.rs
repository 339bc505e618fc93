//! Helpers shared by the end-to-end tests in `tests/`.

pub mod nemesis;

use mom_client::{Connection, Delivery, ExchangeKind, MailboxName};
use mom_testkit::{Cluster, ClusterOptions};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct-horse-battery";

/// Registers the test user and logs in through the gateway.
pub async fn connect(cluster: &Cluster) -> Connection {
    Connection::register(cluster.gateway_url(), USER, PASSWORD)
        .await
        .expect("register");
    Connection::connect(cluster.gateway_url(), USER, PASSWORD)
        .await
        .expect("login")
}

/// Pulls and acks until `count` messages came or nothing arrives for `quiet`.
pub async fn drain(conn: &Connection, queue: &str, count: usize, quiet: Duration) -> Vec<Delivery> {
    drain_mailbox(conn, &MailboxName::Queue(queue.to_owned()), count, quiet).await
}

/// [`drain`] for any mailbox: a queue or a topic subscription.
pub async fn drain_mailbox(
    conn: &Connection,
    mailbox: &MailboxName,
    count: usize,
    quiet: Duration,
) -> Vec<Delivery> {
    let mut got = Vec::new();
    while got.len() < count {
        let wanted = (count - got.len()).min(100) as u32;
        let batch = conn
            .pull_from(mailbox, wanted, None, quiet)
            .await
            .expect("pull");
        if batch.is_empty() {
            break;
        }
        let receipts: Vec<&str> = batch.iter().map(|d| d.receipt.as_str()).collect();
        let outcome = conn.ack_in(mailbox, &receipts).await.expect("ack");
        assert!(
            outcome.stale.is_empty(),
            "fresh receipts refused: {:?}",
            outcome.stale
        );
        got.extend(batch);
    }
    got
}

pub fn payloads(deliveries: &[Delivery]) -> Vec<&str> {
    deliveries.iter().map(|d| d.payload.as_str()).collect()
}

/// A raw HTTP call to the gateway, for checking statuses and error bodies.
pub async fn call(
    cluster: &Cluster,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut request =
        reqwest::Client::new().request(method, format!("{}{path}", cluster.gateway_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("gateway reachable");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, json)
}

/// Keys the ledger helpers spread messages over.
pub const KEYS: usize = 8;

/// Short node sessions, so that a killed node is noticed within 1.5 s.
pub fn fast_failover() -> ClusterOptions {
    ClusterOptions {
        node_session_timeout_ms: 1_500,
        ..Default::default()
    }
}

/// A topic exchange `ledger` bound with `#` to the queue `entries`.
pub async fn declare_ledger(conn: &Connection) {
    declare_bound(conn, ("ledger", ExchangeKind::Topic), "entries", "#").await;
}

/// The exchange (name, kind) and the queue, bound with `pattern`.
pub async fn declare_bound(
    conn: &Connection,
    (exchange, kind): (&str, ExchangeKind),
    queue: &str,
    pattern: &str,
) {
    conn.declare_exchange(exchange, kind).await.unwrap();
    conn.declare_queue(queue).await.unwrap();
    conn.bind(exchange, queue, pattern).await.unwrap();
}

/// Publishes `count` messages over [`KEYS`] keys; returns payload by message id.
pub async fn publish_batch(
    conn: &Connection,
    from: usize,
    count: usize,
) -> HashMap<String, String> {
    let mut acknowledged = HashMap::new();
    for n in from..from + count {
        let payload = format!("k{}:{n}", n % KEYS);
        let published = conn
            .publish("ledger", &format!("k{}", n % KEYS), payload.as_str())
            .await
            .unwrap();
        assert_eq!(published.routed, 1);
        acknowledged.insert(published.message_id, payload);
    }
    acknowledged
}

/// Drains the queue and checks: every acknowledged message is there, and per key the messages
/// come in publish order (after dropping repeats, which at-least-once allows).
pub async fn assert_all_delivered_in_order(
    conn: &Connection,
    acknowledged: &HashMap<String, String>,
    cluster: &Cluster,
) {
    let delivered = drain(conn, "entries", usize::MAX, Duration::from_secs(2)).await;
    let ids: HashSet<&str> = delivered.iter().map(|d| d.message_id.as_str()).collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|(id, _)| !ids.contains(id.as_str()))
        .map(|(_, p)| p)
        .collect();
    assert!(
        lost.is_empty(),
        "lost {} acknowledged messages: {lost:?}\n{}",
        lost.len(),
        cluster.logs()
    );
    let mut last_per_key: HashMap<String, usize> = HashMap::new();
    let mut seen = HashSet::new();
    for delivery in &delivered {
        if !seen.insert(delivery.message_id.clone()) {
            continue;
        }
        let (key, n) = delivery.payload.split_once(':').expect("payload shape");
        let n: usize = n.parse().unwrap();
        if let Some(previous) = last_per_key.insert(key.to_owned(), n) {
            assert!(previous < n, "key {key}: {n} delivered after {previous}");
        }
    }
}

/// Credentials a gateway would use to call a node for the holder of user token `token`: for
/// tests that talk to nodes directly.
pub fn acting_for(token: &str) -> mom_common::token::AttachService {
    let user = mom_common::token::TokenKeys::new(mom_testkit::JWT_SECRET)
        .verify(token)
        .expect("a token of the test cluster")
        .sub;
    mom_testkit::service_credentials()
        .acting_for(&user)
        .expect("a user name fits a header")
}

/// A service's Prometheus text, from its metrics endpoint `url`.
pub async fn scrape(url: &str) -> String {
    let reply = reqwest::get(url).await.expect("metrics endpoint reachable");
    assert_eq!(reply.status(), 200, "{url}");
    reply.text().await.unwrap()
}

/// The sum of every sample of `name` whose labels contain all of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let bare = series.split('{').next()?;
            (bare == name && labels.iter().all(|l| series.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Publishes `count` messages over 24 routing keys (so over every leader) to `exchange` in
/// one batch request, payloads `<tag>-m<n>`.
pub async fn publish_spread(conn: &Connection, exchange: &str, tag: &str, count: usize) {
    let batch: Vec<(String, String)> = (0..count)
        .map(|n| (format!("key{}", n % 24), format!("{tag}-m{n:02}")))
        .collect();
    for outcome in conn.publish_batch(exchange, batch).await.unwrap() {
        outcome.expect("published");
    }
}

/// How many leased messages the gateway has put back (`mom_pull_released_messages_total`).
pub async fn released_by_gateway(cluster: &Cluster) -> f64 {
    let metrics = scrape(&format!("{}/metrics", cluster.gateway_url())).await;
    metric_sum(&metrics, "mom_pull_released_messages_total", &[])
}
