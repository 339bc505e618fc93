//! The cluster's shared state, kept in ZooKeeper.
//!
//! Layout (all under `/mom`):
//! - `nodes/<node id>`: ephemeral, data = the node's gRPC address; a node is live while its
//!   session is.
//! - `exchanges/<name>`: data = kind; children `<queue>:<binding key>` are its bindings.
//! - `queues/<name>`: data version 0 while the queue lives; deletion first bumps the version so
//!   that a concurrent bind (which checks for version 0) cannot leave a dangling binding.
//! - `topics/<name>`: children are the subscribers.
//! - `partitions/<n>`, `cluster`, `controller`: partition leadership, see [`partitions`].
//!
//! Messages never go through ZooKeeper; only this metadata does.

pub mod access;
mod membership;
pub mod partitions;
mod routes;
mod session;

pub use membership::{follow_nodes, register_node, watch_nodes, NodeInfo};
pub use routes::{RouteCache, TopicRoutes};
pub use session::{connect, exit_on_session_loss, session_ended, znode_acls};

use access::ResourceKind;
use mom_common::ExchangeKind;
use zookeeper_client::{
    Client, CreateMode, CreateOptions, Error as ZkError, MultiReadResult, MultiWriteError,
};

pub const ROOT: &str = "/mom";
const NODES: &str = "/mom/nodes";
pub(crate) const EXCHANGES: &str = "/mom/exchanges";
pub(crate) const QUEUES: &str = "/mom/queues";
pub(crate) const TOPICS: &str = "/mom/topics";

fn persistent() -> CreateOptions<'static> {
    session::create_options(CreateMode::Persistent)
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("exchange {0:?} does not exist")]
    NoSuchExchange(String),
    #[error("queue {0:?} does not exist")]
    NoSuchQueue(String),
    #[error("topic {0:?} does not exist")]
    NoSuchTopic(String),
    #[error("binding of queue {queue:?} with key {routing_key:?} does not exist")]
    NoSuchBinding { queue: String, routing_key: String },
    #[error("subscriber {subscriber:?} of topic {topic:?} does not exist")]
    NoSuchSubscription { topic: String, subscriber: String },
    #[error("exchange {name:?} already exists with kind {existing}")]
    KindConflict {
        name: String,
        existing: ExchangeKind,
    },
    #[error("topic {name:?} already exists with retention_ms {existing_retention_ms}")]
    RetentionConflict {
        name: String,
        existing_retention_ms: u64,
    },
    #[error("queue {0:?} already exists with other dead-letter settings")]
    QueueSettingsConflict(String),
    #[error("queue {0:?} was deleted while being bound")]
    QueueDeleted(String),
    #[error("corrupt catalog entry at {path}: {detail}")]
    Corrupt { path: String, detail: String },
    #[error("zookeeper: {0}")]
    ZooKeeper(#[from] ZkError),
}

/// How callers should report a catalog failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Conflict,
    Internal,
    Unavailable,
}

impl CatalogError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CatalogError::NoSuchExchange(_)
            | CatalogError::NoSuchQueue(_)
            | CatalogError::NoSuchTopic(_)
            | CatalogError::NoSuchBinding { .. }
            | CatalogError::NoSuchSubscription { .. } => ErrorKind::NotFound,
            CatalogError::KindConflict { .. }
            | CatalogError::RetentionConflict { .. }
            | CatalogError::QueueSettingsConflict(_)
            | CatalogError::QueueDeleted(_) => ErrorKind::Conflict,
            CatalogError::Corrupt { .. } => ErrorKind::Internal,
            CatalogError::ZooKeeper(_) => ErrorKind::Unavailable,
        }
    }
}

