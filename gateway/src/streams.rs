//! Streaming consume: `GET /queues/{q}/stream` and `GET /topics/{t}/subscriptions/{s}/stream`
//! push each message as one Server-Sent Event, with its receipt, as soon as a node has it; the
//! consumer acks through the ordinary ack endpoint. The gRPC `Consumer.Consume` call
//! ([`crate::grpc`]) is the same stream ([`start`]) in another framing.
//!
//! Credit: at most `prefetch` messages the stream sent are in flight (neither acked through
//! this gateway nor past their visibility timeout, after which the lease lapsed and the message
//! is someone else's again). The free credit is shared out in pulls of what is ready now to
//! the nodes that have (or may have) messages, each for the credit set aside for it, so that
//! what they lease always fits; a node whose pull came back short is asked to wait until it
//! has messages (the nodes wake it when a message lands; nothing polls). A waiting call
//! leases what wakes it, up to its own share of the credit not set aside yet (one share per
//! live node), so the message that wakes it comes in its answer, with no second call; with
//! less than one message's credit to spare it leases nothing (`wait_only`) and the node is
//! pulled from once it says messages are ready. Credit is always set aside before a call
//! leases: several nodes waking at once never lease beyond it, so nothing goes back (what
//! went back would reach competing consumers after messages behind it).
//!
//! Invariants: a call is never dropped while it may hold leases: to end a waiting one the
//! stream sends `StopWaiting`, and at the end every call still out is awaited (also when the
//! client went away) and whatever its answer holds is released, not lost until its lease
//! lapses. Messages the client was sent but did not ack stay leased until their visibility
//! timeout.

use crate::caller::Caller;
use crate::error::ApiError;
use crate::mailboxes::{self, MAX_VISIBILITY_TIMEOUT_MS, NODE_WAIT};
use crate::AppState;
use actix_web::{web, HttpResponse};
use futures::stream::{FuturesUnordered, StreamExt};
use mom_catalog::NodeInfo;
use mom_common::{proto, MailboxName};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

pub const DEFAULT_PREFETCH: u32 = 100;
pub const MAX_PREFETCH: u32 = 1_000;
/// How often an idle stream sends a comment, so that proxies keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a node whose waiting call failed is left alone before it is asked again.
const NODE_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// How many messages sent on this stream may be unacked at once (100 unless given).
    #[param(minimum = 1, maximum = 1_000)]
    pub prefetch: Option<u32>,
    /// How long each streamed message stays leased to the stream's consumer (the gateway's
    /// `default_visibility_timeout_ms` unless given); unacked by then, it is delivered again
    /// and no longer counts against `prefetch`.
    #[param(minimum = 1, maximum = 3_600_000)]
    pub visibility_timeout_ms: Option<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Maps of receipts: a panic cannot leave them half-changed.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The receipts this gateway's streams sent and have not seen acked or lapse, so that an ack
/// through the ack endpoint frees its stream's credit.
#[derive(Default)]
pub struct Streams {
    receipts: Mutex<HashMap<String, Weak<Credit>>>,
}

impl Streams {
    /// These receipts were acked (or refused as stale): no longer in flight on any stream.
    /// Whatever else settles a delivery through this gateway (a nack, say) calls it too.
    pub fn settled(&self, receipts: &[String]) {
        let credits: Vec<(Arc<Credit>, &String)> = {
            let mut map = lock(&self.receipts);
            if map.is_empty() {
                return;
            }
            receipts
                .iter()
                .filter_map(|r| Some((map.remove(r)?.upgrade()?, r)))
                .collect()
        };
        for (credit, receipt) in credits {
            credit.settle(receipt);
        }
    }

    fn track(&self, receipt: &str, credit: &Arc<Credit>) {
        lock(&self.receipts).insert(receipt.to_owned(), Arc::downgrade(credit));
    }

    fn forget<'a>(&self, receipts: impl IntoIterator<Item = &'a String>) {
        let mut map = lock(&self.receipts);
        for receipt in receipts {
            map.remove(receipt);
        }
    }
}

