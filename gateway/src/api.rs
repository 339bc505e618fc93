//! The REST resources: exchanges, bindings, queues, topics, subscriptions, publishing.
//! See docs/rest-api.md for the contract.

use crate::mailboxes::{self, AckBody, PullBody};
use crate::nodes::retry_while_unavailable;
use crate::openapi::{self, Routes};
use crate::permissions::{require, require_any, visible};
pub use crate::publishing::{BatchBody, PublishBody};
use crate::publishing::{Incoming, PublishInput, RawQuery};
use crate::{caller::Caller, error::ApiError, AppState};
use actix_web::{http::Method, web, HttpRequest, HttpResponse};
use mom_catalog::access::{Permission, ResourceKind};
use mom_catalog::{Binding, Declared};
use mom_common::names::{validate_name, validate_routing_key};
use mom_common::proto::{self, DestinationKind};
use mom_common::{ExchangeKind, MailboxName};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

type Reply = Result<HttpResponse, ApiError>;

/// Ten years: a longer TTL would overflow the expiry time it is stored as.
pub const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3_600 * 1_000;
/// The longest `delay_ms` a publish may ask for: a year.
pub const MAX_DELAY_MS: u64 = 365 * 24 * 3_600 * 1_000;
type State = web::Data<AppState>;

fn declared(outcome: Declared, body: serde_json::Value) -> HttpResponse {
    match outcome {
        Declared::Created => HttpResponse::Created().json(body),
        Declared::Existed => HttpResponse::Ok().json(body),
    }
}

/// Declaring something new makes the caller its owner; declaring what exists already (or
/// asking for it with another kind) needs `configure` on it, as in RabbitMQ.
async fn declare_outcome(
    state: &AppState,
    caller: &Caller,
    kind: ResourceKind,
    name: &str,
    outcome: Result<Declared, mom_catalog::CatalogError>,
) -> Result<Declared, ApiError> {
    match outcome {
        Ok(Declared::Created) => Ok(Declared::Created),
        Ok(Declared::Existed) => {
            require(state, caller, kind, name, Permission::Configure).await?;
            Ok(Declared::Existed)
        }
        Err(e) => {
            if matches!(e, mom_catalog::CatalogError::KindConflict { .. }) {
                require(state, caller, kind, name, Permission::Configure).await?;
            }
            Err(e.into())
        }
    }
}

fn name(what: &'static str, value: &str) -> Result<(), ApiError> {
    Ok(validate_name(what, value)?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeBody {
    name: String,
    #[schema(value_type = ExchangeKind)]
    kind: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingBody {
    queue: String,
    #[serde(default)]
    routing_key: String,
}

pub const MAX_BATCH: usize = 1_000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeBody {
    subscriber: String,
    /// `latest` (the default): messages published from now on; `earliest`: first every
    /// message the topic still retains (see the topic's `retention_ms`). At most one of
    /// `start`, `start_offsets` and `start_time_ms`; they matter only when the subscription
    /// is new.
    start: Option<crate::topic_history::Start>,
    /// Retained messages from these partition offsets on (as in receipts,
    /// `<partition>/<offset>/...`); partitions not named replay everything retained.
    start_offsets: Option<std::collections::BTreeMap<u32, u64>>,
    /// Retained messages published at this time (ms since the Unix epoch) or later.
    start_time_ms: Option<u64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueBody {
    name: String,
    /// Where messages go that were delivered `max_deliveries` times without an ack, or
    /// rejected (`nack` without requeue), with headers saying why; the declarer needs write
    /// permission on it. None: such messages are dropped.
    dead_letter_exchange: Option<String>,
    /// Deliveries after which an unacked message is dead-lettered (at least 1); none: no
    /// limit.
    #[schema(minimum = 1)]
    max_deliveries: Option<u32>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicBody {
    name: String,
    /// Keep every message this long after its publish, also with no subscriber, so that a
    /// new subscription can start in the past; 0 or none: no history (messages go only to
    /// the subscribers there are). Declaring an existing topic with another value is 409.
    #[schema(maximum = 315_360_000_000_u64)]
    retention_ms: Option<u64>,
}

/// A pull's body is optional: no body means all defaults.
fn pull_body(bytes: &[u8]) -> Result<PullBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(PullBody::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// `{"<key>": [{"name": ...}, ...]}`
fn named_list(key: &str, names: Vec<String>) -> HttpResponse {
    let items: Vec<_> = names
        .into_iter()
        .map(|name| json!({ "name": name }))
        .collect();
    HttpResponse::Ok().json(json!({ key: items }))
}

/// Pulls from a queue or subscription once its existence was checked.
async fn pull_reply(
    state: &web::Data<AppState>,
    caller: &Caller,
    mailbox: Result<MailboxName, ApiError>,
    body: &[u8],
) -> Reply {
    let body = pull_body(body)?;
    let messages = mailboxes::pull(state, caller, &mailbox?, body).await?;
    Ok(HttpResponse::Ok().json(json!({ "messages": messages })))
}

async fn ack_reply(
    state: &AppState,
    caller: &Caller,
    mailbox: Result<MailboxName, ApiError>,
    body: AckBody,
) -> Reply {
    Ok(HttpResponse::Ok().json(mailboxes::ack(state, caller, &mailbox?, body).await?))
}

// ---- exchanges ----

/// Declares an exchange; the caller owns a new one.
#[utoipa::path(
    post,
    path = "/exchanges",
    tag = "exchanges",
    request_body = ExchangeBody,
    responses(
        (status = 201, description = "Declared", body = openapi::Exchange),
        (status = 200, description = "It exists already with this kind", body = openapi::Exchange),
        (status = 403, description = "It exists and the caller has no configure permission on it"),
        (status = 409, description = "It exists with another kind"),
    ),
)]
pub async fn declare_exchange(
    state: State,
    caller: Caller,
    body: web::Json<ExchangeBody>,
) -> Reply {
    name("exchange", &body.name)?;
    let kind: ExchangeKind = body.kind.parse()?;
    let outcome = state
        .catalog
        .declare_exchange(&body.name, kind, &caller.user)
        .await;
    let outcome =
        declare_outcome(&state, &caller, ResourceKind::Exchange, &body.name, outcome).await?;
    Ok(declared(
        outcome,
        json!({ "name": body.name, "kind": kind }),
    ))
}

#[utoipa::path(
    get,
    path = "/exchanges",
    tag = "exchanges",
    responses((status = 200, description = "The exchanges the caller has some permission on", body = openapi::ExchangeList)),
)]
pub async fn list_exchanges(state: State, caller: Caller) -> Reply {
    let exchanges = state.catalog.list_exchanges().await?;
    let exchanges: Vec<_> = visible(&state, &caller, ResourceKind::Exchange, exchanges, |e| &e.0)
        .await?
        .into_iter()
        .map(|(name, kind)| json!({ "name": name, "kind": kind }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "exchanges": exchanges })))
}

