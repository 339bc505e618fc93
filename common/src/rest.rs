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
