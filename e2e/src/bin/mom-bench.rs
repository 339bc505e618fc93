//! Throughput and latency of publish and consume on a real local cluster, replicated (3 copies,
//! 2 needed) against unreplicated (1 copy) in the same run, so the ratio shows what
//! replication costs on this machine. Run with `bash scripts/bench.sh`.

use mom_client::{Connection, ExchangeKind};
use mom_testkit::{Cluster, ClusterOptions};
use std::time::{Duration, Instant};

const MESSAGES: usize = 2_000;
const PUBLISHERS: usize = 8;
const KEYS: usize = 16;

struct Figures {
    publish_per_sec: f64,
    publish_p50: Duration,
    publish_p99: Duration,
    consume_per_sec: f64,
}

async fn measure(replication_factor: u32) -> Figures {
    let options = ClusterOptions {
        replication_factor,
        ..Default::default()
    };
    let cluster = Cluster::start_with(options).await;
    let conn = mom_e2e::connect(&cluster).await;
    conn.declare_exchange("bench", ExchangeKind::Topic)
        .await
        .unwrap();
    conn.declare_queue("sink").await.unwrap();
    conn.bind("bench", "sink", "#").await.unwrap();

    let started = Instant::now();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let conn: Connection = conn.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for n in (p..MESSAGES).step_by(PUBLISHERS) {
                    let sent = Instant::now();
                    conn.publish(
                        "bench",
                        &format!("key{}", n % KEYS),
                        format!("message {n:>6} {}", "x".repeat(200)),
                    )
                    .await
                    .unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for publisher in publishers {
        latencies.extend(publisher.await.unwrap());
    }
    let publish_secs = started.elapsed().as_secs_f64();
    latencies.sort();

    let started = Instant::now();
    let consumed = mom_e2e::drain(&conn, "sink", MESSAGES, Duration::from_secs(2))
        .await
        .len();
    assert_eq!(consumed, MESSAGES, "the bench lost messages");
    let consume_secs = started.elapsed().as_secs_f64();

    Figures {
        publish_per_sec: MESSAGES as f64 / publish_secs,
        publish_p50: latencies[latencies.len() / 2],
        publish_p99: latencies[latencies.len() * 99 / 100],
        consume_per_sec: MESSAGES as f64 / consume_secs,
    }
}

#[tokio::main]
async fn main() {
    println!("{MESSAGES} messages of ~210 bytes, {PUBLISHERS} concurrent publishers, {KEYS} keys, 3 nodes");
    let single = measure(1).await;
    let replicated = measure(3).await;
    for (name, f) in [("1 copy", &single), ("3 copies", &replicated)] {
        println!(
            "{name:>9}: publish {:>7.0} msg/s (p50 {:>6.1?}, p99 {:>6.1?}), consume+ack {:>7.0} msg/s",
            f.publish_per_sec, f.publish_p50, f.publish_p99, f.consume_per_sec
        );
    }
    println!(
        "replicated/unreplicated: publish throughput x{:.2}, p50 latency x{:.2}, consume throughput x{:.2}",
        replicated.publish_per_sec / single.publish_per_sec,
        replicated.publish_p50.as_secs_f64() / single.publish_p50.as_secs_f64(),
        replicated.consume_per_sec / single.consume_per_sec,
    );
}
