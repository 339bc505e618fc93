//! Topic history from the client's side: declaring a topic that retains its messages,
//! subscribing from the past (`earliest`, partition offsets or a time), and reading a topic's
//! retention, retained size and subscription lag.

use crate::connection::Connection;
use crate::error::ClientError;
use crate::puller::Subscription;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a new subscription starts; an existing subscription is left as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SubscriptionStart {
    /// Messages published from now on.
    #[default]
    Latest,
    /// Every message the topic still retains, then the new ones.
    Earliest,
    /// Retained messages from these partition offsets on (partitions not named: everything
    /// retained), as receipts name them (`<partition>/<offset>/...`).
    Offsets(BTreeMap<u32, u64>),
    /// Retained messages published at this time or later.
    Time(SystemTime),
}

/// A topic as `GET /topics/{name}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    /// How long every message is kept for new subscriptions (0: no history).
    pub retention_ms: u64,
    pub retained: Retained,
    pub subscribers: Vec<String>,
    pub subscriptions: Vec<SubscriptionLag>,
}

/// What a topic retains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retained {
    pub messages: u64,
    pub bytes: u64,
    pub oldest_published_at_ms: Option<u64>,
}

/// A subscription's messages not acked yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionLag {
    pub subscriber: String,
    pub lag: u64,
    pub ready: u64,
    pub leased: u64,
}

#[derive(Serialize)]
struct TopicBody<'a> {
    name: &'a str,
    retention_ms: u64,
}

#[derive(Serialize)]
struct SubscribeBody<'a> {
    subscriber: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_offsets: Option<&'a BTreeMap<u32, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time_ms: Option<u64>,
}

impl Connection {
    /// Declares a topic that keeps every message for `retention` after its publish (also
    /// with no subscriber), so that new subscriptions can start in the past.
    pub async fn declare_topic_with_retention(
        &self,
        name: &str,
        retention: Duration,
    ) -> Result<(), ClientError> {
        let body = TopicBody {
            name,
            retention_ms: retention.as_millis().min(u64::MAX as u128) as u64,
        };
        self.send(self.request(Method::POST, "/topics").json(&body))
            .await?;
        Ok(())
    }

    /// Subscribes to a topic starting at `start` (only a new subscription replays history).
    pub async fn subscribe_from(
        &self,
        topic: &str,
        subscriber: &str,
        start: &SubscriptionStart,
    ) -> Result<Subscription, ClientError> {
        let mut body = SubscribeBody {
            subscriber,
            start: None,
            start_offsets: None,
            start_time_ms: None,
        };
        match start {
            SubscriptionStart::Latest => {}
            SubscriptionStart::Earliest => body.start = Some("earliest"),
            SubscriptionStart::Offsets(offsets) => body.start_offsets = Some(offsets),
            SubscriptionStart::Time(time) => {
                let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
                body.start_time_ms = Some(since.as_millis() as u64);
            }
        }
        let path = format!("/topics/{topic}/subscriptions");
        self.send(self.request(Method::POST, &path).json(&body))
            .await?;
        Ok(self.subscription(topic, subscriber))
    }

    /// A topic's retention, what it retains, and each subscription's lag.
    pub async fn topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        self.call(self.request(Method::GET, &format!("/topics/{name}")))
            .await
    }
}
