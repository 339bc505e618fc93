//! Push consume, over both transports (Server-Sent Events and the gateway's gRPC `Consume`
//! stream): every message once per subscriber, in order per key; `prefetch` bounds what is
//! unacked; a stream resumes after a gateway restart or its leader's death and loses nothing.
//! And long-poll pulls that nodes wake when a message lands (no polling).

use mom_client::{
    Connection, Delivery, DeliveryStream, ExchangeKind, MailboxName, StreamOptions, Transport,
};
use mom_e2e::{call, connect, fast_failover};
use mom_testkit::{poll_until, Cluster};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

fn options(prefetch: u32, visibility_ms: u64, transport: Transport) -> StreamOptions {
    StreamOptions {
        prefetch: Some(prefetch),
        visibility_timeout: Some(Duration::from_millis(visibility_ms)),
        transport,
    }
}

/// Each scenario as two tests, one per transport.
macro_rules! over_both_transports {
    ($scenario:ident: $sse:ident, $grpc:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sse() {
            $scenario(Transport::Sse).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $grpc() {
            $scenario(Transport::Grpc).await;
        }
    };
}

over_both_transports!(every_message_once_per_subscriber_in_key_order:
    an_sse_stream_delivers_every_message_once_per_subscriber_in_key_order,
    a_grpc_stream_delivers_every_message_once_per_subscriber_in_key_order);
over_both_transports!(prefetch_bounds_the_unacked_messages_in_flight:
    prefetch_bounds_the_unacked_messages_of_an_sse_stream,
    prefetch_bounds_the_unacked_messages_of_a_grpc_stream);
over_both_transports!(resumes_after_a_gateway_restart:
    an_sse_stream_resumes_after_a_gateway_restart_and_loses_nothing,
    a_grpc_stream_resumes_after_a_gateway_restart_and_loses_nothing);
over_both_transports!(resumes_after_its_leader_is_killed:
    an_sse_stream_resumes_after_its_leader_is_killed_and_loses_nothing,
    a_grpc_stream_resumes_after_its_leader_is_killed_and_loses_nothing);

/// Messages per key, in the order they came.
fn by_key(deliveries: &[Delivery]) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in deliveries {
        keys.entry(d.routing_key.clone())
            .or_default()
            .push(d.payload.clone());
    }
    keys
}

async fn every_message_once_per_subscriber_in_key_order(transport: Transport) {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_topic("feed").await.unwrap();
    let mut consumers = Vec::new();
    for subscriber in ["s1", "s2"] {
        let mut stream = conn
            .subscribe_stream("feed", subscriber, options(20, 60_000, transport))
            .await
            .unwrap();
        consumers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(delivery) = stream.next_timeout(Duration::from_secs(15)).await.unwrap() {
                assert!(stream.ack(&delivery).await.unwrap(), "fresh ack refused");
                got.push(delivery);
                if got.len() == 240 {
                    // Nothing more, not even a redelivery.
                    let more = stream.next_timeout(Duration::from_secs(1)).await.unwrap();
                    assert!(more.is_none(), "more than was published: {more:?}");
                    break;
                }
            }
            got
        }));
    }
    // Published while the streams are open, from two publishers at once; the client's topic
    // publish has no routing key, so these go as REST calls.
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let url = format!("{}/topics/feed/publish", cluster.gateway_url());
            let token = conn.token().to_owned();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for n in 0..120 {
                    let key = format!("k{}", (n % 4) + 4 * p);
                    let body = serde_json::json!({
                        "routing_key": key,
                        "payload": format!("{key}-{n:03}"),
                    });
                    let answer = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(answer.status().as_u16(), 201);
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in 0..2 {
        for n in 0..120 {
            let key = format!("k{}", (n % 4) + 4 * p);
            expected
                .entry(key.clone())
                .or_default()
                .push(format!("{key}-{n:03}"));
        }
    }
    for consumer in consumers {
        let got = consumer.await.unwrap();
        assert_eq!(got.len(), 240, "every message, once");
        assert!(got.iter().all(|d| d.delivery_count == 1));
        assert_eq!(by_key(&got), expected, "in publish order per key");
    }
}

