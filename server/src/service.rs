//! The node's gRPC face: the `Broker` service.
//!
//! Any node accepts any call: a publish or ack for a partition this node does not lead is
//! forwarded once to the partition's leader. Pulls and counts cover the partitions this node
//! leads; the gateway asks every node.

use crate::partitions::{Partitions, WriteError};
use crate::store::Receipt;
use mom_catalog::{Catalog, CatalogError, ErrorKind, NodeInfo};
use mom_common::channels::ChannelPool;
use mom_common::names::{validate_name, validate_routing_key, NameError};
use mom_common::proto::{
    self, broker_client::BrokerClient, broker_server::Broker, change, Change, DestinationKind,
};
use mom_common::MailboxName;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::{metadata::MetadataMap, Request, Response, Status};

/// Bounds what one pull may lease, so a single call cannot pin a node's memory.
pub const MAX_PULL: u32 = 1_000;
pub const MAX_PAYLOAD_BYTES: usize = 4 << 20;
/// Marks a call one node passed to another, so it is never passed on twice.
const FORWARDED: &str = "x-mom-forwarded";

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

pub struct BrokerService {
    partitions: Arc<Partitions>,
    catalog: Catalog,
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
        WriteError::Store(e) => {
            tracing::error!(error = %e, "storage failure");
            Status::unavailable(format!("storage: {e}"))
        }
    }
}

fn mailbox_of(mailbox: Option<&proto::Mailbox>) -> Result<MailboxName, Status> {
    let mailbox = mailbox.ok_or_else(|| Status::invalid_argument("mailbox is required"))?;
    MailboxName::from_proto(mailbox).map_err(bad_name)
}

/// Node receipts name the partition too: `<partition>/<message id>:<delivery count>`.
fn parse_receipt(text: &str) -> Option<(u32, Receipt)> {
    let (partition, receipt) = text.split_once('/')?;
    Some((partition.parse().ok()?, Receipt::parse(receipt)?))
}

impl BrokerService {
    pub fn new(partitions: Arc<Partitions>, catalog: Catalog) -> Self {
        BrokerService {
            partitions,
            catalog,
            peers: ChannelPool::new(Duration::from_secs(10)),
        }
    }

    /// The mailboxes a publish goes to, from the catalog's current bindings or subscribers.
    async fn destinations(&self, request: &proto::PublishRequest) -> Result<Vec<String>, Status> {
        let kind = DestinationKind::try_from(request.kind)
            .map_err(|_| Status::invalid_argument("unknown destination kind"))?;
        validate_routing_key(&request.routing_key).map_err(bad_name)?;
        match kind {
            DestinationKind::Exchange => {
                validate_name("exchange", &request.destination).map_err(bad_name)?;
                let queues = self
                    .catalog
                    .route(&request.destination, &request.routing_key)
                    .await
                    .map_err(catalog_status)?;
                Ok(queues
                    .into_iter()
                    .map(|q| MailboxName::Queue(q).key())
                    .collect())
            }
            DestinationKind::Topic => {
                validate_name("topic", &request.destination).map_err(bad_name)?;
                let subscribers = self
                    .catalog
                    .subscribers(&request.destination)
                    .await
                    .map_err(catalog_status)?;
                Ok(subscribers
                    .into_iter()
                    .map(|subscriber| {
                        MailboxName::Subscription {
                            topic: request.destination.clone(),
                            subscriber,
                        }
                        .key()
                    })
                    .collect())
            }
        }
    }

    /// A client to `leader` carrying the caller's credentials, for passing a call on.
    fn forward_to(
        &self,
        leader: &NodeInfo,
        metadata: &MetadataMap,
    ) -> Result<BrokerClient<tonic::transport::Channel>, Status> {
        if metadata.contains_key(FORWARDED) {
            return Err(Status::unavailable(
                "forwarded to a node that does not lead the partition either",
            ));
        }
        Ok(BrokerClient::new(
            self.peers
                .get(&leader.grpc_addr)
                .map_err(|e| Status::internal(e.to_string()))?,
        ))
    }

