//! Consuming from a queue or subscription: its messages are spread over the nodes that own the
//! partitions they were published to, so pulls, acks and counts fan out over the live nodes.

use crate::nodes::retry_while_unavailable;
use crate::{caller::Caller, error::ApiError, AppState};
use base64::Engine as _;
use mom_common::receipt::Receipt;
use mom_common::rest::{AckOutcome, Delivery, QueueDepth};
use mom_common::{proto, MailboxName};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub const MAX_PULL: u32 = 100;
pub const MAX_WAIT_MS: u64 = 20_000;
/// One hour: longer leases would hide a crashed consumer's messages for too long.
pub const MAX_VISIBILITY_TIMEOUT_MS: u64 = 3_600_000;

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
    state: &AppState,
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
    let mut backoff = Duration::from_millis(20);
    loop {
        let messages = pull_once(state, caller, mailbox, max, visibility).await?;
        if !messages.is_empty() || Instant::now() >= deadline {
            state.stats.pulled(mailbox, &caller.user, messages.len());
            return Ok(messages);
        }
        tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// One node's deliveries; a node that fails is skipped (the others' messages are still worth
/// handing out).
async fn pull_from(
    state: &AppState,
    caller: &Caller,
    node: &mom_catalog::NodeInfo,
    request: proto::PullRequest,
) -> Vec<Delivery> {
    let reply = match state.nodes.broker(node, &caller.act) {
        Ok(mut broker) => broker.pull(request).await,
        Err(e) => {
            tracing::warn!(node = %node.id, error = %e, "no channel to node");
            return Vec::new();
        }
    };
    match reply {
        Ok(reply) => reply
            .into_inner()
            .deliveries
            .into_iter()
            .map(|d| Delivery {
                receipt: d.receipt,
                message_id: d.message_id,
                exchange: d.exchange,
                routing_key: d.routing_key,
                payload: String::from_utf8_lossy(&d.payload).into_owned(),
                payload_base64: base64::engine::general_purpose::STANDARD.encode(&d.payload),
                headers: d.headers,
                content_type: (!d.content_type.is_empty()).then_some(d.content_type),
                delivery_count: d.delivery_count,
                published_at_ms: d.published_at_ms,
            })
            .collect(),
        Err(status) => {
            tracing::warn!(node = %node.id, %status, "pull from node failed");
            Vec::new()
        }
    }
}

async fn pull_once(
    state: &AppState,
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
    // Ask every node at once for an equal share (never more than `max` in all), then go
    // round again for what is still missing, from nodes that filled their share (they may
    // have more) or, when `max` is smaller than the node count, from every node in turn.
    let share = max / nodes.len() as u32;
    let request = |wanted: u32| proto::PullRequest {
        mailbox: Some(mailbox.to_proto()),
        max: wanted,
        visibility_timeout_ms,
    };
    let mut messages = Vec::new();
    let mut may_have_more = Vec::new();
    if share == 0 {
        may_have_more.extend(nodes.iter());
    } else {
        let asks = nodes.iter().map(|node| async move {
            let reply = pull_from(state, caller, node, request(share)).await;
            (node, reply)
        });
        for (node, reply) in futures::future::join_all(asks).await {
            if reply.len() as u32 == share {
                may_have_more.push(node);
            }
            messages.extend(reply);
        }
    }
    for node in may_have_more {
        let wanted = max.saturating_sub(messages.len() as u32);
        if wanted == 0 {
            break;
        }
        messages.extend(pull_from(state, caller, node, request(wanted)).await);
    }
    Ok(messages)
}

pub async fn ack(
    state: &AppState,
    caller: &Caller,
    mailbox: &MailboxName,
    body: AckBody,
) -> Result<AckOutcome, ApiError> {
    if body.receipts.is_empty() || body.receipts.len() > 1_000 {
        return Err(ApiError::BadRequest(
            "receipts must hold 1 to 1000 entries".into(),
        ));
    }
    // Receipts start with their partition (`<partition>/<offset>/<lease>`): each group goes to
    // that partition's current leader.
    let mut by_partition: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut result = AckOutcome {
        acked: 0,
        stale: Vec::new(),
    };
    for text in body.receipts {
        // A receipt no node could have issued is the caller's mistake, not a stale lease.
        let receipt = Receipt::parse(&text)
            .ok_or_else(|| ApiError::BadRequest(format!("malformed receipt {text:?}")))?;
        by_partition
            .entry(receipt.partition)
            .or_default()
            .push(text);
    }
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
