//! Consuming from a queue or subscription: its messages are spread over the nodes that own the
//! partitions they were published to, so pulls, acks and counts fan out over the live nodes.
//!
//! A pull that waits (`wait_ms`) asks every live node at once to wait until a message is
//! ready (the nodes are woken when one is applied; nobody polls), leasing nothing
//! (`wait_only`); as soon as one says so, the others are told to stop waiting
//! (`StopWaiting`) and the messages are taken from that node as a pull of what is ready now,
//! one round trip more. Waiting calls lease nothing because several nodes may wake at once:
//! what the answers the pull does not use leased would have to be put back, and meanwhile
//! other consumers would get the messages behind them, out of order. A pull of what is ready
//! now asks every node at once too, does not wait on a slow node for long, and puts back
//! (`Release`) what an answer arriving late leased, ready again at once.

use crate::nodes::retry_while_unavailable;
use crate::{caller::Caller, error::ApiError, AppState};
use actix_web::web;
use futures::stream::{FuturesUnordered, StreamExt};
use mom_catalog::NodeInfo;
use mom_common::receipt::Receipt;
use mom_common::rest::{AckOutcome, Delivery, QueueDepth};
use mom_common::{proto, MailboxName};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub const MAX_PULL: u32 = 100;
pub const MAX_WAIT_MS: u64 = 20_000;
/// One hour: longer leases would hide a crashed consumer's messages for too long.
pub const MAX_VISIBILITY_TIMEOUT_MS: u64 = 3_600_000;
/// How long one waiting call to a node may wait: within the node channels' call timeout
/// ([`crate::nodes::NODE_CALL_TIMEOUT`]), so a longer wait is several calls, each of which also
/// picks up nodes that joined or took over partitions meanwhile.
pub const NODE_WAIT: Duration = Duration::from_millis(4_000);

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullBody {
    /// How many messages at most (1 unless given).
    #[schema(minimum = 1, maximum = 100)]
    pub max: Option<u32>,
    /// How long the pulled messages stay leased to the caller (the gateway's
    /// `default_visibility_timeout_ms` unless given).
    #[schema(minimum = 1, maximum = 3_600_000)]
    pub visibility_timeout_ms: Option<u64>,
    /// How long to wait for a message when there is none (0 unless given).
    #[schema(minimum = 0, maximum = 20_000)]
    pub wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// Receipts of pulled messages.
    #[schema(min_items = 1, max_items = 1000)]
    pub receipts: Vec<String>,
}

pub async fn pull(
    state: &web::Data<AppState>,
    caller: &Caller,
    mailbox: &MailboxName,
    body: PullBody,
) -> Result<Vec<Delivery>, ApiError> {
    let max = body.max.unwrap_or(1);
    if !(1..=MAX_PULL).contains(&max) {
        return Err(ApiError::BadRequest(format!(
            "max must be between 1 and {MAX_PULL}"
        )));
    }
    let visibility = body
        .visibility_timeout_ms
        .unwrap_or(state.default_visibility_timeout_ms);
    if !(1..=MAX_VISIBILITY_TIMEOUT_MS).contains(&visibility) {
        return Err(ApiError::BadRequest(format!(
            "visibility_timeout_ms must be between 1 and {MAX_VISIBILITY_TIMEOUT_MS}"
        )));
    }
    let wait = body.wait_ms.unwrap_or(0);
    if wait > MAX_WAIT_MS {
        return Err(ApiError::BadRequest(format!(
            "wait_ms must be at most {MAX_WAIT_MS}"
        )));
    }
    let deadline = Instant::now() + Duration::from_millis(wait);
    // What is ready now, spread fairly over the nodes; only when there is nothing, wait.
    let mut messages = pull_once(state, caller, mailbox, max, visibility).await?;
    while messages.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let started = Instant::now();
        let round =
            wait_round(state, caller, mailbox, max, visibility, left.min(NODE_WAIT)).await?;
        messages = round.messages;
        if let (true, Some(node)) = (messages.is_empty(), round.ready_at) {
            // That node has messages now: take them from it (none, when another consumer
            // was quicker; then wait again).
            messages = pull_ready(state, caller, mailbox, vec![node], max, visibility).await?;
            continue;
        }
        if messages.is_empty() && round.failed && started.elapsed() < Duration::from_millis(50) {
            // Every node failed at once (restarting, unreachable): not a reason to spin.
            tokio::time::sleep(Duration::from_millis(100).min(left)).await;
        }
    }
    state.stats.pulled(mailbox, &caller.user, messages.len());
    Ok(messages)
}