    fn forwarded<T>(message: T, metadata: &MetadataMap) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(auth) = metadata.get("authorization") {
            request.metadata_mut().insert("authorization", auth.clone());
        }
        request
            .metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        request
    }

    fn check_partition(&self, partition: u32) -> Result<(), Status> {
        if partition >= self.partitions.count() {
            return Err(Status::invalid_argument(format!(
                "no partition {partition}"
            )));
        }
        Ok(())
    }

    async fn ack_in_partition(
        &self,
        mailbox: &MailboxName,
        partition: u32,
        receipts: &[Receipt],
    ) -> Result<(u32, Vec<Receipt>), WriteError> {
        let key = mailbox.key();
        let outcome = self
            .partitions
            .write(partition, |store| {
                let (removals, stale) = store.current_receipts(&key, receipts.to_vec())?;
                if removals.is_empty() {
                    return Ok(None);
                }
                let acked = removals.len() as u32;
                Ok(Some((
                    Change {
                        kind: Some(change::Kind::Removals(proto::Removals { removals })),
                    },
                    (acked, stale),
                )))
            })
            .await?;
        // Nothing current among them: all stale.
        Ok(outcome.unwrap_or_else(|| (0, receipts.to_vec())))
    }
}

#[tonic::async_trait]
impl Broker for BrokerService {
    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishReply>, Status> {
        let metadata = request.metadata().clone();
        let request = request.into_inner();
        self.check_partition(request.partition)?;
        if request.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Status::invalid_argument(format!(
                "payload is larger than {MAX_PAYLOAD_BYTES} bytes"
            )));
        }
        let partition = request.partition;
        if !self.partitions.led().contains(&partition) {
            let leader = self.partitions.leader_of(partition).ok_or_else(|| {
                Status::unavailable(format!(
                    "partition {partition} has no live leader; electing"
                ))
            })?;
            return self
                .forward_to(&leader, &metadata)?
                .publish(Self::forwarded(request, &metadata))
                .await;
        }
        let mailboxes = self.destinations(&request).await?;
        let published_at_ms = now_ms();
        let message_id = uuid::Uuid::now_v7().to_string();
        let routed = mailboxes.len() as u32;
        if !mailboxes.is_empty() {
            let expires_at_ms = if request.ttl_ms > 0 {
                published_at_ms.saturating_add(request.ttl_ms)
            } else {
                0
            };
            let messages = mailboxes
                .into_iter()
                .map(|mailbox| proto::StoredMessage {
                    mailbox,
                    message_id: message_id.clone(),
                    exchange: request.destination.clone(),
                    routing_key: request.routing_key.clone(),
                    payload: request.payload.clone(),
                    published_at_ms,
                    expires_at_ms,
                    delivery_count: 0,
                    visible_at_ms: 0,
                })
                .collect();
            let change = Change {
                kind: Some(change::Kind::Insert(proto::Insert { messages })),
            };
            self.partitions
                .write(partition, |_| Ok(Some((change, ()))))
                .await
                .map_err(write_status)?;
        }
        Ok(Response::new(proto::PublishReply { message_id, routed }))
    }

    async fn pull(
        &self,
        request: Request<proto::PullRequest>,
    ) -> Result<Response<proto::PullReply>, Status> {
        let request = request.into_inner();
        let key = mailbox_of(request.mailbox.as_ref())?.key();
        let max = request.max.clamp(1, MAX_PULL);
        let visibility_ms = request.visibility_timeout_ms;
        let mut deliveries = Vec::new();
        for partition in self.partitions.led() {
            let wanted = max - deliveries.len() as u32;
            if wanted == 0 {
                break;
            }
            // Most partitions have nothing for this mailbox: look before taking the lock.
            let store = self.partitions.store();
            if tokio::task::block_in_place(|| {
                store.next_leases(&key, partition, 1, now_ms(), visibility_ms)
            })
            .map_err(|e| write_status(e.into()))?
            .is_empty()
            {
                continue;
            }
            let leased = self
                .partitions
                .write(partition, |store| {
                    let leases =
                        store.next_leases(&key, partition, wanted, now_ms(), visibility_ms)?;
                    if leases.is_empty() {
                        return Ok(None);
                    }
                    let (messages, leases): (Vec<_>, Vec<_>) = leases.into_iter().unzip();
                    Ok(Some((
                        Change {
                            kind: Some(change::Kind::Leases(proto::Leases { leases })),
                        },
                        messages,
                    )))
                })
                .await;
            let messages = match leased {
                Ok(messages) => messages.unwrap_or_default(),
                // Leadership moved meanwhile: the new leader serves it.
                Err(e) => {
                    tracing::debug!(partition, error = %e, "pull skipped a partition");
                    continue;
                }
            };
            deliveries.extend(messages.into_iter().map(|m| proto::Delivery {
                receipt: format!(
                    "{partition}/{}",
                    Receipt {
                        message_id: m.message_id.clone(),
                        delivery_count: m.delivery_count
                    }
                ),
                message_id: m.message_id,
                exchange: m.exchange,
                routing_key: m.routing_key,
                payload: m.payload,
                delivery_count: m.delivery_count,
                published_at_ms: m.published_at_ms,
            }));
        }
        Ok(Response::new(proto::PullReply { deliveries }))
    }

    async fn ack(
        &self,
        request: Request<proto::AckRequest>,
    ) -> Result<Response<proto::AckReply>, Status> {
        let metadata = request.metadata().clone();
        let request = request.into_inner();
        let mailbox = mailbox_of(request.mailbox.as_ref())?;
        let mut reply = proto::AckReply::default();
        let mut failures = Vec::new();
        let mut failed_receipts = 0;
        let request_count = request.receipts.len();
        let mut by_partition: BTreeMap<u32, Vec<(String, Receipt)>> = BTreeMap::new();
        for text in request.receipts {
            match parse_receipt(&text) {
                Some((partition, receipt)) if partition < self.partitions.count() => by_partition
                    .entry(partition)
                    .or_default()
                    .push((text, receipt)),
                // A receipt no node issued cannot name a live lease.
                _ => reply.stale.push(text),
            }
        }
        let led = self.partitions.led();
        for (partition, receipts) in by_partition {
            let texts: Vec<String> = receipts.iter().map(|(t, _)| t.clone()).collect();
            if !led.contains(&partition) {
                let passed_on = match self.partitions.leader_of(partition) {
                    Some(leader) => {
                        let forwarded = proto::AckRequest {
                            mailbox: request.mailbox.clone(),
                            receipts: texts.clone(),
                        };
                        match self.forward_to(&leader, &metadata) {
                            Ok(mut client) => {
                                client.ack(Self::forwarded(forwarded, &metadata)).await.ok()
                            }
                            Err(_) => None,
                        }
                    }
                    None => None,
                };
                match passed_on {
                    Some(answer) => {
                        let answer = answer.into_inner();
                        reply.acked += answer.acked;
                        reply.stale.extend(answer.stale);
                    }
                    None => reply.stale.extend(texts),
                }
                continue;
            }
            let receipts: Vec<Receipt> = receipts.into_iter().map(|(_, r)| r).collect();
            match self.ack_in_partition(&mailbox, partition, &receipts).await {
                Ok((acked, stale)) => {
                    reply.acked += acked;
                    reply
                        .stale
                        .extend(stale.iter().map(|r| format!("{partition}/{r}")));
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
        let key = mailbox_of(request.get_ref().mailbox.as_ref())?.key();
        let store = self.partitions.store();
        let purged = tokio::task::block_in_place(|| store.purge(&key))
            .map_err(|e| write_status(e.into()))?;
        Ok(Response::new(proto::PurgeReply { purged }))
    }

    async fn depth(
        &self,
        request: Request<proto::DepthRequest>,
    ) -> Result<Response<proto::DepthReply>, Status> {
        let key = mailbox_of(request.get_ref().mailbox.as_ref())?.key();
        let store = self.partitions.store();
        let mut reply = proto::DepthReply::default();
        for partition in self.partitions.led() {
            let depth = tokio::task::block_in_place(|| store.depth(&key, partition, now_ms()))
                .map_err(|e| write_status(e.into()))?;
            reply.ready += depth.ready;
            reply.leased += depth.leased;
        }
        Ok(Response::new(reply))
    }
}
