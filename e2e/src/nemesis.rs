//! A workload and a checker for fault-injection ("nemesis") tests, after Jepsen's queue
//! checker: publishers and consumers run through the gateway while a test breaks the cluster,
//! every publish and delivery is recorded, and the history is checked afterwards.
//!
//! The checker's verdicts:
//! - **lost**: a publish answered 201 whose message no consumer ever received;
//! - **unexpected**: a delivery of a payload nobody published;
//! - **stored twice**: one published payload delivered under two message ids (a publish
//!   answered once but stored twice);
//! - **redelivered**: a message id delivered again (at-least-once allows it);
//! - **reordered**: per routing key, a consumer gets a message before one it already had
//!   from the same publisher that was published later, and the earlier one had never been
//!   delivered to anyone before (the only exception the delivery guarantee allows).
//!
//! Availability is measured over the fault window: how many publishes started in it were
//! acknowledged or refused, and the longest time without any acknowledged publish.

use mom_client::{Connection, ExchangeKind};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const EXCHANGE: &str = "nemesis";
pub const QUEUE: &str = "nemesis-work";
/// Routing keys the publishers spread over (`k0`..): several partitions, several leaders.
pub const KEYS: usize = 8;
const PUBLISHERS: usize = 4;
const CONSUMERS: usize = 3;
/// Longer than the gateway's retry window: a publish is abandoned only if the gateway hangs.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Attempt {
    payload: String,
    started: Instant,
    finished: Instant,
    acknowledged: bool,
}

#[derive(Debug, Clone)]
struct Received {
    consumer: usize,
    payload: String,
    message_id: String,
}

#[derive(Default)]
struct History {
    attempts: Vec<Attempt>,
    deliveries: Vec<Received>,
}

/// Publishers and consumers running against the gateway until [`Workload::finish`].
pub struct Workload {
    history: Arc<Mutex<History>>,
    stop_publishing: Arc<AtomicBool>,
    stop_consuming: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    consumers: Vec<tokio::task::JoinHandle<()>>,
}

/// Declares the topic exchange [`EXCHANGE`], bound with `#` to [`QUEUE`].
pub async fn declare(conn: &Connection) {
    conn.declare_exchange(EXCHANGE, ExchangeKind::Topic)
        .await
        .expect("declare exchange");
    conn.declare_queue(QUEUE).await.expect("declare queue");
    conn.bind(EXCHANGE, QUEUE, "#").await.expect("bind");
}

