//! Broker node membership: each live node holds an ephemeral znode with its address and the
//! incarnation of its process (which grows with every start, so that peers can tell a node's
//! new life from its old one).

use crate::{CatalogError, Result, NODES};
use std::time::Duration;
use tokio::sync::watch;
use zookeeper_client::{Client, CreateMode, Error as ZkError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub grpc_addr: String,
    pub incarnation: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Registration {
    grpc_addr: String,
    incarnation: u64,
}

impl NodeInfo {
    fn znode_data(&self) -> Vec<u8> {
        serde_json::to_vec(&Registration {
            grpc_addr: self.grpc_addr.clone(),
            incarnation: self.incarnation,
        })
        .expect("registration serializes")
    }

    fn from_znode(id: String, data: &[u8]) -> Option<NodeInfo> {
        let registration: Registration = serde_json::from_slice(data).ok()?;
        Some(NodeInfo {
            id,
            grpc_addr: registration.grpc_addr,
            incarnation: registration.incarnation,
        })
    }
}

/// Announces this node as live. Replaces a znode left by this node's previous, crashed
/// process whose session has not expired yet.
pub async fn register_node(zk: &Client, node: &NodeInfo) -> Result<()> {
    let path = format!("{NODES}/{}", node.id);
    let ephemeral = crate::session::create_options(CreateMode::Ephemeral);
    loop {
        match zk.create(&path, &node.znode_data(), &ephemeral).await {
            Ok(_) => return Ok(()),
            Err(ZkError::NodeExists) => {
                let Some(stat) = zk.check_stat(&path).await? else {
                    continue;
                };
                if stat.ephemeral_owner == zk.session_id().0 {
                    return Ok(());
                }
                tracing::warn!(node = %node.id, "replacing the znode of a previous session of this node");
                match zk.delete(&path, Some(stat.version)).await {
                    Ok(()) | Err(ZkError::NoNode) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn read_nodes(zk: &Client) -> Result<(Vec<NodeInfo>, zookeeper_client::OneshotWatcher)> {
    let (mut ids, _, watcher) = zk.get_and_watch_children(NODES).await?;
    ids.sort();
    let mut nodes = Vec::with_capacity(ids.len());
    for id in ids {
        let path = format!("{NODES}/{id}");
        match zk.get_data(&path).await {
            Ok((data, _)) => {
                let node =
                    NodeInfo::from_znode(id, &data).ok_or_else(|| CatalogError::Corrupt {
                        path,
                        detail: "unreadable node registration".into(),
                    })?;
                nodes.push(node);
            }
            // Left between the listing and the read; the watch will fire again.
            Err(ZkError::NoNode) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((nodes, watcher))
}

/// Follows the set of live nodes (sorted by id); the receiver always holds the latest view.
pub async fn watch_nodes(zk: Client) -> Result<watch::Receiver<Vec<NodeInfo>>> {
    let (sender, receiver) = watch::channel(Vec::new());
    follow_nodes(zk, sender).await?;
    Ok(receiver)
}

fn session_over(e: &CatalogError) -> bool {
    matches!(
        e,
        CatalogError::ZooKeeper(ZkError::SessionExpired | ZkError::ClientClosed)
    )
}

/// Keeps `sender` holding the live nodes as seen through `zk`, until that session ends (a
/// service that renews its session then follows again with the new one, into the same sender).
pub async fn follow_nodes(zk: Client, sender: watch::Sender<Vec<NodeInfo>>) -> Result<()> {
    let (first, mut watcher) = read_nodes(&zk).await?;
    let update = move |sender: &watch::Sender<Vec<NodeInfo>>, nodes: Vec<NodeInfo>| {
        sender.send_if_modified(|current| {
            let changed = *current != nodes;
            if changed {
                tracing::info!(nodes = ?nodes.iter().map(|n| &n.id).collect::<Vec<_>>(), "live nodes changed");
                *current = nodes;
            }
            changed
        });
    };
    update(&sender, first);
    tokio::spawn(async move {
        loop {
            watcher.changed().await;
            loop {
                match read_nodes(&zk).await {
                    Ok((nodes, next)) => {
                        watcher = next;
                        update(&sender, nodes);
                        break;
                    }
                    Err(e) if session_over(&e) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read live nodes, retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            if sender.is_closed() {
                return;
            }
        }
    });
    Ok(())
}