/// One stream's messages in flight, by receipt, with when their leases lapse.
#[derive(Default)]
struct Credit {
    in_flight: Mutex<HashMap<String, Instant>>,
    freed: Notify,
}

impl Credit {
    fn settle(&self, receipt: &str) {
        if lock(&self.in_flight).remove(receipt).is_some() {
            // A permit is kept if the stream is not waiting right now.
            self.freed.notify_one();
        }
    }

    /// Drops what lapsed by `now`; returns those receipts, how many remain, and when the
    /// first of those lapses.
    fn prune(&self, now: Instant) -> (Vec<String>, usize, Option<Instant>) {
        let mut in_flight = lock(&self.in_flight);
        let lapsed: Vec<String> = in_flight
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(r, _)| r.clone())
            .collect();
        for receipt in &lapsed {
            in_flight.remove(receipt);
        }
        let next = in_flight.values().min().copied();
        (lapsed, in_flight.len(), next)
    }
}

/// What a stream hands its transport (SSE or gRPC) to send, in order.
pub enum Event {
    /// The stream is open.
    Open,
    /// One message, leased to this stream.
    Message(proto::Delivery),
    /// Nothing for [`KEEP_ALIVE`]: SSE sends a comment, so that proxies keep it open.
    KeepAlive,
    /// A node refused the stream (permission revoked, say); the stream ends.
    Refused(tonic::Status),
}

/// A stream's checked settings.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    prefetch: usize,
    visibility: Duration,
}

impl StreamSettings {
    /// `prefetch` and `visibility_timeout_ms` as given (the defaults when `None`), checked.
    pub fn check(
        state: &AppState,
        prefetch: Option<u32>,
        visibility_timeout_ms: Option<u64>,
    ) -> Result<StreamSettings, ApiError> {
        let prefetch = prefetch.unwrap_or(DEFAULT_PREFETCH);
        if !(1..=MAX_PREFETCH).contains(&prefetch) {
            return Err(ApiError::BadRequest(format!(
                "prefetch must be between 1 and {MAX_PREFETCH}"
            )));
        }
        let visibility = visibility_timeout_ms.unwrap_or(state.default_visibility_timeout_ms);
        if !(1..=MAX_VISIBILITY_TIMEOUT_MS).contains(&visibility) {
            return Err(ApiError::BadRequest(format!(
                "visibility_timeout_ms must be between 1 and {MAX_VISIBILITY_TIMEOUT_MS}"
            )));
        }
        Ok(StreamSettings {
            prefetch: prefetch as usize,
            visibility: Duration::from_millis(visibility),
        })
    }
}

/// Starts a stream of `mailbox` (whose read permission and existence the caller checked) in
/// a task of its own. Its events come on the receiver; dropping the receiver (the client went
/// away) ends the task, after it put back whatever its nodes' calls still leased.
pub fn start(
    state: Arc<AppState>,
    caller: Caller,
    mailbox: MailboxName,
    settings: StreamSettings,
) -> mpsc::Receiver<Event> {
    let (sender, receiver) = mpsc::channel::<Event>(16);
    let stream = Stream {
        state,
        caller,
        mailbox,
        prefetch: settings.prefetch,
        visibility: settings.visibility,
        sender,
        credit: Arc::default(),
    };
    tokio::spawn(stream.run());
    receiver
}

/// One SSE event carrying `delivery`, as JSON on one `data:` line.
fn sse_message(delivery: &impl serde::Serialize) -> web::Bytes {
    let json = serde_json::to_string(delivery).unwrap_or_else(|_| "{}".into());
    web::Bytes::from(format!("data: {json}\n\n"))
}

/// An [`Event`] as Server-Sent Event bytes.
fn sse_bytes(event: Event) -> web::Bytes {
    match event {
        // `retry` tells EventSource clients to reconnect after a second.
        Event::Open => web::Bytes::from_static(b": stream open\nretry: 1000\n\n"),
        Event::Message(delivery) => sse_message(&mom_common::rest::Delivery::from(delivery)),
        Event::KeepAlive => web::Bytes::from_static(b": keep-alive\n\n"),
        Event::Refused(status) => {
            let json = serde_json::json!({ "error": status.message() });
            web::Bytes::from(format!("event: error\ndata: {json}\n\n"))
        }
    }
}

