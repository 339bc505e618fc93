//! The cluster keeps every acknowledged message through node crashes, restarts, joins and a
//! ZooKeeper restart.

use mom_e2e::{
    acting_for, assert_all_delivered_in_order, connect, declare_ledger, drain, fast_failover,
    publish_batch, KEYS,
};
use mom_testkit::{Cluster, ClusterOptions};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_leader_under_load_loses_no_acknowledged_message() {
    let mut cluster = Cluster::start_with(fast_failover()).await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let (victim, _) = cluster
        .leader_of("e/ledger/k0")
        .await
        .expect("leader of k0");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (conn, stop, sent) = (conn.clone(), stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut acknowledged = HashMap::new();
            let mut longest_wait = Duration::ZERO;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!("k{}:{n}", n % KEYS);
                let started = Instant::now();
                // A failed publish is simply not acknowledged; only acknowledged ones count.
                if let Ok(published) = conn
                    .publish("ledger", &format!("k{}", n % KEYS), payload.as_str())
                    .await
                {
                    acknowledged.insert(published.message_id, payload);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                longest_wait = longest_wait.max(started.elapsed());
                n += 1;
            }
            (acknowledged, longest_wait)
        })
    };
    let reach = |target: usize| {
        let sent = sent.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while sent.load(Ordering::Relaxed) < target {
                assert!(
                    Instant::now() < deadline,
                    "publishing stalled at {}",
                    sent.load(Ordering::Relaxed)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    reach(80).await;
    cluster.kill_node(Cluster::node_index(&victim));
    let killed_at = sent.load(Ordering::Relaxed);
    reach(killed_at + 80).await;
    stop.store(true, Ordering::Relaxed);
    let (acknowledged, longest_wait) = publisher.await.unwrap();

    let (new_leader, _) = cluster
        .leader_of("e/ledger/k0")
        .await
        .expect("a new leader");
    assert_ne!(new_leader, victim);
    assert!(
        longest_wait < Duration::from_secs(10),
        "failover took {longest_wait:?}"
    );
    eprintln!(
        "failover: longest publish took {longest_wait:?}; {} acknowledged",
        acknowledged.len()
    );
    assert_all_delivered_in_order(&conn, &acknowledged, &cluster).await;
}

fn stored_ids(data_dir: &Path) -> HashSet<String> {
    let db = rusqlite::Connection::open_with_flags(
        data_dir.join("messages.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut query = db
        .prepare("SELECT message_id FROM log WHERE message_id IS NOT NULL")
        .unwrap();
    let ids = query
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_catches_up_with_what_it_missed() {
    let mut cluster = Cluster::start_with(fast_failover()).await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let mut acknowledged = publish_batch(&conn, 0, 30).await;

    cluster.kill_node(2);
    acknowledged.extend(publish_batch(&conn, 30, 40).await);
    cluster.restart_node(2);
    cluster.wait_until_in_sync().await;

    // Every partition is on every node (3 nodes, 3 copies): the restarted one has it all.
    let on_restarted = stored_ids(&cluster.node_data_dir(2));
    let missing: Vec<_> = acknowledged
        .keys()
        .filter(|id| !on_restarted.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "restarted node lacks {} messages; partitions: {:?}\n{}",
        missing.len(),
        cluster.partitions().await,
        cluster.logs()
    );
    assert_all_delivered_in_order(&conn, &acknowledged, &cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_a_share_of_the_partitions() {
    let mut cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let mut acknowledged = publish_batch(&conn, 0, 40).await;

    let newcomer = cluster.add_node().await;
    // The controller reacts to the join asynchronously: wait for the new node to lead.
    let took_a_share = mom_testkit::poll_until(Duration::from_secs(30), || async {
        cluster
            .partitions()
            .await
            .is_some_and(|ps| ps.iter().any(|p| p.leader == newcomer))
    })
    .await;
    cluster.wait_until_in_sync().await;
    let partitions = cluster.partitions().await.unwrap();
    assert!(took_a_share, "{newcomer} leads nothing: {partitions:?}");
    assert!(partitions.iter().all(|p| p.replicas.len() == 3));

    acknowledged.extend(publish_batch(&conn, 40, 40).await);
    assert_all_delivered_in_order(&conn, &acknowledged, &cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brief_zookeeper_restart_loses_nothing() {
    // Sessions must outlive the restart, or every service would (rightly) start over.
    let options = ClusterOptions {
        node_session_timeout_ms: 15_000,
        service_session_timeout_ms: 15_000,
        ..Default::default()
    };
    let mut cluster = Cluster::start_with(options).await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let mut acknowledged = publish_batch(&conn, 0, 30).await;

    cluster.zookeeper.kill();
    cluster.zookeeper.restart();
    acknowledged.extend(publish_batch(&conn, 30, 30).await);
    cluster.wait_until_in_sync().await;
    assert_all_delivered_in_order(&conn, &acknowledged, &cluster).await;
    assert!(
        cluster.gateway.is_running() && cluster.partitioning.iter_mut().all(|p| p.is_running())
    );
    assert!(
        cluster.nodes.iter_mut().all(|n| n.is_running()),
        "a node exited:\n{}",
        cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_does_not_lead_forwards_to_the_leader() {
    use mom_common::proto::{
        broker_client::BrokerClient, AckRequest, DestinationKind, Mailbox, PublishRequest,
    };

    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let (leader, partition) = cluster.leader_of("e/ledger/k1").await.unwrap();
    let addrs = cluster.node_addrs().await.unwrap();
    let (other, addr) = addrs.iter().find(|(id, _)| *id != leader).unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut follower = BrokerClient::with_interceptor(channel, acting_for(conn.token()));

    let request = PublishRequest {
        partition,
        kind: DestinationKind::Exchange as i32,
        destination: "ledger".into(),
        routing_key: "k1".into(),
        payload: b"via a follower".to_vec(),
        ttl_ms: 0,
        message_id: String::new(),
        ..Default::default()
    };
    let published = follower
        .publish(request)
        .await
        .unwrap_or_else(|e| panic!("{other} did not forward: {e}"));
    assert_eq!(published.get_ref().routed, 1);

    let pulled = conn
        .pull("entries", 10, None, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(pulled.len(), 1);
    assert_eq!(
        (pulled[0].message_id.as_str(), pulled[0].payload.as_str()),
        (published.get_ref().message_id.as_str(), "via a follower")
    );
    let mailbox = Mailbox {
        queue: "entries".into(),
        ..Default::default()
    };
    let acked = follower
        .ack(AckRequest {
            mailbox: Some(mailbox),
            receipts: vec![pulled[0].receipt.clone()],
        })
        .await
        .unwrap();
    assert_eq!((acked.get_ref().acked, acked.get_ref().stale.len()), (1, 0));
    assert!(conn
        .pull("entries", 10, None, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_survive_a_failover_and_leased_messages_come_back() {
    let mut cluster = Cluster::start_with(fast_failover()).await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let acknowledged = publish_batch(&conn, 0, 40).await;

    let consumed = drain(&conn, "entries", 20, Duration::from_secs(2)).await;
    assert_eq!(consumed.len(), 20);
    let acked: HashSet<String> = consumed.iter().map(|d| d.message_id.clone()).collect();
    // In flight: leased, never acked. Leases are the leader's own memory, so a new leader may
    // hand these out again before their lease would have ended (at-least-once); acked ones
    // must never come back.
    let mut in_flight = Vec::new();
    while in_flight.len() < 5 {
        let wanted = 5 - in_flight.len() as u32;
        let pulled = conn
            .pull(
                "entries",
                wanted,
                Some(Duration::from_secs(60)),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert!(!pulled.is_empty(), "nothing to lease");
        in_flight.extend(pulled);
    }

    let (victim, _) = cluster.leader_of("e/ledger/k0").await.unwrap();
    cluster.kill_node(Cluster::node_index(&victim));

    let remaining: HashSet<&str> = acknowledged
        .keys()
        .map(String::as_str)
        .filter(|id| !acked.contains(*id))
        .collect();
    // What the dead leader had leased is free again at once; the others' leases still hold.
    let mut rest = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rest_ids: HashSet<String> = HashSet::new();
    while Instant::now() < deadline {
        rest.extend(drain(&conn, "entries", usize::MAX, Duration::from_millis(500)).await);
        rest_ids = rest.iter().map(|d| d.message_id.clone()).collect();
        let in_flight_left = in_flight
            .iter()
            .filter(|d| !rest_ids.contains(&d.message_id))
            .count();
        if rest_ids.len() + in_flight_left >= remaining.len() {
            break;
        }
    }
    assert!(
        rest_ids.iter().all(|id| !acked.contains(id)),
        "acknowledged messages came back"
    );
    let in_flight_ids: HashSet<&str> = in_flight.iter().map(|d| d.message_id.as_str()).collect();
    let expected: HashSet<&str> = remaining.difference(&in_flight_ids).copied().collect();
    let got: HashSet<&str> = rest_ids.iter().map(String::as_str).collect();
    assert!(
        expected.is_subset(&got),
        "lost {} unleased messages\n{}",
        expected.difference(&got).count(),
        cluster.logs()
    );
    // The in-flight ones acked late (old receipts) are not refused as stale just because
    // leadership moved, unless someone else got them meanwhile.
    let late: Vec<&str> = in_flight
        .iter()
        .filter(|d| !got.contains(d.message_id.as_str()))
        .map(|d| d.receipt.as_str())
        .collect();
    if !late.is_empty() {
        let outcome = conn.ack("entries", &late).await.unwrap();
        assert_eq!(
            outcome.acked as usize,
            late.len(),
            "stale: {:?}",
            outcome.stale
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_back_with_an_empty_disk_neither_leads_nor_loses_data() {
    // Sessions outlive the restart, so nothing but the node itself can notice its lost disk.
    let options = ClusterOptions {
        node_session_timeout_ms: 15_000,
        ..Default::default()
    };
    let mut cluster = Cluster::start_with(options).await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let acknowledged = publish_batch(&conn, 0, 40).await;

    let (victim, _) = cluster.leader_of("e/ledger/k0").await.unwrap();
    let index = Cluster::node_index(&victim);
    cluster.kill_node(index);
    std::fs::remove_dir_all(cluster.node_data_dir(index)).unwrap();
    cluster.restart_node(index);
    cluster.wait_until_in_sync().await;

    assert_all_delivered_in_order(&conn, &acknowledged, &cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_and_the_controller_survive_a_partitioning_service_crash() {
    let options = ClusterOptions {
        node_session_timeout_ms: 1_500,
        service_session_timeout_ms: 1_500,
        partitioning_services: 2,
        ..Default::default()
    };
    let mut cluster = Cluster::start_with(options).await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let mut acknowledged = publish_batch(&conn, 0, 24).await;

    // Both partitioning services go down in turn, so whichever was the controller is lost.
    cluster.partitioning[0].kill();
    acknowledged.extend(publish_batch(&conn, 24, 24).await);
    cluster.partitioning[0].start();
    cluster.partitioning[1].kill();
    acknowledged.extend(publish_batch(&conn, 48, 24).await);

    // A leader crash now needs the controller on the restarted instance to elect a successor.
    let (victim, _) = cluster.leader_of("e/ledger/k0").await.unwrap();
    cluster.kill_node(Cluster::node_index(&victim));
    acknowledged.extend(publish_batch(&conn, 72, 24).await);
    let (successor, _) = cluster.leader_of("e/ledger/k0").await.unwrap();
    assert_ne!(successor, victim);
    assert_all_delivered_in_order(&conn, &acknowledged, &cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_and_the_controller_outlive_their_zookeeper_sessions_and_publishes_go_on() {
    // The gateway's and the partitioning service's sessions expire during the outage; the
    // nodes' outlive it.
    let options = ClusterOptions {
        node_session_timeout_ms: 30_000,
        service_session_timeout_ms: 30_000,
        gateway_session_timeout_ms: Some(1_500),
        partitioning_session_timeout_ms: Some(1_500),
        ..Default::default()
    };
    let mut cluster = Cluster::start_with(options).await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let mut acknowledged = publish_batch(&conn, 0, 16).await;

    cluster.zookeeper.kill();
    // With ZooKeeper gone, messages still flow: routes, leaders and followers need no
    // ZooKeeper round trip. Long enough for the gateway's session to lapse.
    let outage = Instant::now();
    let mut n = 16;
    while outage.elapsed() < Duration::from_secs(4) {
        acknowledged.extend(publish_batch(&conn, n, KEYS).await);
        n += KEYS;
    }
    cluster.zookeeper.restart();
    // A new session: metadata works again.
    let declared = mom_testkit::poll_until(Duration::from_secs(30), || async {
        conn.declare_queue("after-the-outage").await.is_ok()
    })
    .await;
    assert!(
        declared,
        "no metadata after ZooKeeper came back\n{}",
        cluster.logs()
    );
    assert!(
        cluster.gateway.is_running(),
        "the gateway exited:\n{}",
        cluster.logs()
    );
    let renewed = mom_testkit::poll_until(Duration::from_secs(10), || async {
        cluster.gateway.log().contains("zookeeper session renewed")
    })
    .await;
    assert!(
        renewed,
        "the gateway's session never lapsed:\n{}",
        cluster.logs()
    );
    // The partitioning service lived on too, renewed its session and is controller again.
    let renewed = mom_testkit::poll_until(Duration::from_secs(10), || async {
        cluster.partitioning[0]
            .log()
            .contains("zookeeper session renewed")
    })
    .await;
    assert!(
        renewed && cluster.partitioning[0].is_running(),
        "the partitioning service did not outlive its session:\n{}",
        cluster.logs()
    );
    // Leaders stop serving pulls while cut off from ZooKeeper; wait until they all serve again.
    cluster.wait_until_in_sync().await;
    for key in 0..KEYS {
        let published = conn
            .publish(
                "ledger",
                &format!("k{key}"),
                format!("k{key}:{}", n + key).as_str(),
            )
            .await;
        let published = published.unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
        acknowledged.insert(published.message_id, format!("k{key}:{}", n + key));
    }
    assert_all_delivered_in_order(&conn, &acknowledged, &cluster).await;
    // Its controller znode went with the old session; the new session was elected again.
    let elected = mom_testkit::poll_until(Duration::from_secs(10), || async {
        conn.cluster()
            .await
            .is_ok_and(|view| view.controller.is_some())
    })
    .await;
    assert!(
        elected,
        "no controller after the outage:\n{}",
        cluster.logs()
    );
}

/// A node frozen (SIGSTOP) past its ZooKeeper session loses its registration and its
/// leaderships; resumed, it does not exit: it opens a new session, registers again, follows
/// the new leaders and is back in every in-sync set by itself. Publishes go on meanwhile
/// through the other nodes, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_its_session_rejoins_as_a_follower_by_itself() {
    let mut cluster = Cluster::start_with(fast_failover()).await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let mut acknowledged = publish_batch(&conn, 0, 16).await;

    let (leader, _) = cluster.leader_of("e/ledger/k0").await.unwrap();
    let paused = Cluster::node_index(&leader);
    cluster.nodes[paused].pause();
    // Well past its 1.5 s session: the others take over its partitions meanwhile.
    let outage = Instant::now();
    let mut n = 16;
    while outage.elapsed() < Duration::from_secs(6) {
        acknowledged.extend(publish_batch(&conn, n, KEYS).await);
        n += KEYS;
    }
    cluster.nodes[paused].resume();

    let renewed = mom_testkit::poll_until(Duration::from_secs(20), || async {
        cluster.nodes[paused]
            .log()
            .contains("zookeeper session renewed")
    })
    .await;
    assert!(
        renewed && cluster.nodes[paused].is_running(),
        "{leader} did not rejoin after its pause:\n{}",
        cluster.logs()
    );
    cluster.wait_until_in_sync().await;
    acknowledged.extend(publish_batch(&conn, n, KEYS).await);
    assert_all_delivered_in_order(&conn, &acknowledged, &cluster).await;
}

/// A pull of what is ready asks every node at once; a frozen node (SIGSTOP: its socket stays
/// open, its calls hang until they time out) must not hold up the others' messages, whose
/// leases would otherwise run out before the consumer ever saw them and come back, out of
/// order, to somebody else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_does_not_hold_up_a_pull_of_what_the_others_have() {
    let mut cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    conn.declare_exchange("spread", mom_client::ExchangeKind::Topic)
        .await
        .unwrap();
    conn.declare_queue("spread-work").await.unwrap();
    conn.bind("spread", "spread-work", "#").await.unwrap();
    let keys: Vec<String> = (0..24).map(|k| format!("k{k}")).collect();
    for key in &keys {
        conn.publish("spread", key, format!("m-{key}"))
            .await
            .unwrap();
    }
    // Freeze the leader of one key's partition; the other keys' partitions have other leaders.
    let (victim, _) = cluster.leader_of("e/spread/k0").await.unwrap();
    let victim = Cluster::node_index(&victim);
    cluster.nodes[victim].pause();
    let started = Instant::now();
    let pulled = conn
        .pull(
            "spread-work",
            24,
            Some(Duration::from_secs(30)),
            Duration::ZERO,
        )
        .await
        .unwrap();
    let took = started.elapsed();
    cluster.nodes[victim].resume();
    assert!(
        !pulled.is_empty(),
        "the other nodes' messages should have been handed out"
    );
    assert!(
        took < Duration::from_secs(2),
        "a pull waited {took:?} on a frozen node (its call timeout is 5 s)"
    );
    // Nothing is left leased to nobody: with 30 s leases, whatever the pull did not hand out
    // must be ready again (put back, or never leased) as soon as the node is back.
    conn.ack(
        "spread-work",
        &pulled
            .iter()
            .map(|d| d.receipt.as_str())
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let rest = drain(
        &conn,
        "spread-work",
        keys.len() - pulled.len(),
        Duration::from_secs(10),
    )
    .await;
    let mut got: Vec<String> = pulled
        .iter()
        .chain(&rest)
        .map(|d| d.payload.clone())
        .collect();
    got.sort();
    let mut sent: Vec<String> = keys.iter().map(|k| format!("m-{k}")).collect();
    sent.sort();
    assert_eq!(got, sent);
}