impl From<MultiWriteError> for CatalogError {
    fn from(e: MultiWriteError) -> Self {
        match e {
            MultiWriteError::RequestFailed { source } => CatalogError::ZooKeeper(source),
            MultiWriteError::OperationFailed { source, .. } => CatalogError::ZooKeeper(source),
        }
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

fn parse_kind(path: String, data: &[u8]) -> Result<ExchangeKind> {
    let text = String::from_utf8_lossy(data);
    text.parse().map_err(|_| CatalogError::Corrupt {
        path,
        detail: format!("exchange kind {text:?}"),
    })
}

/// The error of a multi-read answer that is not what was asked for.
fn multi_read_failure(result: MultiReadResult, exchange: &str, path: String) -> CatalogError {
    match result {
        MultiReadResult::Error {
            err: ZkError::NoNode,
        } => CatalogError::NoSuchExchange(exchange.to_owned()),
        MultiReadResult::Error { err } => err.into(),
        _ => CatalogError::Corrupt {
            path,
            detail: "unexpected multi-read answer".into(),
        },
    }
}

fn resource_path(kind: ResourceKind, name: &str) -> String {
    match kind {
        ResourceKind::Exchange => format!("{EXCHANGES}/{name}"),
        ResourceKind::Queue => format!("{QUEUES}/{name}"),
        ResourceKind::Topic => format!("{TOPICS}/{name}"),
    }
}

/// What a topic keeps: with `retention_ms` > 0, every message stays that long after its
/// publish (also with no subscriber), so that a new subscription can start in the past.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicSettings {
    #[serde(default)]
    pub retention_ms: u64,
}

/// What a queue does with a message it cannot deliver: after `max_deliveries` deliveries
/// without an ack, or when a consumer rejects it (`nack` without requeue), the message goes
/// to `dead_letter_exchange` (or is dropped, with none).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_exchange: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deliveries: Option<u32>,
}

/// A resource's settings as its znode's data: none for the defaults (as resources declared
/// before the settings existed), JSON otherwise.
fn encode_settings<T: serde::Serialize + Default + PartialEq>(settings: &T) -> Vec<u8> {
    if *settings == T::default() {
        return Vec::new();
    }
    serde_json::to_vec(settings).expect("settings serialize")
}

