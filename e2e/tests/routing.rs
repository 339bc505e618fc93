//! Exchanges route by kind: direct, topic wildcards, fanout; topics fan out to subscribers.

use mom_client::ExchangeKind;
use mom_e2e::{connect, drain, payloads};
use mom_testkit::Cluster;
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);

fn sorted_payloads(deliveries: Vec<mom_client::Delivery>) -> Vec<String> {
    let mut payloads: Vec<String> = deliveries.into_iter().map(|d| d.payload).collect();
    payloads.sort();
    payloads
}

#[tokio::test]
async fn exchanges_route_by_kind_and_topics_fan_out() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;

    // direct
    conn.declare_exchange("orders", ExchangeKind::Direct)
        .await
        .unwrap();
    for queue in ["eu", "us"] {
        conn.declare_queue(queue).await.unwrap();
        conn.bind("orders", queue, queue).await.unwrap();
    }
    assert_eq!(
        conn.publish("orders", "eu", "order-1")
            .await
            .unwrap()
            .routed,
        1
    );
    assert_eq!(
        conn.publish("orders", "asia", "order-2")
            .await
            .unwrap()
            .routed,
        0
    );
    assert_eq!(payloads(&drain(&conn, "eu", 10, QUIET).await), ["order-1"]);
    assert!(drain(&conn, "us", 10, QUIET).await.is_empty());

    // topic wildcards
    conn.declare_exchange("stocks", ExchangeKind::Topic)
        .await
        .unwrap();
    for (queue, pattern) in [
        ("nyse", "stock.*.nyse"),
        ("everything", "stock.#"),
        ("ibm", "*.ibm.*"),
    ] {
        conn.declare_queue(queue).await.unwrap();
        conn.bind("stocks", queue, pattern).await.unwrap();
    }
    assert_eq!(
        conn.publish("stocks", "stock.ibm.nyse", "a")
            .await
            .unwrap()
            .routed,
        3
    );
    assert_eq!(
        conn.publish("stocks", "stock.sap.xetra", "b")
            .await
            .unwrap()
            .routed,
        1
    );
    assert_eq!(
        conn.publish("stocks", "stock", "c").await.unwrap().routed,
        1
    );
    assert_eq!(
        conn.publish("stocks", "bond.ibm.nyse", "d")
            .await
            .unwrap()
            .routed,
        1
    );
    assert_eq!(payloads(&drain(&conn, "nyse", 10, QUIET).await), ["a"]);
    // Different keys may live on different nodes, so only per-key order is promised.
    assert_eq!(
        sorted_payloads(drain(&conn, "everything", 10, QUIET).await),
        ["a", "b", "c"]
    );
    assert_eq!(
        sorted_payloads(drain(&conn, "ibm", 10, QUIET).await),
        ["a", "d"]
    );

    // fanout ignores the key
    conn.declare_exchange("news", ExchangeKind::Fanout)
        .await
        .unwrap();
    for queue in ["n1", "n2", "n3"] {
        conn.declare_queue(queue).await.unwrap();
        conn.bind("news", queue, "").await.unwrap();
    }
    assert_eq!(
        conn.publish("news", "whatever", "headline")
            .await
            .unwrap()
            .routed,
        3
    );
    for queue in ["n1", "n2", "n3"] {
        assert_eq!(
            payloads(&drain(&conn, queue, 10, QUIET).await),
            ["headline"],
            "queue {queue}"
        );
    }

    // unbinding stops delivery
    conn.unbind("news", "n3", "").await.unwrap();
    assert_eq!(conn.publish("news", "", "second").await.unwrap().routed, 2);
    assert!(drain(&conn, "n3", 10, QUIET).await.is_empty());

    // topics: every subscriber has its own durable queue
    conn.declare_topic("events").await.unwrap();
    let mut first = conn
        .subscribe("events", "billing")
        .await
        .unwrap()
        .with_batch_size(1);
    let mut second = conn
        .subscribe("events", "audit")
        .await
        .unwrap()
        .with_batch_size(1);
    for n in 0..3 {
        assert_eq!(
            conn.publish_topic("events", format!("event-{n}"), None)
                .await
                .unwrap()
                .routed,
            2
        );
    }
    for subscriber in [&mut first, &mut second] {
        for n in 0..3 {
            let delivery = subscriber
                .next_timeout(Duration::from_secs(5))
                .await
                .unwrap()
                .expect("event");
            assert_eq!(delivery.payload, format!("event-{n}"));
            assert!(subscriber.ack(&delivery).await.unwrap());
        }
        assert!(subscriber.next_timeout(QUIET).await.unwrap().is_none());
    }
    conn.unsubscribe("events", "audit").await.unwrap();
    assert_eq!(
        conn.publish_topic("events", "late", None)
            .await
            .unwrap()
            .routed,
        1
    );
    assert_eq!(
        first
            .next_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .expect("late")
            .payload,
        "late"
    );
}