#[utoipa::path(
    get,
    path = "/exchanges/{name}",
    tag = "exchanges",
    params(("name" = String, Path, description = "Exchange name")),
    responses(
        (status = 200, description = "The exchange and its bindings", body = openapi::ExchangeDetail),
        (status = 403, description = "The caller has no permission on it"),
        (status = 404, description = "No such exchange"),
    ),
)]
pub async fn get_exchange(state: State, caller: Caller, path: web::Path<String>) -> Reply {
    name("exchange", &path)?;
    require_any(&state, &caller, ResourceKind::Exchange, &path).await?;
    let kind = state.catalog.exchange_kind(&path).await?;
    let bindings: Vec<_> = state
        .catalog
        .bindings(&path)
        .await?
        .into_iter()
        .map(|b| json!({ "queue": b.queue, "routing_key": b.routing_key }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "name": *path, "kind": kind, "bindings": bindings })))
}

/// Deletes an exchange and its bindings (needs configure).
#[utoipa::path(
    delete,
    path = "/exchanges/{name}",
    tag = "exchanges",
    params(("name" = String, Path, description = "Exchange name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "No configure permission"),
        (status = 404, description = "No such exchange"),
    ),
)]
pub async fn delete_exchange(state: State, caller: Caller, path: web::Path<String>) -> Reply {
    name("exchange", &path)?;
    require(
        &state,
        &caller,
        ResourceKind::Exchange,
        &path,
        Permission::Configure,
    )
    .await?;
    state.catalog.delete_exchange(&path).await?;
    mailboxes::refresh_routes(&state, &caller).await;
    Ok(HttpResponse::NoContent().finish())
}

/// A binding to change: it needs `configure` on the queue and `read` on the exchange (a
/// binding is a way of reading what the exchange routes).
async fn binding(
    state: &AppState,
    caller: &Caller,
    exchange: &str,
    body: BindingBody,
) -> Result<Binding, ApiError> {
    name("exchange", exchange)?;
    name("queue", &body.queue)?;
    validate_routing_key(&body.routing_key)?;
    require(
        state,
        caller,
        ResourceKind::Queue,
        &body.queue,
        Permission::Configure,
    )
    .await?;
    require(
        state,
        caller,
        ResourceKind::Exchange,
        exchange,
        Permission::Read,
    )
    .await?;
    Ok(Binding {
        queue: body.queue,
        routing_key: body.routing_key,
    })
}

/// Binds a queue to an exchange (needs configure on the queue and read on the exchange).
#[utoipa::path(
    post,
    path = "/exchanges/{name}/bindings",
    tag = "exchanges",
    params(("name" = String, Path, description = "Exchange name")),
    request_body = BindingBody,
    responses(
        (status = 201, description = "Bound", body = openapi::BindingReply),
        (status = 200, description = "The binding exists already", body = openapi::BindingReply),
        (status = 403, description = "No configure permission on the queue, or no read permission on the exchange"),
        (status = 404, description = "No such exchange or queue"),
    ),
)]
pub async fn bind(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<BindingBody>,
) -> Reply {
    let binding = binding(&state, &caller, &path, body.into_inner()).await?;
    let outcome = state.catalog.bind(&path, &binding).await?;
    mailboxes::refresh_routes(&state, &caller).await;
    Ok(declared(
        outcome,
        json!({ "exchange": *path, "queue": binding.queue, "routing_key": binding.routing_key }),
    ))
}

/// Removes a binding (the same permissions as binding).
#[utoipa::path(
    delete,
    path = "/exchanges/{name}/bindings",
    tag = "exchanges",
    params(("name" = String, Path, description = "Exchange name")),
    request_body = BindingBody,
    responses(
        (status = 204, description = "Unbound"),
        (status = 403, description = "No configure permission on the queue, or no read permission on the exchange"),
        (status = 404, description = "No such exchange, queue or binding"),
    ),
)]
pub async fn unbind(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<BindingBody>,
) -> Reply {
    let binding = binding(&state, &caller, &path, body.into_inner()).await?;
    state.catalog.unbind(&path, &binding).await?;
    mailboxes::refresh_routes(&state, &caller).await;
    Ok(HttpResponse::NoContent().finish())
}

// ---- publishing ----

