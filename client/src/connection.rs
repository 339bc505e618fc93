//! [`Connection`]: an authenticated handle on the gateway's REST API.

use crate::error::ClientError;
use crate::puller::{Consumer, Puller, Subscription};
use crate::stream::{DeliveryStream, StreamOptions};
use crate::types::{
    AckOutcome, Delivery, ExchangeInfo, ExchangeSummary, Health, PublishOptions, Published,
    QueueDepth,
};
use base64::Engine as _;
use mom_common::{ExchangeKind, MailboxName};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// How long to wait for a TCP connection to the gateway before giving up.
/// How long an idle connection to the gateway is kept for reuse.
const IDLE_CONNECTION_REUSE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on one gateway, carrying the bearer token of a logged-in user.
///
/// Cheap to clone: clones share the HTTP connection pool.
#[derive(Clone)]
pub struct Connection {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[derive(Serialize)]
struct Credentials<'a> {
    username: &'a str,
    password: &'a str,
}

#[derive(Deserialize)]
struct LoginAnswer {
    token: String,
}

#[derive(Serialize)]
struct NewExchange<'a> {
    name: &'a str,
    kind: ExchangeKind,
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct BindingBody<'a> {
    queue: &'a str,
    routing_key: &'a str,
}

/// A message's body as a publish sends it: text, or bytes (sent as base64).
enum Payload<'a> {
    Text(String),
    Bytes(&'a [u8]),
}

#[derive(Serialize)]
struct PublishBody<'a> {
    routing_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    mandatory: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
}

impl<'a> PublishBody<'a> {
    fn new(routing_key: &'a str, payload: Payload<'_>, options: PublishOptions) -> Self {
        let (payload, payload_base64) = match payload {
            Payload::Text(text) => (Some(text), None),
            Payload::Bytes(bytes) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            ),
        };
        PublishBody {
            routing_key,
            payload,
            payload_base64,
            headers: options.headers,
            content_type: options.content_type,
            ttl_ms: options.ttl.map(millis_ceil),
            delay_ms: options.delay.map(millis_ceil),
            mandatory: options.mandatory,
            message_id: options.message_id,
        }
    }
}

#[derive(Serialize)]
struct BatchBody<'a> {
    messages: Vec<PublishBody<'a>>,
}

/// One message's outcome in a batch: stored, or why not.
#[derive(Deserialize)]
#[serde(untagged)]
enum BatchEntry {
    Stored(Published),
    Failed { error: String },
}

#[derive(Deserialize)]
struct BatchReply {
    published: Vec<BatchEntry>,
}

#[derive(Serialize)]
struct PullBody {
    max: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility_timeout_ms: Option<u64>,
    wait_ms: u64,
}

#[derive(Deserialize)]
struct PullAnswer {
    messages: Vec<Delivery>,
}

#[derive(Serialize)]
struct AckBody<'a> {
    receipts: Vec<&'a str>,
}

#[derive(Serialize)]
struct SubscriberBody<'a> {
    subscriber: &'a str,
}

#[derive(Deserialize)]
struct ExchangeList {
    exchanges: Vec<ExchangeSummary>,
}

#[derive(Deserialize)]
struct NameList {
    #[serde(alias = "queues", alias = "topics")]
    items: Vec<NameEntry>,
}

#[derive(Deserialize)]
struct NameEntry {
    name: String,
}

#[derive(Deserialize)]
struct SubscriberList {
    subscribers: Vec<String>,
}

