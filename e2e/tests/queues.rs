//! Queue semantics: FIFO, competing consumers, redelivery of unacked messages, TTL.

use mom_client::ExchangeKind;
use mom_e2e::{connect, drain, payloads};
use mom_testkit::Cluster;
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test]
async fn a_queue_is_fifo_per_routing_key() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_exchange("jobs", ExchangeKind::Direct)
        .await
        .unwrap();
    conn.declare_queue("work").await.unwrap();
    conn.bind("jobs", "work", "k").await.unwrap();
    let sent: Vec<String> = (0..40).map(|n| format!("job-{n:02}")).collect();
    for payload in &sent {
        conn.publish("jobs", "k", payload.as_str()).await.unwrap();
    }
    // One at a time, as a single consumer would.
    let mut consumer = conn.consume("work").with_batch_size(1);
    let mut received = Vec::new();
    for _ in 0..sent.len() {
        let delivery = consumer
            .next_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .expect("message");
        assert!(consumer.ack(&delivery).await.unwrap());
        received.push(delivery.payload);
    }
    assert_eq!(received, sent);
    assert!(consumer
        .next_timeout(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn competing_consumers_share_without_duplicates() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_exchange("tasks", ExchangeKind::Topic)
        .await
        .unwrap();
    conn.declare_queue("pool").await.unwrap();
    conn.bind("tasks", "pool", "#").await.unwrap();
    let mut sent = HashSet::new();
    for n in 0..120 {
        conn.publish("tasks", &format!("key{}", n % 12), format!("task-{n}"))
            .await
            .unwrap();
        sent.insert(format!("task-{n}"));
    }
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let mut consumer = conn.consume("pool").with_batch_size(5);
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(delivery) = consumer
                    .next_timeout(Duration::from_millis(500))
                    .await
                    .unwrap()
                {
                    assert!(consumer.ack(&delivery).await.unwrap(), "ack refused");
                    got.push(delivery.payload);
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut busy_workers = 0;
    for worker in workers {
        let got = worker.await.unwrap();
        busy_workers += usize::from(!got.is_empty());
        all.extend(got);
    }
    let unique: HashSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), unique.len(), "a message went to two consumers");
    assert_eq!(unique, sent);
    assert!(busy_workers >= 2, "work was not shared");
}

#[tokio::test]
async fn unacked_messages_are_redelivered_and_stale_acks_refused() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_exchange("mail", ExchangeKind::Direct)
        .await
        .unwrap();
    conn.declare_queue("inbox").await.unwrap();
    conn.bind("mail", "inbox", "k").await.unwrap();
    let published = conn.publish("mail", "k", "letter").await.unwrap();

    let lease = Some(Duration::from_millis(300));
    let first = conn
        .pull("inbox", 1, lease, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].message_id.as_str(), first[0].delivery_count),
        (published.message_id.as_str(), 1)
    );
    // Leased: nobody else gets it meanwhile.
    assert!(conn
        .pull("inbox", 1, lease, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());

    // The consumer "crashed" without acking: the message comes back once the lease ends.
    let second = conn
        .pull(
            "inbox",
            1,
            Some(Duration::from_secs(30)),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(
        (second[0].message_id.as_str(), second[0].delivery_count),
        (published.message_id.as_str(), 2)
    );
    assert_ne!(first[0].receipt, second[0].receipt);

    let late = conn
        .ack("inbox", &[first[0].receipt.as_str()])
        .await
        .unwrap();
    assert_eq!(
        (late.acked, late.stale.len()),
        (0, 1),
        "an old receipt must not ack the new delivery"
    );
    let current = conn
        .ack("inbox", &[second[0].receipt.as_str()])
        .await
        .unwrap();
    assert_eq!(current.acked, 1);
    let depth = conn.queue_depth("inbox").await.unwrap();
    assert_eq!((depth.ready, depth.leased), (0, 0));
}

#[tokio::test]
async fn expired_messages_are_not_delivered() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_exchange("quotes", ExchangeKind::Fanout)
        .await
        .unwrap();
    conn.declare_queue("screen").await.unwrap();
    conn.bind("quotes", "screen", "").await.unwrap();
    let short = mom_client::PublishOptions {
        ttl: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    conn.publish_with("quotes", "", "stale-quote", short)
        .await
        .unwrap();
    let long = mom_client::PublishOptions {
        ttl: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    conn.publish_with("quotes", "", "fresh-quote", long)
        .await
        .unwrap();
    // TTL is about time passing, so the test lets it pass.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        payloads(&drain(&conn, "screen", 10, Duration::from_millis(300)).await),
        ["fresh-quote"]
    );
}

#[tokio::test]
async fn a_batch_publish_stores_every_message_in_per_key_order() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_exchange("bulk", ExchangeKind::Topic)
        .await
        .unwrap();
    conn.declare_queue("all").await.unwrap();
    conn.bind("bulk", "all", "#").await.unwrap();
    let messages: Vec<(String, String)> = (0..250)
        .map(|n| (format!("k{}", n % 8), format!("k{}:{n}", n % 8)))
        .collect();
    let outcomes = conn.publish_batch("bulk", messages.clone()).await.unwrap();
    assert_eq!(outcomes.len(), messages.len());
    let ids: HashSet<String> = outcomes
        .into_iter()
        .map(|o| {
            let published = o.expect("stored");
            assert_eq!(published.routed, 1);
            published.message_id
        })
        .collect();
    assert_eq!(ids.len(), messages.len(), "one id per message");

    let delivered = drain(&conn, "all", usize::MAX, Duration::from_secs(2)).await;
    let got: HashSet<&str> = delivered.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(got.len(), ids.len());
    assert!(ids.iter().all(|id| got.contains(id.as_str())));
    // Per key, in the order of the batch.
    let mut last: std::collections::HashMap<&str, usize> = Default::default();
    for delivery in &delivered {
        let (key, n) = delivery.payload.split_once(':').unwrap();
        let n: usize = n.parse().unwrap();
        if let Some(previous) = last.insert(key, n) {
            assert!(previous < n, "{key}: {n} after {previous}");
        }
    }
}