/// Checks a message before it is sent: routing key, id, TTL, and its payload's size, headers
/// and content type against the limits of [`mom_common::message`].
fn check_message(body: &Incoming) -> Result<(), ApiError> {
    validate_routing_key(&body.routing_key)?;
    if let Some(id) = &body.message_id {
        validate_name("message_id", id)?;
    }
    if body.ttl_ms.is_some_and(|ttl| ttl > MAX_TTL_MS) {
        return Err(ApiError::BadRequest(format!(
            "ttl_ms must be at most {MAX_TTL_MS} (ten years); omit it for no expiry"
        )));
    }
    if body.ttl_ms == Some(0) {
        return Err(ApiError::BadRequest(
            "ttl_ms must be positive; omit it for no expiry".into(),
        ));
    }
    if body.delay_ms.is_some_and(|delay| delay > MAX_DELAY_MS) {
        return Err(ApiError::BadRequest(format!(
            "delay_ms must be at most {MAX_DELAY_MS} (a year)"
        )));
    }
    mom_common::message::check_message(body.payload.len(), &body.headers, &body.content_type)?;
    Ok(())
}

/// A batch entry's failure: the same status, its message naming the entry.
fn in_message(index: usize, e: ApiError) -> ApiError {
    match e {
        ApiError::PayloadTooLarge(m) => ApiError::PayloadTooLarge(format!("message {index}: {m}")),
        e => ApiError::BadRequest(format!("message {index}: {e}")),
    }
}

use crate::publish_queue::PublishQueues;
use mom_common::routing::partition_key;

/// One raw (octet-stream) message, or JSON: one message or a batch (`{"messages": [...]}`),
/// told apart by the body's shape.
async fn publish_any(
    state: &State,
    caller: &Caller,
    kind: DestinationKind,
    destination: &str,
    input: PublishInput,
) -> Reply {
    let resource = match kind {
        DestinationKind::Exchange => ResourceKind::Exchange,
        DestinationKind::Topic => ResourceKind::Topic,
        DestinationKind::Queue => ResourceKind::Queue,
    };
    require(state, caller, resource, destination, Permission::Write).await?;
    let body = match input {
        PublishInput::Raw(message) => {
            return publish(state, caller, kind, destination, message).await
        }
        PublishInput::Json(body) => body,
    };
    let invalid = |e: serde_json::Error| ApiError::BadRequest(format!("invalid JSON body: {e}"));
    if body.is_array() {
        return Err(ApiError::BadRequest(
            "a body with many messages is {\"messages\": [...]}, not an array".into(),
        ));
    }
    if body.get("messages").is_some() {
        let batch: BatchBody = serde_json::from_value(body).map_err(invalid)?;
        return publish_many(state, caller, kind, destination, batch.messages).await;
    }
    let message: PublishBody = serde_json::from_value(body).map_err(invalid)?;
    publish(state, caller, kind, destination, message.try_into()?).await
}

/// The message to send for a validated publish body. Its id is minted here, once: a retry
/// after an unanswered attempt carries the same id, and the partition's leader stores an id
/// at most once, so the message is not stored twice.
fn to_message(body: Incoming) -> proto::BatchMessage {
    proto::BatchMessage {
        new_id: body.message_id.is_none(),
        routing_key: body.routing_key,
        payload: body.payload,
        ttl_ms: body.ttl_ms.unwrap_or(0),
        message_id: body
            .message_id
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        headers: body.headers,
        content_type: body.content_type,
        delay_ms: body.delay_ms.unwrap_or(0),
    }
}

/// Publishes messages of one partition through its leader, retried while it is down or
/// moving (every message keeps its id across retries).
pub(crate) async fn publish_partition(
    state: &AppState,
    caller: &Caller,
    kind: DestinationKind,
    destination: &str,
    partition: u32,
    messages: &[proto::BatchMessage],
) -> Result<proto::PublishBatchReply, ApiError> {
    // Only the first attempt may say its minted ids are new: an unanswered one may have
    // stored them.
    let first_attempt = std::sync::atomic::AtomicBool::new(true);
    retry_while_unavailable(state.nodes.failover_wait, || async {
        let leader = state.nodes.leader_of(partition)?;
        let mut messages = messages.to_vec();
        if !first_attempt.swap(false, std::sync::atomic::Ordering::Relaxed) {
            messages.iter_mut().for_each(|m| m.new_id = false);
        }
        let request = proto::PublishBatchRequest {
            partition,
            kind: kind as i32,
            destination: destination.to_owned(),
            messages,
        };
        let mut broker = state.nodes.broker(&leader, &caller.act)?;
        let call = async { Ok(broker.publish_batch(request).await?.into_inner()) };
        state
            .nodes
            .unless_leader_moves(partition, &leader.id, call)
            .await
    })
    .await
    .inspect(|r| state.stats.published(kind, destination, r.published.len()))
}

/// A single publish: on its own when its partition is idle, else joined with others to it
/// ([`PublishQueues`]).
async fn publish(
    state: &State,
    caller: &Caller,
    kind: DestinationKind,
    destination: &str,
    body: Incoming,
) -> Reply {
    check_message(&body)?;
    let partition = state
        .nodes
        .partition_of(&partition_key(kind, destination, &body.routing_key));
    let mandatory = body.mandatory;
    let message = to_message(body);
    let published =
        PublishQueues::publish(state, caller, kind, destination, partition, message).await?;
    if mandatory && published.routed == 0 {
        return Err(unroutable(kind, destination));
    }
    Ok(HttpResponse::Created()
        .json(json!({ "message_id": published.message_id, "routed": published.routed })))
}

/// The refusal of a `mandatory` message no queue or subscriber would receive.
fn unroutable(kind: DestinationKind, destination: &str) -> ApiError {
    let what = match kind {
        DestinationKind::Exchange => {
            format!("no queue is bound to exchange {destination:?} for this routing key")
        }
        DestinationKind::Topic => format!("topic {destination:?} has no subscribers"),
        DestinationKind::Queue => format!("queue {destination:?} takes no messages"),
    };
    ApiError::Unprocessable(format!("{what}; the mandatory message was not stored"))
}

