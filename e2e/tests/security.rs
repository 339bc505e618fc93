//! The security model, attacked as an ordinary user would (real processes, real ZooKeeper):
//! internal services refuse user tokens, resources belong to their owners unless shared,
//! tokens of unknown, deleted or reset users stop working, ZooKeeper refuses clients
//! without MOM's credentials, and logins are throttled. Every attack leaves every
//! acknowledged message in place.

// tonic::Status is what a gRPC interceptor returns; boxing it here would add noise.
#![allow(clippy::result_large_err)]

use mom_client::{ClientError, Connection, ExchangeKind, Permission, ResourceKind};
use mom_common::proto::{
    broker_client::BrokerClient, partitioning_client::PartitioningClient,
    replica_client::ReplicaClient, FetchRequest, Mailbox, PartitionsRequest, PullRequest,
    PurgeRequest,
};
use mom_common::token::{Claims, ServiceCredentials, ServiceIdentity, TokenKeys};
use mom_e2e::{call, connect, declare_ledger, drain, publish_batch, PASSWORD};
use mom_testkit::{poll_until, Cluster, ClusterOptions, ADMIN_PASSWORD, ADMIN_USER, JWT_SECRET};
use reqwest::Method;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

fn status_of(result: Result<(), ClientError>) -> Option<u16> {
    result.err().and_then(|e| e.status())
}

async fn user(cluster: &Cluster, name: &str) -> Connection {
    Connection::register(cluster.gateway_url(), name, PASSWORD)
        .await
        .expect("register");
    Connection::connect(cluster.gateway_url(), name, PASSWORD)
        .await
        .expect("login")
}

async fn admin(cluster: &Cluster) -> Connection {
    Connection::connect(cluster.gateway_url(), ADMIN_USER, ADMIN_PASSWORD)
        .await
        .expect("the bootstrap admin logs in")
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A gRPC interceptor that sends a user's bearer token, as an attacker would.
fn bearer(token: &str) -> impl tonic::service::Interceptor + Clone {
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    move |mut request: tonic::Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
        Ok(request)
    }
}

/// The refusal a fetch of partition 0 for `follower`, sent with `credentials`, gets.
async fn fetch_as(
    addr: &str,
    credentials: impl tonic::service::Interceptor,
    follower: &str,
) -> Code {
    let mut replica = ReplicaClient::with_interceptor(channel(addr).await, credentials);
    let request = FetchRequest {
        partition: 0,
        follower: follower.to_owned(),
        ..Default::default()
    };
    replica.fetch(request).await.expect_err("a refusal").code()
}

