//! RabbitMQ behind the load generator's traits, over AMQP 0-9-1 with `lapin`: one quorum queue
//! (`x-queue-type = quorum`, on all three nodes of the cluster that scripts/rabbitmq-cluster.sh
//! runs), persistent messages (delivery mode 2) published to the default exchange with
//! publisher confirms, consumed with `basic.consume` at prefetch 1000 and batch acks
//! (`multiple`), the same batch size as MOM's pull + ack.

use super::load::{BenchResult, Broker, Consumer, Publisher};
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::time::Duration;

pub const PREFETCH: u16 = 1000;
const PERSISTENT: u8 = 2;

pub struct RabbitMq {
    conn: Connection,
    /// For declaring and deleting queues.
    admin: Channel,
    /// In confirm mode, shared by all concurrent publishers of every run.
    publish: Channel,
    pids: Vec<u32>,
}

fn amqp_error(what: &str) -> impl Fn(lapin::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl RabbitMq {
    /// Connects to `url` (e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`, the node the queue will
    /// be declared on, so it leads it); `pids` are the cluster's `beam.smp` processes.
    pub async fn connect(url: &str, pids: Vec<u32>) -> BenchResult<RabbitMq> {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .map_err(amqp_error("connect"))?;
        let admin = conn.create_channel().await.map_err(amqp_error("channel"))?;
        let publish = conn.create_channel().await.map_err(amqp_error("channel"))?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp_error("confirm.select"))?;
        Ok(RabbitMq {
            conn,
            admin,
            publish,
            pids,
        })
    }

    pub async fn close(&self) {
        let _ = self.conn.close(200, "bench done".into()).await;
    }
}

impl Broker for RabbitMq {
    type Publisher = RabbitPublisher;
    type Consumer = RabbitConsumer;

    fn name(&self) -> &'static str {
        "RabbitMQ"
    }

    fn pids(&self) -> Vec<u32> {
        self.pids.clone()
    }

    async fn declare_queue(&self, queue: &str) -> BenchResult<()> {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        self.admin
            .queue_declare(queue.into(), options, arguments)
            .await
            .map_err(amqp_error("declare quorum queue"))?;
        Ok(())
    }

    async fn publisher(&self, queue: &str) -> BenchResult<RabbitPublisher> {
        Ok(RabbitPublisher {
            channel: self.publish.clone(),
            queue: queue.into(),
        })
    }

    async fn consumer(&self, queue: &str) -> BenchResult<RabbitConsumer> {
        let channel = self
            .conn
            .create_channel()
            .await
            .map_err(amqp_error("channel"))?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(amqp_error("basic.qos"))?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "mom-bench".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("basic.consume"))?;
        Ok(RabbitConsumer {
            channel,
            consumer,
            queue: queue.into(),
        })
    }

    async fn delete_queue(&self, queue: &str) -> BenchResult<()> {
        self.admin
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .map_err(amqp_error("delete queue"))?;
        Ok(())
    }
}

#[derive(Clone)]
pub struct RabbitPublisher {
    channel: Channel,
    queue: ShortString,
}

impl Publisher for RabbitPublisher {
    /// `basic.publish` to the default exchange, then waits for the broker's confirm (for a
    /// quorum queue: the message is committed by a majority of its replicas).
    async fn publish(&self, _seq: usize, payload: String) -> BenchResult<()> {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                self.queue.clone(),
                BasicPublishOptions::default(),
                payload.as_bytes(),
                BasicProperties::default().with_delivery_mode(PERSISTENT),
            )
            .await
            .map_err(amqp_error("basic.publish"))?
            .await
            .map_err(amqp_error("confirm"))?;
        if confirm.is_ack() {
            Ok(())
        } else {
            Err(format!("broker refused the message: {confirm:?}"))
        }
    }
}

pub struct RabbitConsumer {
    channel: Channel,
    consumer: lapin::Consumer,
    queue: ShortString,
}

impl Consumer for RabbitConsumer {
    /// Waits up to `wait` for one delivery, takes whatever else is already prefetched (up to
    /// `max`), and acks them all with one `basic.ack(multiple)`. AMQP does not answer acks:
    /// the step ends when the ack is written.
    async fn receive_and_ack(&mut self, max: usize, wait: Duration) -> BenchResult<(usize, usize)> {
        let first = match tokio::time::timeout(wait, self.consumer.next()).await {
            Err(_) => return Ok((0, 0)),
            Ok(None) => return Err("consumer cancelled".into()),
            Ok(Some(delivery)) => delivery.map_err(amqp_error("delivery"))?,
        };
        let mut last_tag = first.delivery_tag;
        let mut got = 1;
        while got < max {
            match self.consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => {
                    last_tag = delivery.delivery_tag;
                    got += 1;
                }
                Some(Some(Err(e))) => return Err(format!("delivery: {e}")),
                Some(None) | None => break,
            }
        }
        self.channel
            .basic_ack(last_tag, BasicAckOptions { multiple: true })
            .await
            .map_err(amqp_error("basic.ack"))?;
        Ok((got, 0))
    }

    /// AMQP answers no ack, so this ends with one synchronous `basic.get` on the same channel:
    /// the quorum queue's leader orders it after the channel's earlier settles, so its answer
    /// means they are committed. A message it gets (none is expected) is left unacked.
    async fn settle(&mut self) -> BenchResult<usize> {
        self.channel
            .basic_get(self.queue.clone(), BasicGetOptions::default())
            .await
            .map_err(amqp_error("basic.get"))?;
        Ok(0)
    }

    async fn close(self) -> BenchResult<()> {
        self.channel
            .close(200, "consumed".into())
            .await
            .map_err(amqp_error("close channel"))
    }
}