/// A batch: one `PublishBatch` call per partition, all at once, each retried like a single
/// publish. The answer lists every message's outcome in order: 201 when all were stored, 207
/// when some were, 503 when none (422 when none because every one was `mandatory` and
/// unroutable).
async fn publish_many(
    state: &AppState,
    caller: &Caller,
    kind: DestinationKind,
    destination: &str,
    messages: Vec<PublishBody>,
) -> Reply {
    if messages.is_empty() || messages.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "messages must hold 1 to {MAX_BATCH} entries"
        )));
    }
    let mut by_partition: BTreeMap<u32, Vec<(usize, proto::BatchMessage)>> = BTreeMap::new();
    let mandatory: Vec<bool> = messages.iter().map(|m| m.mandatory).collect();
    let mut unroutable_count = 0;
    for (index, body) in messages.into_iter().enumerate() {
        let body = Incoming::try_from(body)
            .and_then(|body| check_message(&body).map(|()| body))
            .map_err(|e| in_message(index, e))?;
        let partition =
            state
                .nodes
                .partition_of(&partition_key(kind, destination, &body.routing_key));
        by_partition
            .entry(partition)
            .or_default()
            .push((index, to_message(body)));
    }
    let count = by_partition.values().map(Vec::len).sum();
    let calls = by_partition
        .into_iter()
        .map(|(partition, messages)| async move {
            let batch: Vec<proto::BatchMessage> = messages.iter().map(|(_, m)| m.clone()).collect();
            let outcome =
                publish_partition(state, caller, kind, destination, partition, &batch).await;
            (messages, outcome)
        });
    let mut results = vec![serde_json::Value::Null; count];
    let mut stored = 0;
    for (messages, outcome) in futures::future::join_all(calls).await {
        match outcome {
            Ok(reply) => {
                for ((index, _), published) in messages.iter().zip(reply.published) {
                    if mandatory[*index] && published.routed == 0 {
                        results[*index] =
                            json!({ "error": unroutable(kind, destination).to_string() });
                        unroutable_count += 1;
                        continue;
                    }
                    results[*index] =
                        json!({ "message_id": published.message_id, "routed": published.routed });
                    stored += 1;
                }
            }
            // Bad input fails the whole request, as for a single message.
            Err(
                e @ (ApiError::BadRequest(_) | ApiError::NotFound(_) | ApiError::Unauthorized(_)),
            ) => return Err(e),
            Err(e) => {
                for (index, _) in &messages {
                    results[*index] = json!({ "error": e.to_string() });
                }
            }
        }
    }
    let status = match stored {
        0 if unroutable_count == count => actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
        0 => actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        n if n == count => actix_web::http::StatusCode::CREATED,
        _ => actix_web::http::StatusCode::MULTI_STATUS,
    };
    Ok(HttpResponse::build(status).json(json!({ "published": results })))
}

/// Publishes one message, or a batch of 1 to 1000, to an exchange (needs write).
#[utoipa::path(
    post,
    path = "/exchanges/{name}/publish",
    tag = "exchanges",
    params(
        ("name" = String, Path, description = "Exchange name"),
        RawQuery,
        ("X-Mom-Content-Type" = Option<String>, Header, description = "Octet-stream bodies only: the message's content type (at most 255 characters)"),
    ),
    request_body(
        content(
            (openapi::PublishRequest = "application/json"),
            (openapi::RawPayload = "application/octet-stream"),
        ),
        description = openapi::PUBLISH_BODY,
    ),
    responses(
        (status = 201, description = "Stored on the in-sync replicas: one message's id and how many queues got a copy, or every message's outcome of a batch", body = openapi::PublishReply),
        (status = 207, description = "A batch of which only some messages were stored", body = openapi::BatchReply),
        (status = 400, description = "Invalid input, the field named: both or neither of `payload` and `payload_base64`, invalid base64, more than 64 headers, a bad header name, a header value over 4096 bytes, a content type over 255 characters, an invalid routing key, message id or TTL, unreadable JSON or an unknown query parameter"),
        (status = 413, description = "A payload larger than 4194304 bytes (4 MiB, after base64 decoding), or a JSON body larger than the gateway's max_body_bytes"),
        (status = 403, description = "No write permission"),
        (status = 404, description = "No such exchange"),
        (status = 422, description = "A `mandatory` message no queue or subscriber would receive (a batch: every message): not stored"),
        (status = 503, description = "Not stored (a batch: none of its messages) as the partition's leader did not answer within the retry window; may have been stored, may be retried", body = openapi::PublishUnavailable),
    ),
)]
pub async fn publish_to_exchange(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: PublishInput,
) -> Reply {
    name("exchange", &path)?;
    publish_any(&state, &caller, DestinationKind::Exchange, &path, body).await
}

