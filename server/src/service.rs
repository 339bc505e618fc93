//! The node's gRPC face: the `Broker` service.

use crate::store::{NewMessage, Receipt, Store, StoreError};
use mom_catalog::{Catalog, CatalogError};
use mom_common::{
    names::{validate_name, validate_routing_key, NameError},
    proto::{self, broker_server::Broker, DestinationKind},
    MailboxName,
};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::{Request, Response, Status};

/// Bounds what one pull may lease, so a single call cannot pin a node's memory.
pub const MAX_PULL: u32 = 1_000;
pub const MAX_PAYLOAD_BYTES: usize = 4 << 20;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

pub struct BrokerService {
    store: Arc<Store>,
    catalog: Catalog,
}

impl BrokerService {
    pub fn new(store: Arc<Store>, catalog: Catalog) -> Self {
        BrokerService { store, catalog }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| Status::internal(format!("storage task failed: {e}")))?
            .map_err(|e| {
                tracing::error!(error = %e, "storage failure");
                Status::unavailable(format!("storage: {e}"))
            })
    }

    /// The mailboxes a publish goes to, from the catalog's current bindings or subscribers.
    async fn destinations(&self, request: &proto::PublishRequest) -> Result<Vec<String>, Status> {
        let kind = DestinationKind::try_from(request.kind)
            .map_err(|_| Status::invalid_argument("unknown destination kind"))?;
        match kind {
            DestinationKind::Exchange => {
                validate_name("exchange", &request.destination).map_err(bad_name)?;
                validate_routing_key(&request.routing_key).map_err(bad_name)?;
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
                validate_routing_key(&request.routing_key).map_err(bad_name)?;
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
}

fn bad_name(e: NameError) -> Status {
    Status::invalid_argument(e.to_string())
}

pub fn catalog_status(e: CatalogError) -> Status {
    match e {
        CatalogError::NoSuchExchange(_)
        | CatalogError::NoSuchQueue(_)
        | CatalogError::NoSuchTopic(_)
        | CatalogError::NoSuchBinding { .. }
        | CatalogError::NoSuchSubscription { .. } => Status::not_found(e.to_string()),
        CatalogError::KindConflict { .. } | CatalogError::QueueDeleted(_) => {
            Status::failed_precondition(e.to_string())
        }
        CatalogError::Corrupt { .. } => Status::internal(e.to_string()),
        CatalogError::ZooKeeper(_) => Status::unavailable(e.to_string()),
    }
}

fn mailbox_key(mailbox: Option<&proto::Mailbox>) -> Result<String, Status> {
    let mailbox = mailbox.ok_or_else(|| Status::invalid_argument("mailbox is required"))?;
    Ok(MailboxName::from_proto(mailbox).map_err(bad_name)?.key())
}

#[tonic::async_trait]
impl Broker for BrokerService {
    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishReply>, Status> {
        let request = request.into_inner();
        if request.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Status::invalid_argument(format!(
                "payload is larger than {MAX_PAYLOAD_BYTES} bytes"
            )));
        }
        let mailboxes = self.destinations(&request).await?;
        let published_at_ms = now_ms();
        let message = NewMessage {
            message_id: uuid::Uuid::now_v7().to_string(),
            exchange: request.destination,
            routing_key: request.routing_key,
            payload: request.payload,
            published_at_ms,
            expires_at_ms: (request.ttl_ms > 0)
                .then(|| published_at_ms.saturating_add(request.ttl_ms)),
        };
        let routed = mailboxes.len() as u32;
        let message_id = message.message_id.clone();
        if !mailboxes.is_empty() {
            self.blocking(move |store| store.insert(&message, &mailboxes))
                .await?;
        }
        Ok(Response::new(proto::PublishReply { message_id, routed }))
    }

    async fn pull(
        &self,
        request: Request<proto::PullRequest>,
    ) -> Result<Response<proto::PullReply>, Status> {
        let request = request.into_inner();
        let mailbox = mailbox_key(request.mailbox.as_ref())?;
        let max = request.max.clamp(1, MAX_PULL);
        let visibility_ms = request.visibility_timeout_ms;
        let leased = self
            .blocking(move |store| store.pull(&mailbox, max, now_ms(), visibility_ms))
            .await?;
        let deliveries = leased
            .into_iter()
            .map(|d| proto::Delivery {
                receipt: d.receipt().to_string(),
                message_id: d.message_id,
                exchange: d.exchange,
                routing_key: d.routing_key,
                payload: d.payload,
                delivery_count: d.delivery_count,
                published_at_ms: d.published_at_ms,
            })
            .collect();
        Ok(Response::new(proto::PullReply { deliveries }))
    }

    async fn ack(
        &self,
        request: Request<proto::AckRequest>,
    ) -> Result<Response<proto::AckReply>, Status> {
        let request = request.into_inner();
        let mailbox = mailbox_key(request.mailbox.as_ref())?;
        let mut receipts = Vec::with_capacity(request.receipts.len());
        let mut stale = Vec::new();
        for text in request.receipts {
            match Receipt::parse(&text) {
                Some(receipt) => receipts.push(receipt),
                // A receipt this node never issued cannot name a live lease.
                None => stale.push(text),
            }
        }
        let (acked, refused) = self
            .blocking(move |store| store.ack(&mailbox, &receipts))
            .await?;
        stale.extend(refused.iter().map(Receipt::to_string));
        Ok(Response::new(proto::AckReply { acked, stale }))
    }

    async fn purge(
        &self,
        request: Request<proto::PurgeRequest>,
    ) -> Result<Response<proto::PurgeReply>, Status> {
        let mailbox = mailbox_key(request.get_ref().mailbox.as_ref())?;
        let purged = self.blocking(move |store| store.purge(&mailbox)).await?;
        Ok(Response::new(proto::PurgeReply { purged }))
    }

    async fn depth(
        &self,
        request: Request<proto::DepthRequest>,
    ) -> Result<Response<proto::DepthReply>, Status> {
        let mailbox = mailbox_key(request.get_ref().mailbox.as_ref())?;
        let depth = self
            .blocking(move |store| store.depth(&mailbox, now_ms()))
            .await?;
        Ok(Response::new(proto::DepthReply {
            ready: depth.ready,
            leased: depth.leased,
        }))
    }
}
