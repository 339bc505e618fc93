//! A whole MOM deployment on loopback: ZooKeeper, auth, partitioning, gateway, N broker nodes
//! (each in a network namespace of its own where a test asks for one).

use crate::netns::Network;
use crate::process::{binary, free_port, poll_until, wait_for_addr, wait_for_port, Service};
use crate::zookeeper::ZooKeeper;
use mom_common::proto::{
    broker_client::BrokerClient, partitioning_client::PartitioningClient, NodesRequest,
    OwnerRequest, PartitionInfo, PartitionsRequest, StatusReply, StatusRequest,
};
use mom_common::token::{AttachService, ServiceCredentials, ServiceIdentity};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

/// Secret of user tokens (auth service and gateway).
pub const JWT_SECRET: &str = "test-user-token-secret";
/// Secret of the services' own tokens.
pub const CLUSTER_SECRET: &str = "test-cluster-secret";
/// ZooKeeper digest credentials every service uses.
pub const ZOOKEEPER_DIGEST: &str = "mom:test-zookeeper-password";
/// The admin the auth service creates at start.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "test-admin-password";
const STARTUP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// Short for broker nodes, so that a killed node is noticed quickly.
    pub node_session_timeout_ms: u64,
    /// For the gateway and the partitioning services.
    pub service_session_timeout_ms: u64,
    pub partitions: u32,
    pub replication_factor: u32,
    /// Partitioning service instances; one of them is elected controller.
    pub partitioning_services: usize,
    /// How long the gateway retries a call whose partition has no leader, before 503.
    pub gateway_retry_window_ms: u64,
    /// The gateway's own session timeout, when it should differ from the other services'.
    pub gateway_session_timeout_ms: Option<u64>,
    /// The partitioning services' own session timeout, likewise.
    pub partitioning_session_timeout_ms: Option<u64>,
    /// Top-level settings of the auth service's config (TOML lines), replacing the testkit's
    /// generous throttling defaults.
    pub auth_settings: Option<String>,
    /// Run every broker node in a network namespace of its own and ZooKeeper on an address
    /// of its own ([`Cluster::network`] cuts links); needs root. No nodes can be added then.
    pub namespaces: bool,
    /// The nodes' `replication_timeout_ms`: how long a follower may lag before it leaves
    /// the in-sync set.
    pub replication_timeout_ms: u64,
    /// More top-level settings of every node's config (TOML lines).
    pub node_settings: Option<String>,
    /// The gateway's `max_body_bytes`: small (64 KiB) unless given, so that tests reach the
    /// limit cheaply; the benchmark's batches need the production default.
    pub gateway_max_body_bytes: usize,
}

/// Threads each of the busy processes (the nodes and the gateway) gets: its share of this
/// host's cores, as they all run here. One thread per core in each would hand wakeups
/// between more threads than there are cores.
fn host_share(nodes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / (nodes + 1)).max(1)
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            node_session_timeout_ms: 2_000,
            service_session_timeout_ms: 4_000,
            partitions: 8,
            replication_factor: 3,
            partitioning_services: 1,
            gateway_retry_window_ms: 15_000,
            gateway_session_timeout_ms: None,
            partitioning_session_timeout_ms: None,
            auth_settings: None,
            gateway_max_body_bytes: 65_536,
            namespaces: false,
            replication_timeout_ms: 2_000,
            node_settings: None,
        }
    }
}

pub struct Cluster {
    // Field order is drop order: services go before ZooKeeper, the directory last.
    pub nodes: Vec<Service>,
    node_ports: Vec<u16>,
    /// The address each node listens on: loopback, or its namespace's.
    node_hosts: Vec<Ipv4Addr>,
    /// Where each node and partitioning service serves `GET /metrics`.
    node_metrics_ports: Vec<u16>,
    partitioning_metrics_ports: Vec<u16>,
    pub gateway: Service,
    /// The first one is usually the elected controller.
    pub partitioning: Vec<Service>,
    pub auth: Service,
    pub zookeeper: ZooKeeper,
    /// The namespaces nodes run in, when the options ask for them; after the processes, so
    /// that it is torn down once they are gone.
    network: Option<Network>,
    options: ClusterOptions,
    gateway_url: String,
    partitioning_addrs: Vec<String>,
    dir: tempfile::TempDir,
}

