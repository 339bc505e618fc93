//! The load generator, the same for every broker: N publishes in flight until a message count or
//! a time limit, consume + ack of the backlog, latency histograms, and the CPU time of the
//! broker's processes read from `/proc/<pid>/stat` before and after each row.
//!
//! A broker plugs in through [`Broker`], [`Publisher`] and [`Consumer`]; nothing here knows
//! which one it measures.

use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub type BenchResult<T> = Result<T, String>;

/// Bytes in every message body.
pub const PAYLOAD_BYTES: usize = 1024;
/// One publish, or one receive + ack step, that takes longer than this counts as failed.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// The consume row ends when nothing arrives for this long.
pub const QUIET: Duration = Duration::from_secs(2);
/// Most messages one consume step receives and acks.
pub const CONSUME_BATCH: usize = 100;

/// A broker under test, set up and reachable.
pub trait Broker {
    type Publisher: Publisher;
    type Consumer: Consumer;
    /// As printed in the table.
    fn name(&self) -> &'static str;
    /// Every process whose CPU time counts as the broker's.
    fn pids(&self) -> Vec<u32>;
    /// Creates an empty durable, replicated queue (and whatever routes messages to it).
    async fn declare_queue(&self, queue: &str) -> BenchResult<()>;
    /// A handle that publishes into `queue`; clones publish concurrently.
    async fn publisher(&self, queue: &str) -> BenchResult<Self::Publisher>;
    /// A consumer of `queue` that acks what it receives.
    async fn consumer(&self, queue: &str) -> BenchResult<Self::Consumer>;
    /// Removes the queue and anything left in it.
    async fn delete_queue(&self, queue: &str) -> BenchResult<()>;
}

pub trait Publisher: Clone + Send + Sync + 'static {
    /// Publishes one message and returns once the broker confirmed it as stored (replicated
    /// according to the broker's settings). `seq` numbers the messages of a row.
    fn publish(&self, seq: usize, payload: String) -> impl Future<Output = BenchResult<()>> + Send;
}

pub trait Consumer {
    /// Receives up to `max` messages, waiting up to `wait` for the first one, and acks them.
    /// Returns how many were acked and how many acks were refused.
    async fn receive_and_ack(&mut self, max: usize, wait: Duration) -> BenchResult<(usize, usize)>;
    /// Returns once the broker has processed every ack sent so far (part of the consume row's
    /// time and CPU), with how many of the acks it refused that `receive_and_ack` had not
    /// counted yet (acks it sent without waiting for their answer).
    async fn settle(&mut self) -> BenchResult<usize>;
    /// Stops consuming (returns unacked deliveries to the queue).
    async fn close(self) -> BenchResult<()>;
}

/// Where a row stops: whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub messages: usize,
    pub time: Duration,
}

/// What one row measured for one broker.
pub struct RowResult {
    /// Messages published and confirmed (publish rows) or received and acked (consume row).
    pub messages: usize,
    /// Publishes that failed or timed out; receive/ack steps that failed; refused acks.
    pub failed: usize,
    pub elapsed: Duration,
    /// Microseconds per message.
    pub latency: Histogram<u64>,
    /// User + system CPU time of the broker's processes during the row.
    pub cpu: Duration,
    /// The same for this process, the load generator and client (for reference).
    pub client_cpu: Duration,
    /// Anything unusual (first error, early stop), for the log.
    pub notes: Vec<String>,
}

impl RowResult {
    pub fn per_sec(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    pub fn p50(&self) -> Option<Duration> {
        self.percentile(50.0)
    }

    pub fn p99(&self) -> Option<Duration> {
        self.percentile(99.0)
    }

    fn percentile(&self, q: f64) -> Option<Duration> {
        (!self.latency.is_empty())
            .then(|| Duration::from_micros(self.latency.value_at_quantile(q / 100.0)))
    }

    /// Broker CPU time per message handled in the row.
    pub fn cpu_per_msg(&self) -> Option<Duration> {
        (self.messages > 0).then(|| self.cpu / self.messages as u32)
    }

    /// Client CPU time per message handled in the row.
    pub fn client_cpu_per_msg(&self) -> Option<Duration> {
        (self.messages > 0).then(|| self.client_cpu / self.messages as u32)
    }
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min, 3 significant figures.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 600_000_000)
}

/// A 1 KiB body starting with the sequence number, so that no two are alike.
pub fn payload(seq: usize) -> String {
    let mut body = format!("message {seq:>10} ");
    let filler = "abcdefghijklmnopqrstuvwxyz0123456789";
    while body.len() < PAYLOAD_BYTES {
        let take = (PAYLOAD_BYTES - body.len()).min(filler.len());
        body.push_str(&filler[..take]);
    }
    body
}