/// RabbitMQ's default exchange, `mandatory` publishes and the publisher's own message ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_exchange_mandatory_and_publisher_message_ids() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_queue("inbox").await.unwrap();

    // Straight to a queue, with no exchange or binding.
    let published = conn
        .publish_to_queue("inbox", "direct to the queue", Default::default())
        .await
        .unwrap();
    assert_eq!(published.routed, 1);
    let pulled = drain(&conn, "inbox", 1, Duration::from_secs(5)).await;
    assert_eq!(pulled[0].payload, "direct to the queue");
    let (status, body) = mom_e2e::call(
        &cluster,
        reqwest::Method::POST,
        "/queues/nowhere/publish",
        Some(conn.token()),
        Some(r#"{"payload":"x"}"#),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // Mandatory: refused instead of routed to nobody.
    conn.declare_exchange("unbound", ExchangeKind::Direct)
        .await
        .unwrap();
    let mandatory = mom_client::PublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let refused = conn
        .publish_with("unbound", "k", "lost?", mandatory.clone())
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(422), "{refused}");
    let routed = conn.publish("unbound", "k", "lost").await.unwrap().routed;
    assert_eq!(routed, 0);
    conn.publish_to_queue("inbox", "wanted", mandatory)
        .await
        .unwrap();

    // The publisher's own id: a retry is stored once.
    let with_id = mom_client::PublishOptions {
        message_id: Some("order-17".into()),
        ..Default::default()
    };
    for _ in 0..3 {
        let published = conn
            .publish_to_queue("inbox", "order 17", with_id.clone())
            .await
            .unwrap();
        assert_eq!(published.message_id, "order-17");
    }
    let got = drain(&conn, "inbox", 10, Duration::from_secs(2)).await;
    let payloads: Vec<&str> = got.iter().map(|d| d.payload.as_str()).collect();
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    assert!(payloads.contains(&"wanted") && payloads.contains(&"order 17"));
    let bad_id = mom_client::PublishOptions {
        message_id: Some("no spaces allowed".into()),
        ..Default::default()
    };
    let refused = conn
        .publish_to_queue("inbox", "x", bad_id)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(400));
}

/// A waiting pull asks every node to wait, and several may wake at once (one batch lands on
/// partitions of every leader). The nodes it does not take messages from must hold no leases
/// for it: putting those back would let other consumers get the messages behind them first,
/// out of order. So over many such wake-ups the gateway puts nothing back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_pull_leases_only_what_it_answers() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    mom_e2e::declare_bound(&conn, ("burst", ExchangeKind::Topic), "burst-q", "#").await;
    let mut delivered = 0;
    for round in 0..20 {
        let waiting = {
            let conn = conn.clone();
            tokio::spawn(async move {
                conn.pull("burst-q", 100, None, Duration::from_secs(10))
                    .await
                    .unwrap()
            })
        };
        // Time for the pull to find nothing and start waiting (not observable from outside;
        // a round where the batch comes first only tests less).
        tokio::time::sleep(Duration::from_millis(150)).await;
        mom_e2e::publish_spread(&conn, "burst", &format!("r{round}"), 24).await;
        let woken = waiting.await.unwrap();
        assert!(!woken.is_empty(), "the waiting pull was not woken");
        let receipts: Vec<&str> = woken.iter().map(|d| d.receipt.as_str()).collect();
        conn.ack("burst-q", &receipts).await.unwrap();
        let rest = drain(&conn, "burst-q", 24 - woken.len(), Duration::from_secs(2)).await;
        delivered += woken.len() + rest.len();
    }
    assert_eq!(delivered, 20 * 24);
    let released = mom_e2e::released_by_gateway(&cluster).await;
    assert_eq!(released, 0.0, "the gateway put back leased messages");
}