/// Publishes one message, or a batch of 1 to 1000, straight to a queue through the default
/// exchange, as RabbitMQ's `""` exchange does (needs write on the queue).
#[utoipa::path(
    post,
    path = "/queues/{name}/publish",
    tag = "queues",
    params(
        ("name" = String, Path, description = "Queue name"),
        RawQuery,
        ("X-Mom-Content-Type" = Option<String>, Header, description = "Octet-stream bodies only: the message's content type (at most 255 characters)"),
    ),
    request_body(
        content(
            (openapi::PublishRequest = "application/json"),
            (openapi::RawPayload = "application/octet-stream"),
        ),
        description = openapi::PUBLISH_BODY,
    ),
    responses(
        (status = 201, description = "Stored on the in-sync replicas (`routed` is 1), or every message's outcome of a batch", body = openapi::PublishReply),
        (status = 207, description = "A batch of which only some messages were stored", body = openapi::BatchReply),
        (status = 400, description = "Invalid input, the field named: both or neither of `payload` and `payload_base64`, invalid base64, more than 64 headers, a bad header name, a header value over 4096 bytes, a content type over 255 characters, an invalid routing key, message id or TTL, unreadable JSON or an unknown query parameter"),
        (status = 413, description = "A payload larger than 4194304 bytes (4 MiB, after base64 decoding), or a JSON body larger than the gateway's max_body_bytes"),
        (status = 403, description = "No write permission on the queue"),
        (status = 404, description = "No such queue"),
        (status = 422, description = "A `mandatory` message no queue or subscriber would receive (a batch: every message): not stored"),
        (status = 503, description = "Not stored (a batch: none of its messages) as the partition's leader did not answer within the retry window; may have been stored, may be retried", body = openapi::PublishUnavailable),
    ),
)]
pub async fn publish_to_queue(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: PublishInput,
) -> Reply {
    name("queue", &path)?;
    publish_any(&state, &caller, DestinationKind::Queue, &path, body).await
}

/// Publishes one message, or a batch of 1 to 1000, to a topic's subscribers (needs write).
#[utoipa::path(
    post,
    path = "/topics/{name}/publish",
    tag = "topics",
    params(
        ("name" = String, Path, description = "Topic name"),
        RawQuery,
        ("X-Mom-Content-Type" = Option<String>, Header, description = "Octet-stream bodies only: the message's content type (at most 255 characters)"),
    ),
    request_body(
        content(
            (openapi::PublishRequest = "application/json"),
            (openapi::RawPayload = "application/octet-stream"),
        ),
        description = openapi::PUBLISH_BODY,
    ),
    responses(
        (status = 201, description = "Stored on the in-sync replicas: one message's id and how many subscribers got a copy, or every message's outcome of a batch", body = openapi::PublishReply),
        (status = 207, description = "A batch of which only some messages were stored", body = openapi::BatchReply),
        (status = 400, description = "Invalid input, the field named: both or neither of `payload` and `payload_base64`, invalid base64, more than 64 headers, a bad header name, a header value over 4096 bytes, a content type over 255 characters, an invalid routing key, message id or TTL, unreadable JSON or an unknown query parameter"),
        (status = 413, description = "A payload larger than 4194304 bytes (4 MiB, after base64 decoding), or a JSON body larger than the gateway's max_body_bytes"),
        (status = 403, description = "No write permission"),
        (status = 404, description = "No such topic"),
        (status = 422, description = "A `mandatory` message no queue or subscriber would receive (a batch: every message): not stored"),
        (status = 503, description = "Not stored (a batch: none of its messages) as the partition's leader did not answer within the retry window; may have been stored, may be retried", body = openapi::PublishUnavailable),
    ),
)]
pub async fn publish_to_topic(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: PublishInput,
) -> Reply {
    name("topic", &path)?;
    publish_any(&state, &caller, DestinationKind::Topic, &path, body).await
}

// ---- queues ----

/// Declares a queue; the caller owns a new one.
#[utoipa::path(
    post,
    path = "/queues",
    tag = "queues",
    request_body = QueueBody,
    responses(
        (status = 201, description = "Declared", body = openapi::Named),
        (status = 200, description = "It exists already", body = openapi::Named),
        (status = 403, description = "It exists and the caller has no configure permission on it, or no write permission on the dead-letter exchange"),
        (status = 404, description = "No such dead-letter exchange"),
        (status = 409, description = "It exists with other dead-letter settings"),
    ),
)]
pub async fn declare_queue(state: State, caller: Caller, body: web::Json<QueueBody>) -> Reply {
    name("queue", &body.name)?;
    if body.max_deliveries == Some(0) {
        return Err(ApiError::BadRequest(
            "max_deliveries must be at least 1; omit it for no limit".into(),
        ));
    }
    if let Some(exchange) = &body.dead_letter_exchange {
        name("dead_letter_exchange", exchange)?;
        // Dead letters are published in the queue's name: its declarer must be allowed to.
        require(
            &state,
            &caller,
            ResourceKind::Exchange,
            exchange,
            Permission::Write,
        )
        .await?;
    }
    let settings = mom_catalog::QueueSettings {
        dead_letter_exchange: body.dead_letter_exchange.clone(),
        max_deliveries: body.max_deliveries,
    };
    let outcome = state
        .catalog
        .declare_queue(&body.name, &caller.user, &settings)
        .await;
    let outcome =
        declare_outcome(&state, &caller, ResourceKind::Queue, &body.name, outcome).await?;
    Ok(declared(outcome, json!({ "name": body.name })))
}

#[utoipa::path(
    get,
    path = "/queues",
    tag = "queues",
    responses((status = 200, description = "The queues the caller has some permission on", body = openapi::QueueList)),
)]
pub async fn list_queues(state: State, caller: Caller) -> Reply {
    let queues = state.catalog.list_queues().await?;
    Ok(named_list(
        "queues",
        visible(&state, &caller, ResourceKind::Queue, queues, |q| q).await?,
    ))
}

/// A queue the caller may read, checked to exist.
pub(crate) async fn existing_queue(
    state: &AppState,
    caller: &Caller,
    queue: &str,
) -> Result<MailboxName, ApiError> {
    name("queue", queue)?;
    require(state, caller, ResourceKind::Queue, queue, Permission::Read).await?;
    if !state.catalog.queue_exists(queue).await? {
        return Err(ApiError::NotFound(format!(
            "queue {queue:?} does not exist"
        )));
    }
    Ok(MailboxName::Queue(queue.to_owned()))
}

