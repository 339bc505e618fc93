//! The gateway's gRPC service for clients, `Consumer`: `Consume` is the REST API's streaming
//! consume ([`crate::streams`]) in gRPC framing, for clients that speak gRPC (the Rust client's
//! `DeliveryStream` does). The checks are the REST routes' own: the bearer token in the
//! `authorization` metadata, read permission, the mailbox's existence, `prefetch` and the
//! visibility timeout; refusals are gRPC statuses with the REST API's messages.
//!
//! Each message sent is leased to the stream and counts against its credit until it is acked
//! through the REST ack endpoint or its lease lapses, exactly as on an SSE stream.

use crate::api::{existing_queue, existing_subscription};
use crate::caller::Caller;
use crate::streams::{self, Event, StreamSettings};
use crate::AppState;
use futures::Stream;
use mom_common::{proto, MailboxName};
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ConsumerService {
    state: Arc<AppState>,
}

impl ConsumerService {
    pub fn new(state: Arc<AppState>) -> ConsumerService {
        ConsumerService { state }
    }
}

type Deliveries = Pin<Box<dyn Stream<Item = Result<proto::Delivery, Status>> + Send>>;

#[tonic::async_trait]
impl proto::consumer_server::Consumer for ConsumerService {
    type ConsumeStream = Deliveries;

    async fn consume(
        &self,
        request: Request<proto::ConsumeRequest>,
    ) -> Result<Response<Deliveries>, Status> {
        let state = &self.state;
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let caller = Caller::from_bearer(state, authorization.as_deref()).await?;
        let request = request.into_inner();
        let mailbox = request
            .mailbox
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("a mailbox is needed"))?;
        let mailbox = MailboxName::from_proto(mailbox)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mailbox = match &mailbox {
            MailboxName::Queue(queue) => existing_queue(state, &caller, queue).await?,
            MailboxName::Subscription { topic, subscriber } => {
                existing_subscription(state, &caller, topic, subscriber).await?
            }
        };
        let settings = StreamSettings::check(
            state,
            (request.prefetch > 0).then_some(request.prefetch),
            (request.visibility_timeout_ms > 0).then_some(request.visibility_timeout_ms),
        )?;
        let events = streams::start(state.clone(), caller, mailbox, settings);
        // Dropping this stream (the client went away, or cancelled) drops the receiver, which
        // ends the stream's task.
        let deliveries = futures::stream::unfold(events, |mut events| async move {
            loop {
                match events.recv().await? {
                    Event::Message(delivery) => return Some((Ok(delivery), events)),
                    Event::Refused(status) => return Some((Err(status), events)),
                    // HTTP/2 keep-alive pings keep a gRPC connection open.
                    Event::Open | Event::KeepAlive => {}
                }
            }
        });
        Ok(Response::new(Box::pin(deliveries)))
    }
}
