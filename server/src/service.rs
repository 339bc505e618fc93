//! The node's gRPC face to the gateway: the `Broker` service.
//!
//! Any node accepts any call: a publish or ack for a partition this node does not lead is
//! forwarded once to the partition's leader. Pulls and counts cover the partitions this node
//! serves; the gateway asks every node. Every change (publish, ack, purge) is a record in the
//! partition's log, answered once committed; a pull only takes leader-local leases.
//!
//! A pull with `wait_ms` that finds nothing waits without polling: on its mailbox's signal
//! ([`crate::wakeups`], raised when a publish to it is applied), on a timer for the first of its
//! leases to lapse, and on `StopWaiting`. It leases only after it stopped waiting, so dropping
//! the call while it waits loses nothing; a `wait_only` pull leases nothing at all and only
//! says whether a message is ready (the gateway asks several nodes at once that way).

use crate::leases::{Leased, Leases, Receipt, Wanted};
use crate::partition_log::{PartitionLogs, WriteError};
use crate::records::Record;
use crate::store::{PendingMessage, Store, MAX_ROWS_READ_IN_PLACE};
use mom_catalog::access::{AccessCache, Permission, ResourceKind};
use mom_catalog::{CatalogError, ErrorKind, NodeInfo, RouteCache};
use mom_common::channels::ChannelPool;
use mom_common::names::{validate_name, validate_routing_key, NameError};
use mom_common::proto::{
    self, broker_client::BrokerClient, broker_server::Broker, log_record::Kind, DestinationKind,
};
use mom_common::token::{AttachService, ServiceCredentials};
use mom_common::MailboxName;
use mom_replicator::protocol::Epoch;
use std::collections::BTreeMap;

mod dead_letters;
use dead_letters::{DeliveryLimit, Letter, DEAD_LETTER_HOLD_MS};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::{metadata::MetadataMap, Request, Response, Status};

/// Bounds what one pull may lease, so a single call cannot pin a node's memory.
pub const MAX_PULL: u32 = 1_000;
pub use mom_common::message::MAX_PAYLOAD_BYTES;
/// Bounds the messages one pull answers, in bytes of payloads and headers (the first message
/// always goes, whatever its size), so that a reply stays well within gRPC's message limit.
pub const MAX_PULL_BYTES: usize = 8 << 20;
/// The longest a pull waits for a message.
pub const MAX_PULL_WAIT: Duration = Duration::from_secs(20);
/// Marks a call one node passed to another, so it is never passed on twice.
const FORWARDED: &str = "x-mom-forwarded";

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[derive(Clone)]
pub struct BrokerService {
    logs: Arc<PartitionLogs>,
    routes: RouteCache,
    /// Who may do what; the gateway checked already, this node checks again for the user a
    /// call is made for.
    access: AccessCache,
    /// This node's own credentials, for passing calls on to other nodes.
    credentials: ServiceCredentials,
    peers: ChannelPool,
}

fn bad_name(e: NameError) -> Status {
    Status::invalid_argument(e.to_string())
}

pub fn catalog_status(e: CatalogError) -> Status {
    match e.kind() {
        ErrorKind::NotFound => Status::not_found(e.to_string()),
        ErrorKind::Conflict => Status::failed_precondition(e.to_string()),
        ErrorKind::Internal => Status::internal(e.to_string()),
        ErrorKind::Unavailable => Status::unavailable(e.to_string()),
    }
}

fn write_status(e: WriteError) -> Status {
    match e {
        WriteError::NotLeader { partition, leader } => Status::unavailable(format!(
            "not the leader of partition {partition} (leader: {})",
            leader.map(|n| n.id).unwrap_or_else(|| "none live".into())
        )),
        WriteError::Unavailable(..) => Status::unavailable(e.to_string()),
    }
}

fn storage_status(e: crate::store::StoreError) -> Status {
    tracing::error!(error = %e, "storage failure");
    Status::unavailable(format!("storage: {e}"))
}

fn mailbox_of(mailbox: Option<&proto::Mailbox>) -> Result<MailboxName, Status> {
    let mailbox = mailbox.ok_or_else(|| Status::invalid_argument("mailbox is required"))?;
    MailboxName::from_proto(mailbox).map_err(bad_name)
}

/// The resource whose `read` permission consuming from a mailbox needs.
fn consumed_resource(mailbox: &MailboxName) -> (ResourceKind, &str) {
    match mailbox {
        MailboxName::Queue(queue) => (ResourceKind::Queue, queue),
        MailboxName::Subscription { topic, .. } => (ResourceKind::Topic, topic),
    }
}