impl Workload {
    pub fn start(conn: &Connection) -> Workload {
        let history = Arc::new(Mutex::new(History::default()));
        let stop_publishing = Arc::new(AtomicBool::new(false));
        let stop_consuming = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for publisher in 0..PUBLISHERS {
            let (conn, history, stop, acknowledged) = (
                conn.clone(),
                history.clone(),
                stop_publishing.clone(),
                acknowledged.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut seq = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("k{}", (seq + publisher) % KEYS);
                    let payload = format!("p{publisher}:{key}:{seq}");
                    let started = Instant::now();
                    let outcome = tokio::time::timeout(
                        PUBLISH_TIMEOUT,
                        conn.publish(EXCHANGE, &key, payload.as_str()),
                    )
                    .await;
                    let ok = matches!(outcome, Ok(Ok(ref p)) if p.routed == 1);
                    if ok {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    history.lock().unwrap().attempts.push(Attempt {
                        payload,
                        started,
                        finished: Instant::now(),
                        acknowledged: ok,
                    });
                    seq += 1;
                }
            }));
        }
        let mut consumers = Vec::new();
        for consumer in 0..CONSUMERS {
            let (conn, history, stop) = (conn.clone(), history.clone(), stop_consuming.clone());
            consumers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let pulled = tokio::time::timeout(
                        PUBLISH_TIMEOUT,
                        conn.pull(
                            QUEUE,
                            20,
                            Some(Duration::from_secs(5)),
                            Duration::from_millis(500),
                        ),
                    )
                    .await;
                    let Ok(Ok(batch)) = pulled else {
                        // The cluster is being broken on purpose: try again shortly.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    if batch.is_empty() {
                        continue;
                    }
                    {
                        let mut history = history.lock().unwrap();
                        for d in &batch {
                            history.deliveries.push(Received {
                                consumer,
                                payload: d.payload.clone(),
                                message_id: d.message_id.clone(),
                            });
                        }
                    }
                    let receipts: Vec<&str> = batch.iter().map(|d| d.receipt.as_str()).collect();
                    // An ack that fails leaves the message to come back: at-least-once.
                    let _ = tokio::time::timeout(PUBLISH_TIMEOUT, conn.ack(QUEUE, &receipts)).await;
                }
            }));
        }
        Workload {
            history,
            stop_publishing,
            stop_consuming,
            acknowledged,
            tasks,
            consumers,
        }
    }

    /// Publishes acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Waits until `more` further publishes are acknowledged (panics after `timeout`).
    pub async fn await_progress(&self, more: usize, timeout: Duration) {
        let target = self.acknowledged() + more;
        let done =
            mom_testkit::poll_until(timeout, || async { self.acknowledged() >= target }).await;
        assert!(
            done,
            "publishing stalled: {} of {target} acknowledged after {timeout:?}",
            self.acknowledged()
        );
    }

    /// Stops publishing, waits until every acknowledged message was received (or `drain`
    /// passed), stops consuming and checks the history.
    pub async fn finish(
        self,
        name: &str,
        fault: (Instant, Instant),
        failover: Option<Duration>,
        drain: Duration,
    ) -> Report {
        self.stop_publishing.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("publisher");
        }
        let history = self.history.clone();
        let all_received = || {
            let history = history.lock().unwrap();
            let received: HashSet<&str> = history
                .deliveries
                .iter()
                .map(|d| d.payload.as_str())
                .collect();
            history
                .attempts
                .iter()
                .filter(|a| a.acknowledged)
                .all(|a| received.contains(a.payload.as_str()))
        };
        mom_testkit::poll_until(drain, || async { all_received() }).await;
        self.stop_consuming.store(true, Ordering::Relaxed);
        for task in self.consumers {
            task.await.expect("consumer");
        }
        let history = std::mem::take(&mut *self.history.lock().unwrap());
        Report::check(name, &history, fault, failover)
    }
}

/// The checker's findings over one run.
#[derive(Debug)]
pub struct Report {
    pub name: String,
    pub attempts: usize,
    pub acknowledged: usize,
    pub lost: Vec<String>,
    pub unexpected: Vec<String>,
    pub stored_twice: Vec<String>,
    pub redelivered: usize,
    pub reordered: Vec<String>,
    /// Publishes acknowledged, and refused (an error or no answer), of those started
    /// during the fault.
    pub during_fault: (usize, usize),
    /// Longest time without an acknowledged publish, from the fault's start on.
    pub longest_gap: Duration,
    /// Slowest acknowledged publish.
    pub max_ack_latency: Duration,
    /// From the fault to ZooKeeper naming another leader, where the test measured it.
    pub failover: Option<Duration>,
}

impl Report {
    fn check(
        name: &str,
        history: &History,
        (fault_start, fault_end): (Instant, Instant),
        failover: Option<Duration>,
    ) -> Report {
        let published: HashSet<&str> = history
            .attempts
            .iter()
            .map(|a| a.payload.as_str())
            .collect();
        let received: HashSet<&str> = history
            .deliveries
            .iter()
            .map(|d| d.payload.as_str())
            .collect();
        let lost: Vec<String> = history
            .attempts
            .iter()
            .filter(|a| a.acknowledged && !received.contains(a.payload.as_str()))
            .map(|a| a.payload.clone())
            .collect();
        let unexpected: Vec<String> = received
            .iter()
            .filter(|p| !published.contains(*p))
            .map(|p| p.to_string())
            .collect();
        let mut ids_of: HashMap<&str, HashSet<&str>> = HashMap::new();
        for d in &history.deliveries {
            ids_of.entry(&d.payload).or_default().insert(&d.message_id);
        }
        let mut stored_twice: Vec<String> = ids_of
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(p, _)| p.to_string())
            .collect();
        stored_twice.sort();