/// Publishes with `in_flight` concurrent publishers (each waits for its confirm before the next
/// publish) until `limits` is reached.
pub async fn publish_row<P: Publisher>(
    publisher: &P,
    pids: &[u32],
    in_flight: usize,
    limits: Limits,
) -> RowResult {
    let next = Arc::new(AtomicUsize::new(0));
    let client = CpuSample::client();
    let cpu = CpuSample::take(pids);
    let started = Instant::now();
    let deadline = started + limits.time;
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let publisher = publisher.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut latency = histogram();
                let mut failed = 0;
                let mut first_error = None;
                while Instant::now() < deadline {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= limits.messages {
                        break;
                    }
                    let body = payload(seq);
                    let sent = Instant::now();
                    let error = match tokio::time::timeout(OP_TIMEOUT, publisher.publish(seq, body))
                        .await
                    {
                        Ok(Ok(())) => {
                            latency.saturating_record(micros(sent.elapsed()));
                            continue;
                        }
                        Ok(Err(e)) => e,
                        Err(_) => format!("no confirm within {OP_TIMEOUT:?}"),
                    };
                    failed += 1;
                    first_error.get_or_insert(error);
                    // A broker that fails fast must not turn the row into a failure storm.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (latency, failed, first_error)
            })
        })
        .collect();
    let mut row = RowResult {
        messages: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
        cpu: Duration::ZERO,
        client_cpu: Duration::ZERO,
        notes: Vec::new(),
    };
    for task in futures::future::join_all(tasks).await {
        match task {
            Ok((latency, failed, first_error)) => {
                row.messages += latency.len() as usize;
                row.latency.add(&latency).expect("same histogram bounds");
                row.failed += failed;
                if let Some(e) = first_error {
                    if row.notes.len() < 3 {
                        row.notes.push(format!("publish failed: {e}"));
                    }
                }
            }
            Err(e) => row.notes.push(format!("publisher task died: {e}")),
        }
    }
    row.elapsed = started.elapsed();
    row.cpu = cpu.elapsed(pids, &mut row.notes);
    row.client_cpu = client.client_elapsed();
    if started.elapsed() >= limits.time {
        row.notes.push(format!(
            "time limit reached after {} messages",
            row.messages
        ));
    }
    row
}

/// Receives and acks up to `expected` messages in steps of up to [`CONSUME_BATCH`]; every
/// message of a step is recorded with the step's latency (receive + ack). Stops at the limits,
/// or when nothing comes for [`QUIET`] (the row's time then ends at the last ack).
pub async fn consume_row<C: Consumer>(
    consumer: &mut C,
    pids: &[u32],
    expected: usize,
    limits: Limits,
) -> RowResult {
    let expected = expected.min(limits.messages);
    let mut row = RowResult {
        messages: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
        cpu: Duration::ZERO,
        client_cpu: Duration::ZERO,
        notes: Vec::new(),
    };
    let client = CpuSample::client();
    let cpu = CpuSample::take(pids);
    let started = Instant::now();
    let deadline = started + limits.time;
    let mut last_ack = started;
    let mut failures_in_a_row = 0;
    while row.messages < expected {
        if Instant::now() >= deadline {
            row.notes.push(format!(
                "time limit reached after {} of {expected} messages",
                row.messages
            ));
            break;
        }
        let want = (expected - row.messages).min(CONSUME_BATCH);
        let step = Instant::now();
        let outcome = tokio::time::timeout(OP_TIMEOUT, consumer.receive_and_ack(want, QUIET))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {OP_TIMEOUT:?}")));
        match outcome {
            Ok((0, 0)) => {
                row.notes.push(format!(
                    "nothing for {QUIET:?} after {} of {expected} messages",
                    row.messages
                ));
                break;
            }
            Ok((acked, refused)) => {
                failures_in_a_row = 0;
                row.latency
                    .saturating_record_n(micros(step.elapsed()), acked as u64);
                row.messages += acked;
                row.failed += refused;
                last_ack = Instant::now();
                if refused > 0 && row.notes.len() < 3 {
                    row.notes.push(format!("{refused} acks refused"));
                }
            }
            Err(e) => {
                failures_in_a_row += 1;
                row.failed += 1;
                if row.notes.len() < 3 {
                    row.notes.push(format!("receive/ack step failed: {e}"));
                }
                if failures_in_a_row >= 5 {
                    row.notes
                        .push("five receive/ack steps failed in a row: row stopped".into());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    match tokio::time::timeout(OP_TIMEOUT, consumer.settle()).await {
        Ok(Ok(refused)) => {
            last_ack = Instant::now();
            row.messages = row.messages.saturating_sub(refused);
            row.failed += refused;
            if refused > 0 {
                row.notes.push(format!("{refused} acks refused"));
            }
        }
        Ok(Err(e)) => row.notes.push(format!("settling the acks failed: {e}")),
        Err(_) => row
            .notes
            .push(format!("acks not settled within {OP_TIMEOUT:?}")),
    }
    row.elapsed = last_ack - started;
    row.cpu = cpu.elapsed(pids, &mut row.notes);
    row.client_cpu = client.client_elapsed();
    row
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, usually 100).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// `(ppid, utime + stime in ticks)` of a process, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// The command name (`/proc/<pid>/comm`) of a process.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Processes whose parent is this process.
pub fn children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|(ppid, _)| ppid == me))
        .collect()
}

/// CPU ticks of a set of processes at one moment.
struct CpuSample(HashMap<u32, u64>);

fn ticks_to_time(ticks: u64) -> Duration {
    Duration::from_nanos(ticks * 1_000_000_000 / clock_ticks())
}

/// CPU time used by `pids` over `period` (processes that exit meanwhile are left out).
pub async fn cpu_over(pids: &[u32], period: Duration) -> Duration {
    let before = CpuSample::take(pids);
    tokio::time::sleep(period).await;
    before.elapsed(pids, &mut Vec::new())
}

impl CpuSample {
    fn client() -> CpuSample {
        CpuSample::take(&[std::process::id()])
    }

    fn client_elapsed(&self) -> Duration {
        self.elapsed(&[std::process::id()], &mut Vec::new())
    }

    fn take(pids: &[u32]) -> CpuSample {
        CpuSample(
            pids.iter()
                .filter_map(|&pid| Some((pid, stat(pid)?.1)))
                .collect(),
        )
    }

    /// CPU time used since this sample by the processes alive at both samples.
    fn elapsed(&self, pids: &[u32], notes: &mut Vec<String>) -> Duration {
        let now = CpuSample::take(pids);
        let mut ticks = 0;
        for (pid, before) in &self.0 {
            match now.0.get(pid) {
                Some(after) => ticks += after.saturating_sub(*before),
                None => notes.push(format!("process {pid} exited during the row")),
            }
        }
        if self.0.len() < pids.len() {
            notes.push(format!(
                "only {} of {} broker processes found",
                self.0.len(),
                pids.len()
            ));
        }
        ticks_to_time(ticks)
    }
}

/// The rows of one run, in table order.
pub const ROWS: [&str; 3] = [
    "(a) publish, 1 in flight",
    "(b) publish, 32 in flight",
    "(c) consume + ack backlog",
];

/// Settings of a run, the same for every broker.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub single: Limits,
    pub concurrent: Limits,
    pub concurrency: usize,
    pub consume: Limits,
}