impl BrokerService {
    pub fn new(
        logs: Arc<PartitionLogs>,
        routes: RouteCache,
        access: AccessCache,
        credentials: ServiceCredentials,
    ) -> Self {
        BrokerService {
            logs,
            routes,
            access,
            credentials,
            peers: ChannelPool::new(Duration::from_secs(10)),
        }
    }

    /// The mailbox a consuming call names, once the user it is made for may read it.
    async fn readable_mailbox(
        &self,
        metadata: &MetadataMap,
        mailbox: Option<&proto::Mailbox>,
    ) -> Result<MailboxName, Status> {
        let mailbox = mailbox_of(mailbox)?;
        let (kind, name) = consumed_resource(&mailbox);
        self.authorize(metadata, kind, name, Permission::Read)
            .await?;
        Ok(mailbox)
    }

    /// Checks that the user the call is made for may exercise `permission` on the resource;
    /// returns that user.
    async fn authorize(
        &self,
        metadata: &MetadataMap,
        kind: ResourceKind,
        name: &str,
        permission: Permission,
    ) -> Result<String, Status> {
        let user = metadata
            .get(mom_common::token::ACTING_USER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::permission_denied("the call names no user it is made for"))?;
        match self.access.allows(user, kind, name, permission).await {
            Ok(true) => Ok(user.to_owned()),
            Ok(false) => Err(Status::permission_denied(format!(
                "user {user:?} has no {permission} permission on {kind} {name:?}"
            ))),
            Err(e) => Err(catalog_status(e)),
        }
    }

    /// Where messages published to `destination` go: one list of mailboxes per routing key,
    /// from the routes as of after this call started; and how long a topic retains them (0
    /// for everything else).
    async fn destinations(
        &self,
        kind: i32,
        destination: &str,
        routing_keys: &[&str],
    ) -> Result<(Vec<Vec<String>>, u64), Status> {
        let kind = DestinationKind::try_from(kind)
            .map_err(|_| Status::invalid_argument("unknown destination kind"))?;
        for key in routing_keys {
            validate_routing_key(key).map_err(bad_name)?;
        }
        match kind {
            DestinationKind::Exchange => {
                validate_name("exchange", destination).map_err(bad_name)?;
                let routes = self
                    .routes
                    .exchange(destination)
                    .await
                    .map_err(catalog_status)?;
                let mailboxes = routing_keys
                    .iter()
                    .map(|key| {
                        routes
                            .queues(key)
                            .into_iter()
                            .map(|q| MailboxName::Queue(q).key())
                            .collect()
                    })
                    .collect();
                Ok((mailboxes, 0))
            }
            // The default exchange: every message goes to the queue of that name.
            DestinationKind::Queue => {
                validate_name("queue", destination).map_err(bad_name)?;
                let mailbox = MailboxName::Queue(destination.to_owned()).key();
                Ok((vec![vec![mailbox]; routing_keys.len()], 0))
            }
            DestinationKind::Topic => {
                validate_name("topic", destination).map_err(bad_name)?;
                let topic = self
                    .routes
                    .topic(destination)
                    .await
                    .map_err(catalog_status)?;
                let mailboxes: Vec<String> = topic
                    .subscribers
                    .into_iter()
                    .map(|subscriber| {
                        MailboxName::Subscription {
                            topic: destination.to_owned(),
                            subscriber,
                        }
                        .key()
                    })
                    .collect();
                Ok((vec![mailboxes; routing_keys.len()], topic.retention_ms))
            }
        }
    }

    /// The record of one published message, and what its publisher is told; no record when
    /// nothing is bound to it and its topic retains nothing (`retention_ms` 0).
    fn publish_record(
        destination: &str,
        message: proto::BatchMessage,
        mailboxes: Vec<String>,
        retention_ms: u64,
    ) -> Result<(Option<Record>, proto::PublishReply), Status> {
        mom_common::message::check_message(
            message.payload.len(),
            &message.headers,
            &message.content_type,
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let message_id = if message.message_id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            validate_name("message_id", &message.message_id).map_err(bad_name)?;
            message.message_id
        };
        let reply = proto::PublishReply {
            message_id: message_id.clone(),
            routed: mailboxes.len() as u32,
        };
        if mailboxes.is_empty() && retention_ms == 0 {
            return Ok((None, reply));
        }
        let published_at_ms = now_ms();
        // Stored as a signed 64-bit time: never let it wrap negative (expired at once).
        let expires_at_ms = if message.ttl_ms > 0 {
            published_at_ms
                .saturating_add(message.ttl_ms)
                .min(i64::MAX as u64)
        } else {
            0
        };
        let deliver_at_ms = if message.delay_ms > 0 {
            published_at_ms
                .saturating_add(message.delay_ms)
                .min(i64::MAX as u64)
        } else {
            0
        };
        let record = Record::new(Kind::Publish(proto::Publish {
            message_id,
            exchange: destination.to_owned(),
            routing_key: message.routing_key,
            payload: message.payload,
            published_at_ms,
            expires_at_ms,
            mailboxes,
            headers: message.headers,
            content_type: message.content_type,
            deliver_at_ms,
            retain_until_ms: if retention_ms > 0 {
                published_at_ms
                    .saturating_add(retention_ms)
                    .min(i64::MAX as u64)
            } else {
                0
            },
        }));
        Ok((Some(record), reply))
    }

