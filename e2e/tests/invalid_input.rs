//! Bad requests get a 4xx status with a JSON error body, and the gateway keeps serving.

use mom_e2e::{call, connect};
use mom_testkit::Cluster;
use reqwest::Method;

#[tokio::test]
async fn bad_input_gets_a_json_4xx() {
    let mut cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    let token = Some(conn.token());
    conn.declare_exchange("ex", mom_client::ExchangeKind::Direct)
        .await
        .unwrap();
    conn.declare_queue("q").await.unwrap();

    let oversized = format!(
        r#"{{"routing_key":"k","payload":"{}"}}"#,
        "x".repeat(70_000)
    );
    let cases: Vec<(Method, String, Option<String>, u16)> = vec![
        (
            Method::POST,
            "/queues".into(),
            Some("{not json".into()),
            400,
        ),
        (
            Method::POST,
            "/queues".into(),
            Some(r#"{"name":42}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/queues".into(),
            Some(r#"{"name":"q","extra":1}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/queues".into(),
            Some(r#"{"name":"has space"}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/queues".into(),
            Some(r#"{"name":""}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/queues".into(),
            Some(format!(r#"{{"name":"{}"}}"#, "a".repeat(200))),
            400,
        ),
        (
            Method::POST,
            "/exchanges".into(),
            Some(r#"{"name":"e2","kind":"headers"}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/exchanges".into(),
            Some(r#"{"name":"ex","kind":"fanout"}"#.into()),
            409,
        ),
        (
            Method::POST,
            "/exchanges/ex/bindings".into(),
            Some(r#"{"queue":"missing","routing_key":"k"}"#.into()),
            404,
        ),
        (
            Method::POST,
            "/exchanges/missing/bindings".into(),
            Some(r#"{"queue":"q","routing_key":"k"}"#.into()),
            404,
        ),
        (
            Method::POST,
            "/exchanges/ex/bindings".into(),
            Some(r#"{"queue":"q","routing_key":"a/b"}"#.into()),
            400,
        ),
        (
            Method::DELETE,
            "/exchanges/ex/bindings".into(),
            Some(r#"{"queue":"q","routing_key":"nope"}"#.into()),
            404,
        ),
        (
            Method::POST,
            "/exchanges/missing/publish".into(),
            Some(r#"{"routing_key":"k","payload":"p"}"#.into()),
            404,
        ),
        (
            Method::POST,
            "/exchanges/ex/publish".into(),
            Some(r#"{"routing_key":"k"}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/exchanges/ex/publish".into(),
            Some(r#"{"routing_key":"k","payload":"p","ttl_ms":0}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/exchanges/ex/publish".into(),
            Some(r#"{"routing_key":"k","payload":"p","ttl_ms":-5}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/exchanges/ex/publish".into(),
            Some(oversized),
            413,
        ),
        (
            Method::POST,
            "/exchanges/a:b/publish".into(),
            Some(r#"{"routing_key":"k","payload":"p"}"#.into()),
            400,
        ),
        (Method::POST, "/queues/missing/pull".into(), None, 404),
        (
            Method::POST,
            "/queues/q/pull".into(),
            Some(r#"{"max":0}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/queues/q/pull".into(),
            Some(r#"{"max":100000}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/queues/q/pull".into(),
            Some(r#"{"wait_ms":999999}"#.into()),
            400,
        ),
        (
            Method::POST,
            "/queues/q/pull".into(),
            Some("[]".into()),
            400,
        ),
        (
            Method::POST,
            "/queues/q/ack".into(),
            Some(r#"{"receipts":[]}"#.into()),
            400,
        ),
        (Method::DELETE, "/queues/missing".into(), None, 404),
        (Method::DELETE, "/exchanges/missing".into(), None, 404),
        (
            Method::POST,
            "/topics/missing/subscriptions".into(),
            Some(r#"{"subscriber":"s"}"#.into()),
            404,
        ),
        (
            Method::POST,
            "/topics/missing/subscriptions/s/pull".into(),
            None,
            404,
        ),
        (
            Method::POST,
            "/topics/missing/publish".into(),
            Some(r#"{"payload":"p"}"#.into()),
            404,
        ),
        (Method::GET, "/no/such/route".into(), None, 404),
    ];
    for (method, path, body, expected) in cases {
        let (status, reply) = call(&cluster, method.clone(), &path, token, body.as_deref()).await;
        assert_eq!(status, expected, "{method} {path} {body:.80?} -> {reply}");
        assert!(
            reply["error"].is_string(),
            "{method} {path}: no JSON error body: {reply}"
        );
    }

    // A malformed receipt is the caller's mistake: 400, naming it.
    let (status, reply) = call(
        &cluster,
        Method::POST,
        "/queues/q/ack",
        token,
        Some(r#"{"receipts":["0/1/1.1","junk"]}"#),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .is_some_and(|e| e.contains("\"junk\"")),
        "{reply}"
    );
    // Well-formed receipts that name nothing waiting are refused as stale, not errors.
    let (status, reply) = call(
        &cluster,
        Method::POST,
        "/queues/q/ack",
        token,
        Some(r#"{"receipts":["0/12345/1.1","3/0/9.9"]}"#),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        (
            reply["acked"].as_u64(),
            reply["stale"].as_array().map(Vec::len)
        ),
        (Some(0), Some(2))
    );
    // A TTL that would overflow its expiry time is refused, not stored never to be delivered.
    let (status, reply) = call(
        &cluster,
        Method::POST,
        "/exchanges/ex/publish",
        token,
        Some(r#"{"routing_key":"k","payload":"x","ttl_ms":9223372036854775808}"#),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    let (status, reply) = call(&cluster, Method::GET, "/topics/nope", token, None).await;
    assert_eq!(status, 404, "{reply}");
    // Many messages go as {"messages": [...]}; a bare array is refused with that advice.
    let (status, reply) = call(
        &cluster,
        Method::POST,
        "/exchanges/ex/publish",
        token,
        Some(r#"[{"routing_key":"k","payload":"x"}]"#),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .is_some_and(|e| e.contains("messages")),
        "{reply}"
    );
    let too_many = format!(
        r#"{{"messages":[{}]}}"#,
        vec![r#"{"payload":"x"}"#; 1_001].join(",")
    );
    let (status, reply) = call(
        &cluster,
        Method::POST,
        "/exchanges/ex/publish",
        token,
        Some(&too_many),
    )
    .await;
    assert_eq!(status, 400, "{reply}");

    // Still serving after all that, with no process gone.
    assert_eq!(conn.publish("ex", "k", "ok").await.unwrap().routed, 0);
    assert!(cluster.gateway.is_running() && cluster.nodes.iter_mut().all(|n| n.is_running()));
}
