//! mom-bench: MOM against RabbitMQ 3.10 on this machine, with the same load generator in one
//! run. MOM is a 3-node cluster started here (testkit; replication factor 3, 2 in-sync copies
//! needed), RabbitMQ the 3-node cluster of scripts/rabbitmq-cluster.sh with one quorum queue.
//! Rows: (a) 1 publish in flight, (b) 32 in flight, (c) consume + ack of the backlog; 1 KiB
//! persistent messages, confirmed publishes. Prints msg/s, p50/p99 latency, broker CPU per
//! message and the MOM/RabbitMQ ratio, as medians over `BENCH_RUNS` runs. Then MOM alone:
//! publish→deliver latency through (d) an SSE stream and (e) a gRPC stream at `BENCH_SSE_RATE`
//! msg/s (1000; 0 skips them) for `BENCH_ROW_SECS` each, and (f) batch publishes of 100
//! messages, `BENCH_BATCHES_IN_FLIGHT` (4; 0 skips it) at once.
//!
//! Run it with `bash scripts/bench.sh`, which builds in release and starts RabbitMQ. Settings
//! (environment): `BENCH_RUNS` (3), `BENCH_ROW_SECS` (10), `BENCH_MESSAGES_1` (5000),
//! `BENCH_MESSAGES_32` (10000), `BENCH_RABBITMQ_URL` and `BENCH_RABBITMQ_PIDS` (comma-separated
//! beam.smp pids; without them only MOM is measured).

#[path = "../bench/mod.rs"]
mod bench;

use bench::load::{self, Broker, Limits, Plan, RowResult, ROWS};
use bench::mom::Mom;
use bench::rabbitmq::RabbitMq;
use bench::report;
use mom_client::Transport;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn setting(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        Err(_) => default,
    }
}

/// One run of all rows on one broker, printing each row as it comes.
async fn measure<B: Broker>(
    broker: &B,
    run: usize,
    plan: &Plan,
    results: &mut Vec<[RowResult; 3]>,
) {
    let queue = format!("bench-run{run}");
    match load::run(broker, &queue, plan).await {
        Ok(rows) => {
            for (name, row) in ROWS.iter().zip(&rows) {
                println!("{}", report::line(broker.name(), run, name, row));
            }
            results.push(rows);
        }
        Err(e) => println!("run {run} {}: could not run: {e}", broker.name()),
    }
}

fn summaries(results: &[[RowResult; 3]], row: usize) -> Option<report::Summary> {
    report::summarize(&results.iter().map(|r| &r[row]).collect::<Vec<_>>())
}

