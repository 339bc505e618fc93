//! `nack`: a consumer gives deliveries back. With `requeue` (the default) they are ready again
//! at once, their delivery counted towards the queue's `max_deliveries`; without, they are
//! dead-lettered to the queue's dead-letter exchange (dropped if it has none, and always for a
//! topic subscription). Each partition's receipts go to that partition's leader, all at once.

use crate::api::{existing_queue, existing_subscription};
use crate::caller::Caller;
use crate::error::ApiError;
use crate::mailboxes::by_partition;
use crate::nodes::retry_while_unavailable;
use crate::AppState;
use actix_web::{web, HttpResponse};
use mom_common::proto;
use mom_common::MailboxName;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NackBody {
    /// 1 to 1000 receipts of deliveries to give back.
    receipts: Vec<String>,
    /// Ready again at once (true, the default), or dead-lettered (false).
    #[serde(default = "requeue_by_default")]
    requeue: bool,
}

fn requeue_by_default() -> bool {
    true
}

/// How many deliveries were given back, and the receipts that no longer name the message's
/// current delivery (it was acked, redelivered or its lease ran out).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct NackOutcome {
    nacked: u64,
    stale: Vec<String>,
}

async fn nack(
    state: &AppState,
    caller: &Caller,
    mailbox: &MailboxName,
    body: NackBody,
) -> Result<NackOutcome, ApiError> {
    let all_receipts = body.receipts.clone();
    let groups = by_partition(body.receipts)?;
    let calls = groups.into_iter().map(|(partition, receipts)| async move {
        let outcome = retry_while_unavailable(state.nodes.failover_wait, || async {
            let leader = state.nodes.leader_of(partition)?;
            let request = proto::NackRequest {
                mailbox: Some(mailbox.to_proto()),
                receipts: receipts.clone(),
                requeue: body.requeue,
            };
            let mut broker = state.nodes.broker(&leader, &caller.act)?;
            let call = async { Ok(broker.nack(request).await?.into_inner()) };
            state
                .nodes
                .unless_leader_moves(partition, &leader.id, call)
                .await
        })
        .await;
        (partition, receipts, outcome)
    });
    let mut result = NackOutcome::default();
    for (partition, receipts, outcome) in futures::future::join_all(calls).await {
        match outcome {
            Ok(reply) => {
                result.nacked += u64::from(reply.nacked);
                result.stale.extend(reply.stale);
            }
            // Not given back: the lease runs out and the message comes again all the same.
            Err(e) => {
                tracing::warn!(partition, error = %e, "nack failed");
                result.stale.extend(receipts);
            }
        }
    }
    // Given back or stale, these are no longer in flight on a stream of this gateway.
    state.streams.settled(&all_receipts);
    Ok(result)
}

/// Gives pulled messages of a queue back (needs read).
#[utoipa::path(
    post,
    path = "/queues/{name}/nack",
    tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    request_body = NackBody,
    responses(
        (status = 200, description = "How many deliveries were given back, and the stale receipts", body = NackOutcome),
        (status = 400, description = "A malformed receipt (named), or not 1 to 1000 receipts"),
        (status = 403, description = "No read permission"),
        (status = 404, description = "No such queue"),
    ),
)]
pub async fn nack_queue(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<NackBody>,
) -> Result<HttpResponse, ApiError> {
    let mailbox = existing_queue(&state, &caller, &path).await?;
    let outcome = nack(&state, &caller, &mailbox, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(outcome))
}

/// Gives pulled messages of a subscription back (needs read on the topic); rejected ones
/// (`requeue: false`) are dropped.
#[utoipa::path(
    post,
    path = "/topics/{name}/subscriptions/{subscriber}/nack",
    tag = "topics",
    params(("name" = String, Path, description = "Topic name"), ("subscriber" = String, Path, description = "Subscriber name")),
    request_body = NackBody,
    responses(
        (status = 200, description = "How many deliveries were given back, and the stale receipts", body = NackOutcome),
        (status = 400, description = "A malformed receipt (named), or not 1 to 1000 receipts"),
        (status = 403, description = "No read permission"),
        (status = 404, description = "No such topic or subscription"),
    ),
)]
pub async fn nack_subscription(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<NackBody>,
) -> Result<HttpResponse, ApiError> {
    let mailbox = existing_subscription(&state, &caller, &path.0, &path.1).await?;
    let outcome = nack(&state, &caller, &mailbox, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(outcome))
}