/// What one round of waiting calls got.
struct Round {
    /// Messages a node leased all the same (one that does not know `wait_only`).
    messages: Vec<Delivery>,
    /// The node that said first it has messages ready.
    ready_at: Option<NodeInfo>,
    /// Whether some node's call failed (rather than waited in vain).
    failed: bool,
}

/// Asks every live node to wait up to `wait` until a message is ready, and answers as soon as
/// one says so (or when all waited in vain). The calls run in a task of their own, which
/// answers as soon as it can and then stops the other calls; should a node have leased
/// messages all the same, what the pull does not use goes back, so that neither an early
/// answer nor a request dropped halfway leaves messages leased to nobody.
async fn wait_round(
    state: &web::Data<AppState>,
    caller: &Caller,
    mailbox: &MailboxName,
    max: u32,
    visibility_timeout_ms: u64,
    wait: Duration,
) -> Result<Round, ApiError> {
    let nodes = state.nodes.live();
    if nodes.is_empty() {
        return Err(ApiError::Unavailable("no live broker nodes".into()));
    }
    let (answer, answered) = oneshot::channel();
    let (state, caller, mailbox) = (state.clone(), caller.clone(), mailbox.clone());
    let ask = Ask {
        max,
        visibility_timeout_ms,
        wait,
    };
    actix_web::rt::spawn(async move {
        waiting_calls(&state, &caller, &mailbox, nodes, ask, answer).await;
    });
    answered
        .await
        .map_err(|_| ApiError::Internal("the waiting pull's task ended unanswered".into()))
}

/// What each node of a waiting round is asked for.
#[derive(Clone, Copy)]
struct Ask {
    max: u32,
    visibility_timeout_ms: u64,
    wait: Duration,
}

/// The calls of one waiting round, run to the end whatever becomes of the request.
async fn waiting_calls(
    state: &AppState,
    caller: &Caller,
    mailbox: &MailboxName,
    nodes: Vec<NodeInfo>,
    ask: Ask,
    answer: oneshot::Sender<Round>,
) {
    let calls: Vec<(NodeInfo, String)> = nodes
        .into_iter()
        .map(|node| (node, uuid::Uuid::now_v7().to_string()))
        .collect();
    let mut pending: FuturesUnordered<_> = calls
        .iter()
        .enumerate()
        .map(|(index, (node, wait_id))| async move {
            let request = proto::PullRequest {
                mailbox: Some(mailbox.to_proto()),
                max: ask.max,
                visibility_timeout_ms: ask.visibility_timeout_ms,
                wait_ms: ask.wait.as_millis() as u64,
                wait_id: wait_id.clone(),
                wait_only: true,
            };
            (index, try_pull_reply(state, caller, node, request).await)
        })
        .collect();
    let mut answered = vec![false; calls.len()];
    let mut failed = false;
    let mut first = None;
    while let Some((index, reply)) = pending.next().await {
        answered[index] = true;
        match reply {
            Ok(reply) if reply.ready || !reply.deliveries.is_empty() => {
                let messages = reply.deliveries.into_iter().map(Delivery::from).collect();
                first = Some((index, messages));
                break;
            }
            Ok(_) => {}
            Err(_) => failed = true,
        }
    }
    // Messages leased at a node (by index) that nobody will get: they go back.
    let mut back: Vec<(usize, Vec<Delivery>)> = Vec::new();
    match first {
        // Every call answered, with nothing.
        None => {
            let _ = answer.send(Round {
                messages: Vec::new(),
                ready_at: None,
                failed,
            });
            return;
        }
        Some((index, messages)) => {
            let round = Round {
                messages,
                ready_at: Some(calls[index].0.clone()),
                failed,
            };
            if let Err(round) = answer.send(round) {
                back.push((index, round.messages));
            }
        }
    }
    if !pending.is_empty() {
        let stops = calls
            .iter()
            .zip(&answered)
            .filter(|(_, answered)| !**answered)
            .map(|((node, wait_id), _)| stop_waiting(state, caller, node, wait_id));
        let (_, rest) = futures::join!(
            futures::future::join_all(stops),
            pending.collect::<Vec<_>>()
        );
        back.extend(rest.into_iter().filter_map(|(index, reply)| {
            let deliveries = reply.ok()?.deliveries;
            Some((index, deliveries.into_iter().map(Delivery::from).collect()))
        }));
    }
    let nodes: Vec<&NodeInfo> = calls.iter().map(|(node, _)| node).collect();
    put_back(state, caller, mailbox, &nodes, back).await;
}