/// A queue's messages: ready to pull, and leased (needs read).
#[utoipa::path(
    get,
    path = "/queues/{name}",
    tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "The queue's depth", body = openapi::QueueDetail),
        (status = 403, description = "No read permission"),
        (status = 404, description = "No such queue"),
    ),
)]
pub async fn get_queue(state: State, caller: Caller, path: web::Path<String>) -> Reply {
    let mailbox = existing_queue(&state, &caller, &path).await?;
    let depth = mailboxes::depth(&state, &caller, &mailbox).await?;
    Ok(HttpResponse::Ok()
        .json(json!({ "name": *path, "ready": depth.ready, "leased": depth.leased })))
}

/// Deletes a queue, its messages and its bindings (needs configure).
#[utoipa::path(
    delete,
    path = "/queues/{name}",
    tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "No configure permission"),
        (status = 404, description = "No such queue"),
    ),
)]
pub async fn delete_queue(state: State, caller: Caller, path: web::Path<String>) -> Reply {
    name("queue", &path)?;
    require(
        &state,
        &caller,
        ResourceKind::Queue,
        &path,
        Permission::Configure,
    )
    .await?;
    state.catalog.delete_queue(&path).await?;
    mailboxes::refresh_routes(&state, &caller).await;
    mailboxes::purge(&state, &caller, &MailboxName::Queue(path.into_inner())).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Pulls up to `max` messages, waiting up to `wait_ms` for one (needs read).
#[utoipa::path(
    post,
    path = "/queues/{name}/pull",
    tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    request_body(content = ref("#/components/schemas/PullBody"), description = "Optional: no body means all defaults"),
    responses(
        (status = 200, description = "Messages leased to the caller for the visibility timeout (perhaps none); ack them by receipt before it ends", body = openapi::Messages),
        (status = 403, description = "No read permission"),
        (status = 404, description = "No such queue"),
    ),
)]
pub async fn pull_queue(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Reply {
    pull_reply(
        &state,
        &caller,
        existing_queue(&state, &caller, &path).await,
        &body,
    )
    .await
}

/// Streams a queue's messages as Server-Sent Events, one event per message with its receipt,
/// at most `prefetch` unacked at once (needs read). Ack them through the ack endpoint.
#[utoipa::path(
    get,
    path = "/queues/{name}/stream",
    tag = "queues",
    params(("name" = String, Path, description = "Queue name"), crate::streams::StreamQuery),
    responses(
        (status = 200, description = "A `text/event-stream`: each event's `data` is one message as a pull answers it (JSON on one line), leased to this stream for the visibility timeout; comment lines keep an idle stream open; an `error` event ends a stream a node refused", body = String, content_type = "text/event-stream"),
        (status = 403, description = "No read permission"),
        (status = 404, description = "No such queue"),
    ),
)]
pub async fn stream_queue(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    request: HttpRequest,
) -> Reply {
    let mailbox = existing_queue(&state, &caller, &path).await?;
    crate::streams::open(state, caller, mailbox, request.query_string())
}

/// Acknowledges pulled messages by their receipts, which deletes them (needs read).
#[utoipa::path(
    post,
    path = "/queues/{name}/ack",
    tag = "queues",
    params(("name" = String, Path, description = "Queue name")),
    request_body = AckBody,
    responses(
        (status = 200, description = "How many messages the receipts deleted, and the receipts refused as not the message's current delivery", body = mom_common::rest::AckOutcome),
        (status = 400, description = "A malformed receipt (named), or not 1 to 1000 receipts"),
        (status = 403, description = "No read permission"),
        (status = 404, description = "No such queue"),
    ),
)]
pub async fn ack_queue(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<AckBody>,
) -> Reply {
    ack_reply(
        &state,
        &caller,
        existing_queue(&state, &caller, &path).await,
        body.into_inner(),
    )
    .await
}

// ---- topics and subscriptions ----

/// Declares a topic; the caller owns a new one.
#[utoipa::path(
    post,
    path = "/topics",
    tag = "topics",
    request_body = TopicBody,
    responses(
        (status = 201, description = "Declared", body = openapi::Named),
        (status = 200, description = "It exists already", body = openapi::Named),
        (status = 403, description = "It exists and the caller has no configure permission on it"),
        (status = 409, description = "It exists with another retention"),
    ),
)]
pub async fn declare_topic(state: State, caller: Caller, body: web::Json<TopicBody>) -> Reply {
    name("topic", &body.name)?;
    let retention_ms = body.retention_ms.unwrap_or(0);
    if retention_ms > MAX_TTL_MS {
        return Err(ApiError::BadRequest(format!(
            "retention_ms must be at most {MAX_TTL_MS} (ten years)"
        )));
    }
    let settings = mom_catalog::TopicSettings { retention_ms };
    let outcome = state
        .catalog
        .declare_topic(&body.name, &caller.user, settings)
        .await;
    let outcome =
        declare_outcome(&state, &caller, ResourceKind::Topic, &body.name, outcome).await?;
    Ok(declared(outcome, json!({ "name": body.name })))
}

#[utoipa::path(
    get,
    path = "/topics",
    tag = "topics",
    responses((status = 200, description = "The topics the caller has some permission on", body = openapi::TopicList)),
)]
pub async fn list_topics(state: State, caller: Caller) -> Reply {
    let topics = state.catalog.list_topics().await?;
    Ok(named_list(
        "topics",
        visible(&state, &caller, ResourceKind::Topic, topics, |t| t).await?,
    ))
}

