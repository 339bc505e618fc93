//! Drives the client against a tiny in-process fake gateway (canned HTTP answers), to check
//! paths, bodies, headers and error mapping without a cluster.

use mom_client::{ClientError, Connection, ExchangeKind, PublishOptions};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Value,
}

type Handler = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

/// Starts a fake gateway answering with `handler`; returns its URL and the requests it saw.
async fn fake(handler: Box<Handler>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler: Arc<Handler> = Arc::from(handler);
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (handler, log) = (handler.clone(), log.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_owned();
                let path = parts.next().unwrap_or_default().to_owned();
                let (mut length, mut authorization) = (0, None);
                loop {
                    line.clear();
                    reader.read_line(&mut line).await.unwrap();
                    let header = line.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    let (name, value) = header.split_once(':').unwrap();
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap(),
                        "authorization" => authorization = Some(value.trim().to_owned()),
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).await.unwrap();
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let request = Seen {
                    method,
                    path,
                    authorization,
                    body,
                };
                let (status, answer) = handler(&request);
                log.lock().unwrap().push(request);
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                write.write_all(response.as_bytes()).await.unwrap();
                write.shutdown().await.ok();
            });
        }
    });
    (url, seen)
}

fn message(id: &str, receipt: &str) -> Value {
    json!({"message_id": id, "receipt": receipt, "exchange": "ex", "routing_key": "k",
           "payload": format!("payload-{id}"), "delivery_count": 1, "published_at_ms": 5})
}

#[tokio::test]
async fn login_keeps_token_and_sends_it() {
    let (url, seen) = fake(Box::new(|req| match req.path.as_str() {
        "/auth/login" => (
            200,
            r#"{"token":"tok","token_type":"Bearer","expires_in":3600}"#.into(),
        ),
        "/exchanges" => (201, r#"{"name":"ex","kind":"topic"}"#.into()),
        _ => (204, String::new()),
    }))
    .await;
    let conn = Connection::connect(&url, "alice", "password1")
        .await
        .unwrap();
    assert_eq!(conn.token(), "tok");
    conn.declare_exchange("ex", ExchangeKind::Topic)
        .await
        .unwrap();
    conn.delete_queue("q").await.unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].body,
        json!({"username": "alice", "password": "password1"})
    );
    assert_eq!(seen[0].authorization, None);
    assert_eq!(seen[1].body, json!({"name": "ex", "kind": "topic"}));
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer tok"));
    assert_eq!(
        (seen[2].method.as_str(), seen[2].path.as_str()),
        ("DELETE", "/queues/q")
    );
}

#[tokio::test]
async fn non_2xx_becomes_api_error() {
    let (url, _) = fake(Box::new(|req| match req.path.as_str() {
        "/auth/register" => (409, r#"{"error":"user \"bob\" already exists"}"#.into()),
        _ => (502, "bad gateway".into()),
    }))
    .await;
    let err = Connection::register(&url, "bob", "password1")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status: 409, message } if message.contains("already exists")),
        "{err:?}"
    );
    let conn = Connection::with_token(url, "t");
    match conn.queue_depth("q").await.unwrap_err() {
        ClientError::Api { status, message } => {
            assert_eq!((status, message.as_str()), (502, "bad gateway"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn publish_bodies() {
    let (url, seen) = fake(Box::new(|_| {
        (201, r#"{"message_id":"m1","routed":2}"#.into())
    }))
    .await;
    let conn = Connection::with_token(url, "t");
    let published = conn.publish("ex", "a.b", "hi").await.unwrap();
    assert_eq!((published.message_id.as_str(), published.routed), ("m1", 2));
    let ttl = PublishOptions {
        ttl: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    conn.publish_with("ex", "a.b", "hi", ttl).await.unwrap();
    conn.publish_topic("news", "hello", None).await.unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].path, "/exchanges/ex/publish");
    assert_eq!(seen[0].body, json!({"routing_key": "a.b", "payload": "hi"}));
    assert_eq!(
        seen[1].body,
        json!({"routing_key": "a.b", "payload": "hi", "ttl_ms": 2000})
    );
    assert_eq!(seen[2].path, "/topics/news/publish");
    assert_eq!(seen[2].body, json!({"routing_key": "", "payload": "hello"}));
}

#[tokio::test]
async fn consumer_buffers_a_batch_and_acks_one_by_one() {
    let (url, seen) = fake(Box::new(|req| match req.path.as_str() {
        "/queues/q/pull" if req.body["wait_ms"] == json!(20000) => (
            200,
            json!({"messages": [message("1", "r1"), message("2", "r2")]}).to_string(),
        ),
        "/queues/q/ack" if req.body == json!({"receipts": ["r1"]}) => {
            (200, r#"{"acked":1,"stale":[]}"#.into())
        }
        "/queues/q/ack" => (200, r#"{"acked":0,"stale":["r2"]}"#.into()),
        _ => (400, r#"{"error":"unexpected"}"#.into()),
    }))
    .await;
    let conn = Connection::with_token(url, "t");
    let mut consumer = conn.consume("q");
    let first = consumer.next().await.unwrap();
    assert_eq!(first.payload, "payload-1");
    assert_eq!(consumer.buffered(), 1);
    assert!(consumer.ack(&first).await.unwrap());
    let second = consumer.next().await.unwrap();
    assert_eq!(second.receipt, "r2");
    assert!(!consumer.ack(&second).await.unwrap());

    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().filter(|r| r.path.ends_with("/pull")).count(), 1);
    assert_eq!(seen[0].body, json!({"max": 10, "wait_ms": 20000}));
}

#[tokio::test]
async fn subscription_times_out_empty() {
    let (url, seen) = fake(Box::new(|req| match req.path.as_str() {
        "/topics/t/subscriptions" => (201, r#"{"topic":"t","subscriber":"s"}"#.into()),
        "/topics/t/subscriptions/s/pull" => (200, r#"{"messages":[]}"#.into()),
        _ => (400, r#"{"error":"unexpected"}"#.into()),
    }))
    .await;
    let conn = Connection::with_token(url, "t");
    let mut sub = conn
        .subscribe("t", "s")
        .await
        .unwrap()
        .with_batch_size(3)
        .with_visibility_timeout(Duration::from_secs(30));
    assert_eq!(sub.next_timeout(Duration::ZERO).await.unwrap(), None);

    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].body, json!({"subscriber": "s"}));
    assert_eq!(
        seen[1].body,
        json!({"max": 3, "visibility_timeout_ms": 30000, "wait_ms": 0})
    );
}
