//! Values the gateway sends back, and options for requests.

use mom_common::ExchangeKind;
use serde::{Deserialize, Serialize};

pub use mom_common::rest::{
    AckOutcome, ClusterView, Delivery, NodeView, PartitionView, PayloadDecodeError, QueueDepth,
};
use std::collections::BTreeMap;
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
    /// Keep the message from consumers for this long after it is stored (delayed delivery);
    /// `None`: deliverable at once.
    pub delay: Option<Duration>,
    /// Refuse (an error with status 422) rather than answer `routed: 0` when no queue or
    /// subscriber would get the message.
    pub mandatory: bool,
    /// The publisher's own message id: publishing again with the same id (a retry after a
    /// timeout, say) stores the message once. `None`: the gateway mints one.
    pub message_id: Option<String>,
    /// The publisher's own headers, delivered with the message ([`Delivery::headers`]): at
    /// most 64, names 1-128 characters of `[A-Za-z0-9._-]`, values at most 4096 bytes.
    pub headers: BTreeMap<String, String>,
    /// The payload's content type (a MIME type, at most 255 characters), delivered with the
    /// message ([`Delivery::content_type`]).
    pub content_type: Option<String>,
}

impl PublishOptions {
    /// These options with one more header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// These options with a content type.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// These options with a delivery delay: consumers get the message `delay` after it is
    /// stored, not before.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
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
        assert_eq!(d.payload_bytes().unwrap(), b"hi");
        assert!(d.headers.is_empty() && d.content_type.is_none());
    }

    #[test]
    fn decodes_a_binary_message_with_headers() {
        let d: Delivery = serde_json::from_str(
            r#"{"message_id":"m1","receipt":"r1","exchange":"ex","routing_key":"",
                "payload":"\u0000\ufffd","payload_base64":"AP8=","headers":{"trace-id":"t"},
                "content_type":"application/x-raw","delivery_count":1,"published_at_ms":1}"#,
        )
        .unwrap();
        assert_eq!(d.payload_bytes().unwrap(), [0, 255]);
        assert_eq!(d.headers["trace-id"], "t");
        assert_eq!(d.content_type.as_deref(), Some("application/x-raw"));
    }

    #[test]
    fn publish_options_build_headers_and_content_type() {
        let options = PublishOptions::default()
            .header("a", "1")
            .header("b", "2")
            .content_type("text/csv");
        assert_eq!(options.headers.len(), 2);
        assert_eq!(options.content_type.as_deref(), Some("text/csv"));
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
