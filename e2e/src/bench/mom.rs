//! MOM behind the load generator's traits: a real 3-node cluster from `mom_testkit::Cluster`
//! (replication factor 3, the servers' default `min_insync_replicas = 2`), driven through the
//! gateway's REST API with `mom_client::Connection`, exactly as a user would.

use super::load::{BenchResult, Broker, Consumer, Publisher};
use futures::FutureExt;
use mom_client::{Connection, DeliveryStream, ExchangeKind, StreamOptions, Transport};
use mom_testkit::{Cluster, ClusterOptions};
use std::time::Duration;
use tokio::task::JoinSet;

/// Routing keys the publishes cycle through; the key picks the partition, so they spread
/// over the cluster's partitions (and their leaders) as a real workload would.
const KEYS: usize = 16;

pub struct Mom {
    // Dropping the cluster SIGKILLs every process it started.
    cluster: Cluster,
    conn: Connection,
}

impl Mom {
    pub async fn start() -> Mom {
        let options = ClusterOptions {
            nodes: 3,
            replication_factor: 3,
            // Batches of 100 × 1 KiB (row f) are larger than the testkit's 64 KiB default.
            gateway_max_body_bytes: 8 << 20, // the gateway's own default, 8 MiB
            ..Default::default()
        };
        let cluster = Cluster::start_with(options).await;
        let conn = mom_e2e::connect(&cluster).await;
        Mom { cluster, conn }
    }

    /// The benchmark user's connection to the gateway.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Services of the cluster that are no longer running (crashed during the bench), each
    /// with the end of its log.
    pub fn exited(&mut self) -> Vec<(String, String)> {
        let cluster = &mut self.cluster;
        let mut gone = Vec::new();
        for service in cluster
            .nodes
            .iter_mut()
            .chain([&mut cluster.gateway, &mut cluster.auth])
            .chain(cluster.partitioning.iter_mut())
        {
            if !service.is_running() {
                let log = service.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                gone.push((service.name().to_owned(), tail));
            }
        }
        gone
    }
}

impl Broker for Mom {
    type Publisher = MomPublisher;
    type Consumer = MomConsumer;

    fn name(&self) -> &'static str {
        "MOM"
    }

    /// Every process the testkit started: mom-auth, mom-partitioning, mom-gateway, the three
    /// mom-server nodes and ZooKeeper's java, all children of this process.
    fn pids(&self) -> Vec<u32> {
        super::load::children()
            .into_iter()
            .filter(|&pid| {
                super::load::comm(pid).is_some_and(|c| c.starts_with("mom-") || c == "java")
            })
            .collect()
    }

    /// A topic exchange of the same name bound with `#` to the queue.
    async fn declare_queue(&self, queue: &str) -> BenchResult<()> {
        self.conn
            .declare_exchange(queue, ExchangeKind::Topic)
            .await
            .map_err(|e| format!("declare exchange: {e}"))?;
        self.conn
            .declare_queue(queue)
            .await
            .map_err(|e| format!("declare queue: {e}"))?;
        self.conn
            .bind(queue, queue, "#")
            .await
            .map_err(|e| format!("bind: {e}"))
    }

    async fn publisher(&self, queue: &str) -> BenchResult<MomPublisher> {
        Ok(MomPublisher {
            conn: self.conn.clone(),
            exchange: queue.to_owned(),
        })
    }

    async fn consumer(&self, queue: &str) -> BenchResult<MomConsumer> {
        Ok(MomConsumer::new(self.conn.clone(), queue))
    }

    async fn delete_queue(&self, queue: &str) -> BenchResult<()> {
        let queue_gone = self.conn.delete_queue(queue).await;
        let exchange_gone = self.conn.delete_exchange(queue).await;
        queue_gone.map_err(|e| format!("delete queue: {e}"))?;
        exchange_gone.map_err(|e| format!("delete exchange: {e}"))
    }
}

#[derive(Clone)]
pub struct MomPublisher {
    conn: Connection,
    exchange: String,
}

