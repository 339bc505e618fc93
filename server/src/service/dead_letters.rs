//! Dead letters and `nack`: a queue's message that was delivered `max_deliveries` times
//! without an ack, or that a consumer rejected (`nack` without requeue), is published to the
//! queue's dead-letter exchange with headers saying why, then removed from the queue (an
//! `Acks` record, like any ack). A queue without a dead-letter exchange drops such messages.
//!
//! Invariants: the copy is published before the original is removed, so a crash in between
//! leaves both (at-least-once), and the copy's message id is derived from the original's
//! partition, offset and queue, so that doing it again stores it once (within the
//! deduplication window). While this runs, the original is held invisible
//! ([`DEAD_LETTER_HOLD_MS`]); if it fails, the message is delivered again after the hold and
//! goes the same way then. Delivery counts are the leader's memory, like leases: after a
//! failover a message may be delivered up to `max_deliveries` times more.

use super::*;
use crate::store::PendingMessage;
use mom_common::routing::{partition_key, partition_of};
use mom_replicator::protocol::Offset;
use std::collections::BTreeMap;

/// How long a message being dead-lettered stays invisible.
pub(super) const DEAD_LETTER_HOLD_MS: u64 = 30_000;

/// Headers a dead-lettered copy carries, besides the original's.
pub const DEATH_REASON: &str = "x-death-reason";
pub const DEATH_QUEUE: &str = "x-death-queue";
pub const DEATH_DELIVERIES: &str = "x-death-deliveries";
pub const ORIGINAL_EXCHANGE: &str = "x-original-exchange";
pub const ORIGINAL_MESSAGE_ID: &str = "x-original-message-id";

/// A queue's delivery limit, for the pulls of one request.
pub(super) struct DeliveryLimit {
    pub queue: String,
    pub max_deliveries: u32,
}

/// One message to dead-letter, with why.
pub(super) struct Letter {
    pub message: PendingMessage,
    pub deliveries: u32,
    pub reason: &'static str,
}

impl BrokerService {
    /// The queue's delivery limit, from the routes cache (None: no limit, or a topic's
    /// subscription).
    pub(super) async fn delivery_limit(&self, mailbox: &MailboxName) -> Option<DeliveryLimit> {
        let MailboxName::Queue(queue) = mailbox else {
            return None;
        };
        match self.routes.queue(queue).await {
            Ok(settings) => settings.max_deliveries.map(|max_deliveries| DeliveryLimit {
                queue: queue.clone(),
                max_deliveries,
            }),
            Err(e) => {
                tracing::warn!(%queue, error = %e, "reading the queue's settings failed");
                None
            }
        }
    }

