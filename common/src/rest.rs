//! Bodies of the REST API that both the gateway (which writes them) and clients (which read
//! them) use; see docs/rest-api.md.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One message handed out by a pull; ack it with its `receipt` before the lease runs out.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Id given to the message when it was published.
    pub message_id: String,
    /// Proof of this particular delivery; needed to ack it.
    pub receipt: String,
    /// Exchange (or topic) the message was published to.
    pub exchange: String,
    /// Routing key it was published with.
    pub routing_key: String,
    /// The message body as text (its bytes read as UTF-8, any invalid sequence replaced by
    /// U+FFFD): text; use `payload_base64` for binary.
    pub payload: String,
    /// The message body exactly as published, in standard base64 (RFC 4648, padded).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(content_encoding = "base64"))]
    pub payload_base64: String,
    /// The publisher's headers (omitted when there are none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The payload's content type, if the publisher gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// How many times the message has been handed out, this time included.
    pub delivery_count: u32,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_at_ms: u64,
}

/// A delivery's `payload_base64` that is not base64 (it did not come from a gateway).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload_base64 is not valid base64: {0}")]
pub struct PayloadDecodeError(#[from] base64::DecodeError);

impl Delivery {
    /// The message body exactly as published: `payload_base64` decoded. From a gateway that
    /// sends no `payload_base64` (older than binary payloads), the text `payload`'s bytes.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, PayloadDecodeError> {
        use base64::Engine as _;
        if self.payload_base64.is_empty() {
            return Ok(self.payload.as_bytes().to_vec());
        }
        Ok(base64::engine::general_purpose::STANDARD.decode(&self.payload_base64)?)
    }
}

/// A node's delivery as the REST API (and a gRPC stream's reader) shows it: the payload as
/// text and as base64.
impl From<crate::proto::Delivery> for Delivery {
    fn from(d: crate::proto::Delivery) -> Self {
        use base64::Engine as _;
        Delivery {
            payload: String::from_utf8_lossy(&d.payload).into_owned(),
            payload_base64: base64::engine::general_purpose::STANDARD.encode(&d.payload),
            receipt: d.receipt,
            message_id: d.message_id,
            exchange: d.exchange,
            routing_key: d.routing_key,
            headers: d.headers,
            content_type: (!d.content_type.is_empty()).then_some(d.content_type),
            delivery_count: d.delivery_count,
            published_at_ms: d.published_at_ms,
        }
    }
}

/// Messages in a queue.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// Waiting to be pulled.
    pub ready: u64,
    /// Pulled but neither acked nor timed out yet.
    pub leased: u64,
}

/// Answer to an ack.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AckOutcome {
    /// How many receipts deleted their message.
    pub acked: u64,
    /// Receipts refused because they are not the message's current delivery (or it is gone).
    #[serde(default)]
    pub stale: Vec<String>,
}

/// A broker node, as `GET /cluster` shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub id: String,
    /// The address other services dial.
    pub address: String,
    pub live: bool,
}

/// A partition, as `GET /cluster` shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionView {
    pub partition: u32,
    pub leader: String,
    pub leader_live: bool,
    pub epoch: u64,
    pub replicas: Vec<String>,
    /// The in-sync replicas.
    pub isr: Vec<String>,
    /// Per replica, how many committed records it has yet to learn of: the leader's high
    /// watermark minus the replica's, as the nodes report them (`null` when the replica or
    /// the leader did not answer in time). Filled only in `/cluster`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lag: BTreeMap<String, Option<u64>>,
}

/// Answer of `GET /cluster`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The partitioning service elected controller, if any.
    pub controller: Option<String>,
    pub nodes: Vec<NodeView>,
    pub partitions: Vec<PartitionView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(payload: &str, payload_base64: &str) -> Delivery {
        Delivery {
            message_id: "m".into(),
            receipt: "r".into(),
            exchange: "ex".into(),
            routing_key: "k".into(),
            payload: payload.into(),
            payload_base64: payload_base64.into(),
            headers: BTreeMap::new(),
            content_type: None,
            delivery_count: 1,
            published_at_ms: 1,
        }
    }

    #[test]
    fn payload_bytes_decode_base64_and_fall_back_to_the_text() {
        assert_eq!(delivery("\u{fffd}", "/w==").payload_bytes(), Ok(vec![0xff]));
        assert_eq!(delivery("old", "").payload_bytes(), Ok(b"old".to_vec()));
        assert!(delivery("", "not base64!").payload_bytes().is_err());
    }

    #[test]
    fn new_fields_are_optional_and_omitted_when_empty() {
        let old: Delivery = serde_json::from_str(
            r#"{"message_id":"m","receipt":"r","exchange":"ex","routing_key":"k",
                "payload":"hi","delivery_count":1,"published_at_ms":1}"#,
        )
        .unwrap();
        assert_eq!(old, delivery("hi", ""));
        let json = serde_json::to_value(delivery("hi", "aGk=")).unwrap();
        assert!(json.get("headers").is_none() && json.get("content_type").is_none());
        assert_eq!(json["payload_base64"], "aGk=");
    }
}
