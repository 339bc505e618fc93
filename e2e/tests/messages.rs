//! Messages end to end: binary payloads (as base64 in JSON and as octet-stream bodies), the
//! publisher's headers and content type, through an exchange to a queue, a topic subscription
//! and the default exchange; batches mixing text and base64; a maximal payload; the headers in
//! every replica's log; the 400s and 413s of bad message input; and the gateway keeping an
//! idle client connection open (a publish sent as it closed one could not be retried).

use base64::Engine as _;
use mom_client::{Connection, Delivery, ExchangeKind, MailboxName, PublishOptions};
use mom_common::message::MAX_PAYLOAD_BYTES;
use mom_e2e::{acting_for, call, connect, drain};
use mom_testkit::{poll_until, Cluster};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(5);
const CONTENT_TYPE: &str = "application/x-all-bytes";

fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn expected_headers() -> BTreeMap<String, String> {
    [("trace-id", "t-1"), ("x.kind_2", "all bytes: é€")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn options() -> PublishOptions {
    let mut options = PublishOptions::default().content_type(CONTENT_TYPE);
    for (name, value) in expected_headers() {
        options = options.header(name, value);
    }
    options
}

/// The request headers that carry [`expected_headers`] and the content type of a raw publish.
fn raw_headers() -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = expected_headers()
        .into_iter()
        .map(|(k, v)| (format!("X-Mom-Header-{k}"), v))
        .collect();
    headers.push(("X-Mom-Content-Type".into(), CONTENT_TYPE.into()));
    headers
}

/// `POST <path>` with an `application/octet-stream` body and extra request headers.
async fn raw_publish(
    cluster: &Cluster,
    token: &str,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", cluster.gateway_url()))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(body);
    for (name, value) in headers {
        // Header values are bytes on the wire; the gateway reads them as UTF-8.
        let value = reqwest::header::HeaderValue::from_bytes(value.as_bytes()).unwrap();
        request = request.header(name.as_str(), value);
    }
    let response = request.send().await.expect("gateway reachable");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Checks one delivery of the all-bytes message with the expected headers.
fn assert_all_bytes(delivery: &Delivery, exchange: &str, routing_key: &str) {
    assert_eq!(
        delivery.payload_bytes().unwrap(),
        all_bytes(),
        "{delivery:?}"
    );
    assert_eq!(delivery.headers, expected_headers(), "{delivery:?}");
    assert_eq!(delivery.content_type.as_deref(), Some(CONTENT_TYPE));
    assert_eq!(
        (delivery.exchange.as_str(), delivery.routing_key.as_str()),
        (exchange, routing_key)
    );
    // The text form stays, lossy: valid ASCII comes through, invalid UTF-8 is U+FFFD.
    assert!(delivery.payload.starts_with("\u{0}\u{1}") && delivery.payload.contains('\u{fffd}'));
}

/// Pulls and acks `count` messages of a subscription.
async fn drain_subscription(
    conn: &Connection,
    topic: &str,
    subscriber: &str,
    count: usize,
) -> Vec<Delivery> {
    let mailbox = MailboxName::Subscription {
        topic: topic.into(),
        subscriber: subscriber.into(),
    };
    let mut got = Vec::new();
    while got.len() < count {
        let batch = conn.pull_from(&mailbox, 10, None, WAIT).await.unwrap();
        assert!(!batch.is_empty(), "only {} of {count} came", got.len());
        let receipts: Vec<&str> = batch.iter().map(|d| d.receipt.as_str()).collect();
        assert_eq!(
            conn.ack_in(&mailbox, &receipts).await.unwrap().acked,
            receipts.len() as u64
        );
        got.extend(batch);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_payloads_with_headers_come_back_byte_identical() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    let token = conn.token().to_owned();
    let bytes = all_bytes();

    // An exchange routing to a queue: as base64 (the Rust client) and as an octet-stream body.
    conn.declare_exchange("bin", ExchangeKind::Direct)
        .await
        .unwrap();
    conn.declare_queue("bin-q").await.unwrap();
    conn.bind("bin", "bin-q", "k").await.unwrap();
    let as_base64 = conn
        .publish_bytes("bin", "k", &bytes, options())
        .await
        .unwrap();
    assert_eq!(as_base64.routed, 1);
    let (status, as_raw) = raw_publish(
        &cluster,
        &token,
        "/exchanges/bin/publish?routing_key=k",
        &raw_headers(),
        bytes.clone(),
    )
    .await;
    assert_eq!((status, &as_raw["routed"]), (201, &json!(1)), "{as_raw}");
    let got = drain(&conn, "bin-q", 2, WAIT).await;
    assert_eq!(got.len(), 2);
    let ids: Vec<&str> = got.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            as_base64.message_id.as_str(),
            as_raw["message_id"].as_str().unwrap()
        ]
    );
    for delivery in &got {
        assert_all_bytes(delivery, "bin", "k");
    }

    // A topic subscription.
    conn.declare_topic("bin-t").await.unwrap();
    conn.subscribe("bin-t", "s1").await.unwrap();
    assert_eq!(
        conn.publish_topic_bytes("bin-t", &bytes, options())
            .await
            .unwrap()
            .routed,
        1
    );
    let (status, reply) = raw_publish(
        &cluster,
        &token,
        "/topics/bin-t/publish",
        &raw_headers(),
        bytes.clone(),
    )
    .await;
    assert_eq!((status, &reply["routed"]), (201, &json!(1)), "{reply}");
    for delivery in drain_subscription(&conn, "bin-t", "s1", 2).await {
        assert_all_bytes(&delivery, "bin-t", "");
    }

    // The default exchange, with the raw form's options in the query string.
    conn.declare_queue("direct-q").await.unwrap();
    assert_eq!(
        conn.publish_bytes_to_queue("direct-q", &bytes, options())
            .await
            .unwrap()
            .routed,
        1
    );
    let (status, reply) = raw_publish(
        &cluster,
        &token,
        "/queues/direct-q/publish?mandatory=true&message_id=raw-1&ttl_ms=600000",
        &raw_headers(),
        bytes.clone(),
    )
    .await;
    assert_eq!(
        (status, &reply["message_id"]),
        (201, &json!("raw-1")),
        "{reply}"
    );
    let got = drain(&conn, "direct-q", 2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].message_id, "raw-1");
    for delivery in &got {
        // The default exchange names the queue as the message's exchange.
        assert_all_bytes(delivery, "direct-q", "");
    }

    // A batch mixing text and base64, each with its own headers.
    let batch = json!({"messages": [
        {"routing_key": "k", "payload": "plain text", "headers": {"n": "0"}},
        {"routing_key": "k", "payload_base64": base64(&bytes), "headers": {"n": "1"},
         "content_type": CONTENT_TYPE},
        {"routing_key": "k", "payload": "more text", "content_type": "text/plain"},
    ]});
    let (status, reply) = call(
        &cluster,
        Method::POST,
        "/exchanges/bin/publish",
        Some(&token),
        Some(&batch.to_string()),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["published"].as_array().unwrap().len(), 3);
    let got = drain(&conn, "bin-q", 3, WAIT).await;
    let shapes: Vec<(Vec<u8>, Option<&str>, Option<&str>)> = got
        .iter()
        .map(|d| {
            (
                d.payload_bytes().unwrap(),
                d.headers.get("n").map(String::as_str),
                d.content_type.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        shapes,
        [
            (b"plain text".to_vec(), Some("0"), None),
            (bytes.clone(), Some("1"), Some(CONTENT_TYPE)),
            (b"more text".to_vec(), None, Some("text/plain")),
        ]
    );

    // The JSON a pull answers: payload_base64 always, headers and content_type only when given.
    conn.publish("bin", "k", "bare").await.unwrap();
    conn.publish_bytes("bin", "k", &bytes, options())
        .await
        .unwrap();
    let (status, reply) = call(
        &cluster,
        Method::POST,
        "/queues/bin-q/pull",
        Some(&token),
        Some(r#"{"max": 10, "wait_ms": 5000}"#),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let messages = reply["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{reply}");
    assert_eq!(messages[0]["payload"], "bare");
    assert_eq!(messages[0]["payload_base64"], base64(b"bare"));
    assert!(messages[0].get("headers").is_none() && messages[0].get("content_type").is_none());
    assert_eq!(messages[1]["payload_base64"], base64(&bytes));
    assert_eq!(
        messages[1]["payload"],
        String::from_utf8_lossy(&bytes).into_owned()
    );
    assert_eq!(messages[1]["headers"], json!(expected_headers()));
    assert_eq!(messages[1]["content_type"], CONTENT_TYPE);
    let receipts: Vec<&str> = messages
        .iter()
        .map(|m| m["receipt"].as_str().unwrap())
        .collect();
    conn.ack("bin-q", &receipts).await.unwrap();

    // A maximal payload goes whole through the gateway, the nodes and replication; one byte
    // more is refused, naming the limit.
    let maximal: Vec<u8> = (0..MAX_PAYLOAD_BYTES).map(|n| (n % 251) as u8).collect();
    let (status, reply) = raw_publish(
        &cluster,
        &token,
        "/queues/direct-q/publish",
        &[("X-Mom-Header-size".into(), "max".into())],
        maximal.clone(),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    let got = drain(&conn, "direct-q", 1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert!(
        got[0].payload_bytes().unwrap() == maximal,
        "the maximal payload changed"
    );
    assert_eq!(got[0].headers["size"], "max");
    let mut oversized = maximal;
    oversized.push(0);
    let (status, reply) =
        raw_publish(&cluster, &token, "/queues/direct-q/publish", &[], oversized).await;
    assert_eq!(status, 413, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("4194304"),
        "{reply}"
    );

    // Headers are part of the replicated record: every node's log holds them.
    let marker = "replicated-to-every-node";
    conn.publish_bytes("bin", "k", &bytes, options().header("marker", marker))
        .await
        .unwrap();
    let dirs: Vec<_> = (0..3).map(|n| cluster.node_data_dir(n)).collect();
    let everywhere = poll_until(Duration::from_secs(20), || async {
        dirs.iter().all(|dir| {
            let db = rusqlite::Connection::open_with_flags(
                dir.join("messages.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let records: Vec<Vec<u8>> = db
                .prepare("SELECT record FROM log")
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            records
                .iter()
                .any(|record| record.windows(marker.len()).any(|w| w == marker.as_bytes()))
        })
    })
    .await;
    assert!(
        everywhere,
        "a replica's log lacks the headers\n{}",
        cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_message_input_answers_400_naming_the_problem() {
    use mom_common::proto::{broker_client::BrokerClient, DestinationKind, PublishRequest};

    let mut cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    let token = conn.token().to_owned();
    conn.declare_exchange("ex", ExchangeKind::Direct)
        .await
        .unwrap();
    conn.declare_queue("q").await.unwrap();
    conn.bind("ex", "q", "k").await.unwrap();
    conn.declare_topic("t").await.unwrap();

    let many_headers: BTreeMap<String, String> =
        (0..65).map(|n| (format!("h{n}"), "v".into())).collect();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/exchanges/ex/publish",
            json!({"routing_key": "k", "payload": "a", "payload_base64": "YQ=="}),
            400,
            "not both",
        ),
        (
            "/queues/q/publish",
            json!({"headers": {"a": "b"}}),
            400,
            "payload_base64",
        ),
        (
            "/topics/t/publish",
            json!({"payload_base64": "not base64!"}),
            400,
            "payload_base64 is not valid base64",
        ),
        (
            "/exchanges/ex/publish",
            json!({"routing_key": "k", "payload": "a", "headers": many_headers}),
            400,
            "headers: 65 headers",
        ),
        (
            "/queues/q/publish",
            json!({"payload": "a", "headers": {"bad name": "v"}}),
            400,
            "header name \"bad name\"",
        ),
        (
            "/exchanges/ex/publish",
            json!({"routing_key": "k", "payload": "a", "headers": {"k": "v".repeat(4097)}}),
            400,
            "the value of header \"k\"",
        ),
        (
            "/topics/t/publish",
            json!({"payload": "a", "content_type": "t".repeat(256)}),
            400,
            "content_type",
        ),
        (
            "/exchanges/ex/publish",
            json!({"messages": [
                {"routing_key": "k", "payload": "fine"},
                {"routing_key": "k", "payload_base64": "%%%"},
            ]}),
            400,
            "message 1: payload_base64",
        ),
        (
            "/exchanges/ex/publish",
            json!({"messages": [{"routing_key": "k", "payload": "x", "headers": {"": "v"}}]}),
            400,
            "message 0: headers",
        ),
    ];
    for (path, body, expected, needle) in cases {
        let (status, reply) = call(
            &cluster,
            Method::POST,
            path,
            Some(&token),
            Some(&body.to_string()),
        )
        .await;
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(
            status == expected && error.contains(needle),
            "{path} {:.100} -> {status} {reply}; expected {expected} naming {needle:?}",
            body.to_string()
        );
    }

    let header = |name: &str, value: &str| (name.to_owned(), value.to_owned());
    let too_many: Vec<(String, String)> = (0..65)
        .map(|n| header(&format!("X-Mom-Header-h{n}"), "v"))
        .collect();
    // (path, request headers, what the error must say)
    type RawCase<'a> = (&'a str, Vec<(String, String)>, &'a str);
    let raw_cases: Vec<RawCase> = vec![
        (
            "/queues/q/publish",
            vec![header("X-Mom-Header-a+b", "v")],
            "header name \"a+b\"",
        ),
        (
            "/exchanges/ex/publish?routing_key=k",
            too_many,
            "headers: 65 headers",
        ),
        (
            "/queues/q/publish?colour=blue",
            vec![],
            "invalid query string",
        ),
        ("/queues/q/publish?ttl_ms=0", vec![], "ttl_ms"),
        (
            "/exchanges/ex/publish?routing_key=a/b",
            vec![],
            "routing key",
        ),
        (
            "/topics/t/publish",
            vec![header("X-Mom-Content-Type", &"t".repeat(256))],
            "content_type",
        ),
        (
            "/queues/q/publish",
            vec![header("X-Mom-Header-k", &"v".repeat(4097))],
            "the value of header \"k\"",
        ),
    ];
    for (path, headers, needle) in raw_cases {
        let (status, reply) = raw_publish(&cluster, &token, path, &headers, vec![1, 2, 3]).await;
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(
            status == 400 && error.to_lowercase().contains(&needle.to_lowercase()),
            "{path} -> {status} {reply}; expected 400 naming {needle:?}"
        );
    }
    // Nothing of that was stored.
    assert_eq!(conn.queue_depth("q").await.unwrap().ready, 0);

    // The node checks too, whoever calls it: a publish over the limits straight to a node is
    // INVALID_ARGUMENT; a valid one passed on by a node that does not lead keeps its headers.
    let (leader, partition) = cluster.leader_of("e/ex/k").await.unwrap();
    let addrs = cluster.node_addrs().await.unwrap();
    let node = |id: &str| {
        let addr = addrs.iter().find(|(n, _)| n == id).unwrap().1.clone();
        let token = token.clone();
        async move {
            let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            BrokerClient::with_interceptor(channel, acting_for(&token))
        }
    };
    let request = |headers: BTreeMap<String, String>| PublishRequest {
        partition,
        kind: DestinationKind::Exchange as i32,
        destination: "ex".into(),
        routing_key: "k".into(),
        payload: vec![0, 255],
        headers,
        content_type: "application/x-test".into(),
        ..Default::default()
    };
    let refused = node(&leader)
        .await
        .publish(request(many_headers.clone()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("headers"), "{refused:?}");
    let follower = addrs
        .iter()
        .find(|(id, _)| *id != leader)
        .unwrap()
        .0
        .clone();
    let forwarded = [("via".to_owned(), follower.clone())].into();
    node(&follower)
        .await
        .publish(request(forwarded))
        .await
        .unwrap_or_else(|e| panic!("{follower} did not pass the publish on: {e}"));
    let got = drain(&conn, "q", 1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload_bytes().unwrap(), [0, 255]);
    assert_eq!(got[0].headers["via"], follower);
    assert_eq!(got[0].content_type.as_deref(), Some("application/x-test"));

    assert!(cluster.gateway.is_running() && cluster.nodes.iter_mut().all(|n| n.is_running()));
}

/// Many single publishes to one partition at once: the gateway joins those that arrive while
/// earlier calls are out into one call to the leader. Each publisher is still answered for its
/// own message, and a retry racing its original (same message id, maybe in the same joined
/// call) is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_publishes_are_answered_each_for_its_own_message_and_stored_once() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_queue("joined").await.unwrap();
    const MESSAGES: usize = 300;
    // Every message once, and the first 100 a second time right after the first, all at once.
    let copies = |n: usize| if n < 100 { 2 } else { 1 };
    let sends = (0..MESSAGES)
        .flat_map(|n| std::iter::repeat_n(n, copies(n)))
        .map(|n| {
            let conn = conn.clone();
            async move {
                let options = PublishOptions {
                    message_id: Some(format!("m{n}")),
                    ..PublishOptions::default()
                }
                .header("n", n.to_string());
                let published = conn
                    .publish_to_queue("joined", format!("p{n}"), options)
                    .await
                    .unwrap();
                (n, published)
            }
        });
    for (n, published) in futures::future::join_all(sends).await {
        assert_eq!(published.message_id, format!("m{n}"));
        assert_eq!(published.routed, 1, "message {n}");
    }
    let metrics = reqwest::get(format!("{}/metrics", cluster.gateway_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let (calls, carried) = (
        counter("mom_publish_calls_total"),
        counter("mom_publish_call_messages_total"),
    );
    assert_eq!(
        carried as usize,
        MESSAGES + 100,
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("publish"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(calls < carried, "no publishes were joined: {calls} calls");
    let got = drain(&conn, "joined", MESSAGES + 1, WAIT).await;
    let mut ids: Vec<&str> = got.iter().map(|d| d.message_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (got.len(), ids.len()),
        (MESSAGES, MESSAGES),
        "each message once"
    );
    for delivery in &got {
        let n = &delivery.message_id[1..];
        assert_eq!(delivery.payload, format!("p{n}"));
        assert_eq!(delivery.headers.get("n").map(String::as_str), Some(n));
    }
}

/// Reads one HTTP/1.1 response (headers and a `Content-Length` body) from `tcp`.
async fn read_response(tcp: &mut tokio::net::TcpStream) -> String {
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&response).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if response.len() >= end + 4 + length {
                return text;
            }
        }
        let read = tcp.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the gateway closed the connection mid-response");
        response.extend_from_slice(&chunk[..read]);
    }
}

/// A client keeps an idle connection for reuse (`mom_client` 30 s, reqwest 90 s by default);
/// a server that closes it sooner races the client's next request, which then fails as
/// "error sending request" and, being a publish, cannot be retried blindly. The gateway keeps
/// it open well past actix's default 5 s: the bench saw that race as failed publishes.
#[tokio::test]
async fn an_idle_client_connection_stays_open_past_seven_seconds() {
    let cluster = Cluster::start().await;
    let address = cluster
        .gateway_url()
        .trim_start_matches("http://")
        .to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!("GET /health HTTP/1.1\r\nHost: {address}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let first = read_response(&mut tcp).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Nothing comes while idle; a close would end the read at once with 0 bytes.
    let mut byte = [0u8; 1];
    let idle = tokio::time::timeout(Duration::from_secs(7), tcp.read(&mut byte)).await;
    assert!(
        idle.is_err(),
        "the gateway closed an idle connection: {idle:?}"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let second = read_response(&mut tcp).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}
