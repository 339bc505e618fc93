//! Helpers shared by the end-to-end tests in `tests/`.

use mom_client::{Connection, Delivery};
use mom_testkit::Cluster;
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
    let mut got = Vec::new();
    while got.len() < count {
        let wanted = (count - got.len()).min(100) as u32;
        let batch = conn.pull(queue, wanted, None, quiet).await.expect("pull");
        if batch.is_empty() {
            break;
        }
        let receipts: Vec<&str> = batch.iter().map(|d| d.receipt.as_str()).collect();
        let outcome = conn.ack(queue, &receipts).await.expect("ack");
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