/// Answers an SSE request with a stream of `mailbox` (whose read permission and existence the
/// caller checked).
pub fn open(
    state: web::Data<AppState>,
    caller: Caller,
    mailbox: MailboxName,
    query: &str,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<StreamQuery>::from_query(query)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?
        .into_inner();
    let settings = StreamSettings::check(&state, query.prefetch, query.visibility_timeout_ms)?;
    let receiver = start(state.into_inner(), caller, mailbox, settings);
    // The body ends when the stream's task does; dropping the body (the client went away)
    // closes the channel, which ends the task.
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        let event = receiver.recv().await?;
        Some((
            Ok::<_, std::convert::Infallible>(sse_bytes(event)),
            receiver,
        ))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

struct Stream {
    state: Arc<AppState>,
    caller: Caller,
    mailbox: MailboxName,
    prefetch: usize,
    visibility: Duration,
    sender: mpsc::Sender<Event>,
    credit: Arc<Credit>,
}

/// Why a stream ends.
enum End {
    /// The client went away.
    Gone,
    /// A node refused the stream (permission revoked, say): told to the client.
    Refused(Box<tonic::Status>),
}

/// Why handling a node's answer stopped short.
enum Failure {
    /// The node's call failed: try it again later.
    Retry,
    /// The stream ends.
    End(End),
}

impl From<End> for Failure {
    fn from(end: End) -> Failure {
        Failure::End(end)
    }
}

/// What the stream asks of one node.
enum Call {
    /// Wait until a message is ready there (the wait id lets the stream stop it), then lease
    /// up to `ask` of them: credit set aside for it, as for a lease call. With no credit to set
    /// aside (`ask` 0) it leases nothing (`wait_only`) and only says that messages are ready.
    Wait { wait_id: String, ask: usize },
    /// Lease up to this many messages that are ready now: credit the stream set aside for it.
    Lease(usize),
}

/// What a call to a node came back with.
enum Answer {
    /// A waiting call's reply, for `asked` set aside: what it leased, or whether messages are
    /// ready (and any it leased all the same, from a node that does not know `wait_only`).
    Waited {
        asked: usize,
        reply: Result<proto::PullReply, tonic::Status>,
    },
    /// What a [`Call::Lease`] for `asked` got.
    Leased {
        asked: usize,
        reply: Result<Vec<proto::Delivery>, tonic::Status>,
    },
}

/// Where the stream stands with one node.
enum NodeState {
    /// It has, or may have, messages ready: it gets a lease call when there is credit.
    Ready(NodeInfo),
    /// A lease call is out to it.
    Leasing,
    /// A waiting call is out to it (with that wait id).
    Waiting(NodeInfo, String),
    /// Its last call failed: left alone until then.
    RetryAt(Instant),
}

impl Stream {
    async fn call(&self, node: NodeInfo, call: Call) -> (NodeInfo, Answer) {
        let mut request = proto::PullRequest {
            mailbox: Some(self.mailbox.to_proto()),
            visibility_timeout_ms: self.visibility.as_millis() as u64,
            ..Default::default()
        };
        let answer = match call {
            Call::Wait { wait_id, ask } => {
                request.max = ask.max(1) as u32;
                request.wait_ms = NODE_WAIT.as_millis() as u64;
                request.wait_id = wait_id;
                request.wait_only = ask == 0;
                let reply =
                    mailboxes::try_pull_reply(&self.state, &self.caller, &node, request).await;
                Answer::Waited { asked: ask, reply }
            }
            Call::Lease(asked) => {
                request.max = asked as u32;
                let reply =
                    mailboxes::try_pull_raw(&self.state, &self.caller, &node, request).await;
                Answer::Leased { asked, reply }
            }
        };
        (node, answer)
    }

    /// Frees what lapsed; the free credit, and when the first message in flight lapses.
    fn free_credit(&self) -> (usize, Option<Instant>) {
        let (lapsed, in_flight, next) = self.credit.prune(Instant::now());
        self.state.streams.forget(&lapsed);
        (self.prefetch.saturating_sub(in_flight), next)
    }

    async fn send(&self, event: Event) -> Result<(), End> {
        self.sender.send(event).await.map_err(|_| End::Gone)
    }

    /// Sends what fits the credit (each as in flight), puts the rest back at `node`.
    async fn deliver(&self, node: &NodeInfo, deliveries: Vec<proto::Delivery>) -> Result<(), End> {
        let (free, _) = self.free_credit();
        let mut deliveries = deliveries.into_iter();
        let sent: Vec<proto::Delivery> = deliveries.by_ref().take(free).collect();
        let back: Vec<String> = deliveries.map(|d| d.receipt).collect();
        if !back.is_empty() {
            mailboxes::release(&self.state, &self.caller, &self.mailbox, node, back).await;
        }
        self.state
            .stats
            .pulled(&self.mailbox, &self.caller.user, sent.len());
        let mut sent = sent.into_iter();
        while let Some(delivery) = sent.next() {
            let receipt = delivery.receipt.clone();
            let lapses = Instant::now() + self.visibility;
            lock(&self.credit.in_flight).insert(receipt.clone(), lapses);
            self.state.streams.track(&receipt, &self.credit);
            if let Err(gone) = self.send(Event::Message(delivery)).await {
                // The subscriber left: what it never got goes back now rather than staying
                // hidden until its lease lapses.
                lock(&self.credit.in_flight).remove(&receipt);
                let unsent: Vec<String> = std::iter::once(receipt)
                    .chain(sent.map(|d| d.receipt))
                    .collect();
                self.state.streams.forget(&unsent);
                mailboxes::release(&self.state, &self.caller, &self.mailbox, node, unsent).await;
                return Err(gone);
            }
        }
        Ok(())
    }

    /// A node's call failed: refusals end the stream, anything else leaves the node alone
    /// for a while.
    fn refused(status: tonic::Status) -> Failure {
        match status.code() {
            tonic::Code::PermissionDenied
            | tonic::Code::NotFound
            | tonic::Code::InvalidArgument
            | tonic::Code::Unauthenticated => Failure::End(End::Refused(Box::new(status))),
            _ => Failure::Retry,
        }
    }

    /// Delivers what a node's call got; where the stream stands with that node now, and the
    /// call to send it next, if any.
    async fn settle(
        &self,
        node: &NodeInfo,
        answer: Answer,
        reserved: &mut usize,
    ) -> Result<(NodeState, Option<Call>), End> {
        let outcome = self.take(node, answer, reserved).await;
        outcome.or_else(|failure| match failure {
            Failure::Retry => Ok((NodeState::RetryAt(Instant::now() + NODE_RETRY), None)),
            Failure::End(end) => Err(end),
        })
    }

    /// [`Stream::settle`], a failed call being a [`Failure`].
    async fn take(
        &self,
        node: &NodeInfo,
        answer: Answer,
        reserved: &mut usize,
    ) -> Result<(NodeState, Option<Call>), Failure> {
        match answer {
            Answer::Leased { asked, reply } => {
                *reserved -= asked;
                let deliveries = reply.map_err(Self::refused)?;
                let drained = deliveries.len() < asked;
                self.deliver(node, deliveries).await?;
                if drained {
                    // It has no more: wait there until it has.
                    Ok(self.wait_at(node, reserved))
                } else {
                    // What it had filled the credit set aside: it may have more.
                    Ok((NodeState::Ready(node.clone()), None))
                }
            }
            Answer::Waited { asked, reply } => {
                *reserved -= asked;
                let reply = reply.map_err(Self::refused)?;
                let leased = reply.deliveries.len();
                self.deliver(node, reply.deliveries).await?;
                if leased > 0 && leased < asked {
                    // It woke with what it had, less than it could take: wait there again
                    // (the message that woke it came in the answer, with no lease call).
                    Ok(self.wait_at(node, reserved))
                } else {
                    // Ready, or full, or the wait ran out: the next step is a look that
                    // leases (one that finds nothing waits again).
                    Ok((NodeState::Ready(node.clone()), None))
                }
            }
        }
    }

    /// A waiting call to `node`, leasing what wakes it up to an equal share of the credit not
    /// set aside yet (one share per live node, so a node that waits never holds what the
    /// others could lease); with less than one message's credit to spare, a `wait_only` call.
    fn wait_at(&self, node: &NodeInfo, reserved: &mut usize) -> (NodeState, Option<Call>) {
        let (free, _) = self.free_credit();
        let live = self.state.nodes.live().len().max(1);
        let ask = (free.saturating_sub(*reserved) / live).min(mailboxes::MAX_PULL as usize);
        *reserved += ask;
        let wait_id = uuid::Uuid::now_v7().to_string();
        let waiting = NodeState::Waiting(node.clone(), wait_id.clone());
        (waiting, Some(Call::Wait { wait_id, ask }))
    }

    async fn run(self) {
        let mut calls = FuturesUnordered::new();
        let mut nodes: HashMap<String, NodeState> = HashMap::new();
        // Credit set aside for the lease calls out: their answers always fit.
        let mut reserved = 0usize;
        let mut keep_alive = tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        let mut end = self.send(Event::Open).await.err();
        while end.is_none() {
            let now = Instant::now();
            // Live nodes the stream has no call out to start as ready (a first look leases);
            // dead ones are forgotten once no call to them is out.
            let live = self.state.nodes.live();
            nodes.retain(|id, state| match state {
                NodeState::RetryAt(at) => *at > now,
                NodeState::Ready(_) => live.iter().any(|n| &n.id == id),
                NodeState::Leasing | NodeState::Waiting(..) => true,
            });
            for node in live {
                nodes
                    .entry(node.id.clone())
                    .or_insert(NodeState::Ready(node));
            }
            let (free, next_lapse) = self.free_credit();
            // The free credit, shared among the ready nodes, goes out in lease calls.
            let mut available = free.saturating_sub(reserved);
            // No credit left to ask with: only a lease lapsing (or an ack) frees some.
            let out_of_credit = available == 0;
            let ready: Vec<String> = nodes
                .iter()
                .filter(|(_, state)| matches!(state, NodeState::Ready(_)))
                .map(|(id, _)| id.clone())
                .collect();
            let share = available.div_ceil(ready.len().max(1));
            for id in ready {
                let ask = share.min(available).min(mailboxes::MAX_PULL as usize);
                if ask == 0 {
                    break;
                }
                if let Some(NodeState::Ready(node)) = nodes.insert(id, NodeState::Leasing) {
                    reserved += ask;
                    available -= ask;
                    calls.push(self.call(node, Call::Lease(ask)));
                }
            }
            let next_retry = nodes
                .values()
                .filter_map(|state| match state {
                    NodeState::RetryAt(at) => Some(*at),
                    _ => None,
                })
                .min();
            let outcome = tokio::select! {
                Some((node, answer)) = calls.next(), if !calls.is_empty() => {
                    self.settle(&node, answer, &mut reserved).await.map(|(state, next)| {
                        if let Some(call) = next {
                            calls.push(self.call(node.clone(), call));
                        }
                        nodes.insert(node.id.clone(), state);
                    })
                }
                _ = self.credit.freed.notified() => Ok(()),
                _ = sleep_until(next_lapse), if out_of_credit && next_lapse.is_some() => Ok(()),
                _ = sleep_until(next_retry), if next_retry.is_some() => Ok(()),
                // Credit but no call out (no live node): look for nodes again soon.
                _ = tokio::time::sleep(NODE_RETRY), if free > 0 && calls.is_empty() => Ok(()),
                _ = keep_alive.tick() => self.send(Event::KeepAlive).await,
                _ = self.sender.closed() => Err(End::Gone),
            };
            end = outcome.err();
        }
        if let Some(End::Refused(status)) = end {
            tracing::info!(mailbox = %self.mailbox, %status, "stream refused by a node");
            let _ = self.send(Event::Refused(*status)).await;
        }
        // Every call still out is stopped and awaited; what it leased goes back.
        let waiting = nodes.values().filter_map(|state| match state {
            NodeState::Waiting(node, wait_id) => Some((node, wait_id)),
            _ => None,
        });
        let stops =
            waiting.map(|(node, id)| mailboxes::stop_waiting(&self.state, &self.caller, node, id));
        futures::future::join_all(stops).await;
        while let Some((node, answer)) = calls.next().await {
            let deliveries = match answer {
                Answer::Leased { reply, .. } => reply.unwrap_or_default(),
                Answer::Waited { reply, .. } => reply.map(|r| r.deliveries).unwrap_or_default(),
            };
            let receipts: Vec<String> = deliveries.into_iter().map(|d| d.receipt).collect();
            if !receipts.is_empty() {
                mailboxes::release(&self.state, &self.caller, &self.mailbox, &node, receipts).await;
            }
        }
        let in_flight: Vec<String> = lock(&self.credit.in_flight).keys().cloned().collect();
        self.state.streams.forget(&in_flight);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mom_common::rest::Delivery;

    #[test]
    fn an_ack_frees_its_streams_credit_and_lapsed_messages_free_theirs() {
        let streams = Streams::default();
        let credit = Arc::new(Credit::default());
        let now = Instant::now();
        for (receipt, lapses) in [("a", 10), ("b", 10), ("c", 1)] {
            lock(&credit.in_flight).insert(receipt.into(), now + Duration::from_secs(lapses));
            streams.track(receipt, &credit);
        }
        streams.settled(&["a".to_owned(), "unknown".to_owned()]);
        let (lapsed, in_flight, next) = credit.prune(now + Duration::from_secs(2));
        assert_eq!(lapsed, ["c"]);
        assert_eq!(in_flight, 1);
        assert_eq!(next, Some(now + Duration::from_secs(10)));
        streams.forget(&lapsed);
        assert_eq!(lock(&streams.receipts).len(), 1, "only b is tracked");
    }

    #[test]
    fn the_documented_stream_routes_have_the_codes_limits() {
        let doc: serde_json::Value = serde_json::from_str(crate::openapi::document()).unwrap();
        for path in [
            "/queues/{name}/stream",
            "/topics/{name}/subscriptions/{subscriber}/stream",
        ] {
            let operation = &doc["paths"][path]["get"];
            let parameter = |name: &str| {
                operation["parameters"]
                    .as_array()
                    .and_then(|all| all.iter().find(|p| p["name"] == name))
                    .cloned()
                    .unwrap_or_else(|| panic!("{path} documents {name}"))
            };
            assert_eq!(parameter("prefetch")["schema"]["maximum"], MAX_PREFETCH);
            assert_eq!(
                parameter("visibility_timeout_ms")["schema"]["maximum"],
                MAX_VISIBILITY_TIMEOUT_MS
            );
            assert!(
                operation["responses"]["200"]["content"]["text/event-stream"].is_object(),
                "{operation}"
            );
        }
    }

    #[test]
    fn an_event_is_one_data_line() {
        let delivery = Delivery {
            message_id: "m".into(),
            receipt: "0/1/2.3".into(),
            exchange: "x".into(),
            routing_key: "k".into(),
            payload: "two\nlines".into(),
            payload_base64: String::new(),
            headers: Default::default(),
            content_type: None,
            delivery_count: 1,
            published_at_ms: 0,
        };
        let text = String::from_utf8(sse_message(&delivery).to_vec()).unwrap();
        assert!(text.starts_with("data: {") && text.ends_with("}\n\n"));
        assert_eq!(text.matches('\n').count(), 2, "{text}");
    }
}