/// Whole milliseconds in `d`, rounded up so that a non-zero duration never becomes 0.
pub(crate) fn millis_ceil(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The REST path of a mailbox (queue or topic subscription), without a trailing slash.
pub(crate) fn mailbox_path(mailbox: &MailboxName) -> String {
    match mailbox {
        MailboxName::Queue(queue) => format!("/queues/{queue}"),
        MailboxName::Subscription { topic, subscriber } => {
            format!("/topics/{topic}/subscriptions/{subscriber}")
        }
    }
}

impl Connection {
    /// A connection that sends no token; only good for `/auth/*` and `/health`.
    fn anonymous(url: &str) -> Connection {
        Connection::with_token(url, "")
    }

    /// Uses an already issued bearer `token` against the gateway at `url`
    /// (e.g. `http://127.0.0.1:8080`).
    pub fn with_token(url: impl Into<String>, token: impl Into<String>) -> Connection {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // Dropped well before the gateway closes an idle connection (75 s), so a request
            // never goes out on one the server is closing (a failure a publish cannot retry).
            .pool_idle_timeout(IDLE_CONNECTION_REUSE)
            .build()
            .unwrap_or_default();
        let mut base_url = url.into();
        while base_url.ends_with('/') {
            base_url.pop();
        }
        Connection {
            http,
            base_url,
            token: token.into(),
        }
    }

    /// Creates the user `user` (`POST /auth/register`). A taken name is
    /// `ClientError::Api { status: 409, .. }`.
    pub async fn register(url: &str, user: &str, password: &str) -> Result<(), ClientError> {
        let conn = Connection::anonymous(url);
        let body = Credentials {
            username: user,
            password,
        };
        conn.send(conn.request(Method::POST, "/auth/register").json(&body))
            .await?;
        Ok(())
    }

    /// Logs in (`POST /auth/login`) and keeps the token for the requests that follow.
    pub async fn connect(url: &str, user: &str, password: &str) -> Result<Connection, ClientError> {
        let mut conn = Connection::anonymous(url);
        let body = Credentials {
            username: user,
            password,
        };
        let answer: LoginAnswer = conn
            .call(conn.request(Method::POST, "/auth/login").json(&body))
            .await?;
        conn.token = answer.token;
        Ok(conn)
    }

    /// The bearer token this connection sends.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub(crate) fn set_token(&mut self, token: String) {
        self.token = token;
    }

    /// The gateway's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A request to `path` (starting with `/`), with the bearer token when there is one.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self
            .http
            .request(method, format!("{}{}", self.base_url, path));
        if self.token.is_empty() {
            builder
        } else {
            builder.bearer_auth(&self.token)
        }
    }

    /// Sends `request`; a non-2xx answer becomes [`ClientError::Api`].
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(ClientError::from_response(status.as_u16(), &body))
    }

    /// Sends `request` and decodes its JSON answer.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, ClientError> {
        Ok(self.send(request).await?.json().await?)
    }

    /// `GET /cluster`: nodes, partitions with their leaders and in-sync sets, controller.
    pub async fn cluster(&self) -> Result<crate::ClusterView, ClientError> {
        self.call(self.request(Method::GET, "/cluster")).await
    }

    /// `GET /health`: is the gateway up, and how many broker nodes does it see.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(self.request(Method::GET, "/health")).await
    }

    // ---- exchanges ----

    /// Declares an exchange; declaring an identical one again is fine, another kind is a 409.
    pub async fn declare_exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
    ) -> Result<(), ClientError> {
        let body = NewExchange { name, kind };
        self.send(self.request(Method::POST, "/exchanges").json(&body))
            .await?;
        Ok(())
    }

    /// Deletes an exchange and its bindings.
    pub async fn delete_exchange(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("/exchanges/{name}")).await
    }

    /// Lists all exchanges.
    pub async fn list_exchanges(&self) -> Result<Vec<ExchangeSummary>, ClientError> {
        let list: ExchangeList = self.call(self.request(Method::GET, "/exchanges")).await?;
        Ok(list.exchanges)
    }

    /// One exchange with its bindings.
    pub async fn exchange(&self, name: &str) -> Result<ExchangeInfo, ClientError> {
        self.call(self.request(Method::GET, &format!("/exchanges/{name}")))
            .await
    }

    /// Binds `queue` to `exchange` with a routing key (a pattern for topic exchanges).
    pub async fn bind(
        &self,
        exchange: &str,
        queue: &str,
        routing_key: &str,
    ) -> Result<(), ClientError> {
        let body = BindingBody { queue, routing_key };
        let path = format!("/exchanges/{exchange}/bindings");
        self.send(self.request(Method::POST, &path).json(&body))
            .await?;
        Ok(())
    }

    /// Removes a binding made by [`bind`](Self::bind).
    pub async fn unbind(
        &self,
        exchange: &str,
        queue: &str,
        routing_key: &str,
    ) -> Result<(), ClientError> {
        let body = BindingBody { queue, routing_key };
        let path = format!("/exchanges/{exchange}/bindings");
        self.send(self.request(Method::DELETE, &path).json(&body))
            .await?;
        Ok(())
    }

    /// Publishes `payload` to an exchange.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: impl Into<String>,
    ) -> Result<Published, ClientError> {
        self.publish_with(exchange, routing_key, payload, PublishOptions::default())
            .await
    }

    /// Publishes up to 1,000 `(routing key, payload)` messages to an exchange in one request.
    /// Each message's outcome comes back in order: stored, or the reason it was not (its
    /// partition had no leader for the whole retry window, say).
    pub async fn publish_batch<K: AsRef<str>, P: Into<String>>(
        &self,
        exchange: &str,
        messages: impl IntoIterator<Item = (K, P)>,
    ) -> Result<Vec<Result<Published, String>>, ClientError> {
        let messages: Vec<(K, String)> = messages.into_iter().map(|(k, p)| (k, p.into())).collect();
        let body = BatchBody {
            messages: messages
                .iter()
                .map(|(key, payload)| {
                    PublishBody::new(
                        key.as_ref(),
                        Payload::Text(payload.clone()),
                        PublishOptions::default(),
                    )
                })
                .collect(),
        };
        let path = format!("/exchanges/{exchange}/publish");
        let reply: BatchReply = self
            .call(self.request(Method::POST, &path).json(&body))
            .await?;
        Ok(reply
            .published
            .into_iter()
            .map(|entry| match entry {
                BatchEntry::Stored(published) => Ok(published),
                BatchEntry::Failed { error } => Err(error),
            })
            .collect())
    }

    /// Publishes `payload` to an exchange, with options such as a TTL, headers or a content
    /// type.
    pub async fn publish_with(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: impl Into<String>,
        options: PublishOptions,
    ) -> Result<Published, ClientError> {
        let path = format!("/exchanges/{exchange}/publish");
        self.publish_to(&path, routing_key, Payload::Text(payload.into()), options)
            .await
    }

    /// Publishes a binary `payload` (any bytes, up to 4 MiB) to an exchange; consumers get it
    /// back byte for byte with [`Delivery::payload_bytes`].
    pub async fn publish_bytes(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        options: PublishOptions,
    ) -> Result<Published, ClientError> {
        let path = format!("/exchanges/{exchange}/publish");
        self.publish_to(&path, routing_key, Payload::Bytes(payload), options)
            .await
    }

    /// Publishes `payload` straight to a queue through the default exchange (no exchange or
    /// binding needed, as with RabbitMQ's `""` exchange).
    pub async fn publish_to_queue(
        &self,
        queue: &str,
        payload: impl Into<String>,
        options: PublishOptions,
    ) -> Result<Published, ClientError> {
        let path = format!("/queues/{queue}/publish");
        self.publish_to(&path, "", Payload::Text(payload.into()), options)
            .await
    }

    /// [`publish_to_queue`](Self::publish_to_queue) with a binary payload.
    pub async fn publish_bytes_to_queue(
        &self,
        queue: &str,
        payload: &[u8],
        options: PublishOptions,
    ) -> Result<Published, ClientError> {
        let path = format!("/queues/{queue}/publish");
        self.publish_to(&path, "", Payload::Bytes(payload), options)
            .await
    }

    async fn publish_to(
        &self,
        path: &str,
        routing_key: &str,
        payload: Payload<'_>,
        options: PublishOptions,
    ) -> Result<Published, ClientError> {
        let body = PublishBody::new(routing_key, payload, options);
        self.call(self.request(Method::POST, path).json(&body))
            .await
    }

    async fn declare_named(&self, path: &str, name: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::POST, path).json(&Named { name }))
            .await?;
        Ok(())
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, path)).await?;
        Ok(())
    }

    async fn list_names(&self, path: &str) -> Result<Vec<String>, ClientError> {
        let list: NameList = self.call(self.request(Method::GET, path)).await?;
        Ok(list.items.into_iter().map(|e| e.name).collect())
    }

    // ---- queues ----

    /// Declares a queue; declaring an existing one again is fine.
    pub async fn declare_queue(&self, name: &str) -> Result<(), ClientError> {
        self.declare_named("/queues", name).await
    }

    /// Deletes a queue with its messages and bindings.
    pub async fn delete_queue(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("/queues/{name}")).await
    }

    /// Names of all queues.
    pub async fn list_queues(&self) -> Result<Vec<String>, ClientError> {
        self.list_names("/queues").await
    }

    /// How many messages a queue holds, ready and leased.
    pub async fn queue_depth(&self, name: &str) -> Result<QueueDepth, ClientError> {
        self.call(self.request(Method::GET, &format!("/queues/{name}")))
            .await
    }

    /// Pulls up to `max` messages from a queue, waiting up to `wait` (server limit 20 s) for the
    /// first; leases them for `visibility_timeout` (server default when `None`).
    pub async fn pull(
        &self,
        queue: &str,
        max: u32,
        visibility_timeout: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Delivery>, ClientError> {
        let mailbox = MailboxName::Queue(queue.to_owned());
        self.pull_from(&mailbox, max, visibility_timeout, wait)
            .await
    }

    /// Acks deliveries of a queue by their receipts.
    pub async fn ack<S: AsRef<str>>(
        &self,
        queue: &str,
        receipts: &[S],
    ) -> Result<AckOutcome, ClientError> {
        self.ack_in(&MailboxName::Queue(queue.to_owned()), receipts)
            .await
    }

    /// A [`Consumer`] that hands out the messages of `queue` one by one.
    pub fn consume(&self, queue: &str) -> Consumer {
        self.puller(MailboxName::Queue(queue.to_owned()))
    }

    // ---- topics ----

    /// Declares a topic; declaring an existing one again is fine.
    pub async fn declare_topic(&self, name: &str) -> Result<(), ClientError> {
        self.declare_named("/topics", name).await
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("/topics/{name}")).await
    }

    /// Names of all topics.
    pub async fn list_topics(&self) -> Result<Vec<String>, ClientError> {
        self.list_names("/topics").await
    }

    /// Publishes `payload` to every subscriber of a topic (empty routing key).
    pub async fn publish_topic(
        &self,
        topic: &str,
        payload: impl Into<String>,
        ttl: Option<Duration>,
    ) -> Result<Published, ClientError> {
        let options = PublishOptions {
            ttl,
            ..Default::default()
        };
        self.publish_topic_with(topic, payload, options).await
    }

    /// Publishes `payload` to every subscriber of a topic (empty routing key), with options
    /// such as headers or a content type.
    pub async fn publish_topic_with(
        &self,
        topic: &str,
        payload: impl Into<String>,
        options: PublishOptions,
    ) -> Result<Published, ClientError> {
        let path = format!("/topics/{topic}/publish");
        self.publish_to(&path, "", Payload::Text(payload.into()), options)
            .await
    }

    /// [`publish_topic_with`](Self::publish_topic_with) with a binary payload.
    pub async fn publish_topic_bytes(
        &self,
        topic: &str,
        payload: &[u8],
        options: PublishOptions,
    ) -> Result<Published, ClientError> {
        let path = format!("/topics/{topic}/publish");
        self.publish_to(&path, "", Payload::Bytes(payload), options)
            .await
    }

    /// Creates (or reuses) the subscription `subscriber` of `topic` and returns a puller over it.
    pub async fn subscribe(
        &self,
        topic: &str,
        subscriber: &str,
    ) -> Result<Subscription, ClientError> {
        let path = format!("/topics/{topic}/subscriptions");
        self.send(
            self.request(Method::POST, &path)
                .json(&SubscriberBody { subscriber }),
        )
        .await?;
        Ok(self.subscription(topic, subscriber))
    }

    /// A puller over an existing subscription, without creating it.
    pub fn subscription(&self, topic: &str, subscriber: &str) -> Subscription {
        self.puller(MailboxName::Subscription {
            topic: topic.to_owned(),
            subscriber: subscriber.to_owned(),
        })
    }

    /// Deletes a subscription and the messages waiting in it.
    pub async fn unsubscribe(&self, topic: &str, subscriber: &str) -> Result<(), ClientError> {
        self.delete(&format!("/topics/{topic}/subscriptions/{subscriber}"))
            .await
    }

    /// Subscriber names of a topic.
    pub async fn list_subscribers(&self, topic: &str) -> Result<Vec<String>, ClientError> {
        let path = format!("/topics/{topic}/subscriptions");
        let list: SubscriberList = self.call(self.request(Method::GET, &path)).await?;
        Ok(list.subscribers)
    }

    // ---- mailboxes (queues and subscriptions alike) ----

    /// A [`DeliveryStream`] over a queue: messages pushed by the gateway (Server-Sent Events)
    /// as they land, at most `options.prefetch` unacked; it reconnects by itself.
    pub fn stream(&self, queue: &str, options: StreamOptions) -> DeliveryStream {
        self.stream_from(MailboxName::Queue(queue.to_owned()), options)
    }

    /// Creates (or reuses) the subscription `subscriber` of `topic` and returns a
    /// [`DeliveryStream`] over it.
    pub async fn subscribe_stream(
        &self,
        topic: &str,
        subscriber: &str,
        options: StreamOptions,
    ) -> Result<DeliveryStream, ClientError> {
        let subscription = self.subscribe(topic, subscriber).await?;
        Ok(self.stream_from(subscription.mailbox().clone(), options))
    }

    /// A [`DeliveryStream`] over any mailbox.
    pub fn stream_from(&self, mailbox: MailboxName, options: StreamOptions) -> DeliveryStream {
        DeliveryStream::new(self.clone(), mailbox, options)
    }

    /// A [`Puller`] over any mailbox.
    pub fn puller(&self, mailbox: MailboxName) -> Puller {
        Puller::new(self.clone(), mailbox)
    }

    /// [`pull`](Self::pull) for any mailbox.
    pub async fn pull_from(
        &self,
        mailbox: &MailboxName,
        max: u32,
        visibility_timeout: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Delivery>, ClientError> {
        let body = PullBody {
            max,
            visibility_timeout_ms: visibility_timeout.map(millis_ceil),
            wait_ms: millis_ceil(wait),
        };
        let path = format!("{}/pull", mailbox_path(mailbox));
        let answer: PullAnswer = self
            .call(self.request(Method::POST, &path).json(&body))
            .await?;
        Ok(answer.messages)
    }

    /// [`ack`](Self::ack) for any mailbox.
    pub async fn ack_in<S: AsRef<str>>(
        &self,
        mailbox: &MailboxName,
        receipts: &[S],
    ) -> Result<AckOutcome, ClientError> {
        let body = AckBody {
            receipts: receipts.iter().map(AsRef::as_ref).collect(),
        };
        let path = format!("{}/ack", mailbox_path(mailbox));
        self.call(self.request(Method::POST, &path).json(&body))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_up() {
        assert_eq!(millis_ceil(Duration::ZERO), 0);
        assert_eq!(millis_ceil(Duration::from_micros(1)), 1);
        assert_eq!(millis_ceil(Duration::from_millis(1500)), 1500);
        assert_eq!(millis_ceil(Duration::from_micros(1500)), 2);
        assert_eq!(millis_ceil(Duration::MAX), u64::MAX);
    }

    #[test]
    fn mailbox_paths() {
        assert_eq!(mailbox_path(&MailboxName::Queue("q1".into())), "/queues/q1");
        let sub = MailboxName::Subscription {
            topic: "news".into(),
            subscriber: "s-1".into(),
        };
        assert_eq!(mailbox_path(&sub), "/topics/news/subscriptions/s-1");
    }

    #[test]
    fn base_url_loses_trailing_slashes_and_debug_hides_token() {
        let conn = Connection::with_token("http://h:1//", "secret");
        assert_eq!(conn.base_url(), "http://h:1");
        assert_eq!(conn.token(), "secret");
        assert!(!format!("{conn:?}").contains("secret"));
    }

    #[test]
    fn publish_body_omits_missing_ttl() {
        let body = PublishBody::new("", Payload::Text("x".into()), PublishOptions::default());
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"routing_key":"","payload":"x"}"#
        );
        let options = PublishOptions {
            ttl: Some(Duration::from_millis(5)),
            mandatory: true,
            message_id: Some("m-1".into()),
            ..Default::default()
        };
        let body = PublishBody::new("k", Payload::Text("x".into()), options);
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"routing_key":"k","payload":"x","ttl_ms":5,"mandatory":true,"message_id":"m-1"}"#
        );
    }

    #[test]
    fn bytes_go_as_base64_with_headers_and_content_type() {
        let options = PublishOptions::default()
            .header("trace-id", "t-1")
            .content_type("application/x-raw");
        let body = PublishBody::new("k", Payload::Bytes(&[0, 255]), options);
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"routing_key":"k","payload_base64":"AP8=","headers":{"trace-id":"t-1"},"content_type":"application/x-raw"}"#
        );
    }

    #[test]
    fn pull_body_shape() {
        let body = PullBody {
            max: 10,
            visibility_timeout_ms: None,
            wait_ms: 20000,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"max":10,"wait_ms":20000}"#
        );
    }

    #[test]
    fn name_lists_decode_for_queues_and_topics() {
        let q: NameList =
            serde_json::from_str(r#"{"queues":[{"name":"a"},{"name":"b"}]}"#).unwrap();
        assert_eq!(q.items.len(), 2);
        let t: NameList = serde_json::from_str(r#"{"topics":[]}"#).unwrap();
        assert!(t.items.is_empty());
    }
}