/// Releases what nodes (by index into `nodes`) leased for a pull that nobody will get.
async fn put_back(
    state: &AppState,
    caller: &Caller,
    mailbox: &MailboxName,
    nodes: &[&NodeInfo],
    leased: Vec<(usize, Vec<Delivery>)>,
) {
    let releases = leased
        .into_iter()
        .filter(|(_, deliveries)| !deliveries.is_empty())
        .map(|(index, deliveries)| {
            let receipts = deliveries.into_iter().map(|d| d.receipt).collect();
            release(state, caller, mailbox, nodes[index], receipts)
        });
    futures::future::join_all(releases).await;
}

/// Tells `node` to end the waiting pull `wait_id` now (it then answers what it holds).
pub async fn stop_waiting(state: &AppState, caller: &Caller, node: &NodeInfo, wait_id: &str) {
    let request = proto::StopWaitingRequest {
        wait_id: wait_id.to_owned(),
    };
    let outcome = match state.nodes.broker(node, &caller.act) {
        Ok(mut broker) => broker.stop_waiting(request).await.map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    if let Err(status) = outcome {
        // Its call then ends when its wait does, within NODE_WAIT.
        tracing::debug!(node = %node.id, %status, "stop waiting failed");
    }
}

/// Puts messages leased at `node` but handed to nobody back, ready again at once. If that
/// fails their leases lapse instead, after the visibility timeout.
pub async fn release(
    state: &AppState,
    caller: &Caller,
    mailbox: &MailboxName,
    node: &NodeInfo,
    receipts: Vec<String>,
) {
    let count = receipts.len();
    let request = proto::ReleaseRequest {
        mailbox: Some(mailbox.to_proto()),
        receipts,
    };
    let outcome = match state.nodes.broker(node, &caller.act) {
        Ok(mut broker) => broker.release(request).await.map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    match outcome {
        Ok(()) => {
            metrics::counter!("mom_pull_released_messages_total").increment(count as u64);
        }
        Err(status) => {
            tracing::warn!(node = %node.id, count, %status, "release failed; leases lapse instead");
        }
    }
}

/// One node's deliveries, or why it failed (logged).
pub async fn try_pull_from(
    state: &AppState,
    caller: &Caller,
    node: &mom_catalog::NodeInfo,
    request: proto::PullRequest,
) -> Result<Vec<Delivery>, tonic::Status> {
    let deliveries = try_pull_raw(state, caller, node, request).await?;
    Ok(deliveries.into_iter().map(Delivery::from).collect())
}

/// [`try_pull_from`] as the node answered it (the payload as bytes), for streams.
pub async fn try_pull_raw(
    state: &AppState,
    caller: &Caller,
    node: &mom_catalog::NodeInfo,
    request: proto::PullRequest,
) -> Result<Vec<proto::Delivery>, tonic::Status> {
    Ok(try_pull_reply(state, caller, node, request)
        .await?
        .deliveries)
}

/// The node's whole answer to a pull, or why it failed (logged).
pub async fn try_pull_reply(
    state: &AppState,
    caller: &Caller,
    node: &mom_catalog::NodeInfo,
    request: proto::PullRequest,
) -> Result<proto::PullReply, tonic::Status> {
    let reply = match state.nodes.broker(node, &caller.act) {
        Ok(mut broker) => broker.pull(request).await,
        Err(e) => {
            tracing::warn!(node = %node.id, error = %e, "no channel to node");
            return Err(tonic::Status::unavailable(e.to_string()));
        }
    };
    match reply {
        Ok(reply) => Ok(reply.into_inner()),
        Err(status) => {
            tracing::warn!(node = %node.id, %status, "pull from node failed");
            Err(status)
        }
    }
}

/// What is ready now, spread fairly over the live nodes. The calls run in a task of their
/// own, like a waiting round's, so that neither a slow node nor a request dropped halfway
/// leaves messages leased to nobody: once some node has answered with messages, the others get
/// [`SLOW_NODE_GRACE`] to answer too, and what a later answer leased is put back.
async fn pull_once(
    state: &web::Data<AppState>,
    caller: &Caller,
    mailbox: &MailboxName,
    max: u32,
    visibility_timeout_ms: u64,
) -> Result<Vec<Delivery>, ApiError> {
    let mut nodes = state.nodes.live();
    if nodes.is_empty() {
        return Err(ApiError::Unavailable("no live broker nodes".into()));
    }
    // Start at a different node each time so that no node's messages starve the others'.
    let start = state.pull_rotation.fetch_add(1, Ordering::Relaxed) % nodes.len();
    nodes.rotate_left(start);
    pull_ready(state, caller, mailbox, nodes, max, visibility_timeout_ms).await
}

/// What is ready now at `nodes` (at least one), asked as [`pull_once`] asks them.
async fn pull_ready(
    state: &web::Data<AppState>,
    caller: &Caller,
    mailbox: &MailboxName,
    nodes: Vec<NodeInfo>,
    max: u32,
    visibility_timeout_ms: u64,
) -> Result<Vec<Delivery>, ApiError> {
    let (answer, answered) = oneshot::channel();
    let (state, caller, mailbox) = (state.clone(), caller.clone(), mailbox.clone());
    let ask = Ask {
        max,
        visibility_timeout_ms,
        wait: Duration::ZERO,
    };
    actix_web::rt::spawn(async move {
        ready_calls(&state, &caller, &mailbox, nodes, ask, answer).await;
    });
    answered
        .await
        .map_err(|_| ApiError::Internal("the pull's task ended unanswered".into()))
}

/// How long, once one node has answered a pull with messages, the others may take to answer
/// too. A node that is cut off answers only at the call timeout, by when the messages the
/// others leased would have sat unseen for seconds, their leases perhaps lapsed and handed
/// to another consumer (a redelivery, out of order, of a message nobody had seen).
const SLOW_NODE_GRACE: Duration = Duration::from_millis(100);

/// The calls of one pull of what is ready, run to the end whatever becomes of the request.
/// Every node is asked at once for an equal share (never more than `max` in all), then those
/// that filled their share (they may have more) or, when `max` is smaller than the node count,
/// every node in turn are asked for what is still missing.
async fn ready_calls(
    state: &AppState,
    caller: &Caller,
    mailbox: &MailboxName,
    nodes: Vec<NodeInfo>,
    ask: Ask,
    answer: oneshot::Sender<Vec<Delivery>>,
) {
    let request = |wanted: u32| proto::PullRequest {
        mailbox: Some(mailbox.to_proto()),
        max: wanted,
        visibility_timeout_ms: ask.visibility_timeout_ms,
        ..Default::default()
    };
    let share = ask.max / nodes.len() as u32;
    // What each node (by index) leased for this pull.
    let mut got: Vec<(usize, Vec<Delivery>)> = Vec::new();
    let mut may_have_more: Vec<usize> = Vec::new();
    let mut calls = FuturesUnordered::new();
    if share == 0 {
        may_have_more.extend(0..nodes.len());
    } else {
        calls.extend(nodes.iter().enumerate().map(|(index, node)| async move {
            (
                index,
                try_pull_from(state, caller, node, request(share)).await,
            )
        }));
        let grace = tokio::time::sleep(Duration::MAX);
        tokio::pin!(grace);
        let mut waiting_for_stragglers = false;
        loop {
            tokio::select! {
                next = calls.next() => {
                    let Some((index, reply)) = next else { break };
                    let reply = reply.unwrap_or_default();
                    if reply.len() as u32 == share {
                        may_have_more.push(index);
                    }
                    if !reply.is_empty() && !waiting_for_stragglers {
                        waiting_for_stragglers = true;
                        grace.as_mut().reset(tokio::time::Instant::now() + SLOW_NODE_GRACE);
                    }
                    got.push((index, reply));
                }
                () = &mut grace => break,
            }
        }
    }
    for index in may_have_more {
        let wanted = ask
            .max
            .saturating_sub(got.iter().map(|(_, d)| d.len() as u32).sum());
        if wanted == 0 {
            break;
        }
        let more = try_pull_from(state, caller, &nodes[index], request(wanted)).await;
        got.push((index, more.unwrap_or_default()));
    }
    // How many of the answer's messages each node leased, in order, so that an answer
    // nobody takes can go back node by node.
    let counts: Vec<(usize, usize)> = got.iter().map(|(index, d)| (*index, d.len())).collect();
    let mut back: Vec<(usize, Vec<Delivery>)> = Vec::new();
    if let Err(messages) = answer.send(got.into_iter().flat_map(|(_, d)| d).collect()) {
        let mut messages = messages.into_iter();
        for (index, count) in counts {
            back.push((index, messages.by_ref().take(count).collect()));
        }
    }
    // Calls still out when the grace ran out: what they leased goes back.
    for (index, reply) in calls.collect::<Vec<_>>().await {
        if let Ok(deliveries) = reply {
            back.push((index, deliveries));
        }
    }
    let nodes: Vec<&NodeInfo> = nodes.iter().collect();
    put_back(state, caller, mailbox, &nodes, back).await;
}

/// Receipts grouped by the partition they start with (`<partition>/<offset>/<lease>`): each
/// group goes to that partition's current leader. 1 to 1000 of them.
pub fn by_partition(receipts: Vec<String>) -> Result<BTreeMap<u32, Vec<String>>, ApiError> {
    if receipts.is_empty() || receipts.len() > 1_000 {
        return Err(ApiError::BadRequest(
            "receipts must hold 1 to 1000 entries".into(),
        ));
    }
    let mut by_partition: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for text in receipts {
        // A receipt no node could have issued is the caller's mistake, not a stale lease.
        let receipt = Receipt::parse(&text)
            .ok_or_else(|| ApiError::BadRequest(format!("malformed receipt {text:?}")))?;
        by_partition
            .entry(receipt.partition)
            .or_default()
            .push(text);
    }
    Ok(by_partition)
}

pub async fn ack(
    state: &AppState,
    caller: &Caller,
    mailbox: &MailboxName,
    body: AckBody,
) -> Result<AckOutcome, ApiError> {
    let mut result = AckOutcome {
        acked: 0,
        stale: Vec::new(),
    };
    let all_receipts = body.receipts.clone();
    let by_partition = by_partition(body.receipts)?;
    // Every partition's leader at once: each ack is a log append there, so doing them one
    // after another would add up their commit latencies.
    let acks = by_partition
        .into_iter()
        .map(|(partition, receipts)| async move {
            let outcome = retry_while_unavailable(state.nodes.failover_wait, || async {
                let leader = state.nodes.leader_of(partition)?;
                let request = proto::AckRequest {
                    mailbox: Some(mailbox.to_proto()),
                    receipts: receipts.clone(),
                };
                Ok(state
                    .nodes
                    .broker(&leader, &caller.act)?
                    .ack(request)
                    .await?
                    .into_inner())
            })
            .await;
            (partition, receipts, outcome)
        });
    for (partition, receipts, outcome) in futures::future::join_all(acks).await {
        match outcome {
            Ok(reply) => {
                result.acked += u64::from(reply.acked);
                result.stale.extend(reply.stale);
            }
            // Not acked: the lease lapses and the message comes again, which is what "stale"
            // tells the client.
            Err(e) => {
                tracing::warn!(partition, error = %e, "ack failed");
                result.stale.extend(receipts);
            }
        }
    }
    state.stats.acked(mailbox, result.acked);
    // Acked or stale, these are no longer in flight on a stream of this gateway.
    state.streams.settled(&all_receipts);
    Ok(result)
}

pub async fn depth(
    state: &AppState,
    caller: &Caller,
    mailbox: &MailboxName,
) -> Result<QueueDepth, ApiError> {
    let mut total = QueueDepth {
        ready: 0,
        leased: 0,
    };
    for node in state.nodes.live() {
        let request = proto::DepthRequest {
            mailbox: Some(mailbox.to_proto()),
        };
        let reply = match state.nodes.broker(&node, &caller.act)?.depth(request).await {
            Ok(reply) => reply.into_inner(),
            // A node that is down leads nothing much longer; its partitions' new leaders
            // count them once elected.
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tracing::warn!(node = %node.id, %status, "depth: node unreachable, not counted");
                continue;
            }
            Err(status) => return Err(status.into()),
        };
        total.ready += reply.ready;
        total.leased += reply.leased;
    }
    Ok(total)
}

/// Drops a deleted queue's or subscription's messages from every live node.
pub async fn purge(state: &AppState, caller: &Caller, mailbox: &MailboxName) {
    for node in state.nodes.live() {
        let request = proto::PurgeRequest {
            mailbox: Some(mailbox.to_proto()),
            topic_history: String::new(),
        };
        let outcome = match state.nodes.broker(&node, &caller.act) {
            Ok(mut broker) => broker
                .purge(request)
                .await
                .map(|_| ())
                .map_err(|s| s.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = outcome {
            tracing::warn!(node = %node.id, %mailbox, %error, "purge failed; messages stay on that node");
        }
    }
}

/// Has every live node bring its cached routes up to date, so that a publish that starts after
/// the caller's change of routes is acknowledged sees it. A node that cannot be reached is
/// logged; its watch brings the change a little later.
pub async fn refresh_routes(state: &AppState, caller: &Caller) {
    let refreshes = state.nodes.live().into_iter().map(|node| async move {
        let outcome = match state.nodes.broker(&node, &caller.act) {
            Ok(mut broker) => broker
                .refresh_routes(proto::RefreshRoutesRequest {})
                .await
                .map(|_| ())
                .map_err(|s| s.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = outcome {
            tracing::warn!(node = %node.id, %error, "node did not refresh its routes");
        }
    });
    futures::future::join_all(refreshes).await;
}
