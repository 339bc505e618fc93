//! A consistent-hash ring with virtual nodes.
//!
//! Each node takes `virtual_nodes` points on a 64-bit ring; a key belongs to the first point
//! at or after its hash. Adding or removing one node moves only about 1/N of the keys.

use mom_catalog::NodeInfo;
use std::collections::BTreeMap;
use xxhash_rust::xxh3::xxh3_64;

#[derive(Debug, Clone, Default)]
pub struct HashRing {
    points: BTreeMap<u64, usize>,
    nodes: Vec<NodeInfo>,
}

impl HashRing {
    pub fn new(nodes: Vec<NodeInfo>, virtual_nodes: u32) -> Self {
        let mut points = BTreeMap::new();
        for (index, node) in nodes.iter().enumerate() {
            for replica in 0..virtual_nodes.max(1) {
                // Points depend only on the node id, so every service computes the same ring.
                points.insert(xxh3_64(format!("{}#{replica}", node.id).as_bytes()), index);
            }
        }
        HashRing { points, nodes }
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The first `count` distinct nodes clockwise from the key: owner first, then successors.
    pub fn owners(&self, key: &str, count: usize) -> Vec<&NodeInfo> {
        let hash = xxh3_64(key.as_bytes());
        let mut owners: Vec<&NodeInfo> = Vec::with_capacity(count);
        let clockwise = self.points.range(hash..).chain(self.points.range(..hash));
        for (_, &index) in clockwise {
            if owners.len() == count.min(self.nodes.len()) {
                break;
            }
            let node = &self.nodes[index];
            if !owners.iter().any(|o| o.id == node.id) {
                owners.push(node);
            }
        }
        owners
    }

    pub fn owner(&self, key: &str) -> Option<&NodeInfo> {
        self.owners(key, 1).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: &[&str]) -> Vec<NodeInfo> {
        ids.iter()
            .map(|id| NodeInfo {
                id: id.to_string(),
                grpc_addr: format!("{id}:1"),
                incarnation: 0,
            })
            .collect()
    }

    fn keys() -> Vec<String> {
        (0..3_000).map(|i| format!("e/orders/key-{i}")).collect()
    }

    #[test]
    fn empty_ring_has_no_owner() {
        assert!(HashRing::new(vec![], 16).owner("k").is_none());
    }

    #[test]
    fn spreads_keys_roughly_evenly() {
        let ring = HashRing::new(nodes(&["n1", "n2", "n3"]), 128);
        let mut counts = std::collections::HashMap::new();
        for key in keys() {
            *counts
                .entry(ring.owner(&key).unwrap().id.clone())
                .or_insert(0) += 1;
        }
        for (node, count) in counts {
            assert!(
                (600..=1_400).contains(&count),
                "{node} owns {count} of 3000 keys"
            );
        }
    }

    #[test]
    fn a_leaving_node_only_moves_its_own_keys() {
        let before = HashRing::new(nodes(&["n1", "n2", "n3"]), 128);
        let after = HashRing::new(nodes(&["n1", "n3"]), 128);
        for key in keys() {
            let old = &before.owner(&key).unwrap().id;
            if old != "n2" {
                assert_eq!(old, &after.owner(&key).unwrap().id, "{key} moved");
            }
        }
    }

    #[test]
    fn owners_are_distinct_and_start_with_the_owner() {
        let ring = HashRing::new(nodes(&["n1", "n2", "n3"]), 64);
        let owners = ring.owners("k", 5);
        assert_eq!(owners.len(), 3);
        assert_eq!(owners[0].id, ring.owner("k").unwrap().id);
        let mut ids: Vec<_> = owners.iter().map(|n| n.id.clone()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn ring_does_not_depend_on_listing_order() {
        let a = HashRing::new(nodes(&["n1", "n2", "n3"]), 32);
        let b = HashRing::new(nodes(&["n3", "n1", "n2"]), 32);
        for key in keys() {
            assert_eq!(a.owner(&key).unwrap().id, b.owner(&key).unwrap().id);
        }
    }
}
