//! Nemesis tests: real processes, real ZooKeeper, real faults, while four publishers and three
//! consumers run through the gateway; the checker in `mom_e2e::nemesis` then looks at every
//! publish and delivery. Each test prints one line of figures (availability and latency
//! during the fault, time to a new leader) that README's failure model quotes.
//!
//! Network faults cut real TCP connections: nodes run in network namespaces of their own and
//! a cut is a blackhole route there (`mom_testkit::netns`). Where the machine cannot make
//! namespaces (not root), those tests say so and pass without running.
//!
//! The tests run one at a time (a lock): on two cores, two clusters at once would measure
//! each other.

use mom_e2e::connect;
use mom_e2e::nemesis::{declare, Workload, EXCHANGE};
use mom_testkit::netns::Network;
use mom_testkit::{poll_until, Cluster, ClusterOptions};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

const SESSION_TIMEOUT_MS: u64 = 1_500;
/// How long each fault lasts.
const FAULT: Duration = Duration::from_secs(8);
/// The bound the availability issue sets for replacing a leader: a session timeout + 2 s.
const FAILOVER_BOUND: Duration = Duration::from_millis(SESSION_TIMEOUT_MS + 2_000);

fn options(namespaces: bool) -> ClusterOptions {
    ClusterOptions {
        node_session_timeout_ms: SESSION_TIMEOUT_MS,
        // A follower that stops fetching leaves the in-sync set (or its leader hands over)
        // after this long.
        replication_timeout_ms: SESSION_TIMEOUT_MS,
        partitioning_services: 2,
        namespaces,
        ..Default::default()
    }
}

/// Whether network-namespace tests can run here; prints why not.
fn namespaces_available(test: &str) -> bool {
    match Network::available() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("skipped {test}: this machine cannot make network namespaces ({why})");
            false
        }
    }
}

/// A cluster with the workload running and warmed up, and the node leading `k0`'s partition.
async fn start(namespaces: bool) -> (Cluster, mom_client::Connection, Workload, usize, u32) {
    let cluster = Cluster::start_with(options(namespaces)).await;
    let conn = connect(&cluster).await;
    declare(&conn).await;
    let (leader, partition) = cluster
        .leader_of(&format!("e/{EXCHANGE}/k0"))
        .await
        .expect("leader of k0");
    let workload = Workload::start(&conn);
    workload.await_progress(100, Duration::from_secs(30)).await;
    (
        cluster,
        conn,
        workload,
        Cluster::node_index(&leader),
        partition,
    )
}

/// Waits until ZooKeeper names a leader other than node `victim` for `partition`; the time
/// it took from `since`.
async fn new_leader(cluster: &Cluster, partition: u32, victim: usize, since: Instant) -> Duration {
    let victim = format!("node{}", victim + 1);
    let moved = poll_until(Duration::from_secs(30), || async {
        cluster.partitions().await.is_some_and(|all| {
            all.iter()
                .any(|p| p.partition == partition && !p.leader.is_empty() && p.leader != victim)
        })
    })
    .await;
    assert!(
        moved,
        "no new leader for partition {partition}\n{}",
        cluster.logs()
    );
    since.elapsed()
}

/// Runs the rest of the fault, heals it, lets the workload go on, and checks.
async fn conclude(
    cluster: &mut Cluster,
    workload: Workload,
    name: &str,
    fault_start: Instant,
    failover: Option<Duration>,
    heal: impl FnOnce(&mut Cluster),
) {
    let left = FAULT.saturating_sub(fault_start.elapsed());
    tokio::time::sleep(left).await;
    let fault_end = Instant::now();
    heal(cluster);
    // Publishing goes on after the fault, and must do so soon.
    workload.await_progress(100, Duration::from_secs(30)).await;
    cluster.wait_until_in_sync().await;
    let report = workload
        .finish(
            name,
            (fault_start, fault_end),
            failover,
            Duration::from_secs(45),
        )
        .await;
    report.print();
    report.assert_safe(|| cluster.logs());
}

/// A fault on the leader of `k0`'s partition: `inject` breaks it, `heal` mends it; a new
/// leader must be named within [`FAILOVER_BOUND`], and the checker must find nothing amiss.
async fn leader_fault(
    name: &str,
    namespaces: bool,
    inject: impl FnOnce(&mut Cluster, usize),
    heal: impl FnOnce(&mut Cluster, usize),
) {
    let _one = ONE_AT_A_TIME.lock().await;
    if namespaces && !namespaces_available(name) {
        return;
    }
    let (mut cluster, _conn, workload, victim, partition) = start(namespaces).await;
    let fault_start = Instant::now();
    inject(&mut cluster, victim);
    let failover = new_leader(&cluster, partition, victim, fault_start).await;
    conclude(
        &mut cluster,
        workload,
        name,
        fault_start,
        Some(failover),
        |c| heal(c, victim),
    )
    .await;
    assert!(
        failover <= FAILOVER_BOUND,
        "{name}: a new leader took {failover:?}, more than {FAILOVER_BOUND:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_followers_is_replaced() {
    let cut_from_peers = |c: &mut Cluster, victim: usize| {
        for other in (0..3).filter(|n| *n != victim) {
            c.network().cut(victim, other);
        }
    };
    let heal = |c: &mut Cluster, _| c.network().heal();
    leader_fault("leader cut from followers", true, cut_from_peers, heal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_zookeeper_is_replaced() {
    let cut = |c: &mut Cluster, victim| c.network().cut_from_zookeeper(victim);
    let heal = |c: &mut Cluster, _| c.network().heal();
    leader_fault("leader cut from ZooKeeper", true, cut, heal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced() {
    let isolate = |c: &mut Cluster, victim| c.network().isolate(victim);
    let heal = |c: &mut Cluster, _| c.network().heal();
    leader_fault("leader isolated", true, isolate, heal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_session_is_replaced() {
    let pause = |c: &mut Cluster, victim: usize| c.nodes[victim].pause();
    let resume = |c: &mut Cluster, victim: usize| c.nodes[victim].resume();
    leader_fault("leader paused (SIGSTOP)", false, pause, resume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_killed_for_five_seconds() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (mut cluster, _conn, workload, _, _) = start(false).await;
    let fault_start = Instant::now();
    cluster.zookeeper.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.zookeeper.restart();
    conclude(
        &mut cluster,
        workload,
        "ZooKeeper killed for 5 s",
        fault_start,
        None,
        |_| {},
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_nodes_killed_and_restarted() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (mut cluster, _conn, workload, victim, _) = start(false).await;
    let fault_start = Instant::now();
    let killed: Vec<usize> = (0..3).filter(|n| *n != (victim + 1) % 3).collect();
    for n in &killed {
        cluster.kill_node(*n);
    }
    conclude(
        &mut cluster,
        workload,
        "2 of 3 nodes killed",
        fault_start,
        None,
        |c| {
            for n in &killed {
                c.restart_node(*n);
            }
        },
    )
    .await;
}
