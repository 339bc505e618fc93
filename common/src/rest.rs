//! Bodies of the REST API that both the gateway (which writes them) and clients (which read
//! them) use; see docs/rest-api.md.

use serde::{Deserialize, Serialize};

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
    /// The message body.
    pub payload: String,
    /// How many times the message has been handed out, this time included.
    pub delivery_count: u32,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_at_ms: u64,
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
