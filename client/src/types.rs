//! Values the gateway sends back, and options for requests.

use mom_common::ExchangeKind;
use serde::{Deserialize, Serialize};

pub use mom_common::rest::{
    AckOutcome, ClusterView, Delivery, NodeView, PartitionView, QueueDepth,
};
use std::time::Duration;

/// Answer to a publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Id of the new message.
    pub message_id: String,
    /// How many queues (or topic subscribers) got a copy.
    pub routed: u64,
}

/// Options of [`Connection::publish_with`](crate::Connection::publish_with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// Time after which the message is dropped undelivered; `None` keeps it until consumed.
    pub ttl: Option<Duration>,
    /// Refuse (an error with status 422) rather than answer `routed: 0` when no queue or
    /// subscriber would get the message.
    pub mandatory: bool,
    /// The publisher's own message id: publishing again with the same id (a retry after a
    /// timeout, say) stores the message once. `None`: the gateway mints one.
    pub message_id: Option<String>,
}

/// Answer of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `"ok"`, `"degraded"` (some partition has fewer in-sync replicas than replicas) or
    /// `"unavailable"` (some partition cannot take writes; answered with status 503).
    pub status: String,
    /// Broker nodes the gateway currently sees alive.
    pub nodes: u64,
    /// Why the status is not `"ok"`.
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// An exchange, as listed by `GET /exchanges`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeSummary {
    /// Its name.
    pub name: String,
    /// How it routes.
    pub kind: ExchangeKind,
}

/// One binding of an exchange to a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The bound queue.
    pub queue: String,
    /// The binding key (or pattern, for topic exchanges).
    pub routing_key: String,
}

/// An exchange with its bindings, as shown by `GET /exchanges/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeInfo {
    /// Its name.
    pub name: String,
    /// How it routes.
    pub kind: ExchangeKind,
    /// Queues bound to it.
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_message() {
        let d: Delivery = serde_json::from_str(
            r#"{"message_id":"m1","receipt":"r1","exchange":"ex","routing_key":"a.b",
                "payload":"hi","delivery_count":2,"published_at_ms":1700000000000}"#,
        )
        .unwrap();
        assert_eq!(d.payload, "hi");
        assert_eq!(d.delivery_count, 2);
        assert_eq!(d.published_at_ms, 1_700_000_000_000);
    }

    #[test]
    fn decodes_exchange_info() {
        let e: ExchangeInfo = serde_json::from_str(
            r#"{"name":"ex","kind":"fanout","bindings":[{"queue":"q","routing_key":""}]}"#,
        )
        .unwrap();
        assert_eq!(e.kind, ExchangeKind::Fanout);
        assert_eq!(e.bindings.len(), 1);
    }

    #[test]
    fn ack_outcome_without_stale_list() {
        let a: AckOutcome = serde_json::from_str(r#"{"acked":3}"#).unwrap();
        assert_eq!(
            a,
            AckOutcome {
                acked: 3,
                stale: vec![]
            }
        );
    }
}