/// The settings in a znode's data; a queue being deleted is marked `deleting`, with defaults.
fn decode_settings<T: serde::de::DeserializeOwned + Default>(path: &str, data: &[u8]) -> Result<T> {
    if data.is_empty() || data == DELETING {
        return Ok(T::default());
    }
    serde_json::from_slice(data).map_err(|e| CatalogError::Corrupt {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// The data a queue's znode gets while the queue is being deleted.
const DELETING: &[u8] = b"deleting";

/// Whether a declare call made something new or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Created,
    Existed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub queue: String,
    pub routing_key: String,
}

impl Binding {
    fn znode_name(&self) -> String {
        format!("{}:{}", self.queue, self.routing_key)
    }

    fn from_znode_name(name: &str) -> Option<Binding> {
        // Queue names cannot contain ':', so the first one separates queue from key.
        let (queue, routing_key) = name.split_once(':')?;
        Some(Binding {
            queue: queue.to_owned(),
            routing_key: routing_key.to_owned(),
        })
    }
}

/// Reads and writes the catalog. Cheap to clone; all clones share one ZooKeeper session,
/// which a service that outlives its sessions replaces with [`Catalog::use_session`].
#[derive(Clone)]
pub struct Catalog {
    /// The current session's client; held only to clone it (never across a call).
    zk: std::sync::Arc<std::sync::RwLock<Client>>,
}

impl Catalog {
    pub fn new(zk: Client) -> Self {
        Catalog {
            zk: std::sync::Arc::new(std::sync::RwLock::new(zk)),
        }
    }

    pub fn zookeeper(&self) -> Client {
        self.zk.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Goes on with a new session (the previous one expired).
    pub fn use_session(&self, zk: Client) {
        *self.zk.write().unwrap_or_else(|p| p.into_inner()) = zk;
    }

    /// Creates the top-level znodes; safe to call from every service at start.
    pub async fn ensure_layout(&self) -> Result<()> {
        let mut paths: Vec<String> = [
            ROOT,
            NODES,
            EXCHANGES,
            QUEUES,
            TOPICS,
            partitions::PARTITIONS,
        ]
        .map(str::to_owned)
        .to_vec();
        paths.extend(access::layout());
        for path in &paths {
            match self.zookeeper().create(path, b"", &persistent()).await {
                Ok(_) | Err(ZkError::NodeExists) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn create_unique(&self, path: &str, data: &[u8]) -> Result<Declared, ZkError> {
        match self.zookeeper().create(path, data, &persistent()).await {
            Ok(_) => Ok(Declared::Created),
            Err(ZkError::NodeExists) => Ok(Declared::Existed),
            Err(e) => Err(e),
        }
    }

    /// Creates a resource and its owner record in one transaction (see [`access`]).
    async fn create_owned(
        &self,
        kind: ResourceKind,
        name: &str,
        data: &[u8],
        owner: &str,
    ) -> Result<Declared, ZkError> {
        let path = resource_path(kind, name);
        let owner_path = access::owner_znode(kind, name);
        loop {
            let zk = self.zookeeper();
            let mut multi = zk.new_multi_writer();
            multi.add_create(&path, data, &persistent())?;
            multi.add_create(&owner_path, owner.as_bytes(), &persistent())?;
            match multi.commit().await {
                Ok(_) => return Ok(Declared::Created),
                Err(MultiWriteError::OperationFailed {
                    index: 0,
                    source: ZkError::NodeExists,
                }) => return Ok(Declared::Existed),
                // An owner record without its resource (deleted by a version without owners):
                // the ownership went with the resource.
                Err(MultiWriteError::OperationFailed {
                    index: 1,
                    source: ZkError::NodeExists,
                }) => match zk.delete(&owner_path, None).await {
                    Ok(()) | Err(ZkError::NoNode) => continue,
                    Err(e) => return Err(e),
                },
                Err(MultiWriteError::OperationFailed { source, .. })
                | Err(MultiWriteError::RequestFailed { source }) => return Err(source),
            }
        }
    }

    /// Whether an exchange, queue or topic exists.
    pub async fn resource_exists(&self, kind: ResourceKind, name: &str) -> Result<bool> {
        self.exists(&resource_path(kind, name)).await
    }

    /// The owner of a resource, read from ZooKeeper (the caches have it too).
    pub async fn owner(&self, kind: ResourceKind, name: &str) -> Result<Option<String>> {
        match self
            .zookeeper()
            .get_data(&access::owner_znode(kind, name))
            .await
        {
            Ok((data, _)) => Ok(Some(String::from_utf8_lossy(&data).into_owned())),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `path` and the owner record of `kind`/`name` together.
    async fn delete_owned(
        &self,
        path: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<(), ZkError> {
        let owner_path = access::owner_znode(kind, name);
        let zk = self.zookeeper();
        let owned = zk.check_stat(&owner_path).await?.is_some();
        let mut multi = zk.new_multi_writer();
        multi.add_delete(path, None)?;
        if owned {
            multi.add_delete(&owner_path, None)?;
        }
        match multi.commit().await {
            Ok(_) => Ok(()),
            Err(MultiWriteError::OperationFailed {
                index: 1,
                source: ZkError::NoNode,
            }) => Box::pin(self.delete_owned(path, kind, name)).await,
            Err(MultiWriteError::OperationFailed { source, .. })
            | Err(MultiWriteError::RequestFailed { source }) => Err(source),
        }
    }

    async fn children(&self, path: &str) -> Result<Vec<String>, ZkError> {
        let mut names = self.zookeeper().list_children(path).await?;
        names.sort();
        Ok(names)
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.zookeeper().check_stat(path).await?.is_some())
    }

    /// Deletes every child and then the node with its owner record; gone already counts as
    /// done.
    async fn delete_tree(
        &self,
        path: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Vec<String>, ZkError> {
        let children = match self.zookeeper().list_children(path).await {
            Ok(children) => children,
            Err(ZkError::NoNode) => return Err(ZkError::NoNode),
            Err(e) => return Err(e),
        };
        for child in &children {
            match self
                .zookeeper()
                .delete(&format!("{path}/{child}"), None)
                .await
            {
                Ok(()) | Err(ZkError::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        match self.delete_owned(path, kind, name).await {
            Ok(()) => Ok(children),
            // A child was added while we deleted: go round again.
            Err(ZkError::NotEmpty) => Box::pin(self.delete_tree(path, kind, name)).await,
            Err(e) => Err(e),
        }
    }

    // ---- exchanges and bindings ----

    /// Declares an exchange owned by `owner` (an existing one keeps its owner).
    pub async fn declare_exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
        owner: &str,
    ) -> Result<Declared> {
        let declared = self
            .create_owned(
                ResourceKind::Exchange,
                name,
                kind.as_str().as_bytes(),
                owner,
            )
            .await?;
        if declared == Declared::Existed {
            let existing = self.exchange_kind(name).await?;
            if existing != kind {
                return Err(CatalogError::KindConflict {
                    name: name.to_owned(),
                    existing,
                });
            }
        }
        Ok(declared)
    }

    pub async fn exchange_kind(&self, name: &str) -> Result<ExchangeKind> {
        let path = format!("{EXCHANGES}/{name}");
        let (data, _) = self
            .zookeeper()
            .get_data(&path)
            .await
            .map_err(|e| match e {
                ZkError::NoNode => CatalogError::NoSuchExchange(name.to_owned()),
                e => e.into(),
            })?;
        parse_kind(path, &data)
    }

    pub async fn list_exchanges(&self) -> Result<Vec<(String, ExchangeKind)>> {
        let mut exchanges = Vec::new();
        for name in self.children(EXCHANGES).await? {
            match self.exchange_kind(&name).await {
                Ok(kind) => exchanges.push((name, kind)),
                // Deleted between the listing and the read.
                Err(CatalogError::NoSuchExchange(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(exchanges)
    }

    pub async fn delete_exchange(&self, name: &str) -> Result<()> {
        match self
            .delete_tree(&format!("{EXCHANGES}/{name}"), ResourceKind::Exchange, name)
            .await
        {
            Ok(_) => Ok(()),
            Err(ZkError::NoNode) => Err(CatalogError::NoSuchExchange(name.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn bindings(&self, exchange: &str) -> Result<Vec<Binding>> {
        let names = self
            .children(&format!("{EXCHANGES}/{exchange}"))
            .await
            .map_err(|e| match e {
                ZkError::NoNode => CatalogError::NoSuchExchange(exchange.to_owned()),
                e => e.into(),
            })?;
        Ok(names
            .iter()
            .filter_map(|n| Binding::from_znode_name(n))
            .collect())
    }

    pub async fn bind(&self, exchange: &str, binding: &Binding) -> Result<Declared> {
        let queue_path = format!("{QUEUES}/{}", binding.queue);
        let binding_path = format!("{EXCHANGES}/{exchange}/{}", binding.znode_name());
        // Atomic with "the queue is alive" (version 0), see the module docs.
        let zk = self.zookeeper();
        let mut multi = zk.new_multi_writer();
        multi.add_check_version(&queue_path, 0)?;
        multi.add_create(&binding_path, b"", &persistent())?;
        match multi.commit().await {
            Ok(_) => Ok(Declared::Created),
            Err(MultiWriteError::OperationFailed { index: 0, source }) => match source {
                ZkError::NoNode => Err(CatalogError::NoSuchQueue(binding.queue.clone())),
                ZkError::BadVersion => Err(CatalogError::QueueDeleted(binding.queue.clone())),
                e => Err(e.into()),
            },
            Err(MultiWriteError::OperationFailed { index: 1, source }) => match source {
                ZkError::NodeExists => Ok(Declared::Existed),
                ZkError::NoNode => Err(CatalogError::NoSuchExchange(exchange.to_owned())),
                e => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    pub async fn unbind(&self, exchange: &str, binding: &Binding) -> Result<()> {
        let path = format!("{EXCHANGES}/{exchange}/{}", binding.znode_name());
        match self.zookeeper().delete(&path, None).await {
            Ok(()) => Ok(()),
            Err(ZkError::NoNode) => {
                if self.exists(&format!("{EXCHANGES}/{exchange}")).await? {
                    Err(CatalogError::NoSuchBinding {
                        queue: binding.queue.clone(),
                        routing_key: binding.routing_key.clone(),
                    })
                } else {
                    Err(CatalogError::NoSuchExchange(exchange.to_owned()))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An exchange's kind and bindings, read in one round trip from one consistent view.
    pub async fn exchange_routes(&self, exchange: &str) -> Result<(ExchangeKind, Vec<Binding>)> {
        let path = format!("{EXCHANGES}/{exchange}");
        let zk = self.zookeeper();
        let mut reader = zk.new_multi_reader();
        reader.add_get_data(&path)?;
        reader.add_get_children(&path)?;
        let mut results = reader.commit().await?.into_iter();
        let (Some(data), Some(children)) = (results.next(), results.next()) else {
            return Err(CatalogError::Corrupt {
                path,
                detail: "short multi-read answer".into(),
            });
        };
        let kind = match data {
            MultiReadResult::Data { data, .. } => parse_kind(path.clone(), &data)?,
            other => return Err(multi_read_failure(other, exchange, path)),
        };
        let names = match children {
            MultiReadResult::Children { children } => children,
            other => return Err(multi_read_failure(other, exchange, path)),
        };
        let bindings = names
            .iter()
            .filter_map(|name| Binding::from_znode_name(name))
            .collect();
        Ok((kind, bindings))
    }

    // ---- queues ----

    /// Declares a queue owned by `owner` (an existing one keeps its owner).
    /// Declares a queue with its dead-letter settings; declaring an existing one with other
    /// settings is a conflict.
    pub async fn declare_queue(
        &self,
        name: &str,
        owner: &str,
        settings: &QueueSettings,
    ) -> Result<Declared> {
        let data = encode_settings(settings);
        let declared = self
            .create_owned(ResourceKind::Queue, name, &data, owner)
            .await?;
        if declared == Declared::Existed && self.queue_settings(name).await? != *settings {
            return Err(CatalogError::QueueSettingsConflict(name.to_owned()));
        }
        Ok(declared)
    }

    /// A queue's dead-letter settings.
    pub async fn queue_settings(&self, name: &str) -> Result<QueueSettings> {
        let path = format!("{QUEUES}/{name}");
        match self.zookeeper().get_data(&path).await {
            Ok((data, _)) => decode_settings(&path, &data),
            Err(ZkError::NoNode) => Err(CatalogError::NoSuchQueue(name.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn queue_exists(&self, name: &str) -> Result<bool> {
        self.exists(&format!("{QUEUES}/{name}")).await
    }

    pub async fn list_queues(&self) -> Result<Vec<String>> {
        Ok(self.children(QUEUES).await?)
    }

    /// Deletes the queue and every binding to it.
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        let path = format!("{QUEUES}/{name}");
        match self.zookeeper().set_data(&path, DELETING, None).await {
            Ok(_) => {}
            Err(ZkError::NoNode) => return Err(CatalogError::NoSuchQueue(name.to_owned())),
            Err(e) => return Err(e.into()),
        }
        for exchange in self.children(EXCHANGES).await? {
            let bindings = match self.bindings(&exchange).await {
                Ok(bindings) => bindings,
                Err(CatalogError::NoSuchExchange(_)) => continue,
                Err(e) => return Err(e),
            };
            for binding in bindings.iter().filter(|b| b.queue == name) {
                match self.unbind(&exchange, binding).await {
                    Ok(())
                    | Err(CatalogError::NoSuchBinding { .. })
                    | Err(CatalogError::NoSuchExchange(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        match self.delete_owned(&path, ResourceKind::Queue, name).await {
            Ok(()) | Err(ZkError::NoNode) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    // ---- topics ----

    /// Declares a topic owned by `owner` (an existing one keeps its owner).
    /// Declares a topic keeping its messages `settings.retention_ms` for new subscriptions;
    /// declaring an existing one with another retention is a conflict.
    pub async fn declare_topic(
        &self,
        name: &str,
        owner: &str,
        settings: TopicSettings,
    ) -> Result<Declared> {
        let data = encode_settings(&settings);
        let declared = self
            .create_owned(ResourceKind::Topic, name, &data, owner)
            .await?;
        if declared == Declared::Existed {
            let existing = self.topic_settings(name).await?;
            if existing != settings {
                return Err(CatalogError::RetentionConflict {
                    name: name.to_owned(),
                    existing_retention_ms: existing.retention_ms,
                });
            }
        }
        Ok(declared)
    }

    /// A topic's settings (its znode's data; empty: the defaults, no retention).
    pub async fn topic_settings(&self, name: &str) -> Result<TopicSettings> {
        let path = format!("{TOPICS}/{name}");
        match self.zookeeper().get_data(&path).await {
            Ok((data, _)) => decode_settings(&path, &data),
            Err(ZkError::NoNode) => Err(CatalogError::NoSuchTopic(name.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_topics(&self) -> Result<Vec<String>> {
        Ok(self.children(TOPICS).await?)
    }

    /// Deletes the topic and its subscriptions; returns the subscribers it had.
    pub async fn delete_topic(&self, name: &str) -> Result<Vec<String>> {
        match self
            .delete_tree(&format!("{TOPICS}/{name}"), ResourceKind::Topic, name)
            .await
        {
            Ok(subscribers) => Ok(subscribers),
            Err(ZkError::NoNode) => Err(CatalogError::NoSuchTopic(name.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn subscribers(&self, topic: &str) -> Result<Vec<String>> {
        self.children(&format!("{TOPICS}/{topic}"))
            .await
            .map_err(|e| match e {
                ZkError::NoNode => CatalogError::NoSuchTopic(topic.to_owned()),
                e => e.into(),
            })
    }

    pub async fn subscription_exists(&self, topic: &str, subscriber: &str) -> Result<bool> {
        self.exists(&format!("{TOPICS}/{topic}/{subscriber}")).await
    }

    pub async fn subscribe(&self, topic: &str, subscriber: &str) -> Result<Declared> {
        self.create_unique(&format!("{TOPICS}/{topic}/{subscriber}"), b"")
            .await
            .map_err(|e| match e {
                ZkError::NoNode => CatalogError::NoSuchTopic(topic.to_owned()),
                e => e.into(),
            })
    }

    pub async fn unsubscribe(&self, topic: &str, subscriber: &str) -> Result<()> {
        match self
            .zookeeper()
            .delete(&format!("{TOPICS}/{topic}/{subscriber}"), None)
            .await
        {
            Ok(()) => Ok(()),
            Err(ZkError::NoNode) => Err(CatalogError::NoSuchSubscription {
                topic: topic.to_owned(),
                subscriber: subscriber.to_owned(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}