async fn bench() -> ExitCode {
    let started = Instant::now();
    let runs = setting("BENCH_RUNS", 3).max(1);
    let row_time = Duration::from_secs(setting("BENCH_ROW_SECS", 10) as u64);
    let concurrency = 32;
    let plan = Plan {
        single: Limits {
            messages: setting("BENCH_MESSAGES_1", 5_000),
            time: row_time,
        },
        concurrent: Limits {
            messages: setting("BENCH_MESSAGES_32", 10_000),
            time: row_time,
        },
        concurrency,
        consume: Limits {
            messages: usize::MAX,
            time: row_time,
        },
    };

    let rabbit_pids: Vec<u32> = std::env::var("BENCH_RABBITMQ_PIDS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    let rabbit = match std::env::var("BENCH_RABBITMQ_URL") {
        Ok(url) => match RabbitMq::connect(&url, rabbit_pids).await {
            Ok(rabbit) => Some(rabbit),
            Err(e) => {
                eprintln!("RabbitMQ at {url} not measured: {e}");
                None
            }
        },
        Err(_) => {
            eprintln!("BENCH_RABBITMQ_URL is not set: measuring MOM only");
            None
        }
    };

    eprintln!("starting the MOM cluster (3 nodes, replication factor 3)");
    let mut mom = Mom::start().await;
    eprintln!(
        "MOM up after {:.1} s; broker processes: {} (MOM) and {} (RabbitMQ)",
        started.elapsed().as_secs_f64(),
        describe(&mom.pids()),
        rabbit.as_ref().map_or("-".into(), |r| describe(&r.pids())),
    );

    if let Err(e) = load::warm_up(&mom, "bench-warmup").await {
        eprintln!("MOM warm-up failed: {e}");
    }
    if let Some(rabbit) = &rabbit {
        if let Err(e) = load::warm_up(rabbit, "bench-warmup").await {
            eprintln!("RabbitMQ warm-up failed: {e}");
        }
    }

    // What the brokers burn doing nothing, as a yardstick for the CPU columns.
    const IDLE: Duration = Duration::from_secs(3);
    let mom_pids = mom.pids();
    let rabbit_pids = rabbit.as_ref().map(|r| r.pids()).unwrap_or_default();
    let (mom_idle, rabbit_idle) = futures::join!(
        load::cpu_over(&mom_pids, IDLE),
        load::cpu_over(&rabbit_pids, IDLE)
    );
    let idle = format!(
        "idle CPU: MOM {:.0} ms/s, RabbitMQ {}",
        mom_idle.as_secs_f64() * 1e3 / IDLE.as_secs_f64(),
        if rabbit.is_some() {
            format!(
                "{:.0} ms/s",
                rabbit_idle.as_secs_f64() * 1e3 / IDLE.as_secs_f64()
            )
        } else {
            "-".into()
        }
    );
    eprintln!("{idle}");

    println!(
        "{runs} run(s); 1 KiB messages; (a) up to {} messages or {:?}, (b) {concurrency} in flight, up to {} or {:?}, (c) the backlog of (a)+(b) or {:?}",
        plan.single.messages, plan.single.time, plan.concurrent.messages, plan.concurrent.time, plan.consume.time
    );
    let mut mom_results = Vec::new();
    let mut rabbit_results = Vec::new();
    for run in 1..=runs {
        // Alternate who goes first, so neither always gets the quieter machine.
        if run % 2 == 1 {
            measure(&mom, run, &plan, &mut mom_results).await;
        }
        if let Some(rabbit) = &rabbit {
            measure(rabbit, run, &plan, &mut rabbit_results).await;
        }
        if run % 2 == 0 {
            measure(&mom, run, &plan, &mut mom_results).await;
        }
    }
    if let Some(rabbit) = &rabbit {
        rabbit.close().await;
    }
    let sse_rate = setting("BENCH_SSE_RATE", 1_000) as u32;
    let mut mom_only_rows = Vec::new();
    if sse_rate > 0 {
        for (row, transport) in [("d", Transport::Sse), ("e", Transport::Grpc)] {
            let name = bench::latency::transport_name(transport);
            let queue = format!("bench-{}", name.to_lowercase());
            let outcome = match mom.declare_queue(&queue).await {
                Ok(()) => {
                    bench::latency::stream_latency(
                        mom.conn(),
                        &queue,
                        &queue,
                        sse_rate,
                        row_time,
                        transport,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            mom_only_rows.push(match outcome {
                Ok(line) => format!("({row}) MOM at {sse_rate} msg/s, {} ", line.line()),
                Err(e) => format!("({row}) MOM publish→deliver via {name} could not run: {e}"),
            });
        }
    }
    let batch_in_flight = setting("BENCH_BATCHES_IN_FLIGHT", 4);
    if batch_in_flight > 0 {
        let outcome = match mom.declare_queue("bench-batches").await {
            Ok(()) => {
                bench::batches::batch_throughput(
                    mom.conn(),
                    "bench-batches",
                    100,
                    batch_in_flight,
                    row_time,
                )
                .await
            }
            Err(e) => Err(e),
        };
        mom_only_rows.push(match outcome {
            Ok(row) => format!("(f) MOM {}", row.line()),
            Err(e) => format!("(f) MOM batch publish could not run: {e}"),
        });
    }
    for (service, log) in mom.exited() {
        println!("MOM's {service} exited during the bench; the end of its log:\n{log}");
    }

    let table: Vec<_> = ROWS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (
                *name,
                summaries(&mom_results, i),
                summaries(&rabbit_results, i),
            )
        })
        .collect();
    println!();
    println!(
        "MOM vs RabbitMQ 3.10, same machine and load generator; median of {} run(s) (MOM) / {} (RabbitMQ)",
        mom_results.len(),
        rabbit_results.len()
    );
    println!("{}", report::table(&table));
    println!(
        "MOM: 3 nodes, replication factor 3, min_insync_replicas 2, REST gateway, mom_client.\n\
         RabbitMQ: 3-node cluster, one quorum queue, delivery mode 2, publisher confirms, lapin;\n\
         consume with basic.consume (prefetch {}) and one basic.ack(multiple) per batch.\n\
         MOM consumes the same way round: its gRPC stream (prefetch {}) and one ack call per\n\
         batch, not awaited before the next (up to {} out); every ack is answered within the row.\n\
         Latency: publish = until confirmed; consume = one receive-up-to-{} + ack step, counted\n\
         for every message in it.\n\
         CPU/msg: user+sys CPU of the broker's processes during the row (MOM: mom-* and\n\
         ZooKeeper's java; RabbitMQ: beam.smp) / messages. failed: summed over runs.\n\
         Ratios are MOM/RabbitMQ: above 1 = MOM higher (better for msg/s, worse otherwise).\n\
         Both clusters run throughout; {idle} (counted in CPU/msg).",
        bench::rabbitmq::PREFETCH,
        bench::mom::PREFETCH,
        bench::mom::ACKS_IN_FLIGHT,
        load::CONSUME_BATCH
    );
    for line in &mom_only_rows {
        println!("{line}");
    }
    if !mom_only_rows.is_empty() {
        println!("    ((d), (e) latency: from just before the publish is sent to the message's arrival at the stream's consumer; includes replication and commit)");
    }
    println!(
        "whole bench binary: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    drop(mom);
    if mom_results.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `name×count` for a set of processes, e.g. `mom-server×3, java×1`.
fn describe(pids: &[u32]) -> String {
    let mut names: Vec<String> = pids.iter().filter_map(|&p| load::comm(p)).collect();
    names.sort();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < names.len() {
        let same = names[i..].iter().take_while(|n| **n == names[i]).count();
        out.push(format!("{}×{same}", names[i]));
        i += same;
    }
    out.join(", ")
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
    // Dropping the bench on a signal drops the MOM cluster, which kills its processes.
    tokio::select! {
        code = bench() => code,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: stopping the MOM cluster");
            ExitCode::from(130)
        }
        _ = terminate.recv() => {
            eprintln!("terminated: stopping the MOM cluster");
            ExitCode::from(143)
        }
    }
}