/// Credentials of a gateway: what the testkit uses to ask nodes and partitioning services
/// directly, and what tests use to act for a user at a node.
pub fn service_credentials() -> ServiceCredentials {
    ServiceCredentials::new(CLUSTER_SECRET, ServiceIdentity::Gateway)
}

fn write(path: &Path, text: String) -> String {
    std::fs::write(path, text).expect("config file");
    path.to_string_lossy().into_owned()
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(ClusterOptions::default()).await
    }

    pub async fn start_with(options: ClusterOptions) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("mom-cluster-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path();
        let network = options.namespaces.then(|| {
            Network::create(options.nodes).unwrap_or_else(|e| {
                panic!("cannot create the test network (Network::available says why): {e}")
            })
        });
        let zookeeper = match &network {
            Some(network) => ZooKeeper::start_on(network.zookeeper_ip()),
            None => ZooKeeper::start(),
        };
        let zk = zookeeper.connect_string();
        let service_timeout = options.service_session_timeout_ms;
        let gateway_timeout = options
            .gateway_session_timeout_ms
            .unwrap_or(service_timeout);
        let partitioning_timeout = options
            .partitioning_session_timeout_ms
            .unwrap_or(service_timeout);

        let auth_port = free_port();
        // Tests register many users from one address: throttle only where a test asks.
        let auth_settings = options.auth_settings.clone().unwrap_or_else(|| {
            "logins_per_user_per_minute = 100000\nlogins_per_address_per_minute = 100000\n\
             registrations_per_address_per_minute = 100000\n"
                .to_owned()
        });
        let auth_config = write(
            &root.join("auth.toml"),
            format!(
                "listen = \"127.0.0.1:{auth_port}\"\ndatabase = \"{}\"\njwt_secret = \"{JWT_SECRET}\"\n\
                 trusted_proxies = [\"127.0.0.1\"]\n{auth_settings}\n\
                 [bootstrap_admin]\nusername = \"{ADMIN_USER}\"\npassword = \"{ADMIN_PASSWORD}\"\n\
                 [zookeeper]\nconnect = \"{zk}\"\nsession_timeout_ms = {service_timeout}\n\
                 digest = \"{ZOOKEEPER_DIGEST}\"\n",
                root.join("auth/users.db").display()
            ),
        );
        let auth = Service::spawn(
            "auth",
            &binary("mom-auth"),
            &["--config", &auth_config],
            &root.join("auth.log"),
        );

        let partitioning_ports: Vec<u16> = (0..options.partitioning_services.max(1))
            .map(|_| free_port())
            .collect();
        let partitioning_metrics_ports: Vec<u16> =
            partitioning_ports.iter().map(|_| free_port()).collect();
        let partitioning: Vec<Service> = partitioning_ports
            .iter()
            .enumerate()
            .map(|(n, port)| {
                let metrics_port = partitioning_metrics_ports[n];
                let config = write(
                    &root.join(format!("partitioning{n}.toml")),
                    format!(
                        "listen = \"127.0.0.1:{port}\"\ncluster_secret = \"{CLUSTER_SECRET}\"\n\
                         metrics_listen = \"127.0.0.1:{metrics_port}\"\n\
                         partitions = {}\nreplication_factor = {}\n\
                         [zookeeper]\nconnect = \"{zk}\"\nsession_timeout_ms = {partitioning_timeout}\n\
                         digest = \"{ZOOKEEPER_DIGEST}\"\n",
                        options.partitions, options.replication_factor
                    ),
                );
                Service::spawn(
                    &format!("partitioning{n}"),
                    &binary("mom-partitioning"),
                    &["--config", &config],
                    &root.join(format!("partitioning{n}.log")),
                )
            })
            .collect();
        let partitioning_addrs: Vec<String> = partitioning_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();

        let gateway_port = free_port();
        let gateway_workers = host_share(options.nodes);
        let gateway_grpc_port = free_port();
        let gateway_config = write(
            &root.join("gateway.toml"),
            format!(
                "listen = \"127.0.0.1:{gateway_port}\"\n\
                 grpc_listen = \"127.0.0.1:{gateway_grpc_port}\"\njwt_secret = \"{JWT_SECRET}\"\n\
                 cluster_secret = \"{CLUSTER_SECRET}\"\n\
                 auth_url = \"http://127.0.0.1:{auth_port}\"\nretry_window_ms = {}\n\
                 max_body_bytes = {}\nworkers = {gateway_workers}\n[zookeeper]\nconnect = \"{zk}\"\nsession_timeout_ms = {gateway_timeout}\n\
                 digest = \"{ZOOKEEPER_DIGEST}\"\n",
                options.gateway_retry_window_ms,
                options.gateway_max_body_bytes
            ),
        );
        let gateway = Service::spawn(
            "gateway",
            &binary("mom-gateway"),
            &["--config", &gateway_config],
            &root.join("gateway.log"),
        );

        let mut cluster = Cluster {
            nodes: Vec::new(),
            node_ports: Vec::new(),
            node_hosts: Vec::new(),
            node_metrics_ports: Vec::new(),
            partitioning_metrics_ports,
            gateway,
            partitioning,
            auth,
            zookeeper,
            network,
            options: options.clone(),
            gateway_url: format!("http://127.0.0.1:{gateway_port}"),
            partitioning_addrs,
            dir,
        };
        for _ in 0..options.nodes {
            cluster.spawn_node();
        }
        for port in [auth_port, gateway_port, gateway_grpc_port]
            .into_iter()
            .chain(partitioning_ports)
        {
            assert!(
                wait_for_port(port, STARTUP),
                "a service did not listen on {port}:\n{}",
                cluster.logs()
            );
        }
        cluster.wait_for_live_nodes(options.nodes).await;
        cluster.wait_until_in_sync().await;
        cluster
    }

    fn spawn_node(&mut self) {
        let n = self.nodes.len() + 1;
        let port = free_port();
        let metrics_port = free_port();
        let host = match &self.network {
            Some(network) => network.node_ip(n - 1),
            None => Ipv4Addr::LOCALHOST,
        };
        let root = self.dir.path();
        let config = write(
            &root.join(format!("node{n}.toml")),
            format!(
                "node_id = \"node{n}\"\nlisten = \"{host}:{port}\"\ndata_dir = \"{}\"\n\
                 cluster_secret = \"{CLUSTER_SECRET}\"\nreplication_timeout_ms = {}\n\
                 metrics_listen = \"{host}:{metrics_port}\"\nworker_threads = {}\n{}\n\
                 [zookeeper]\nconnect = \"{}\"\nsession_timeout_ms = {}\n\
                 digest = \"{ZOOKEEPER_DIGEST}\"\n",
                root.join(format!("node{n}")).display(),
                self.options.replication_timeout_ms,
                host_share(self.options.nodes),
                self.options.node_settings.as_deref().unwrap_or_default(),
                self.zookeeper.connect_string(),
                self.options.node_session_timeout_ms
            ),
        );
        let server = binary("mom-server");
        let log = root.join(format!("node{n}.log"));
        let node = match &self.network {
            // `ip netns exec` execs the server in place: the child's pid is the server's, so
            // SIGKILL and SIGSTOP reach it.
            Some(network) => {
                let mut args = network.exec_prefix(n - 1);
                args.extend([
                    server.to_string_lossy().into_owned(),
                    "--config".into(),
                    config,
                ]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Service::spawn(&format!("node{n}"), Path::new("ip"), &args, &log)
            }
            None => Service::spawn(&format!("node{n}"), &server, &["--config", &config], &log),
        };
        self.nodes.push(node);
        self.node_ports.push(port);
        self.node_hosts.push(host);
        self.node_metrics_ports.push(metrics_port);
    }

    /// The namespaces the nodes run in (with [`ClusterOptions::namespaces`]), to cut links.
    pub fn network(&mut self) -> &mut Network {
        self.network
            .as_mut()
            .expect("the cluster was started without namespaces")
    }

    /// The address node `index` (0-based) listens on.
    pub fn node_host(&self, index: usize) -> Ipv4Addr {
        self.node_hosts[index]
    }

    /// Starts one more broker node (`node<N+1>`) and waits until it is live.
    pub async fn add_node(&mut self) -> String {
        assert!(
            self.network.is_none(),
            "nodes cannot be added to a cluster in namespaces"
        );
        self.spawn_node();
        let count = self.nodes.len();
        assert!(
            wait_for_port(self.node_ports[count - 1], STARTUP),
            "new node did not start:\n{}",
            self.logs()
        );
        self.wait_for_live_nodes(count).await;
        format!("node{count}")
    }

    /// `GET /metrics` of node `index` (0-based) and of partitioning service `index`.
    pub fn node_metrics_url(&self, index: usize) -> String {
        format!(
            "http://{}:{}/metrics",
            self.node_hosts[index], self.node_metrics_ports[index]
        )
    }

    pub fn partitioning_metrics_url(&self, index: usize) -> String {
        format!(
            "http://127.0.0.1:{}/metrics",
            self.partitioning_metrics_ports[index]
        )
    }

    /// The partitioning services' gRPC addresses.
    pub fn partitioning_addrs(&self) -> &[String] {
        &self.partitioning_addrs
    }

    pub fn gateway_url(&self) -> &str {
        &self.gateway_url
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn node_data_dir(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("node{}", index + 1))
    }

    /// Index in `nodes` of the node with this id.
    pub fn node_index(id: &str) -> usize {
        id.strip_prefix("node")
            .and_then(|n| n.parse::<usize>().ok())
            .expect("node id")
            - 1
    }

    async fn partitioning(
        &self,
    ) -> Option<PartitioningClient<InterceptedService<Channel, AttachService>>> {
        // The first partitioning service that is up.
        let mut channel = None;
        for addr in &self.partitioning_addrs {
            if let Ok(connected) = Channel::from_shared(format!("http://{addr}"))
                .ok()?
                .connect()
                .await
            {
                channel = Some(connected);
                break;
            }
        }
        let channel = channel?;
        Some(PartitioningClient::with_interceptor(
            channel,
            service_credentials().attach(),
        ))
    }

    /// Node ids the partitioning service currently sees live.
    pub async fn routed_nodes(&self) -> Option<Vec<String>> {
        Some(
            self.node_addrs()
                .await?
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
        )
    }

    /// gRPC address of every live node, by id.
    pub async fn node_addrs(&self) -> Option<Vec<(String, String)>> {
        let reply = self
            .partitioning()
            .await?
            .nodes(NodesRequest {})
            .await
            .ok()?
            .into_inner();
        Some(
            reply
                .nodes
                .into_iter()
                .map(|n| (n.id, n.grpc_addr))
                .collect(),
        )
    }

    /// Every partition's leader, epoch, replicas and in-sync replicas.
    pub async fn partitions(&self) -> Option<Vec<PartitionInfo>> {
        Some(
            self.partitioning()
                .await?
                .partitions(PartitionsRequest {})
                .await
                .ok()?
                .into_inner()
                .partitions,
        )
    }

    /// The node leading the partition of `partition_key` (e.g. `e/<exchange>/<routing key>`).
    pub async fn leader_of(&self, partition_key: &str) -> Option<(String, u32)> {
        let request = OwnerRequest {
            partition_key: partition_key.to_owned(),
            partition: None,
        };
        let reply = self
            .partitioning()
            .await?
            .owner(request)
            .await
            .ok()?
            .into_inner();
        Some((reply.owner?.id, reply.partition))
    }

    async fn gateway_live_nodes(&self) -> Option<u64> {
        let health: serde_json::Value = reqwest::get(format!("{}/health", self.gateway_url))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        health["nodes"].as_u64()
    }

    /// Waits until both the partitioning service and the gateway see exactly `count` nodes.
    pub async fn wait_for_live_nodes(&mut self, count: usize) {
        let ready = poll_until(STARTUP, || async {
            self.routed_nodes().await.is_some_and(|n| n.len() == count)
                && self.gateway_live_nodes().await == Some(count as u64)
        })
        .await;
        assert!(
            ready,
            "timed out waiting for {count} live nodes; logs:\n{}",
            self.logs()
        );
    }

    /// Waits until every partition has its full set of replicas, all in sync, on live nodes.
    pub async fn wait_until_in_sync(&mut self) {
        // The nodes that run now must be exactly the live ones: a node just restarted may
        // still be missing, or be listed under its old session about to vanish.
        let mut running: Vec<String> = Vec::new();
        for (index, node) in self.nodes.iter_mut().enumerate() {
            if node.is_running() {
                running.push(format!("node{}", index + 1));
            }
        }
        running.sort();
        let copies = (self.options.replication_factor as usize).min(running.len());
        let in_sync = poll_until(STARTUP, || async {
            let (Some(partitions), Some(mut live)) =
                (self.partitions().await, self.routed_nodes().await)
            else {
                return false;
            };
            live.sort();
            live == running
                && partitions.len() == self.options.partitions as usize
                && partitions.iter().all(|p| {
                    p.replicas.len() == copies
                        && p.isr.len() == copies
                        && p.replicas
                            .iter()
                            .all(|id| p.isr.contains(id) && running.contains(id))
                        && running.contains(&p.leader)
                        // The controller has made the preferred replica lead (it moves
                        // leadership there once all replicas are in sync).
                        && p.replicas.first() == Some(&p.leader)
                })
                // While nodes join, the replicas are listed in the order they were added, so
                // the above holds before the last moves: the controller says when it is done.
                && self.controller_settled().await
        })
        .await;
        assert!(
            in_sync,
            "partitions did not get in sync: {:?}\n{}",
            self.partitions().await,
            self.logs()
        );
        let serving = poll_until(STARTUP, || async { self.all_served().await }).await;
        assert!(
            serving,
            "leaders do not serve every partition: {:?}\n{}",
            self.statuses().await,
            self.logs()
        );
    }

    /// What every live node says its replicas do (`Broker.Status`).
    pub async fn statuses(&self) -> Option<Vec<StatusReply>> {
        let credentials = service_credentials();
        let mut replies = Vec::new();
        for (_, addr) in self.node_addrs().await? {
            let channel = Channel::from_shared(format!("http://{addr}"))
                .ok()?
                .connect()
                .await
                .ok()?;
            let mut client = BrokerClient::with_interceptor(channel, credentials.attach());
            replies.push(client.status(StatusRequest {}).await.ok()?.into_inner());
        }
        Some(replies)
    }

    /// Whether the elected controller's latest pass had nothing left to change
    /// (`mom_controller_unsettled_partitions` is 0 where `mom_controller` is 1).
    async fn controller_settled(&self) -> bool {
        for index in 0..self.partitioning_metrics_ports.len() {
            let Ok(reply) = reqwest::get(self.partitioning_metrics_url(index)).await else {
                continue;
            };
            let Ok(text) = reply.text().await else {
                continue;
            };
            let gauge = |name: &str| {
                text.lines().find_map(|line| {
                    let (metric, value) = line.split_once(' ')?;
                    (metric == name).then(|| value.trim().parse::<f64>().ok())?
                })
            };
            if gauge("mom_controller") == Some(1.0) {
                return gauge("mom_controller_unsettled_partitions") == Some(0.0);
            }
        }
        false
    }

    /// Whether the leader of every partition, as ZooKeeper names it, serves it.
    async fn all_served(&self) -> bool {
        let (Some(partitions), Some(statuses)) = (self.partitions().await, self.statuses().await)
        else {
            return false;
        };
        partitions.iter().all(|p| {
            statuses.iter().any(|node| {
                node.node == p.leader
                    && node
                        .partitions
                        .iter()
                        .any(|r| r.partition == p.partition && r.serving)
            })
        })
    }

    /// SIGKILLs broker node `index` (0-based).
    pub fn kill_node(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Starts a killed node again and waits until its gRPC port accepts connections.
    pub fn restart_node(&mut self, index: usize) {
        self.nodes[index].start();
        assert!(
            wait_for_addr(self.node_hosts[index], self.node_ports[index], STARTUP),
            "node did not restart:\n{}",
            self.logs()
        );
    }

    /// Every service's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for service in [&self.auth, &self.gateway]
            .into_iter()
            .chain(self.partitioning.iter())
            .chain(self.nodes.iter())
        {
            all.push_str(&format!(
                "---- {} ----\n{}\n",
                service.name(),
                service.log()
            ));
        }
        all
    }
}
