//! The configuration file of each MOM service (TOML), with defaults for everything optional.
//!
//! Example files for a local cluster live in `config/files/`.

mod service;

pub use service::start_service;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::{net::SocketAddr, path::Path, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

/// Reads and parses one service's config file.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Where the ZooKeeper ensemble is and how long a session survives without heartbeats.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZooKeeperConfig {
    /// Comma-separated `host:port` list.
    pub connect: String,
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// `user:password` of ZooKeeper's digest scheme, the same on every MOM service. With it,
    /// everything MOM creates in ZooKeeper is readable and writable by these credentials only;
    /// without it (a warning at start) anyone who reaches ZooKeeper can change the cluster.
    pub digest: Option<String>,
}

fn default_session_timeout_ms() -> u64 {
    6_000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthConfig {
    pub listen: SocketAddr,
    pub database: PathBuf,
    /// HS256 secret of user tokens; the gateway needs the same one to check them.
    pub jwt_secret: String,
    #[serde(default = "default_token_lifetime_secs")]
    pub token_lifetime_secs: u64,
    /// Where user records (role, generation) are published for the gateway and nodes.
    pub zookeeper: ZooKeeperConfig,
    /// Whether anyone may register; when false only an admin creates users.
    #[serde(default = "default_true")]
    pub open_registration: bool,
    /// Created as an admin at start if no user of that name exists: the first admin.
    pub bootstrap_admin: Option<BootstrapAdmin>,
    /// Login attempts allowed per user name per minute (every attempt counts, so that
    /// parallel guesses cannot slip past), and per client address per minute.
    #[serde(default = "default_logins_per_user_per_minute")]
    pub logins_per_user_per_minute: u32,
    #[serde(default = "default_logins_per_address_per_minute")]
    pub logins_per_address_per_minute: u32,
    /// Registrations allowed per client address per minute (when registration is open).
    #[serde(default = "default_registrations_per_address_per_minute")]
    pub registrations_per_address_per_minute: u32,
    /// Peers whose `X-Forwarded-For` names the real client address (the gateway's address).
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// The first admin account, created by the auth service when it starts.
#[derive(Clone, Serialize, Deserialize)]
pub struct BootstrapAdmin {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BootstrapAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapAdmin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn default_true() -> bool {
    true
}

fn default_token_lifetime_secs() -> u64 {
    3_600
}

fn default_logins_per_user_per_minute() -> u32 {
    10
}

fn default_logins_per_address_per_minute() -> u32 {
    30
}

fn default_registrations_per_address_per_minute() -> u32 {
    10
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Unique, stable name of this broker node.
    pub node_id: String,
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Address other services use to reach this node; defaults to `listen`.
    pub advertise: Option<String>,
    pub data_dir: PathBuf,
    /// Secret of the service tokens services present to each other; never given to users.
    pub cluster_secret: String,
    pub zookeeper: ZooKeeperConfig,
    /// In-sync copies (leader included) a write needs before it is acknowledged. Never
    /// lowered because replicas died: a one-node cluster needs 1.
    #[serde(default = "default_min_insync_replicas")]
    pub min_insync_replicas: u32,
    /// A follower that has not caught up with its leader for this long leaves the in-sync set;
    /// half of it (at least) is also the leader's read lease.
    #[serde(default = "default_replication_timeout_ms")]
    pub replication_timeout_ms: u64,
    /// Where Prometheus scrapes `GET /metrics`; none: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// How long a published message id is remembered after its publish, so that a retry with
    /// the same id (to the same partition) is stored once: at least this long, also after
    /// the message was consumed. The same on every node (any may lead). 2 minutes, as NATS
    /// JetStream's duplicate window.
    #[serde(default = "default_dedup_window_ms")]
    pub dedup_window_ms: u64,
    /// Threads running the node's async tasks (gRPC, the partitions' protocol); none: one per
    /// core. Nodes sharing a host do better with their share of its cores each: fewer threads
    /// than cores in all means fewer wakeups handed between threads per message.
    #[serde(default)]
    pub worker_threads: Option<std::num::NonZeroUsize>,
}

fn default_dedup_window_ms() -> u64 {
    120_000
}

fn default_min_insync_replicas() -> u32 {
    2
}

fn default_replication_timeout_ms() -> u64 {
    2_000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitioningConfig {
    pub listen: SocketAddr,
    /// Secret of the service tokens services present to each other; never given to users.
    pub cluster_secret: String,
    pub zookeeper: ZooKeeperConfig,
    /// Points each node takes on the hash ring; more gives a more even spread.
    #[serde(default = "default_virtual_nodes")]
    pub virtual_nodes: u32,
    /// Fixed number of partitions keys hash into; recorded in ZooKeeper on the first start.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Copies of each partition (leader included); recorded in ZooKeeper on the first start.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: u32,
    /// Where Prometheus scrapes `GET /metrics`; none: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
}

fn default_partitions() -> u32 {
    16
}

fn default_replication_factor() -> u32 {
    3
}

fn default_virtual_nodes() -> u32 {
    128
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Where the gateway serves its gRPC `Consumer` service (streaming consume for gRPC
    /// clients, e.g. the Rust client's streams); none if unset. `GET /version` tells clients
    /// its address.
    #[serde(default)]
    pub grpc_listen: Option<SocketAddr>,
    /// HS256 secret of user tokens, shared with the auth service.
    pub jwt_secret: String,
    /// Secret of the service tokens services present to each other; never given to users.
    pub cluster_secret: String,
    /// Base URL of the auth service, which the gateway proxies `/auth/*` to.
    pub auth_url: String,
    pub zookeeper: ZooKeeperConfig,
    /// How long a publish or ack keeps being retried while its partition's leader is down or
    /// moving, before it answers 503.
    #[serde(default = "default_retry_window_ms")]
    pub retry_window_ms: u64,
    /// The nodes' `min_insync_replicas`, so that `/health` can tell when writes would fail.
    #[serde(default = "default_min_insync_replicas")]
    pub min_insync_replicas: u32,
    /// The largest JSON request body (8 MiB): room for a maximal 4 MiB payload as base64
    /// (5.6 MB) with its headers. An octet-stream publish's body is the payload itself and
    /// is bounded by the payload limit (4 MiB) instead.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default = "default_visibility_timeout_ms")]
    pub default_visibility_timeout_ms: u64,
    /// HTTP worker threads, each with an event loop of its own; none: one per core. On a host
    /// shared with broker nodes, its share of the cores: a publish's HTTP request, its partition's
    /// queue and the call to the leader then stay on one thread instead of waking another.
    #[serde(default)]
    pub workers: Option<std::num::NonZeroUsize>,
}

fn default_retry_window_ms() -> u64 {
    15_000
}

/// The gateway's default `max_body_bytes`: 8 MiB, room for a maximal 4 MiB payload as base64
/// (5592408 bytes) with a maximal set of headers (64 of 128 + 4096 bytes) and the JSON around.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

fn default_visibility_timeout_ms() -> u64 {
    30_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("files");
        let _: AuthConfig = load(&dir.join("auth.toml")).unwrap();
        let _: PartitioningConfig = load(&dir.join("partitioning.toml")).unwrap();
        let _: GatewayConfig = load(&dir.join("gateway.toml")).unwrap();
        for n in 1..=3 {
            let node: NodeConfig = load(&dir.join(format!("node{n}.toml"))).unwrap();
            assert_eq!(node.node_id, format!("node{n}"));
        }
    }

    #[test]
    fn zero_worker_threads_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("mom-config-workers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("files/node1.toml");
        let text = std::fs::read_to_string(example).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(&path, format!("worker_threads = 0\n{text}")).unwrap();
        let err = load::<NodeConfig>(&path).unwrap_err();
        let cause = std::error::Error::source(&err).expect("parse error as source");
        assert!(cause.to_string().contains("worker_threads"), "{cause}");
        std::fs::write(&path, format!("worker_threads = 1\n{text}")).unwrap();
        let node: NodeConfig = load(&path).unwrap();
        assert_eq!(node.worker_threads.map(|n| n.get()), Some(1));
    }

    #[test]
    fn missing_field_is_reported_with_the_path() {
        let dir = std::env::temp_dir().join(format!("mom-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\n").unwrap();
        let err = load::<AuthConfig>(&path).unwrap_err();
        let cause = std::error::Error::source(&err)
            .expect("parse error as source")
            .to_string();
        assert!(
            err.to_string().contains("bad.toml") && cause.contains("database"),
            "{err}: {cause}"
        );
    }
}
