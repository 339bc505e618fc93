//! Topic history: a topic declared with `retention_ms` keeps every message that long, and a
//! new subscription may start in the past (`earliest`, an offset per partition, or a time).
//!
//! The nodes hold the history (each partition's leader, in its log and its `history` table);
//! this module asks them. Replaying into a new subscription is one `Replay` record per
//! partition, appended by that partition's leader: every replica puts the same messages into
//! the subscription's mailbox, and a message that was also routed to the subscription (it was
//! published while the subscription was being made) is there once.

use crate::caller::Caller;
use crate::error::ApiError;
use crate::nodes::retry_while_unavailable;
use crate::AppState;
use futures::future::join_all;
use mom_common::proto;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// Messages published from now on (the default).
    #[default]
    Latest,
    /// Every message the topic still retains.
    Earliest,
}

/// What a subscription replays from the topic's history, read from its declare body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFrom {
    /// Per partition, the first offset to replay; partitions not named replay everything
    /// retained.
    pub offsets: BTreeMap<u32, u64>,
    /// Only messages published at this time (ms since the epoch) or later.
    pub time_ms: u64,
}

impl ReplayFrom {
    /// The replay a subscribe body asks for; None: nothing (start at the latest).
    pub fn of(
        start: Option<Start>,
        offsets: Option<BTreeMap<u32, u64>>,
        time_ms: Option<u64>,
    ) -> Result<Option<ReplayFrom>, ApiError> {
        let given = [start.is_some(), offsets.is_some(), time_ms.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ApiError::BadRequest(
                "give at most one of start, start_offsets and start_time_ms".into(),
            ));
        }
        Ok(match (start, offsets, time_ms) {
            (Some(Start::Earliest), _, _) => Some(ReplayFrom::default()),
            (_, Some(offsets), _) => Some(ReplayFrom {
                offsets,
                time_ms: 0,
            }),
            (_, _, Some(time_ms)) => Some(ReplayFrom {
                offsets: BTreeMap::new(),
                time_ms,
            }),
            _ => None,
        })
    }
}

/// Puts the topic's retained messages into a new subscription, on every partition at once,
/// each retried while its leader is down or moving.
pub async fn replay(
    state: &AppState,
    caller: &Caller,
    topic: &str,
    subscriber: &str,
    from: &ReplayFrom,
) -> Result<(), ApiError> {
    let partitions = state.nodes.partition_count();
    if let Some(bad) = from.offsets.keys().find(|p| **p >= partitions) {
        return Err(ApiError::BadRequest(format!(
            "start_offsets: no partition {bad} (the cluster has {partitions})"
        )));
    }
    let calls = (0..partitions).map(|partition| async move {
        retry_while_unavailable(state.nodes.failover_wait, || async {
            let leader = state.nodes.leader_of(partition)?;
            let request = proto::ReplayRequest {
                partition,
                topic: topic.to_owned(),
                subscriber: subscriber.to_owned(),
                from_offset: from.offsets.get(&partition).copied().unwrap_or(0),
                from_time_ms: from.time_ms,
            };
            let mut broker = state.nodes.broker(&leader, &caller.act)?;
            let call = async { Ok(broker.replay(request).await?.into_inner()) };
            state
                .nodes
                .unless_leader_moves(partition, &leader.id, call)
                .await
        })
        .await
        .map_err(|e| (partition, e))
    });
    let failed: Vec<(u32, ApiError)> = join_all(calls)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    match failed.into_iter().next() {
        None => Ok(()),
        Some((partition, e)) => Err(ApiError::Unavailable(format!(
            "the subscription exists, but partition {partition}'s history could not be \
             replayed into it ({e}); delete it and subscribe again"
        ))),
    }
}

/// How much of the topic the cluster retains, summed over the partitions' leaders.
pub async fn retained(
    state: &AppState,
    caller: &Caller,
    topic: &str,
) -> Result<proto::HistoryReply, ApiError> {
    let asks = state.nodes.live().into_iter().map(|node| async move {
        let mut broker = state.nodes.broker(&node, &caller.act)?;
        let request = proto::HistoryRequest {
            topic: topic.to_owned(),
        };
        Ok::<_, ApiError>(broker.history(request).await?.into_inner())
    });
    let mut total = proto::HistoryReply::default();
    for reply in join_all(asks).await {
        let reply = reply?;
        total.messages += reply.messages;
        total.bytes += reply.bytes;
        if reply.oldest_ms > 0 && (total.oldest_ms == 0 || reply.oldest_ms < total.oldest_ms) {
            total.oldest_ms = reply.oldest_ms;
        }
    }
    Ok(total)
}

/// Drops a deleted topic's retained messages from every live node.
pub async fn forget(state: &AppState, caller: &Caller, topic: &str) {
    for node in state.nodes.live() {
        let request = proto::PurgeRequest {
            mailbox: None,
            topic_history: topic.to_owned(),
        };
        let outcome = match state.nodes.broker(&node, &caller.act) {
            Ok(mut broker) => broker.purge(request).await.map_err(|s| s.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = outcome {
            tracing::warn!(node = %node.id, topic, %error, "dropping retained messages failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_start_at_most() {
        assert_eq!(ReplayFrom::of(None, None, None).unwrap(), None);
        assert_eq!(
            ReplayFrom::of(Some(Start::Latest), None, None).unwrap(),
            None
        );
        assert_eq!(
            ReplayFrom::of(Some(Start::Earliest), None, None).unwrap(),
            Some(ReplayFrom::default())
        );
        assert_eq!(
            ReplayFrom::of(None, None, Some(5)).unwrap(),
            Some(ReplayFrom {
                offsets: BTreeMap::new(),
                time_ms: 5
            })
        );
        assert!(ReplayFrom::of(Some(Start::Earliest), None, Some(5)).is_err());
    }
}