    /// Once a second, dead-letters the messages of the partitions this node serves whose
    /// lease ran out for the last time (delivered `max_deliveries` times): they go without
    /// waiting for the next pull to come across them.
    pub fn spawn_dead_letter_sweep(&self) {
        let service = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                service.sweep_exhausted().await;
            }
        });
    }

    async fn sweep_exhausted(&self) {
        let now = now_ms();
        for (partition, epoch) in self.logs.served() {
            let lapsed = self
                .logs
                .with_leases(partition, |leases| leases.lapsed(epoch, now))
                .unwrap_or_default();
            let mut by_queue: BTreeMap<String, Vec<(Offset, u32)>> = BTreeMap::new();
            for (key, offset, deliveries) in lapsed {
                if let Some(MailboxName::Queue(queue)) = MailboxName::from_key(&key) {
                    by_queue
                        .entry(queue)
                        .or_default()
                        .push((offset, deliveries));
                }
            }
            for (queue, lapsed) in by_queue {
                let mailbox = MailboxName::Queue(queue.clone());
                let Some(limit) = self.delivery_limit(&mailbox).await else {
                    continue;
                };
                let key = mailbox.key();
                let store = self.logs.store().clone();
                let mut letters = Vec::new();
                for (offset, deliveries) in lapsed {
                    if deliveries < limit.max_deliveries {
                        continue;
                    }
                    let held = self
                        .logs
                        .with_served_leases(partition, epoch, |leases| {
                            leases.hold(epoch, &key, offset, (now, now + DEAD_LETTER_HOLD_MS))
                        })
                        .unwrap_or(false);
                    if !held {
                        continue;
                    }
                    let message = tokio::task::block_in_place(|| {
                        store.pending_at(&key, partition, offset, now)
                    });
                    if let Ok(Some(message)) = message {
                        letters.push(Letter {
                            message,
                            deliveries,
                            reason: "max_deliveries",
                        });
                    }
                }
                self.dead_letter_later(queue, partition, letters);
            }
        }
    }

    /// Dead-letters in the background: a pull does not wait for it.
    pub(super) fn dead_letter_later(&self, queue: String, partition: u32, letters: Vec<Letter>) {
        if letters.is_empty() {
            return;
        }
        let service = self.clone();
        tokio::spawn(async move {
            let mailbox = MailboxName::Queue(queue);
            if let Err(status) = service.dead_letter(&mailbox, partition, letters).await {
                tracing::warn!(
                    %mailbox, partition, error = %status,
                    "dead-lettering failed; the messages come back after their hold"
                );
            }
        });
    }

    /// Publishes copies of `letters` (messages of `mailbox` in `partition`) to the queue's
    /// dead-letter exchange (a subscription has none), then removes them from the mailbox.
    pub(super) async fn dead_letter(
        &self,
        mailbox: &MailboxName,
        partition: u32,
        letters: Vec<Letter>,
    ) -> Result<(), Status> {
        if let MailboxName::Queue(queue) = mailbox {
            let settings = self.routes.queue(queue).await.map_err(catalog_status)?;
            if let Some(exchange) = &settings.dead_letter_exchange {
                self.publish_copies(queue, exchange, partition, &letters)
                    .await?;
            }
        }
        let mailbox = mailbox.key();
        let record = Record::new(Kind::Acks(proto::Acks {
            acked: letters
                .iter()
                .map(|l| proto::Acked {
                    mailbox: mailbox.clone(),
                    offset: l.message.offset,
                })
                .collect(),
        }));
        self.logs
            .propose(partition, vec![record])
            .await
            .map_err(write_status)?;
        if let Some(epoch) = self.logs.serving(partition) {
            self.logs.with_leases(partition, |leases| {
                for letter in &letters {
                    leases.release(epoch, &mailbox, letter.message.offset);
                }
            });
        }
        metrics::counter!("mom_dead_lettered_messages_total").increment(letters.len() as u64);
        Ok(())
    }

    /// Publishes the copies through `publish_batch`, in the name of the queue's owner (who
    /// needed write permission on the exchange to name it), one batch per partition.
    async fn publish_copies(
        &self,
        queue: &str,
        exchange: &str,
        partition: u32,
        letters: &[Letter],
    ) -> Result<(), Status> {
        // The access view follows ZooKeeper; an owner not in it yet is there on the retry.
        let owner = self
            .access
            .view()
            .owner(ResourceKind::Queue, queue)
            .map(str::to_owned)
            .ok_or_else(|| {
                Status::unavailable(format!("the owner of queue {queue:?} is not known yet"))
            })?;
        let mut batches: BTreeMap<u32, Vec<proto::BatchMessage>> = BTreeMap::new();
        for letter in letters {
            let target = partition_of(
                &partition_key(
                    DestinationKind::Exchange,
                    exchange,
                    &letter.message.routing_key,
                ),
                self.logs.count(),
            );
            batches
                .entry(target)
                .or_default()
                .push(copy_of(queue, partition, letter));
        }
        for (target, messages) in batches {
            let mut request = Request::new(proto::PublishBatchRequest {
                partition: target,
                kind: DestinationKind::Exchange as i32,
                destination: exchange.to_owned(),
                messages,
            });
            let user = tonic::metadata::MetadataValue::try_from(owner.as_str())
                .map_err(|e| Status::internal(e.to_string()))?;
            request
                .metadata_mut()
                .insert(mom_common::token::ACTING_USER, user);
            self.publish_batch(request).await?;
        }
        Ok(())
    }
}

