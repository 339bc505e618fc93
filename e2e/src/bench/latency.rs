//! The publish→deliver rows (MOM only): messages published at a steady rate while one stream
//! (SSE, `GET /queues/{q}/stream`, or gRPC `Consumer/Consume`) consumes and acks them. A message's latency runs from just before
//! its publish is sent to the arrival of its event at the consumer (both here, on one clock);
//! it includes the publish's replication and commit. Acks go in batches beside the stream.

use super::load::{histogram, BenchResult, PAYLOAD_BYTES};
use hdrhistogram::Histogram;
use mom_client::{Connection, StreamOptions, Transport};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The stream's credit: enough that acks in flight never hold deliveries back.
const PREFETCH: u32 = 1_000;
/// The row ends when nothing arrives for this long after the last publish.
const QUIET: Duration = Duration::from_secs(3);

pub struct LatencyRow {
    pub transport: Transport,
    pub published: usize,
    pub delivered: usize,
    /// Publishes that failed, and deliveries of a message seen before.
    pub failed: usize,
    pub duplicates: usize,
    /// What the first failure said (a failed publish, or an ack refused or failed).
    pub first_failure: Option<String>,
    /// Microseconds per message, publish sent → event received.
    pub latency: Histogram<u64>,
    /// Microseconds per publish, sent → answered `201` (committed), for comparison.
    pub publish_latency: Histogram<u64>,
    pub elapsed: Duration,
}

fn quantile(histogram: &Histogram<u64>, q: f64) -> Option<Duration> {
    (!histogram.is_empty()).then(|| Duration::from_micros(histogram.value_at_quantile(q / 100.0)))
}

impl LatencyRow {
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        quantile(&self.latency, q)
    }

    pub fn line(&self) -> String {
        let ms = |d: Option<Duration>| {
            d.map_or("-".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1e3))
        };
        format!(
            "publish→deliver via {}: {} published, {} delivered ({:.0} msg/s), p50 {}, p99 {}, p99.9 {}, max {}, {} failed, {} duplicates; publish alone (sent→201): p50 {}, p99 {}",
            transport_name(self.transport),
            self.published,
            self.delivered,
            self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9),
            ms(self.percentile(50.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(99.9)),
            ms((!self.latency.is_empty()).then(|| Duration::from_micros(self.latency.max()))),
            self.failed,
            self.duplicates,
            ms(quantile(&self.publish_latency, 50.0)),
            ms(quantile(&self.publish_latency, 99.0)),
        ) + &self
            .first_failure
            .as_ref()
            .map_or(String::new(), |f| format!("; first failure: {f}"))
    }
}

pub fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Sse => "SSE",
        Transport::Grpc => "gRPC",
    }
}