    /// The live leader of a partition this node does not lead, to pass a call on to.
    fn leader_elsewhere(&self, partition: u32) -> Result<Option<NodeInfo>, Status> {
        if self.logs.leads(partition) {
            return Ok(None);
        }
        self.logs.leader_of(partition).map(Some).ok_or_else(|| {
            Status::unavailable(format!(
                "partition {partition} has no live leader; electing"
            ))
        })
    }

    /// A client to `leader` with this node's credentials, acting for the same user, for
    /// passing a call on.
    fn forward_to(
        &self,
        leader: &NodeInfo,
        metadata: &MetadataMap,
    ) -> Result<
        BrokerClient<
            tonic::service::interceptor::InterceptedService<
                tonic::transport::Channel,
                AttachService,
            >,
        >,
        Status,
    > {
        if metadata.contains_key(FORWARDED) {
            return Err(Status::unavailable(
                "forwarded to a node that does not lead the partition either",
            ));
        }
        let attach = match metadata
            .get(mom_common::token::ACTING_USER)
            .and_then(|v| v.to_str().ok())
        {
            Some(user) => self
                .credentials
                .acting_for(user)
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
            None => self.credentials.attach(),
        };
        Ok(BrokerClient::with_interceptor(
            self.peers
                .get(&leader.grpc_addr)
                .map_err(|e| Status::internal(e.to_string()))?,
            attach,
        )
        .max_decoding_message_size(mom_common::message::MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(mom_common::message::MAX_GRPC_MESSAGE_BYTES))
    }

    fn forwarded<T>(message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        request
    }

    fn check_partition(&self, partition: u32) -> Result<(), Status> {
        if partition >= self.logs.count() {
            return Err(Status::invalid_argument(format!(
                "no partition {partition}"
            )));
        }
        Ok(())
    }

    /// Acks receipts of one partition this node serves: one `Acks` record for all of them.
    /// Returns how many were acked and the stale ones.
    async fn ack_in_partition(
        &self,
        mailbox: &MailboxName,
        partition: u32,
        receipts: Vec<(String, Receipt)>,
    ) -> Result<(u32, Vec<String>), WriteError> {
        let epoch = self
            .logs
            .serving(partition)
            .ok_or_else(|| WriteError::Unavailable(partition, "not serving it".into()))?;
        let key = mailbox.key();
        let store = self.logs.store().clone();
        let now = now_ms();
        let mut current = Vec::new();
        let mut stale = Vec::new();
        let offsets: Vec<u64> = receipts.iter().map(|(_, r)| r.offset).collect();
        let pending = store
            .read(offsets.len() <= MAX_ROWS_READ_IN_PLACE, |conn| {
                Store::are_pending_with(conn, &key, partition, &offsets, now)
            })
            .map_err(|e| WriteError::Unavailable(partition, e.to_string()))?;
        for ((text, receipt), pending) in receipts.into_iter().zip(pending) {
            let holder = self
                .logs
                .with_leases(partition, |leases| leases.may_ack(epoch, &key, &receipt))
                .unwrap_or(false);
            if pending && holder && !current.iter().any(|r: &Receipt| r.offset == receipt.offset) {
                current.push(receipt);
            } else {
                stale.push(text);
            }
        }
        if current.is_empty() {
            return Ok((0, stale));
        }
        let acked = proto::Acks {
            acked: current
                .iter()
                .map(|r| proto::Acked {
                    mailbox: key.clone(),
                    offset: r.offset,
                })
                .collect(),
        };
        self.logs
            .propose(partition, vec![Record::new(Kind::Acks(acked))])
            .await?;
        self.logs.with_leases(partition, |leases| {
            for receipt in &current {
                leases.release(epoch, &key, receipt.offset);
            }
        });
        Ok((current.len() as u32, stale))
    }

    /// Leases up to `max` ready messages of the mailbox `key` from every partition this node
    /// serves, of at most [`MAX_PULL_BYTES`] in all (at least one message).
    fn lease_all(
        &self,
        key: &str,
        max: u32,
        visibility_ms: u64,
        limit: Option<&DeliveryLimit>,
    ) -> Result<Vec<proto::Delivery>, Status> {
        let mut deliveries = Vec::new();
        let mut bytes_left = MAX_PULL_BYTES;
        for partition in self.logs.led() {
            let wanted = max - deliveries.len() as u32;
            if wanted == 0 || bytes_left == 0 {
                break;
            }
            let budget = (bytes_left, deliveries.is_empty());
            let leased = self.lease(key, partition, wanted, visibility_ms, budget, limit)?;
            let taken: usize = leased.iter().map(|l| l.message.size()).sum();
            bytes_left = bytes_left.saturating_sub(taken);
            deliveries.extend(leased.into_iter().map(|l| proto::Delivery {
                receipt: l.receipt.to_string(),
                message_id: l.message.message_id,
                exchange: l.message.exchange,
                routing_key: l.message.routing_key,
                payload: l.message.payload,
                delivery_count: l.delivery_count,
                published_at_ms: l.message.published_at_ms,
                headers: l.message.headers,
                content_type: l.message.content_type,
            }));
        }
        Ok(deliveries)
    }

    /// When the first lease of `key` on this node lapses, or its first delayed message
    /// becomes due, after `since_ms`, as an instant to sleep until (now, if that is past).
    fn next_lapse(&self, key: &str, since_ms: u64) -> Option<tokio::time::Instant> {
        let at = self
            .logs
            .led()
            .into_iter()
            .filter_map(|partition| {
                let epoch = self.logs.serving(partition)?;
                let lapse = self
                    .logs
                    .with_leases(partition, |leases| leases.next_lapse(epoch, key, since_ms))
                    .flatten();
                let due = self
                    .logs
                    .store()
                    .next_visible_at(key, partition, since_ms)
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "reading delayed messages failed");
                        None
                    });
                lapse.into_iter().chain(due).min()
            })
            .min()?;
        Some(tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())))
    }

    /// Leases up to `max` ready messages of one partition this node serves, of at most
    /// `max_bytes` in all (the first may be larger when `first_may_exceed`). Messages past
    /// the queue's delivery `limit` are dead-lettered instead.
    fn lease(
        &self,
        key: &str,
        partition: u32,
        max: u32,
        visibility_ms: u64,
        (max_bytes, first_may_exceed): (usize, bool),
        limit: Option<&DeliveryLimit>,
    ) -> Result<Vec<Leased>, Status> {
        let Some(epoch) = self.logs.serving(partition) else {
            return Ok(Vec::new());
        };
        let now = now_ms();
        self.logs
            .with_served_leases(partition, epoch, |leases| {
                let candidates =
                    self.candidates(leases, (epoch, partition), key, max, now, limit)?;
                let wanted = Wanted {
                    max: max as usize,
                    max_bytes,
                    first_may_exceed,
                    now_ms: now,
                    visibility_ms,
                };
                Ok(leases.take(epoch, partition, key, candidates, wanted))
            })
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Whether some partition this node leads has a message of `key` ready to lease now
    /// (leasing nothing).
    fn any_ready(&self, key: &str, limit: Option<&DeliveryLimit>) -> Result<bool, Status> {
        let now = now_ms();
        for (partition, epoch) in self.logs.served() {
            let ready = self
                .logs
                // Served-only, as in `lease`: `candidates` may dead-letter.
                .with_served_leases(partition, epoch, |leases| {
                    let candidates =
                        self.candidates(leases, (epoch, partition), key, 1, now, limit)?;
                    Ok::<_, Status>(leases.any_free(epoch, key, &candidates, now))
                })
                .unwrap_or(Ok(false))?;
            if ready {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The pending messages of `key` in `partition`, oldest first, enough of them to hold
    /// `max` that nobody leases now; those delivered `max_deliveries` times already go to the
    /// dead-letter exchange instead.
    fn candidates(
        &self,
        leases: &mut Leases,
        (epoch, partition): (Epoch, u32),
        key: &str,
        max: u32,
        now: u64,
        limit: Option<&DeliveryLimit>,
    ) -> Result<Vec<PendingMessage>, Status> {
        // Leased messages are skipped, so look at the offsets of enough to find `max` free
        // ones, and read only those messages.
        let held = leases.active(epoch, key, now);
        let scan = (u64::from(max) + held).min(u64::from(u32::MAX)) as u32;
        let store = self.logs.store();
        // The free ones among `offsets`, read whole.
        let free_messages = |conn: &rusqlite::Connection, leases: &mut Leases, offsets| {
            let free = leases.free(epoch, key, offsets, max as usize, now);
            Store::pending_at_offsets(conn, key, partition, &free, now)
        };
        // `scan` bounds the rows, but a consumer that keeps up has far fewer pending than its
        // credit allows: first look at a few offsets in place; only if there are that many is
        // the read long enough to hand this thread's other tasks away (`block_in_place`, a
        // thread switch per delivery otherwise).
        let few = scan.min(MAX_ROWS_READ_IN_PLACE as u32);
        let in_place = store.read_in_place(|conn| {
            let offsets = Store::pending_offsets(conn, key, partition, few, now)?;
            if few < scan && offsets.len() == few as usize {
                return Ok(None);
            }
            free_messages(conn, leases, offsets).map(Some)
        });
        let mut candidates = match in_place.transpose().map_err(storage_status)?.flatten() {
            Some(candidates) => candidates,
            None => store
                .read(false, |conn| {
                    let offsets = Store::pending_offsets(conn, key, partition, scan, now)?;
                    free_messages(conn, leases, offsets)
                })
                .map_err(storage_status)?,
        };
        if let Some(limit) = limit {
            let exhausted = leases.exhausted(
                epoch,
                key,
                &mut candidates,
                limit.max_deliveries,
                (now, DEAD_LETTER_HOLD_MS),
            );
            let letters = exhausted
                .into_iter()
                .map(|(message, deliveries)| Letter {
                    message,
                    deliveries,
                    reason: "max_deliveries",
                })
                .collect();
            self.dead_letter_later(limit.queue.clone(), partition, letters);
        }
        Ok(candidates)
    }
}

#[tonic::async_trait]
impl Broker for BrokerService {
    /// A single publish is a batch of one.
    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishReply>, Status> {
        let (metadata, _, request) = request.into_parts();
        let batch = proto::PublishBatchRequest {
            partition: request.partition,
            kind: request.kind,
            destination: request.destination,
            messages: vec![proto::BatchMessage {
                routing_key: request.routing_key,
                payload: request.payload,
                ttl_ms: request.ttl_ms,
                message_id: request.message_id,
                headers: request.headers,
                content_type: request.content_type,
                delay_ms: request.delay_ms,
                new_id: false,
            }],
        };
        let mut batch_request = Request::new(batch);
        *batch_request.metadata_mut() = metadata;
        let mut published = self
            .publish_batch(batch_request)
            .await?
            .into_inner()
            .published;
        if published.is_empty() {
            return Err(Status::internal("a batch of one answered nothing"));
        }
        Ok(Response::new(published.swap_remove(0)))
    }

    async fn publish_batch(
        &self,
        request: Request<proto::PublishBatchRequest>,
    ) -> Result<Response<proto::PublishBatchReply>, Status> {
        let metadata = request.metadata().clone();
        let request = request.into_inner();
        self.check_partition(request.partition)?;
        let resource = match DestinationKind::try_from(request.kind) {
            Ok(DestinationKind::Exchange) => ResourceKind::Exchange,
            Ok(DestinationKind::Topic) => ResourceKind::Topic,
            Ok(DestinationKind::Queue) => ResourceKind::Queue,
            Err(_) => return Err(Status::invalid_argument("unknown destination kind")),
        };
        self.authorize(&metadata, resource, &request.destination, Permission::Write)
            .await?;
        let partition = request.partition;
        if let Some(leader) = self.leader_elsewhere(partition)? {
            return self
                .forward_to(&leader, &metadata)?
                .publish_batch(Self::forwarded(request))
                .await;
        }
        let keys: Vec<&str> = request
            .messages
            .iter()
            .map(|m| m.routing_key.as_str())
            .collect();
        let (destinations, retention_ms) = self
            .destinations(request.kind, &request.destination, &keys)
            .await?;
        let mut records = Vec::new();
        // Whether each record's message id is new (minted by the gateway for this first
        // attempt, or here): then no earlier copy can be stored, and none is looked for.
        let mut new_ids = Vec::new();
        let mut published = Vec::new();
        for (message, mailboxes) in request.messages.into_iter().zip(destinations) {
            let new_id = message.new_id || message.message_id.is_empty();
            let (record, reply) =
                Self::publish_record(&request.destination, message, mailboxes, retention_ms)?;
            if let Some(record) = record {
                records.push(record);
                new_ids.push(new_id);
            }
            published.push(reply);
        }
        if !records.is_empty() {
            let started = std::time::Instant::now();
            let count = records.len() as u64;
            self.logs
                .publish(partition, records, &new_ids)
                .await
                .map_err(write_status)?;
            // Appended, replicated to the in-sync replicas and committed.
            metrics::histogram!("mom_publish_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("mom_published_messages_total").increment(count);
        }
        Ok(Response::new(proto::PublishBatchReply { published }))
    }

    async fn pull(
        &self,
        request: Request<proto::PullRequest>,
    ) -> Result<Response<proto::PullReply>, Status> {
        // The wait counts from the call's arrival, not from after the checks below: the
        // caller's deadline runs from when it sent the call, and a wait that outlived it could
        // lease messages into an answer nobody reads (they would stay hidden until their
        // visibility timeout).
        let arrived = tokio::time::Instant::now();
        let metadata = request.metadata().clone();
        let request = request.into_inner();
        let mailbox = self
            .readable_mailbox(&metadata, request.mailbox.as_ref())
            .await?;
        let key = mailbox.key();
        let max = request.max.clamp(1, MAX_PULL);
        let visibility = request.visibility_timeout_ms;
        let wait = Duration::from_millis(request.wait_ms).min(MAX_PULL_WAIT);
        let deadline = arrived + wait;
        let limit = self.delivery_limit(&mailbox).await;
        // Subscribed before the first look, so a message applied in between still wakes us.
        let mut signal = (!wait.is_zero()).then(|| self.logs.wakeups().watch(&key));
        let mut stop = (!wait.is_zero() && !request.wait_id.is_empty())
            .then(|| self.logs.wakeups().stop_watch(&request.wait_id));
        let (deliveries, ready) = loop {
            // Taken before the look: what comes due after it and was not ready for the look
            // is what the wait below must end for (taking the time after the look would miss
            // a message due in between, and sleep through it to the end of the wait).
            let looked_at = now_ms();
            if let Some(signal) = &mut signal {
                signal.mark_seen();
            }
            let (deliveries, ready) = if request.wait_only {
                (Vec::new(), self.any_ready(&key, limit.as_ref())?)
            } else {
                let deliveries = self.lease_all(&key, max, visibility, limit.as_ref())?;
                let ready = !deliveries.is_empty();
                (deliveries, ready)
            };
            let (Some(signal), false) = (&mut signal, ready) else {
                break (deliveries, ready);
            };
            if tokio::time::Instant::now() >= deadline {
                break (deliveries, ready);
            }
            let until = self
                .next_lapse(&key, looked_at)
                .map_or(deadline, |at| at.min(deadline));
            let stopped = async {
                match &mut stop {
                    Some(stop) => stop.stopped().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = signal.signalled() => {}
                _ = tokio::time::sleep_until(until) => {}
                _ = stopped => break (Vec::new(), false),
            }
        };
        metrics::counter!("mom_delivered_messages_total").increment(deliveries.len() as u64);
        Ok(Response::new(proto::PullReply {
            deliveries,
            ready: ready && request.wait_only,
        }))
    }

    async fn stop_waiting(
        &self,
        request: Request<proto::StopWaitingRequest>,
    ) -> Result<Response<proto::StopWaitingReply>, Status> {
        let id = &request.get_ref().wait_id;
        if !id.is_empty() {
            self.logs.wakeups().stop(id);
        }
        Ok(Response::new(proto::StopWaitingReply {}))
    }

    async fn release(
        &self,
        request: Request<proto::ReleaseRequest>,
    ) -> Result<Response<proto::ReleaseReply>, Status> {
        let metadata = request.metadata().clone();
        let request = request.into_inner();
        let mailbox = self
            .readable_mailbox(&metadata, request.mailbox.as_ref())
            .await?;
        let key = mailbox.key();
        let now = now_ms();
        let mut released = 0;
        for text in &request.receipts {
            // Leases are this node's own: a receipt of another node (or an earlier leadership)
            // names no lease here, and its message is ready already or soon.
            let Some(receipt) = Receipt::parse(text) else {
                continue;
            };
            let Some(epoch) = self.logs.serving(receipt.partition) else {
                continue;
            };
            let put_back = self
                .logs
                .with_leases(receipt.partition, |leases| {
                    leases.put_back(epoch, &key, &receipt, now)
                })
                .unwrap_or(false);
            released += u32::from(put_back);
        }
        if released > 0 {
            self.logs.wakeups().wake([key.as_str()]);
        }
        Ok(Response::new(proto::ReleaseReply { released }))
    }

    async fn ack(
        &self,
        request: Request<proto::AckRequest>,
    ) -> Result<Response<proto::AckReply>, Status> {
        let metadata = request.metadata().clone();
        let request = request.into_inner();
        let mailbox = self
            .readable_mailbox(&metadata, request.mailbox.as_ref())
            .await?;
        let mut reply = proto::AckReply::default();
        let mut failures = Vec::new();
        let mut failed_receipts = 0;
        let request_count = request.receipts.len();
        let mut by_partition: BTreeMap<u32, Vec<(String, Receipt)>> = BTreeMap::new();
        for text in request.receipts {
            match Receipt::parse(&text) {
                Some(receipt) if receipt.partition < self.logs.count() => by_partition
                    .entry(receipt.partition)
                    .or_default()
                    .push((text, receipt)),
                // A receipt no node issued cannot name a live lease.
                _ => reply.stale.push(text),
            }
        }
        for (partition, receipts) in by_partition {
            let texts: Vec<String> = receipts.iter().map(|(t, _)| t.clone()).collect();
            if self.logs.serving(partition).is_none() {
                let passed_on = match self.logs.leader_of(partition) {
                    Some(leader) if !self.logs.leads(partition) => {
                        let forwarded = proto::AckRequest {
                            mailbox: request.mailbox.clone(),
                            receipts: texts.clone(),
                        };
                        match self.forward_to(&leader, &metadata) {
                            Ok(mut client) => {
                                client.ack(Self::forwarded(forwarded)).await.map_err(|s| {
                                    WriteError::Unavailable(partition, s.message().to_owned())
                                })
                            }
                            Err(s) => {
                                Err(WriteError::Unavailable(partition, s.message().to_owned()))
                            }
                        }
                    }
                    _ => Err(WriteError::Unavailable(
                        partition,
                        "no serving leader yet".into(),
                    )),
                };
                match passed_on {
                    Ok(answer) => {
                        let answer = answer.into_inner();
                        reply.acked += answer.acked;
                        reply.stale.extend(answer.stale);
                    }
                    Err(e) => {
                        failed_receipts += texts.len();
                        failures.push(e);
                        reply.stale.extend(texts);
                    }
                }
                continue;
            }
            match self.ack_in_partition(&mailbox, partition, receipts).await {
                Ok((acked, stale)) => {
                    metrics::counter!("mom_acked_messages_total").increment(u64::from(acked));
                    reply.acked += acked;
                    reply.stale.extend(stale);
                }
                Err(e) => {
                    tracing::warn!(partition, error = %e, "ack failed");
                    failed_receipts += texts.len();
                    failures.push(e);
                    // Not acked: the lease will lapse and the message comes again, which is
                    // what "stale" tells the client.
                    reply.stale.extend(texts);
                }
            }
        }
        // Nothing done and only failures (the gateway sends one partition per call): say
        // "unavailable", so that the caller retries with the partition's new leader.
        if failed_receipts == request_count && !failures.is_empty() {
            return Err(write_status(failures.remove(0)));
        }
        Ok(Response::new(reply))
    }

    async fn purge(
        &self,
        request: Request<proto::PurgeRequest>,
    ) -> Result<Response<proto::PurgeReply>, Status> {
        let history_of_topic = request.get_ref().topic_history.clone();
        let key = match request.get_ref().mailbox.as_ref() {
            // A deleted topic's retained messages only.
            None if !history_of_topic.is_empty() => String::new(),
            mailbox => mailbox_of(mailbox)?.key(),
        };
        let mut purged = 0;
        for partition in self.logs.led() {
            let record = Record::new(Kind::Purge(proto::Purge {
                mailbox: key.clone(),
                history_of_topic: history_of_topic.clone(),
            }));
            self.logs
                .propose(partition, vec![record])
                .await
                .map_err(write_status)?;
            self.logs
                .with_leases(partition, |leases| leases.forget(&key));
            purged += 1;
        }
        Ok(Response::new(proto::PurgeReply { purged }))
    }

    async fn status(
        &self,
        _request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusReply>, Status> {
        Ok(Response::new(proto::StatusReply {
            node: self.logs.node_id().to_owned(),
            partitions: self.logs.statuses(),
        }))
    }

    async fn refresh_routes(
        &self,
        _request: Request<proto::RefreshRoutesRequest>,
    ) -> Result<Response<proto::RefreshRoutesReply>, Status> {
        self.routes.refresh().await.map_err(catalog_status)?;
        Ok(Response::new(proto::RefreshRoutesReply {}))
    }

    async fn depth(
        &self,
        request: Request<proto::DepthRequest>,
    ) -> Result<Response<proto::DepthReply>, Status> {
        let mailbox = self
            .readable_mailbox(request.metadata(), request.get_ref().mailbox.as_ref())
            .await?;
        let key = mailbox.key();
        let store = self.logs.store().clone();
        let now = now_ms();
        let mut reply = proto::DepthReply::default();
        for (partition, epoch) in self.logs.served() {
            let pending = tokio::task::block_in_place(|| store.count_pending(&key, partition, now))
                .map_err(storage_status)?;
            let leased = self
                .logs
                .with_leases(partition, |leases| leases.active(epoch, &key, now))
                .unwrap_or(0)
                .min(pending);
            reply.ready += pending - leased;
            reply.leased += leased;
        }
        Ok(Response::new(reply))
    }

    async fn nack(
        &self,
        request: Request<proto::NackRequest>,
    ) -> Result<Response<proto::NackReply>, Status> {
        let (metadata, _, request) = request.into_parts();
        let mailbox = self
            .readable_mailbox(&metadata, request.mailbox.as_ref())
            .await?;
        let mut by_partition: BTreeMap<u32, Vec<(String, Receipt)>> = BTreeMap::new();
        for text in request.receipts {
            let receipt = Receipt::parse(&text)
                .ok_or_else(|| Status::invalid_argument(format!("malformed receipt {text:?}")))?;
            self.check_partition(receipt.partition)?;
            by_partition
                .entry(receipt.partition)
                .or_default()
                .push((text, receipt));
        }
        let mut reply = proto::NackReply::default();
        for (partition, receipts) in by_partition {
            let part = self
                .nack_in_partition(&metadata, &mailbox, partition, receipts, request.requeue)
                .await?;
            reply.nacked += part.nacked;
            reply.stale.extend(part.stale);
        }
        Ok(Response::new(reply))
    }

    async fn replay(
        &self,
        request: Request<proto::ReplayRequest>,
    ) -> Result<Response<proto::ReplayReply>, Status> {
        let (metadata, _, request) = request.into_parts();
        validate_name("topic", &request.topic).map_err(bad_name)?;
        validate_name("subscriber", &request.subscriber).map_err(bad_name)?;
        self.authorize(
            &metadata,
            ResourceKind::Topic,
            &request.topic,
            Permission::Read,
        )
        .await?;
        let partition = request.partition;
        if let Some(leader) = self.leader_elsewhere(partition)? {
            return self
                .forward_to(&leader, &metadata)?
                .replay(Self::forwarded(request))
                .await;
        }
        let mailbox = MailboxName::Subscription {
            topic: request.topic.clone(),
            subscriber: request.subscriber,
        }
        .key();
        let record = Record::new(Kind::Replay(proto::Replay {
            topic: request.topic,
            mailbox: mailbox.clone(),
            from_offset: request.from_offset,
            from_time_ms: request.from_time_ms,
            at_ms: now_ms(),
        }));
        self.logs
            .propose(partition, vec![record])
            .await
            .map_err(write_status)?;
        self.logs.wakeups().wake([mailbox.as_str()]);
        Ok(Response::new(proto::ReplayReply {}))
    }

    async fn history(
        &self,
        request: Request<proto::HistoryRequest>,
    ) -> Result<Response<proto::HistoryReply>, Status> {
        let topic = request.get_ref().topic.clone();
        validate_name("topic", &topic).map_err(bad_name)?;
        let store = self.logs.store().clone();
        let now = now_ms();
        let mut reply = proto::HistoryReply::default();
        for partition in self.logs.led() {
            if self.logs.serving(partition).is_none() {
                continue;
            }
            let (messages, bytes, oldest) =
                tokio::task::block_in_place(|| store.history(&topic, partition, now))
                    .map_err(storage_status)?;
            reply.messages += messages;
            reply.bytes += bytes;
            if let Some(oldest) = oldest {
                if reply.oldest_ms == 0 || oldest < reply.oldest_ms {
                    reply.oldest_ms = oldest;
                }
            }
        }
        Ok(Response::new(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(headers: &[(&str, &str)], content_type: &str) -> proto::BatchMessage {
        proto::BatchMessage {
            routing_key: "k".into(),
            payload: vec![0, 255],
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_type: content_type.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_record_carries_headers_and_content_type() {
        let (record, reply) = BrokerService::publish_record(
            "ex",
            message(&[("trace-id", "t")], "image/png"),
            vec!["q/x".into()],
            0,
        )
        .unwrap();
        assert_eq!(reply.routed, 1);
        let Some(Kind::Publish(publish)) = record.and_then(|r| Record::decode(&r.bytes)) else {
            panic!("not a publish record");
        };
        assert_eq!(publish.headers["trace-id"], "t");
        assert_eq!(publish.content_type, "image/png");
        assert_eq!(publish.payload, vec![0, 255]);
    }

    #[test]
    fn limits_are_refused_with_invalid_argument() {
        let too_many: Vec<(String, String)> =
            (0..65).map(|n| (format!("h{n}"), String::new())).collect();
        let too_many: Vec<(&str, &str)> = too_many
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let long_value = "v".repeat(4097);
        for bad in [
            message(&too_many, ""),
            message(&[("bad name", "v")], ""),
            message(&[("k", &long_value)], ""),
            message(&[], &"t".repeat(256)),
            proto::BatchMessage {
                payload: vec![0; MAX_PAYLOAD_BYTES + 1],
                ..Default::default()
            },
        ] {
            let status =
                BrokerService::publish_record("ex", bad, vec!["q/x".into()], 0).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        }
    }
}