        // Order: per consumer, per (publisher, key) stream, sequence numbers only grow, but
        // for messages somebody had received before.
        let mut delivered_before: HashSet<&str> = HashSet::new();
        let mut highest: HashMap<(usize, &str), usize> = HashMap::new();
        let mut redelivered = 0;
        let mut reordered = Vec::new();
        for d in &history.deliveries {
            let first_time = delivered_before.insert(&d.message_id);
            if !first_time {
                redelivered += 1;
                continue;
            }
            let Some((stream, seq)) = d.payload.rsplit_once(':') else {
                continue;
            };
            let Ok(seq) = seq.parse::<usize>() else {
                continue;
            };
            let top = highest.entry((d.consumer, stream)).or_insert(seq);
            if seq < *top {
                reordered.push(format!(
                    "consumer {} got {} after seq {top}",
                    d.consumer, d.payload
                ));
            } else {
                *top = seq;
            }
        }

        let in_fault: Vec<&Attempt> = history
            .attempts
            .iter()
            .filter(|a| a.started >= fault_start && a.started <= fault_end)
            .collect();
        let acknowledged_in_fault = in_fault.iter().filter(|a| a.acknowledged).count();
        let during_fault = (
            acknowledged_in_fault,
            in_fault.len() - acknowledged_in_fault,
        );
        let mut acks: Vec<Instant> = history
            .attempts
            .iter()
            .filter(|a| a.acknowledged && a.finished >= fault_start)
            .map(|a| a.finished)
            .collect();
        acks.sort();
        let mut longest_gap = Duration::ZERO;
        let mut previous = fault_start;
        for at in acks {
            longest_gap = longest_gap.max(at.duration_since(previous));
            previous = at;
        }
        let max_ack_latency = history
            .attempts
            .iter()
            .filter(|a| a.acknowledged)
            .map(|a| a.finished.duration_since(a.started))
            .max()
            .unwrap_or_default();
        Report {
            name: name.to_owned(),
            attempts: history.attempts.len(),
            acknowledged: history.attempts.iter().filter(|a| a.acknowledged).count(),
            lost,
            unexpected,
            stored_twice,
            redelivered,
            reordered,
            during_fault,
            longest_gap,
            max_ack_latency,
            failover,
        }
    }

    /// One line of figures, written to stderr past the test harness's capture (so that CI
    /// logs show it for passing tests too) and appended to `$MOM_NEMESIS_REPORT` if set.
    pub fn print(&self) {
        let failover = self
            .failover
            .map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
        let line = format!(
            "nemesis {:<28} publishes {:>5}, acknowledged {:>5}; of those started during the \
             fault {} acknowledged, {} refused; longest gap {:.1} s, slowest ack {:.1} s, new \
             leader after {failover}; lost {}, unexpected {}, stored twice {}, redelivered {}, \
             reordered {}\n",
            self.name,
            self.attempts,
            self.acknowledged,
            self.during_fault.0,
            self.during_fault.1,
            self.longest_gap.as_secs_f64(),
            self.max_ack_latency.as_secs_f64(),
            self.lost.len(),
            self.unexpected.len(),
            self.stored_twice.len(),
            self.redelivered,
            self.reordered.len(),
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
        if let Ok(path) = std::env::var("MOM_NEMESIS_REPORT") {
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = file.write_all(line.as_bytes());
            }
        }
    }

    /// What every nemesis must end with: nothing acknowledged lost, nothing unexpected, no
    /// publish stored twice, per-key order kept.
    pub fn assert_safe(&self, logs: impl FnOnce() -> String) {
        let first = |v: &Vec<String>| v.iter().take(10).cloned().collect::<Vec<_>>();
        assert!(
            self.lost.is_empty()
                && self.unexpected.is_empty()
                && self.stored_twice.is_empty()
                && self.reordered.is_empty(),
            "{}: lost {:?}, unexpected {:?}, stored twice {:?}, reordered {:?}\n{}",
            self.name,
            first(&self.lost),
            first(&self.unexpected),
            first(&self.stored_twice),
            first(&self.reordered),
            logs()
        );
        assert!(
            self.acknowledged > 0,
            "{}: nothing was acknowledged",
            self.name
        );
    }
}
