//! Test harness: real ZooKeeper servers and real MOM service processes on loopback ports.
//!
//! Every process is killed (SIGKILL) when its handle drops, also when a test panics. With
//! [`ClusterOptions::namespaces`], broker nodes run in network namespaces of their own
//! ([`netns`]), so that tests can cut the network between chosen processes.

mod cluster;
pub mod netns;
mod process;
mod zookeeper;

pub use cluster::{
    service_credentials, Cluster, ClusterOptions, ADMIN_PASSWORD, ADMIN_USER, CLUSTER_SECRET,
    JWT_SECRET, ZOOKEEPER_DIGEST,
};
pub use process::{binary, free_port, poll_until, wait_until, Service};
pub use zookeeper::ZooKeeper;
