//! Delivery options of a publish: delayed delivery (`delay_ms`), through JSON bodies, batches
//! and octet-stream publishes, against a real cluster.

use mom_client::PublishOptions;
use mom_e2e::{call, connect};
use mom_testkit::Cluster;
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
    conn.ack("later", &[first[0].receipt.as_str()]).await.unwrap();

    // A pull waiting now is woken when the first delayed message is due, not before.
    let mut got = Vec::new();
    while got.len() < 3 {
        let batch = conn
            .pull("later", 10, None, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(!batch.is_empty(), "delayed messages never came");
        let arrived = published.elapsed();
        assert!(arrived >= delay, "delivered after {arrived:?}, before {delay:?}");
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
    assert!(reply["error"].as_str().unwrap().contains("delay_ms"), "{reply}");
}