/// Deletes a topic and its subscriptions with their messages (needs configure).
#[utoipa::path(
    delete,
    path = "/topics/{name}",
    tag = "topics",
    params(("name" = String, Path, description = "Topic name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "No configure permission"),
        (status = 404, description = "No such topic"),
    ),
)]
pub async fn delete_topic(state: State, caller: Caller, path: web::Path<String>) -> Reply {
    name("topic", &path)?;
    require(
        &state,
        &caller,
        ResourceKind::Topic,
        &path,
        Permission::Configure,
    )
    .await?;
    let topic = path.into_inner();
    let subscribers = state.catalog.delete_topic(&topic).await?;
    mailboxes::refresh_routes(&state, &caller).await;
    crate::topic_history::forget(&state, &caller, &topic).await;
    for subscriber in subscribers {
        mailboxes::purge(
            &state,
            &caller,
            &MailboxName::Subscription {
                topic: topic.clone(),
                subscriber,
            },
        )
        .await;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Adds a subscriber: a mailbox that gets a copy of every message published to the topic
/// from now on (needs read).
#[utoipa::path(
    post,
    path = "/topics/{name}/subscriptions",
    tag = "topics",
    params(("name" = String, Path, description = "Topic name")),
    request_body = SubscribeBody,
    responses(
        (status = 201, description = "Subscribed", body = openapi::Subscription),
        (status = 200, description = "The subscription exists already", body = openapi::Subscription),
        (status = 403, description = "No read permission"),
        (status = 404, description = "No such topic"),
    ),
)]
pub async fn subscribe(
    state: State,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<SubscribeBody>,
) -> Reply {
    name("topic", &path)?;
    name("subscriber", &body.subscriber)?;
    let body = body.into_inner();
    let replay =
        crate::topic_history::ReplayFrom::of(body.start, body.start_offsets, body.start_time_ms)?;
    require(
        &state,
        &caller,
        ResourceKind::Topic,
        &path,
        Permission::Read,
    )
    .await?;
    let outcome = state.catalog.subscribe(&path, &body.subscriber).await?;
    mailboxes::refresh_routes(&state, &caller).await;
    // Only a new subscription replays: an existing one may have acked those messages.
    if let (Declared::Created, Some(from)) = (outcome, &replay) {
        crate::topic_history::replay(&state, &caller, &path, &body.subscriber, from).await?;
    }
    Ok(declared(
        outcome,
        json!({ "topic": *path, "subscriber": body.subscriber }),
    ))
}

#[utoipa::path(
    get,
    path = "/topics/{name}",
    tag = "topics",
    params(("name" = String, Path, description = "Topic name")),
    responses(
        (status = 200, description = "The topic and its subscribers", body = openapi::TopicDetail),
        (status = 403, description = "The caller has no permission on it"),
        (status = 404, description = "No such topic"),
    ),
)]
pub async fn get_topic(state: State, caller: Caller, path: web::Path<String>) -> Reply {
    name("topic", &path)?;
    require_any(&state, &caller, ResourceKind::Topic, &path).await?;
    let settings = state.catalog.topic_settings(&path).await?;
    let subscribers = state.catalog.subscribers(&path).await?;
    let retained = crate::topic_history::retained(&state, &caller, &path).await?;
    // A subscription's lag: its messages not acked yet (ready or delivered).
    let mut subscriptions = Vec::new();
    for subscriber in &subscribers {
        let mailbox = MailboxName::Subscription {
            topic: path.to_string(),
            subscriber: subscriber.clone(),
        };
        let depth = mailboxes::depth(&state, &caller, &mailbox).await?;
        subscriptions.push(json!({
            "subscriber": subscriber,
            "lag": depth.ready + depth.leased,
            "ready": depth.ready,
            "leased": depth.leased,
        }));
    }
    Ok(HttpResponse::Ok().json(json!({
        "name": *path,
        "retention_ms": settings.retention_ms,
        "retained": {
            "messages": retained.messages,
            "bytes": retained.bytes,
            "oldest_published_at_ms": (retained.oldest_ms > 0).then_some(retained.oldest_ms),
        },
        "subscribers": subscribers,
        "subscriptions": subscriptions,
    })))
}

#[utoipa::path(
    get,
    path = "/topics/{name}/subscriptions",
    tag = "topics",
    params(("name" = String, Path, description = "Topic name")),
    responses(
        (status = 200, description = "The topic's subscribers", body = openapi::Subscribers),
        (status = 403, description = "The caller has no permission on it"),
        (status = 404, description = "No such topic"),
    ),
)]
pub async fn list_subscribers(state: State, caller: Caller, path: web::Path<String>) -> Reply {
    name("topic", &path)?;
    require_any(&state, &caller, ResourceKind::Topic, &path).await?;
    let subscribers = state.catalog.subscribers(&path).await?;
    Ok(HttpResponse::Ok().json(json!({ "subscribers": subscribers })))
}

/// A subscription of a topic the caller may read, checked to exist.
pub(crate) async fn existing_subscription(
    state: &AppState,
    caller: &Caller,
    topic: &str,
    subscriber: &str,
) -> Result<MailboxName, ApiError> {
    name("topic", topic)?;
    name("subscriber", subscriber)?;
    require(state, caller, ResourceKind::Topic, topic, Permission::Read).await?;
    if !state.catalog.subscription_exists(topic, subscriber).await? {
        return Err(ApiError::NotFound(format!(
            "subscriber {subscriber:?} of topic {topic:?} does not exist"
        )));
    }
    Ok(MailboxName::Subscription {
        topic: topic.to_owned(),
        subscriber: subscriber.to_owned(),
    })
}

