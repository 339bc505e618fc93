//! Async client for the MOM REST gateway.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mom_client::ClientError> {
//! use mom_client::{Connection, ExchangeKind};
//! let conn = Connection::connect("http://127.0.0.1:8080", "alice", "s3cret-pass").await?;
//! conn.declare_exchange("orders", ExchangeKind::Direct).await?;
//! conn.declare_queue("eu").await?;
//! conn.bind("orders", "eu", "eu").await?;
//! conn.publish("orders", "eu", "hello").await?;
//! let mut consumer = conn.consume("eu");
//! let delivery = consumer.next().await?;
//! consumer.ack(&delivery).await?;
//! # Ok(()) }
//! ```

mod access;
mod connection;
mod dead_letters;
mod error;
mod grpc_stream;
mod history;
mod puller;
mod stream;
mod types;

pub use access::{GrantInfo, Permission, ResourceKind, UserInfo};
pub use connection::Connection;
pub use dead_letters::{NackOutcome, QueueOptions};
pub use error::ClientError;
pub use history::{Retained, SubscriptionLag, SubscriptionStart, TopicInfo};
pub use mom_common::{ExchangeKind, MailboxName};
pub use puller::{Consumer, Puller, Subscription, DEFAULT_BATCH, MAX_WAIT};
pub use stream::{DeliveryStream, StreamOptions, Transport};
pub use types::{
    AckOutcome, Binding, ClusterView, Delivery, ExchangeInfo, ExchangeSummary, Health, NodeView,
    PartitionView, PayloadDecodeError, PublishOptions, Published, QueueDepth,
};