impl Publisher for MomPublisher {
    /// `POST /exchanges/{x}/publish`; its `201` means stored on the in-sync replicas.
    async fn publish(&self, seq: usize, payload: String) -> BenchResult<()> {
        let key = format!("key{}", seq % KEYS);
        let published = self
            .conn
            .publish(&self.exchange, &key, payload)
            .await
            .map_err(|e| e.to_string())?;
        if published.routed == 0 {
            return Err("routed to no queue".into());
        }
        Ok(())
    }
}

/// The consume row's MOM side, the same way round as RabbitMQ's `basic.consume`: messages
/// pushed over the gateway's gRPC stream with a prefetch of [`PREFETCH`], and each step's
/// acks sent without waiting for their answer (up to [`ACKS_IN_FLIGHT`] calls out), all of
/// them awaited by [`Consumer::settle`] inside the row.
pub struct MomConsumer {
    conn: Connection,
    queue: String,
    stream: DeliveryStream,
    /// Ack calls not answered yet; each ends with the acks it had refused.
    acks: JoinSet<BenchResult<usize>>,
}

/// The stream's credit, as RabbitMQ's `basic.qos` prefetch in the same row.
pub const PREFETCH: u32 = super::rabbitmq::PREFETCH as u32;
/// Ack calls one consumer has out at once, so that acks keep up without piling up.
pub const ACKS_IN_FLIGHT: usize = 4;

impl MomConsumer {
    fn new(conn: Connection, queue: &str) -> MomConsumer {
        let stream = conn.stream(
            queue,
            StreamOptions {
                prefetch: Some(PREFETCH),
                visibility_timeout: Some(Duration::from_secs(60)),
                transport: Transport::Grpc,
            },
        );
        MomConsumer {
            conn,
            queue: queue.to_owned(),
            stream,
            acks: JoinSet::new(),
        }
    }

    /// Waits for the oldest-finishing ack call; its refusals (or its failure) as the answer.
    async fn settle_one(&mut self) -> BenchResult<usize> {
        match self.acks.join_next().await {
            Some(Ok(outcome)) => outcome,
            Some(Err(e)) => Err(format!("ack task: {e}")),
            None => Ok(0),
        }
    }
}

impl Consumer for MomConsumer {
    /// Waits up to `wait` for one delivery, takes whatever else the stream has already
    /// received (up to `max`), and sends one `POST /queues/{q}/ack` with their receipts.
    /// Returns the messages taken; acks refused are counted by `settle`.
    async fn receive_and_ack(&mut self, max: usize, wait: Duration) -> BenchResult<(usize, usize)> {
        let first = match self.stream.next_timeout(wait).await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => return Ok((0, 0)),
            Err(e) => return Err(format!("stream: {e}")),
        };
        let mut receipts = vec![first.receipt];
        while receipts.len() < max {
            // `next` is cancel-safe: what it had received stays for the next step.
            match self.stream.next().now_or_never() {
                Some(Ok(delivery)) => receipts.push(delivery.receipt),
                Some(Err(e)) => return Err(format!("stream: {e}")),
                None => break,
            }
        }
        let mut refused = 0;
        while self.acks.len() >= ACKS_IN_FLIGHT {
            refused += self.settle_one().await?;
        }
        let (conn, queue, taken) = (self.conn.clone(), self.queue.clone(), receipts.len());
        self.acks.spawn(async move {
            let receipts: Vec<&str> = receipts.iter().map(String::as_str).collect();
            let outcome = conn
                .ack(&queue, &receipts)
                .await
                .map_err(|e| format!("ack: {e}"))?;
            Ok(taken.saturating_sub(outcome.acked as usize))
        });
        Ok((taken - refused.min(taken), refused))
    }

    /// Awaits every ack call still out; the acks they refused, to be taken off the row.
    async fn settle(&mut self) -> BenchResult<usize> {
        let mut refused = 0;
        while !self.acks.is_empty() {
            refused += self.settle_one().await?;
        }
        Ok(refused)
    }

    async fn close(self) -> BenchResult<()> {
        Ok(())
    }
}