/// Removes a subscription and its messages (needs read).
#[utoipa::path(
    delete,
    path = "/topics/{name}/subscriptions/{subscriber}",
    tag = "topics",
    params(("name" = String, Path, description = "Topic name"), ("subscriber" = String, Path, description = "Subscriber name")),
    responses(
        (status = 204, description = "Unsubscribed"),
        (status = 403, description = "No read permission"),
        (status = 404, description = "No such topic or subscription"),
    ),
)]
pub async fn unsubscribe(state: State, caller: Caller, path: web::Path<(String, String)>) -> Reply {
    let (topic, subscriber) = path.into_inner();
    name("topic", &topic)?;
    name("subscriber", &subscriber)?;
    require(
        &state,
        &caller,
        ResourceKind::Topic,
        &topic,
        Permission::Read,
    )
    .await?;
    state.catalog.unsubscribe(&topic, &subscriber).await?;
    mailboxes::refresh_routes(&state, &caller).await;
    mailboxes::purge(
        &state,
        &caller,
        &MailboxName::Subscription { topic, subscriber },
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// Pulls from a subscription, as from a queue (needs read on the topic).
#[utoipa::path(
    post,
    path = "/topics/{name}/subscriptions/{subscriber}/pull",
    tag = "topics",
    params(("name" = String, Path, description = "Topic name"), ("subscriber" = String, Path, description = "Subscriber name")),
    request_body(content = ref("#/components/schemas/PullBody"), description = "Optional: no body means all defaults"),
    responses(
        (status = 200, description = "Messages leased to the caller for the visibility timeout (perhaps none); ack them by receipt before it ends", body = openapi::Messages),
        (status = 403, description = "No read permission"),
        (status = 404, description = "No such topic or subscription"),
    ),
)]
pub async fn pull_subscription(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Reply {
    pull_reply(
        &state,
        &caller,
        existing_subscription(&state, &caller, &path.0, &path.1).await,
        &body,
    )
    .await
}

/// Streams a subscription's messages as Server-Sent Events, as a queue's (needs read on the
/// topic).
#[utoipa::path(
    get,
    path = "/topics/{name}/subscriptions/{subscriber}/stream",
    tag = "topics",
    params(("name" = String, Path, description = "Topic name"), ("subscriber" = String, Path, description = "Subscriber name"), crate::streams::StreamQuery),
    responses(
        (status = 200, description = "A `text/event-stream` of the subscription's messages, as a queue's stream", body = String, content_type = "text/event-stream"),
        (status = 403, description = "No read permission"),
        (status = 404, description = "No such topic or subscription"),
    ),
)]
pub async fn stream_subscription(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
    request: HttpRequest,
) -> Reply {
    let mailbox = existing_subscription(&state, &caller, &path.0, &path.1).await?;
    crate::streams::open(state, caller, mailbox, request.query_string())
}

/// Acknowledges messages pulled from a subscription (needs read on the topic).
#[utoipa::path(
    post,
    path = "/topics/{name}/subscriptions/{subscriber}/ack",
    tag = "topics",
    params(("name" = String, Path, description = "Topic name"), ("subscriber" = String, Path, description = "Subscriber name")),
    request_body = AckBody,
    responses(
        (status = 200, description = "How many messages the receipts deleted, and the receipts refused as not the message's current delivery", body = mom_common::rest::AckOutcome),
        (status = 400, description = "A malformed receipt (named), or not 1 to 1000 receipts"),
        (status = 403, description = "No read permission"),
        (status = 404, description = "No such topic or subscription"),
    ),
)]
pub async fn ack_subscription(
    state: State,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<AckBody>,
) -> Reply {
    ack_reply(
        &state,
        &caller,
        existing_subscription(&state, &caller, &path.0, &path.1).await,
        body.into_inner(),
    )
    .await
}

/// The resource routes; [`crate::routes`] registers them with the others.
pub fn routes<R: Routes>(r: &mut R) {
    r.add(Method::POST, "/exchanges", declare_exchange)
        .add(Method::GET, "/exchanges", list_exchanges)
        .add(Method::GET, "/exchanges/{name}", get_exchange)
        .add(Method::DELETE, "/exchanges/{name}", delete_exchange)
        .add(Method::POST, "/exchanges/{name}/bindings", bind)
        .add(Method::DELETE, "/exchanges/{name}/bindings", unbind)
        .add(
            Method::POST,
            "/exchanges/{name}/publish",
            publish_to_exchange,
        )
        .add(Method::POST, "/queues", declare_queue)
        .add(Method::GET, "/queues", list_queues)
        .add(Method::GET, "/queues/{name}", get_queue)
        .add(Method::DELETE, "/queues/{name}", delete_queue)
        .add(Method::POST, "/queues/{name}/publish", publish_to_queue)
        .add(Method::POST, "/queues/{name}/pull", pull_queue)
        .add(Method::POST, "/queues/{name}/ack", ack_queue)
        .add(Method::POST, "/queues/{name}/nack", crate::nack::nack_queue)
        .add(Method::GET, "/queues/{name}/stream", stream_queue)
        .add(Method::POST, "/topics", declare_topic)
        .add(Method::GET, "/topics", list_topics)
        .add(Method::GET, "/topics/{name}", get_topic)
        .add(Method::DELETE, "/topics/{name}", delete_topic)
        .add(Method::POST, "/topics/{name}/publish", publish_to_topic)
        .add(Method::POST, "/topics/{name}/subscriptions", subscribe)
        .add(
            Method::GET,
            "/topics/{name}/subscriptions",
            list_subscribers,
        )
        .add(
            Method::DELETE,
            "/topics/{name}/subscriptions/{subscriber}",
            unsubscribe,
        )
        .add(
            Method::POST,
            "/topics/{name}/subscriptions/{subscriber}/pull",
            pull_subscription,
        )
        .add(
            Method::POST,
            "/topics/{name}/subscriptions/{subscriber}/ack",
            ack_subscription,
        )
        .add(
            Method::POST,
            "/topics/{name}/subscriptions/{subscriber}/nack",
            crate::nack::nack_subscription,
        )
        .add(
            Method::GET,
            "/topics/{name}/subscriptions/{subscriber}/stream",
            stream_subscription,
        );
}
