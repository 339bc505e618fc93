//! The batch-publish row (MOM only): `POST /exchanges/{x}/publish` with batches of `batch`
//! 1 KiB messages over 16 routing keys, `in_flight` requests at once, for a fixed time. A
//! batch counts when its answer came; its messages count when stored (each entry of the
//! answer says so), so msg/s is of replicated, acknowledged messages. Latency is per batch,
//! sent → answered.

use super::load::{histogram, payload, BenchResult};
use hdrhistogram::Histogram;
use mom_client::Connection;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: usize = 16;

pub struct BatchRow {
    pub batch: usize,
    pub in_flight: usize,
    /// Messages acknowledged as stored, and those refused (or in failed requests).
    pub stored: usize,
    pub failed: usize,
    /// Microseconds per batch.
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
}

impl BatchRow {
    pub fn line(&self) -> String {
        let ms = |q: f64| {
            if self.latency.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1} ms", self.latency.value_at_quantile(q) as f64 / 1e3)
            }
        };
        format!(
            "batch publish, {} × 1 KiB per request, {} requests in flight: {:.0} msg/s stored ({} in {:.1} s), per batch p50 {}, p99 {}, {} failed",
            self.batch,
            self.in_flight,
            self.stored as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.stored,
            self.elapsed.as_secs_f64(),
            ms(0.5),
            ms(0.99),
            self.failed,
        )
    }
}

/// Publishes batches to `exchange` (bound to some queue) for `time`.
pub async fn batch_throughput(
    conn: &Connection,
    exchange: &str,
    batch: usize,
    in_flight: usize,
    time: Duration,
) -> BenchResult<BatchRow> {
    let started = Instant::now();
    let deadline = started + time;
    let exchange: Arc<str> = exchange.into();
    let workers: Vec<_> = (0..in_flight)
        .map(|worker| {
            let (conn, exchange) = (conn.clone(), exchange.clone());
            tokio::spawn(async move {
                let (mut stored, mut failed, mut latency) = (0, 0, histogram());
                let mut seq = worker * 1_000_000_000;
                while Instant::now() < deadline {
                    let messages: Vec<(String, String)> = (seq..seq + batch)
                        .map(|n| (format!("key{}", n % KEYS), payload(n)))
                        .collect();
                    seq += batch;
                    let sent = Instant::now();
                    match conn.publish_batch(&exchange, messages).await {
                        Ok(outcomes) => {
                            let ok = outcomes.iter().filter(|o| o.is_ok()).count();
                            stored += ok;
                            failed += outcomes.len() - ok;
                            let _ = latency.record(sent.elapsed().as_micros() as u64);
                        }
                        // A refused request (413, 401, ...) would refuse every batch.
                        Err(e) if stored == 0 => return Err(e.to_string()),
                        Err(_) => failed += batch,
                    }
                }
                Ok((stored, failed, latency))
            })
        })
        .collect();
    let mut row = BatchRow {
        batch,
        in_flight,
        stored: 0,
        failed: 0,
        latency: histogram(),
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        let (stored, failed, latency) = worker.await.map_err(|e| e.to_string())??;
        row.stored += stored;
        row.failed += failed;
        row.latency.add(latency).map_err(|e| e.to_string())?;
    }
    row.elapsed = started.elapsed();
    Ok(row)
}