fn pull_request(mailbox: &Option<Mailbox>) -> PullRequest {
    PullRequest {
        mailbox: mailbox.clone(),
        max: 10,
        visibility_timeout_ms: 1_000,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_services_refuse_users_and_impostors_and_messages_stay() {
    let cluster = Cluster::start().await;
    let alice = connect(&cluster).await;
    declare_ledger(&alice).await;
    let acknowledged = publish_batch(&alice, 0, 40).await;
    let token = alice.token().to_owned();
    let nodes = cluster.node_addrs().await.unwrap();
    let mailbox = Some(Mailbox {
        queue: "entries".into(),
        ..Default::default()
    });

    for (node, addr) in &nodes {
        // A user's own token, on every internal service of every node.
        let mut broker = BrokerClient::with_interceptor(channel(addr).await, bearer(&token));
        let purge = broker
            .purge(PurgeRequest {
                mailbox: mailbox.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(purge.unwrap_err().code(), Code::Unauthenticated, "{node}");
        let pull = broker.pull(pull_request(&mailbox)).await;
        assert_eq!(pull.unwrap_err().code(), Code::Unauthenticated, "{node}");
        let fetch = fetch_as(addr, bearer(&token), node).await;
        assert_eq!(fetch, Code::Unauthenticated, "{node}");

        // A user token signed with the right secret but for the REST API is no service
        // token either; and a service token of the gateway may not fetch a log.
        let gateway =
            ServiceCredentials::new(mom_testkit::CLUSTER_SECRET, ServiceIdentity::Gateway);
        let fetch = fetch_as(addr, gateway.attach(), node).await;
        assert_eq!(fetch, Code::PermissionDenied, "{node}");
        // One node may not fetch in another's name.
        let impostor = ServiceCredentials::new(
            mom_testkit::CLUSTER_SECRET,
            ServiceIdentity::Node("node-x".into()),
        );
        let fetch = fetch_as(addr, impostor.attach(), node).await;
        assert_eq!(fetch, Code::PermissionDenied, "{node}");
        // The gateway's own credentials, acting for a user without read permission.
        let mut broker = BrokerClient::with_interceptor(
            channel(addr).await,
            gateway.acting_for("mallory").unwrap(),
        );
        let pull = broker.pull(pull_request(&mailbox)).await;
        assert_eq!(pull.unwrap_err().code(), Code::PermissionDenied, "{node}");
    }
    let partitioning = &cluster.partitioning_addrs()[0];
    let mut partitioning =
        PartitioningClient::with_interceptor(channel(partitioning).await, bearer(&token));
    let partitions = partitioning.partitions(PartitionsRequest {}).await;
    assert_eq!(partitions.unwrap_err().code(), Code::Unauthenticated);

    let delivered = drain(
        &alice,
        "entries",
        acknowledged.len(),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        delivered.len(),
        acknowledged.len(),
        "acknowledged messages went missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_belong_to_their_owners_until_shared() {
    let cluster = Cluster::start().await;
    let alice = user(&cluster, "alice").await;
    let bob = user(&cluster, "bob").await;
    alice
        .declare_exchange("orders", ExchangeKind::Direct)
        .await
        .unwrap();
    alice.declare_queue("eu").await.unwrap();
    alice.declare_topic("news").await.unwrap();
    alice.bind("orders", "eu", "eu").await.unwrap();
    alice.publish("orders", "eu", "secret order").await.unwrap();
    bob.declare_queue("bobs").await.unwrap();

    // A stranger sees nothing and may touch nothing, through the client...
    assert!(bob.list_queues().await.unwrap() == vec!["bobs".to_owned()]);
    assert!(bob.list_exchanges().await.unwrap().is_empty());
    assert!(bob.list_topics().await.unwrap().is_empty());
    let forbidden = Some(403);
    assert_eq!(
        status_of(bob.pull("eu", 1, None, Duration::ZERO).await.map(drop)),
        forbidden
    );
    assert_eq!(status_of(bob.queue_depth("eu").await.map(drop)), forbidden);
    assert_eq!(
        status_of(bob.publish("orders", "eu", "x").await.map(drop)),
        forbidden
    );
    assert_eq!(status_of(bob.bind("orders", "bobs", "eu").await), forbidden);
    assert_eq!(status_of(bob.bind("orders", "eu", "#").await), forbidden);
    assert_eq!(
        status_of(bob.subscribe("news", "bob").await.map(drop)),
        forbidden
    );
    assert_eq!(status_of(bob.delete_queue("eu").await), forbidden);
    assert_eq!(status_of(bob.delete_exchange("orders").await), forbidden);
    assert_eq!(status_of(bob.delete_topic("news").await), forbidden);
    assert_eq!(status_of(bob.declare_queue("eu").await), forbidden);
    assert_eq!(status_of(bob.exchange("orders").await.map(drop)), forbidden);
    // ... and through REST, with JSON errors.
    for (method, path, body) in [
        (Method::GET, "/queues/eu", None),
        (Method::POST, "/queues/eu/pull", None),
        (
            Method::POST,
            "/queues/eu/ack",
            Some(r#"{"receipts":["0/1/1.1"]}"#),
        ),
        (Method::DELETE, "/queues/eu", None),
        (
            Method::POST,
            "/exchanges/orders/publish",
            Some(r#"{"routing_key":"eu","payload":"x"}"#),
        ),
        (
            Method::POST,
            "/topics/news/subscriptions",
            Some(r#"{"subscriber":"bob"}"#),
        ),
        (Method::GET, "/topics/news", None),
    ] {
        let (status, reply) = call(&cluster, method.clone(), path, Some(bob.token()), body).await;
        assert_eq!(status, 403, "{method} {path}: {reply}");
        assert!(reply["error"].is_string(), "{method} {path}: {reply}");
    }
    // Bob may not grant himself anything on alice's queue.
    let refused = bob
        .grant("bob", ResourceKind::Queue, "eu", &[Permission::Read])
        .await;
    assert_eq!(refused.err().and_then(|e| e.status()), forbidden);
    // A pattern grant by bob reaches only what bob owns.
    bob.grant("alice", ResourceKind::Queue, "*", &[Permission::Read])
        .await
        .unwrap();

    // Alice shares reading: bob consumes, but still may not publish or delete.
    let grant = alice
        .grant("bob", ResourceKind::Queue, "eu", &[Permission::Read])
        .await
        .unwrap();
    let pulled = bob
        .pull("eu", 1, None, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0].payload, "secret order");
    assert_eq!(
        bob.ack("eu", &[pulled[0].receipt.as_str()])
            .await
            .unwrap()
            .acked,
        1
    );
    assert_eq!(
        bob.list_queues().await.unwrap(),
        vec!["bobs".to_owned(), "eu".to_owned()]
    );
    assert_eq!(
        status_of(bob.publish("orders", "eu", "x").await.map(drop)),
        forbidden
    );
    assert_eq!(status_of(bob.delete_queue("eu").await), forbidden);
    // Write on the exchange lets bob publish; a pattern grant works like a name.
    alice
        .grant("bob", ResourceKind::Exchange, "ord*", &[Permission::Write])
        .await
        .unwrap();
    bob.publish("orders", "eu", "from bob").await.unwrap();
    assert!(bob
        .permissions()
        .await
        .unwrap()
        .iter()
        .any(|g| g.id == grant.id));
    // Revoked: refused again.
    alice.revoke(&grant.id).await.unwrap();
    assert_eq!(
        status_of(bob.pull("eu", 1, None, Duration::ZERO).await.map(drop)),
        forbidden
    );

    // The admin may do everything, and sees every grant.
    let admin = admin(&cluster).await;
    assert_eq!(admin.queue_depth("eu").await.unwrap().ready, 1);
    assert!(admin.permissions().await.unwrap().len() >= 2);
    admin.delete_queue("bobs").await.unwrap();
    let pulled = admin
        .pull("eu", 1, None, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(pulled[0].payload, "from bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_unknown_deleted_or_reset_users_are_refused() {
    let cluster = Cluster::start().await;
    let admin = admin(&cluster).await;
    let bob = user(&cluster, "bob").await;
    let carol = user(&cluster, "carol").await;
    bob.declare_queue("bobs").await.unwrap();

    // Validly signed, for a user that never existed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ghost = TokenKeys::new(JWT_SECRET).issue_claims(&Claims {
        sub: "ghost".into(),
        iat: now,
        exp: now + 600,
        iss: mom_common::token::USER_ISSUER.into(),
        aud: mom_common::token::USER_AUDIENCE.into(),
        gen: 1,
    });
    let (status, body) = call(&cluster, Method::GET, "/queues", Some(&ghost), None).await;
    assert_eq!(status, 401, "{body}");
    // Another audience: refused although signed with the right secret.
    let wrong_audience = TokenKeys::new(JWT_SECRET).issue_claims(&Claims {
        sub: "bob".into(),
        iat: now,
        exp: now + 600,
        iss: mom_common::token::USER_ISSUER.into(),
        aud: "somewhere-else".into(),
        gen: 1,
    });
    let (status, _) = call(
        &cluster,
        Method::GET,
        "/queues",
        Some(&wrong_audience),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // Deleted: its token stops working within seconds, and the name is free again without
    // the old token coming back to life.
    admin.delete_user("bob").await.unwrap();
    let refused = poll_until(Duration::from_secs(5), || async {
        call(&cluster, Method::GET, "/queues", Some(bob.token()), None)
            .await
            .0
            == 401
    })
    .await;
    assert!(refused, "a deleted user's token still works");
    let new_bob = user(&cluster, "bob").await;
    let (status, _) = call(&cluster, Method::GET, "/queues", Some(bob.token()), None).await;
    assert_eq!(status, 401, "the old bob's token works for the new bob");
    assert!(
        new_bob.list_queues().await.unwrap().is_empty(),
        "ownership was inherited"
    );

    // Reset password: old tokens void, the new password works.
    admin
        .reset_password("carol", "a-brand-new-password")
        .await
        .unwrap();
    let refused = poll_until(Duration::from_secs(5), || async {
        call(&cluster, Method::GET, "/queues", Some(carol.token()), None)
            .await
            .0
            == 401
    })
    .await;
    assert!(refused, "a token from before a password reset still works");
    Connection::connect(cluster.gateway_url(), "carol", "a-brand-new-password")
        .await
        .unwrap();

    // A non-admin may not manage users.
    assert_eq!(
        new_bob.users().await.err().and_then(|e| e.status()),
        Some(403)
    );
    let names: Vec<String> = admin
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert!(names.contains(&"carol".to_owned()) && names.contains(&ADMIN_USER.to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_refuses_clients_without_mom_credentials() {
    use zookeeper_client::{Acls, Client, CreateMode, Error};
    let cluster = Cluster::start().await;
    let alice = connect(&cluster).await;
    declare_ledger(&alice).await;
    let acknowledged = publish_batch(&alice, 0, 10).await;

    let zk_address = cluster.zookeeper.connect_string();
    let anonymous = Client::connector().connect(&zk_address).await.unwrap();
    let wrong = Client::connector()
        .with_auth("digest", b"mom:not-the-password")
        .connect(&zk_address)
        .await
        .unwrap();
    for client in [&anonymous, &wrong] {
        let create = CreateMode::Persistent.with_acls(Acls::anyone_all());
        for path in [
            "/mom/queues/evil",
            "/mom/access/users/mallory",
            "/mom/partitions/99",
        ] {
            let created = client.create(path, b"{}", &create).await;
            assert!(matches!(created, Err(Error::NoAuth)), "{path}: {created:?}");
        }
        for path in [
            "/mom/partitions/0",
            "/mom/cluster",
            "/mom/access/users/alice",
            "/mom/exchanges/ledger",
        ] {
            let read = client.get_data(path).await;
            assert!(matches!(read, Err(Error::NoAuth)), "read {path}: {read:?}");
            let written = client.set_data(path, b"{}", None).await;
            assert!(
                matches!(written, Err(Error::NoAuth)),
                "write {path}: {written:?}"
            );
        }
        let deleted = client.delete("/mom/queues/entries", None).await;
        assert!(matches!(deleted, Err(Error::NoAuth)), "{deleted:?}");
        let listed = client.list_children("/mom/access/users").await;
        assert!(matches!(listed, Err(Error::NoAuth)), "{listed:?}");
    }
    let (status, body) = call(&cluster, Method::GET, "/queues", Some(alice.token()), None).await;
    assert_eq!(
        body["queues"],
        serde_json::json!([{"name": "entries"}]),
        "{status}"
    );
    let delivered = drain(
        &alice,
        "entries",
        acknowledged.len(),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(delivered.len(), acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_sign_ups_are_throttled_and_weak_passwords_refused() {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 1,
        replication_factor: 1,
        partitions: 2,
        auth_settings: Some(
            "logins_per_user_per_minute = 5\nlogins_per_address_per_minute = 1000\n\
             registrations_per_address_per_minute = 3\n"
                .into(),
        ),
        ..Default::default()
    })
    .await;
    let body = |user: &str, password: &str| {
        serde_json::json!({ "username": user, "password": password }).to_string()
    };
    let (status, reply) = call(
        &cluster,
        Method::POST,
        "/auth/register",
        None,
        Some(&body("spaces", "        ")),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    let (status, _) = call(
        &cluster,
        Method::POST,
        "/auth/register",
        None,
        Some(&body("victim", PASSWORD)),
    )
    .await;
    assert_eq!(status, 201);

    // Guessing: throttled after a few attempts, with Retry-After; then even the right
    // password is refused for a while.
    let client = reqwest::Client::new();
    let mut throttled_after = None;
    for attempt in 1..=30 {
        let reply = client
            .post(format!("{}/auth/login", cluster.gateway_url()))
            .header("content-type", "application/json")
            .body(body("victim", &format!("guess-number-{attempt}")))
            .send()
            .await
            .unwrap();
        if reply.status() == 429 {
            let retry_after: u64 = reply.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry_after >= 1);
            throttled_after = Some(attempt);
            break;
        }
        assert_eq!(reply.status(), 401);
    }
    assert!(
        throttled_after.is_some_and(|n| n <= 10),
        "{throttled_after:?}"
    );
    let (status, _) = call(
        &cluster,
        Method::POST,
        "/auth/login",
        None,
        Some(&body("victim", PASSWORD)),
    )
    .await;
    assert_eq!(status, 429);

    // Sign-ups from one address are limited too.
    let mut statuses = Vec::new();
    for n in 0..6 {
        let (status, _) = call(
            &cluster,
            Method::POST,
            "/auth/register",
            None,
            Some(&body(&format!("bulk{n}"), PASSWORD)),
        )
        .await;
        statuses.push(status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// Owner, granted user, stranger and admin × configure, write and read: each action works
/// exactly for those who hold its permission, through REST and through the Rust client alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_permission_matrix_holds_through_rest_and_the_client() {
    let cluster = Cluster::start().await;
    let owner = user(&cluster, "owner").await;
    let stranger = user(&cluster, "stranger").await;
    let admin = admin(&cluster).await;
    owner
        .declare_exchange("x", ExchangeKind::Direct)
        .await
        .unwrap();
    owner.declare_queue("q").await.unwrap();
    owner.bind("x", "q", "k").await.unwrap();
    let mut granted = Vec::new();
    for permission in [Permission::Configure, Permission::Write, Permission::Read] {
        let name = format!("granted-{permission:?}").to_lowercase();
        let conn = user(&cluster, &name).await;
        for kind in [ResourceKind::Exchange, ResourceKind::Queue] {
            owner.grant(&name, kind, "*", &[permission]).await.unwrap();
        }
        granted.push((permission, conn));
    }
    // Keep a message in the queue so that a permitted pull has something to take.
    for _ in 0..8 {
        owner.publish("x", "k", "m").await.unwrap();
    }

    let mut callers: Vec<(&str, &Connection, Vec<Permission>)> = vec![
        (
            "owner",
            &owner,
            vec![Permission::Configure, Permission::Write, Permission::Read],
        ),
        (
            "admin",
            &admin,
            vec![Permission::Configure, Permission::Write, Permission::Read],
        ),
        ("stranger", &stranger, vec![]),
    ];
    for (permission, conn) in &granted {
        callers.push(("granted", conn, vec![*permission]));
    }
    for (who, conn, holds) in callers {
        for permission in [Permission::Configure, Permission::Write, Permission::Read] {
            let expected = if holds.contains(&permission) {
                "ok"
            } else {
                "403"
            };
            // Through REST...
            let (method, path, body) = match permission {
                Permission::Configure => (Method::POST, "/queues", r#"{"name":"q"}"#),
                Permission::Write => (
                    Method::POST,
                    "/exchanges/x/publish",
                    r#"{"routing_key":"k","payload":"m"}"#,
                ),
                Permission::Read => (Method::POST, "/queues/q/pull", r#"{"max":1}"#),
            };
            let (status, reply) =
                call(&cluster, method, path, Some(conn.token()), Some(body)).await;
            let got = match status {
                200 | 201 => "ok",
                403 => "403",
                _ => panic!("{who} {permission:?} over REST: {status} {reply}"),
            };
            assert_eq!(got, expected, "{who} {permission:?} over REST: {reply}");
            // ... and through the client.
            let outcome = match permission {
                Permission::Configure => conn.declare_queue("q").await,
                Permission::Write => conn.publish("x", "k", "m").await.map(drop),
                Permission::Read => conn.pull("q", 1, None, Duration::ZERO).await.map(drop),
            };
            let got = match outcome {
                Ok(()) => "ok",
                Err(e) if e.status() == Some(403) => "403",
                Err(e) => panic!("{who} {permission:?} through the client: {e}"),
            };
            assert_eq!(got, expected, "{who} {permission:?} through the client");
        }
    }
}
