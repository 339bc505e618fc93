//! The replication guarantees, on real processes: a write is acknowledged only with
//! `min_insync_replicas` copies, joins under load lose nothing, failover does not depend on
//! the size of the backlog, and clients that give up mid-publish leave replicas identical.

use mom_common::proto::{
    broker_client::BrokerClient, BatchMessage, DestinationKind, PublishBatchRequest,
};
use mom_e2e::{
    acting_for, assert_all_delivered_in_order, call, connect, declare_ledger, fast_failover,
    publish_batch, KEYS,
};
use mom_testkit::{poll_until, Cluster, ClusterOptions};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits until every partition has at least `copies` in-sync replicas.
async fn wait_for_isr(cluster: &Cluster, copies: usize) {
    let ok = poll_until(Duration::from_secs(60), || async {
        cluster
            .partitions()
            .await
            .is_some_and(|ps| !ps.is_empty() && ps.iter().all(|p| p.isr.len() >= copies))
    })
    .await;
    assert!(
        ok,
        "in-sync sets did not reach {copies}: {:?}\n{}",
        cluster.partitions().await,
        cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_of_three_nodes_dead_publishes_are_refused_never_acknowledged() {
    let options = ClusterOptions {
        gateway_retry_window_ms: 3_000,
        ..fast_failover()
    };
    let mut cluster = Cluster::start_with(options).await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let mut acknowledged = publish_batch(&conn, 0, 24).await;

    cluster.kill_node(0);
    cluster.kill_node(1);
    // The survivor is the only in-sync replica left of every partition.
    let shrunk = poll_until(Duration::from_secs(30), || async {
        cluster.partitions().await.is_some_and(|ps| {
            ps.iter()
                .all(|p| p.isr == ["node3"] && p.leader == "node3" && p.replicas.len() == 3)
        })
    })
    .await;
    assert!(
        shrunk,
        "{:?}\n{}",
        cluster.partitions().await,
        cluster.logs()
    );

    for key in 0..KEYS {
        let (status, body) = call(
            &cluster,
            reqwest::Method::POST,
            "/exchanges/ledger/publish",
            Some(conn.token()),
            Some(&format!(
                r#"{{"routing_key":"k{key}","payload":"one copy only"}}"#
            )),
        )
        .await;
        assert_eq!(status, 503, "acknowledged with one copy: {body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("in-sync")),
            "{body}"
        );
    }

    cluster.restart_node(1);
    wait_for_isr(&cluster, 2).await;
    let (status, health) = call(&cluster, reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("degraded")),
        "{health}"
    );
    acknowledged.extend(publish_batch(&conn, 24, 24).await);
    assert_all_delivered_in_order(&conn, &acknowledged, &cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_under_four_publishers_loses_nothing() {
    let mut cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let (conn, stop, sent) = (conn.clone(), stop.clone(), sent.clone());
            tokio::spawn(async move {
                let mut acknowledged = HashMap::new();
                let mut n = p;
                while !stop.load(Ordering::Relaxed) {
                    // Each publisher owns the keys k ≡ p (mod 4), so per-key order is its own.
                    let key = format!("k{}", n % KEYS);
                    let payload = format!("{key}:{n}");
                    if let Ok(published) = conn.publish("ledger", &key, payload.as_str()).await {
                        acknowledged.insert(published.message_id, payload);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 4;
                }
                acknowledged
            })
        })
        .collect();
    let reach = |target: usize| {
        let sent = sent.clone();
        async move {
            poll_until(Duration::from_secs(60), || async {
                sent.load(Ordering::Relaxed) >= target
            })
            .await
        }
    };
    assert!(reach(60).await, "publishing stalled");
    let newcomer = cluster.add_node().await;
    let took_a_share = poll_until(Duration::from_secs(60), || async {
        cluster
            .partitions()
            .await
            .is_some_and(|ps| ps.iter().any(|p| p.leader == newcomer))
    })
    .await;
    assert!(took_a_share, "{newcomer} leads nothing");
    let after_join = sent.load(Ordering::Relaxed);
    assert!(
        reach(after_join + 60).await,
        "publishing stalled after the join"
    );
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = HashMap::new();
    for publisher in publishers {
        acknowledged.extend(publisher.await.unwrap());
    }
    cluster.wait_until_in_sync().await;
    assert_all_delivered_in_order(&conn, &acknowledged, &cluster).await;
}

/// Publishes `count` messages with one routing key (so one partition) straight to its leader,
/// in batches.
async fn load_backlog(cluster: &Cluster, token: &str, key: &str, count: usize) {
    let (leader, partition) = cluster.leader_of(&format!("e/ledger/{key}")).await.unwrap();
    let addrs: BTreeMap<String, String> = cluster.node_addrs().await.unwrap().into_iter().collect();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", addrs[&leader]))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = BrokerClient::with_interceptor(channel, acting_for(token))
        .max_encoding_message_size(64 << 20);
    let payload = vec![b'x'; 100];
    for start in (0..count).step_by(1_000) {
        let messages = (start..(start + 1_000).min(count))
            .map(|_| BatchMessage {
                routing_key: key.to_owned(),
                payload: payload.clone(),
                ttl_ms: 0,
                message_id: String::new(),
                ..Default::default()
            })
            .collect();
        let request = PublishBatchRequest {
            partition,
            kind: DestinationKind::Exchange as i32,
            destination: "ledger".into(),
            messages,
        };
        client.publish_batch(request).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_with_a_200k_backlog_fails_over_within_seconds() {
    const BACKLOG: usize = 200_000;
    let mut cluster = Cluster::start_with(fast_failover()).await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let loading = Instant::now();
    load_backlog(&cluster, conn.token(), "big", BACKLOG).await;
    eprintln!("backlog of {BACKLOG} loaded in {:?}", loading.elapsed());
    // Followers are caught up once the next publish is acknowledged (it needs them).
    conn.publish("ledger", "big", "after the backlog")
        .await
        .unwrap();

    let (victim, _) = cluster.leader_of("e/ledger/big").await.unwrap();
    cluster.kill_node(Cluster::node_index(&victim));
    let killed = Instant::now();
    let resumed = loop {
        let (status, _) = call(
            &cluster,
            reqwest::Method::POST,
            "/exchanges/ledger/publish",
            Some(conn.token()),
            Some(r#"{"routing_key":"big","payload":"after the failover"}"#),
        )
        .await;
        if status == 201 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no failover: {status}"
        );
    };
    eprintln!("writes resumed {resumed:?} after the leader was killed");
    assert!(
        resumed < Duration::from_secs(5),
        "writes resumed only after {resumed:?}\n{}",
        cluster.logs()
    );
    let depth = conn.queue_depth("entries").await.unwrap();
    // At least: a publish answered 503 during the failover may have been stored too.
    assert!(
        depth.ready >= BACKLOG as u64 + 2,
        "backlog lost in the failover: {depth:?}"
    );
}

/// Every partition's high watermark, applied pending messages and log entries, as one node's
/// SQLite holds them.
type Replica = BTreeMap<i64, (i64, Vec<(String, i64)>, Vec<(i64, i64, Vec<u8>)>)>;

fn read_replica(data_dir: &Path) -> Replica {
    let db = rusqlite::Connection::open_with_flags(
        data_dir.join("messages.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut replica = Replica::new();
    let mut partitions = db
        .prepare("SELECT partition, hw, log_start FROM partitions")
        .unwrap();
    let rows: Vec<(i64, i64, i64)> = partitions
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (partition, hw, _) in rows {
        let pending = db
            .prepare(
                "SELECT mailbox, offset FROM pending WHERE partition = ?1 ORDER BY mailbox, offset",
            )
            .unwrap()
            .query_map([partition], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let log = db
            // A row's `pos` is its partition above 48 bits of offset (the store's layout).
            .prepare(
                "SELECT pos & ((1 << 48) - 1), epoch, record FROM log
                 WHERE pos >= (?1 << 48) AND pos < (?1 << 48) + ?2 ORDER BY pos",
            )
            .unwrap()
            .query_map([partition, hw], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        replica.insert(partition, (hw, pending, log));
    }
    replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_give_up_mid_publish_leave_the_replicas_identical() {
    let cluster = Cluster::start().await;
    let conn = connect(&cluster).await;
    declare_ledger(&conn).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(3))
        .build()
        .unwrap();
    let mut gave_up = 0;
    for n in 0..300 {
        let sent = impatient
            .post(format!("{}/exchanges/ledger/publish", cluster.gateway_url()))
            .bearer_auth(conn.token())
            .json(&serde_json::json!({ "routing_key": format!("k{}", n % KEYS), "payload": format!("p{n}") }))
            .send()
            .await;
        if sent.is_err() {
            gave_up += 1;
        }
    }
    eprintln!("{gave_up} of 300 publishes were dropped by their client");
    // A patient publish per key: it is committed after everything before it on its partition.
    publish_batch(&conn, 1_000, KEYS).await;

    let dirs: Vec<_> = (0..3).map(|n| cluster.node_data_dir(n)).collect();
    let identical = poll_until(Duration::from_secs(30), || async {
        let replicas: Vec<Replica> = dirs.iter().map(|d| read_replica(d)).collect();
        replicas.windows(2).all(|w| {
            w[0].len() == w[1].len()
                && w[0].iter().zip(&w[1]).all(|((pa, a), (pb, b))| {
                    // Equal HWs and applied state; logs equal from where both still hold them.
                    pa == pb && a.0 == b.0 && a.1 == b.1 && {
                        let from =
                            a.2.first()
                                .map_or(0, |e| e.0)
                                .max(b.2.first().map_or(0, |e| e.0));
                        let tail = |log: &[(i64, i64, Vec<u8>)]| {
                            log.iter()
                                .filter(|e| e.0 >= from)
                                .cloned()
                                .collect::<Vec<_>>()
                        };
                        tail(&a.2) == tail(&b.2)
                    }
                })
        })
    })
    .await;
    assert!(identical, "replicas differ\n{}", cluster.logs());
    let total: usize = read_replica(&dirs[0]).values().map(|p| p.1.len()).sum();
    assert!(total >= KEYS, "the patient publishes are missing");
}