impl BrokerService {
    /// Gives leased messages of one partition back: ready again at once (`requeue`), or
    /// dead-lettered, before answering. The partition's leader does it; another node passes
    /// the call on.
    pub(super) async fn nack_in_partition(
        &self,
        metadata: &MetadataMap,
        mailbox: &MailboxName,
        partition: u32,
        receipts: Vec<(String, Receipt)>,
        requeue: bool,
    ) -> Result<proto::NackReply, Status> {
        if let Some(leader) = self.leader_elsewhere(partition)? {
            let request = proto::NackRequest {
                mailbox: Some(mailbox.to_proto()),
                receipts: receipts.into_iter().map(|(text, _)| text).collect(),
                requeue,
            };
            return Ok(self
                .forward_to(&leader, metadata)?
                .nack(Self::forwarded(request))
                .await?
                .into_inner());
        }
        let epoch = self
            .logs
            .serving(partition)
            .ok_or_else(|| Status::unavailable(format!("partition {partition}: not serving it")))?;
        let key = mailbox.key();
        let store = self.logs.store().clone();
        let now = now_ms();
        let mut reply = proto::NackReply::default();
        let mut letters = Vec::new();
        for (text, receipt) in receipts {
            let given_back = self
                .logs
                .with_leases(partition, |leases| {
                    leases.give_back(epoch, &key, &receipt, requeue, (now, DEAD_LETTER_HOLD_MS))
                })
                .flatten();
            let Some(deliveries) = given_back else {
                reply.stale.push(text);
                continue;
            };
            reply.nacked += 1;
            if !requeue {
                let message = tokio::task::block_in_place(|| {
                    store.pending_at(&key, partition, receipt.offset, now)
                })
                .map_err(storage_status)?;
                letters.extend(message.map(|message| Letter {
                    message,
                    deliveries,
                    reason: "rejected",
                }));
            }
        }
        if requeue && reply.nacked > 0 {
            self.logs.wakeups().wake([key.as_str()]);
        }
        if !letters.is_empty() {
            self.dead_letter(mailbox, partition, letters).await?;
        }
        Ok(reply)
    }
}

/// The dead-lettered copy of a message: same payload, routing key and content type, the
/// original headers (as many as fit beside the death headers) and why it died.
fn copy_of(queue: &str, partition: u32, letter: &Letter) -> proto::BatchMessage {
    let m = &letter.message;
    let death = [
        (DEATH_REASON, letter.reason.to_owned()),
        (DEATH_QUEUE, queue.to_owned()),
        (DEATH_DELIVERIES, letter.deliveries.to_string()),
        (ORIGINAL_EXCHANGE, m.exchange.clone()),
        (ORIGINAL_MESSAGE_ID, m.message_id.clone()),
    ];
    let room = mom_common::message::MAX_HEADERS.saturating_sub(death.len());
    let mut headers: BTreeMap<String, String> = m
        .headers
        .iter()
        .filter(|(k, _)| !death.iter().any(|(d, _)| d == k))
        .take(room)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    headers.extend(death.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let queue_hash = partition_of(queue, u32::MAX);
    proto::BatchMessage {
        routing_key: m.routing_key.clone(),
        payload: m.payload.clone(),
        ttl_ms: 0,
        message_id: format!("dl.{partition}.{}.{queue_hash:08x}", m.offset),
        headers,
        content_type: m.content_type.clone(),
        delay_ms: 0,
        // Derived from the original's place: a second attempt must find the first.
        new_id: false,
    }
}