/// One run on one broker: a fresh queue, rows (a), (b), (c), the queue deleted. A row that
/// cannot run (queue not declared) comes back with its error in `notes`.
pub async fn run<B: Broker>(broker: &B, queue: &str, plan: &Plan) -> BenchResult<[RowResult; 3]> {
    broker.declare_queue(queue).await?;
    let pids = broker.pids();
    let publisher = broker.publisher(queue).await?;
    let single = publish_row(&publisher, &pids, 1, plan.single).await;
    let concurrent = publish_row(&publisher, &pids, plan.concurrency, plan.concurrent).await;
    drop(publisher);
    let backlog = single.messages + concurrent.messages;
    let mut consumer = broker.consumer(queue).await?;
    let consumed = consume_row(&mut consumer, &pids, backlog, plan.consume).await;
    let closed = consumer.close().await;
    let deleted = broker.delete_queue(queue).await;
    let mut rows = [single, concurrent, consumed];
    for e in [closed, deleted].into_iter().filter_map(Result::err) {
        rows[2].notes.push(format!("clean-up: {e}"));
    }
    Ok(rows)
}

/// A short unmeasured round (publish and consume a few hundred messages) so that connections,
/// caches and the brokers' first-use paths are warm before run 1.
pub async fn warm_up<B: Broker>(broker: &B, queue: &str) -> BenchResult<()> {
    let plan = Plan {
        single: Limits {
            messages: 50,
            time: Duration::from_secs(10),
        },
        concurrent: Limits {
            messages: 300,
            time: Duration::from_secs(10),
        },
        concurrency: 8,
        consume: Limits {
            messages: 350,
            time: Duration::from_secs(10),
        },
    };
    let rows = run(broker, queue, &plan).await?;
    let failed: usize = rows.iter().map(|r| r.failed).sum();
    if rows[0].messages + rows[1].messages == 0 {
        return Err(format!("no publish succeeded: {:?}", rows[0].notes));
    }
    if failed > 0 {
        eprintln!("warm-up on {}: {failed} failures", broker.name());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_one_kib_and_distinct() {
        assert_eq!(payload(0).len(), PAYLOAD_BYTES);
        assert_eq!(payload(1_234_567).len(), PAYLOAD_BYTES);
        assert_ne!(payload(1), payload(2));
    }

    #[test]
    fn own_stat_parses() {
        let (ppid, _) = stat(std::process::id()).expect("own stat");
        assert!(ppid > 0);
    }
}