async fn prefetch_bounds_the_unacked_messages_in_flight(transport: Transport) {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_queue("bounded").await.unwrap();
    for n in 0..30 {
        conn.publish_to_queue("bounded", format!("m{n:02}"), Default::default())
            .await
            .unwrap();
    }
    // Streams check what pulls check: read permission, existence, their parameters.
    Connection::register(cluster.gateway_url(), "bob", "bob-password-1")
        .await
        .unwrap();
    let bob = Connection::connect(cluster.gateway_url(), "bob", "bob-password-1")
        .await
        .unwrap();
    let refused = bob
        .stream("bounded", options(5, 60_000, transport))
        .next()
        .await;
    assert!(
        matches!(
            refused,
            Err(mom_client::ClientError::Api { status: 403, .. })
        ),
        "{refused:?}"
    );
    match transport {
        Transport::Sse => {
            let token = Some(conn.token());
            for (path, status) in [
                ("/queues/nowhere/stream", 404),
                ("/queues/bounded/stream?prefetch=0", 400),
                ("/queues/bounded/stream?prefetch=1001", 400),
                ("/queues/bounded/stream?wait_ms=5", 400),
                ("/topics/feed/subscriptions/nobody/stream", 404),
            ] {
                let (got, body) = call(&cluster, reqwest::Method::GET, path, token, None).await;
                assert_eq!(got, status, "{path}: {body}");
                assert!(body["error"].is_string(), "{path}: {body}");
            }
        }
        Transport::Grpc => {
            let nobody = MailboxName::Subscription {
                topic: "feed".into(),
                subscriber: "nobody".into(),
            };
            for (mailbox, prefetch, status) in [
                (MailboxName::Queue("nowhere".into()), 5, 404),
                (MailboxName::Queue("bounded".into()), 1001, 400),
                (nobody, 5, 404),
            ] {
                let refused = conn
                    .stream_from(mailbox.clone(), options(prefetch, 60_000, transport))
                    .next()
                    .await;
                assert!(
                    matches!(&refused, Err(mom_client::ClientError::Api { status: s, message })
                        if *s == status && !message.is_empty()),
                    "{mailbox:?}, prefetch {prefetch}: {refused:?}"
                );
            }
        }
    }

    let mut stream = conn.stream("bounded", options(5, 60_000, transport));
    let mut held = Vec::new();
    for _ in 0..5 {
        let delivery = stream
            .next_timeout(Duration::from_secs(10))
            .await
            .unwrap()
            .expect("a message within the credit");
        held.push(delivery);
    }
    assert!(
        stream
            .next_timeout(Duration::from_millis(1_500))
            .await
            .unwrap()
            .is_none(),
        "a sixth message while five are unacked"
    );
    // What the nodes leased beyond the credit went back: only the five are leased.
    let depth = conn.queue_depth("bounded").await.unwrap();
    assert_eq!((depth.leased, depth.ready), (5, 25), "{depth:?}");
    // Two acks free two places, no more.
    for delivery in held.drain(..2) {
        assert!(stream.ack(&delivery).await.unwrap());
    }
    for _ in 0..2 {
        held.push(
            stream
                .next_timeout(Duration::from_secs(10))
                .await
                .unwrap()
                .expect("a message for the freed credit"),
        );
    }
    assert!(stream
        .next_timeout(Duration::from_millis(1_000))
        .await
        .unwrap()
        .is_none());
    // Acking as they come drains the rest, each message once.
    let mut seen: Vec<String> = vec![];
    for delivery in held.drain(..) {
        assert!(stream.ack(&delivery).await.unwrap());
        seen.push(delivery.payload);
    }
    while seen.len() < 28 {
        let delivery = stream
            .next_timeout(Duration::from_secs(10))
            .await
            .unwrap()
            .expect("the rest");
        assert!(stream.ack(&delivery).await.unwrap());
        seen.push(delivery.payload);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        28,
        "two were acked first, 28 more came, none twice"
    );

    // A client that goes away ends the stream's pulling: what is published next stays ready.
    drop(stream);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..3 {
        conn.publish_to_queue("bounded", format!("later{n}"), Default::default())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let depth = conn.queue_depth("bounded").await.unwrap();
    assert_eq!((depth.ready, depth.leased), (3, 0), "{depth:?}");
}

/// A queue `resume` bound to `jobs` with the key `k`, 20 messages published to it and a
/// stream of it (credit 10) that has received and acked 10 of them: what it saw, by payload.
async fn a_stream_half_way(
    conn: &Connection,
    visibility_ms: u64,
    transport: Transport,
) -> (DeliveryStream, HashMap<String, u32>) {
    conn.declare_exchange("jobs", ExchangeKind::Direct)
        .await
        .unwrap();
    conn.declare_queue("resume").await.unwrap();
    conn.bind("jobs", "resume", "k").await.unwrap();
    let mut stream = conn.stream("resume", options(10, visibility_ms, transport));
    for n in 0..20 {
        conn.publish("jobs", "k", format!("before-{n:02}"))
            .await
            .unwrap();
    }
    let mut seen: HashMap<String, u32> = HashMap::new();
    while seen.len() < 10 {
        let delivery = stream
            .next_timeout(Duration::from_secs(10))
            .await
            .unwrap()
            .expect("a message before the fault");
        assert!(stream.ack(&delivery).await.unwrap());
        *seen.entry(delivery.payload).or_default() += 1;
    }
    (stream, seen)
}

/// Publishes `after-00`..`after-19` through `publisher`, then reads (and acks) the stream until
/// all 40 messages were seen or 30 s passed.
async fn publish_the_rest_and_read(
    publisher: &Connection,
    stream: &mut DeliveryStream,
    seen: &mut HashMap<String, u32>,
) {
    for n in 0..20 {
        publisher
            .publish("jobs", "k", format!("after-{n:02}"))
            .await
            .unwrap();
    }
    let started = Instant::now();
    while seen.len() < 40 && started.elapsed() < Duration::from_secs(30) {
        let Some(delivery) = stream.next_timeout(Duration::from_secs(10)).await.unwrap() else {
            break;
        };
        // A message received just before the fault may have its ack refused: it comes again.
        let _ = stream.ack(&delivery).await;
        *seen.entry(delivery.payload).or_default() += 1;
    }
    assert_eq!(seen.len(), 40, "every message came: {seen:?}");
}

async fn resumes_after_a_gateway_restart(transport: Transport) {
    let mut cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    // A short visibility timeout: what was in flight when the gateway died comes back soon.
    let (mut stream, mut seen) = a_stream_half_way(&conn, 2_000, transport).await;
    cluster.gateway.kill();
    cluster.gateway.start();
    let url = cluster.gateway_url().to_owned();
    assert!(
        poll_until(Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                reqwest::get(format!("{url}/health"))
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await,
        "gateway did not come back:\n{}",
        cluster.logs()
    );
    let publisher = Connection::connect(&url, mom_e2e::USER, mom_e2e::PASSWORD)
        .await
        .unwrap();
    publish_the_rest_and_read(&publisher, &mut stream, &mut seen).await;
    assert!(stream.connects() >= 2, "the stream reconnected");
    assert!(stream
        .next_timeout(Duration::from_millis(2_500))
        .await
        .unwrap()
        .is_none());
}

/// Kills the leader of the stream's only key while the stream is open: the stream's call to
/// it fails, the partition fails over, and every message (those the stream had in flight at
/// the dead leader come back as its leases died with it) arrives.
async fn resumes_after_its_leader_is_killed(transport: Transport) {
    let mut cluster = Cluster::start_with(fast_failover()).await;
    let conn = connect(&cluster).await;
    let (mut stream, mut seen) = a_stream_half_way(&conn, 60_000, transport).await;
    let (leader, _) = cluster.leader_of("e/jobs/k").await.unwrap();
    cluster.kill_node(Cluster::node_index(&leader));
    // Published while the partition fails over (the gateway retries them meanwhile).
    publish_the_rest_and_read(&conn, &mut stream, &mut seen).await;
    // A node's death is the gateway's business: the client's stream stayed open throughout.
    assert_eq!(stream.connects(), 1, "the stream was not reopened");
}

/// The time from a publish's `201` to the answer of a pull that was already waiting.
async fn woken_pull_latency(conn: &Connection, queue: &str) -> Duration {
    let puller = conn.clone();
    let queue_name = queue.to_owned();
    let pull = tokio::spawn(async move {
        let got = puller
            .pull(&queue_name, 1, None, Duration::from_secs(10))
            .await
            .unwrap();
        (Instant::now(), got)
    });
    // Long enough for the pull to be waiting at every node.
    tokio::time::sleep(Duration::from_millis(400)).await;
    conn.publish_to_queue(queue, "wake up", Default::default())
        .await
        .unwrap();
    let published = Instant::now();
    let (answered, got) = pull.await.unwrap();
    assert_eq!(got.len(), 1, "the pull got the message");
    conn.ack(queue, &[got[0].receipt.as_str()]).await.unwrap();
    answered.saturating_duration_since(published)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_pull_returns_a_message_published_while_it_waits_within_milliseconds() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_queue("prompt").await.unwrap();
    let mut latencies = Vec::new();
    for _ in 0..7 {
        latencies.push(woken_pull_latency(&conn, "prompt").await);
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    eprintln!("publish 201 -> waiting pull answered: {latencies:?}");
    // Polling with a 20-200 ms back-off answered in about 100 ms on average; woken, it takes a
    // few milliseconds (more on a loaded machine).
    assert!(
        median < Duration::from_millis(40),
        "median {median:?} of {latencies:?}"
    );
    // Nothing was left leased by the calls the gateway stopped.
    let depth = conn.queue_depth("prompt").await.unwrap();
    assert_eq!((depth.ready, depth.leased), (0, 0));
}

#[allow(dead_code)]
#[path = "../src/bench/mod.rs"]
mod bench;

/// A measurement, not a check (`cargo test ... -- --ignored --nocapture`): the benchmark's
/// publish→deliver row (`mom-bench`'s row d) on a debug build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn sse_publish_to_deliver_latency_at_1000_per_second() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_exchange("lat", ExchangeKind::Topic)
        .await
        .unwrap();
    conn.declare_queue("lat").await.unwrap();
    conn.bind("lat", "lat", "#").await.unwrap();
    let rate = std::env::var("SSE_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000);
    let row = bench::latency::stream_latency(
        &conn,
        "lat",
        "lat",
        rate,
        Duration::from_secs(10),
        Transport::Sse,
    )
    .await
    .unwrap();
    eprintln!("at {rate} msg/s: {}", row.line());
    assert_eq!(row.delivered, row.published);
}

/// A stream shares its credit out among the nodes that have messages, so none leases beyond
/// it: with a backlog on every leader and a prefetch of 5, and then with messages landing on
/// every leader while it waits, nothing is ever put back (what is put back would reach
/// competing consumers after messages behind it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_leases_no_more_than_its_credit() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    mom_e2e::declare_bound(&conn, ("spread", ExchangeKind::Topic), "tight", "#").await;
    mom_e2e::publish_spread(&conn, "spread", "r0", 60).await;
    let mut stream = conn.stream("tight", options(5, 60_000, Transport::Sse));
    let mut got = Vec::new();
    for round in 1..=3 {
        while got.len() < 60 * round {
            let delivery = stream
                .next_timeout(Duration::from_secs(10))
                .await
                .unwrap()
                .expect("a message");
            assert!(stream.ack(&delivery).await.unwrap(), "ack refused");
            got.push(delivery);
        }
        // The backlog is drained and the stream waits at every node: wake them all at once.
        if round < 3 {
            mom_e2e::publish_spread(&conn, "spread", &format!("r{round}"), 60).await;
        }
    }
    assert_eq!(got.len(), 180);
    assert!(
        got.iter().all(|d| d.delivery_count == 1),
        "a message came twice"
    );
    let released = mom_e2e::released_by_gateway(&cluster).await;
    assert_eq!(released, 0.0, "the stream leased beyond its credit");
}