/// Publishes to `exchange` (routed to `queue`, with routing keys spread over the partitions)
/// at `rate` messages per second for `time`, while a stream of `queue` consumes them.
pub async fn stream_latency(
    conn: &Connection,
    exchange: &str,
    queue: &str,
    rate: u32,
    time: Duration,
    transport: Transport,
) -> BenchResult<LatencyRow> {
    let base = Instant::now();
    let publishing_done = Arc::new(AtomicBool::new(false));
    let mut stream = conn.stream(
        queue,
        StreamOptions {
            prefetch: Some(PREFETCH),
            visibility_timeout: Some(Duration::from_secs(60)),
            transport,
        },
    );
    // The first failure's words, set once by whichever task fails first.
    let first_failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let note_failure = |failure: &Arc<std::sync::Mutex<Option<String>>>, what: String| {
        let mut first = failure.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(what);
    };
    let (acks, mut to_ack) = tokio::sync::mpsc::unbounded_channel::<String>();
    let acker = {
        let conn = conn.clone();
        let first_failure = first_failure.clone();
        let queue = queue.to_owned();
        tokio::spawn(async move {
            let mut refused = 0;
            while let Some(first) = to_ack.recv().await {
                let mut batch = vec![first];
                while batch.len() < 1_000 {
                    match to_ack.try_recv() {
                        Ok(receipt) => batch.push(receipt),
                        Err(_) => break,
                    }
                }
                match conn.ack(&queue, &batch).await {
                    Ok(outcome) => {
                        if !outcome.stale.is_empty() {
                            let what = format!("ack: {} stale receipt(s)", outcome.stale.len());
                            note_failure(&first_failure, what);
                        }
                        refused += outcome.stale.len();
                    }
                    Err(e) => {
                        note_failure(&first_failure, format!("ack: {e}"));
                        refused += batch.len();
                    }
                }
            }
            refused
        })
    };
    let consumer = {
        let done = publishing_done.clone();
        tokio::spawn(async move {
            let mut latency = histogram();
            let mut seen = std::collections::HashSet::new();
            let (mut delivered, mut duplicates) = (0, 0);
            let mut last = Instant::now();
            loop {
                let next = stream.next_timeout(QUIET).await;
                let delivery = match next {
                    Ok(Some(delivery)) => delivery,
                    Ok(None) if done.load(Ordering::SeqCst) => break,
                    Ok(None) => continue,
                    Err(e) => return Err(format!("stream: {e}")),
                };
                let arrived = base.elapsed();
                last = Instant::now();
                // `<sent µs>|<seq>|<padding>`
                let mut fields = delivery.payload.split('|');
                let (sent_us, seq) = fields
                    .next()
                    .and_then(|t| t.parse::<u64>().ok())
                    .zip(fields.next().and_then(|s| s.parse::<u64>().ok()))
                    .ok_or_else(|| format!("not a bench payload: {:.40}", delivery.payload))?;
                let _ = acks.send(delivery.receipt);
                if !seen.insert(seq) {
                    duplicates += 1;
                    continue;
                }
                delivered += 1;
                let us = (arrived.as_micros() as u64).saturating_sub(sent_us);
                latency.saturating_record(us.max(1));
            }
            drop(acks);
            Ok((latency, delivered, duplicates, last))
        })
    };
    // Let the stream open before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let published = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut publishes = Vec::new();
    let mut seq = 0usize;
    while started.elapsed() < time {
        ticks.tick().await;
        let (conn, exchange) = (conn.clone(), exchange.to_owned());
        let (published, failed) = (published.clone(), failed.clone());
        let first_failure = first_failure.clone();
        let (n, key) = (seq, format!("key{}", seq % 16));
        seq += 1;
        publishes.push(tokio::spawn(async move {
            let sent_us = base.elapsed().as_micros() as u64;
            let mut payload = format!("{sent_us}|{n}|");
            payload.push_str(&"x".repeat(PAYLOAD_BYTES.saturating_sub(payload.len())));
            let outcome = conn.publish(&exchange, &key, payload).await;
            let took = (base.elapsed().as_micros() as u64).saturating_sub(sent_us);
            match outcome {
                Ok(_) => published.fetch_add(1, Ordering::SeqCst),
                Err(e) => {
                    note_failure(&first_failure, format!("publish: {e}"));
                    failed.fetch_add(1, Ordering::SeqCst)
                }
            };
            took
        }));
    }
    let mut publish_latency = histogram();
    for publish in publishes {
        if let Ok(took) = publish.await {
            publish_latency.saturating_record(took.max(1));
        }
    }
    publishing_done.store(true, Ordering::SeqCst);
    let (latency, delivered, duplicates, last) = consumer
        .await
        .map_err(|e| format!("consumer task: {e}"))??;
    let refused = acker.await.unwrap_or(0);
    let first_failure = first_failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    Ok(LatencyRow {
        transport,
        published: published.load(Ordering::SeqCst),
        delivered,
        failed: failed.load(Ordering::SeqCst) + refused,
        duplicates,
        first_failure,
        latency,
        publish_latency,
        elapsed: last.saturating_duration_since(started),
    })
}
