//! Register, log in, and what happens to requests without a valid token.

use mom_common::token::{Claims, TokenKeys};
use mom_e2e::{call, PASSWORD, USER};
use mom_testkit::{Cluster, JWT_SECRET};
use reqwest::Method;

fn credentials(password: &str) -> String {
    serde_json::json!({ "username": USER, "password": password }).to_string()
}

#[tokio::test]
async fn tokens_guard_every_broker_call() {
    let cluster = Cluster::start().await;

    let (status, body) = call(
        &cluster,
        Method::POST,
        "/auth/register",
        None,
        Some(&credentials(PASSWORD)),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        &cluster,
        Method::POST,
        "/auth/register",
        None,
        Some(&credentials(PASSWORD)),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].is_string());

    let (status, body) = call(
        &cluster,
        Method::POST,
        "/auth/login",
        None,
        Some(&credentials("wrong-password")),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = call(
        &cluster,
        Method::POST,
        "/auth/login",
        None,
        Some(&credentials(PASSWORD)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();

    let (status, body) = call(&cluster, Method::GET, "/queues", Some(&token), None).await;
    assert_eq!(
        (status, body["queues"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{body}"
    );

    let claims = |iat, exp| Claims {
        sub: USER.into(),
        iat,
        exp,
        iss: mom_common::token::USER_ISSUER.into(),
        aud: mom_common::token::USER_AUDIENCE.into(),
        gen: 0,
    };
    let forged = TokenKeys::new("not-the-secret").issue_claims(&claims(0, u64::MAX / 2));
    let expired = TokenKeys::new(JWT_SECRET).issue_claims(&claims(1, 2));
    for (what, token) in [
        ("missing", None),
        ("forged", Some(forged.as_str())),
        ("expired", Some(expired.as_str())),
        ("garbage", Some("x.y.z")),
    ] {
        for (method, path, body) in [
            (Method::GET, "/queues", None),
            (Method::POST, "/queues", Some(r#"{"name":"q"}"#)),
            (
                Method::POST,
                "/exchanges/x/publish",
                Some(r#"{"routing_key":"k","payload":"p"}"#),
            ),
            (Method::POST, "/queues/q/pull", None),
        ] {
            let (status, reply) = call(&cluster, method.clone(), path, token, body).await;
            assert_eq!(status, 401, "{what} token on {method} {path}: {reply}");
            assert!(
                reply["error"].is_string(),
                "{what} token on {path}: {reply}"
            );
        }
    }
    // Nothing was created by the refused calls.
    let (_, body) = call(&cluster, Method::GET, "/queues", Some(&token), None).await;
    assert_eq!(body["queues"].as_array().map(Vec::len), Some(0));
}
