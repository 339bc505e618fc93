//! A test network of Linux network namespaces, so that tests can cut real TCP connections
//! between chosen processes (Jepsen's nemesis, on one machine).
//!
//! Layout: a bridge in the test's own namespace carries two addresses, the host's (`.1`: the
//! gateway, the partitioning and auth services reach nodes from it) and ZooKeeper's (`.2`,
//! which ZooKeeper alone listens on); each broker node runs in a namespace of its own behind a
//! veth pair, at `.11`, `.12`, ... Faults are blackhole routes inside a node's namespace:
//! packets from the node to a blackholed address are dropped, so TCP in both directions
//! stops (the other side's segments are never answered). Routes are only ever added inside
//! the nodes' namespaces, so a cut never touches the rest of the machine.
//!
//! Invariants: every name (namespace, link) carries this process's id, so concurrent test
//! runs cannot meet; everything is deleted on drop, and leftovers of a killed run with the
//! same id are deleted before creating.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Network {
    tag: String,
    subnet: [u8; 3],
    nodes: usize,
    /// Blackhole routes in place, as (node, address): what `heal` removes.
    cuts: BTreeSet<(usize, Ipv4Addr)>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Network {
    /// Whether this machine lets the tests make namespaces (root with CAP_NET_ADMIN and
    /// `ip` from iproute2); the reason why not otherwise.
    pub fn available() -> Result<(), String> {
        let probe = format!("momprobe{}", std::process::id());
        ip(&["netns", "add", &probe])?;
        ip(&["netns", "del", &probe])
    }

    /// A bridge with the host and ZooKeeper addresses, and `nodes` namespaces attached to it.
    pub fn create(nodes: usize) -> Result<Network, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let seq = NEXT.fetch_add(1, Ordering::Relaxed);
        // Short enough for Linux's 15-character interface names.
        let tag = format!("m{}{}", pid % 100_000, seq % 10);
        let subnet = [10, 100 + (pid % 100) as u8, ((pid / 100 + seq) % 250) as u8];
        let network = Network {
            tag,
            subnet,
            nodes,
            cuts: BTreeSet::new(),
        };
        network.remove();
        network.build().inspect_err(|_| network.remove())?;
        Ok(network)
    }

    fn bridge(&self) -> String {
        format!("{}b", self.tag)
    }

    /// The namespace broker node `index` (0-based) runs in.
    pub fn namespace(&self, index: usize) -> String {
        format!("{}n{}", self.tag, index)
    }

    fn address(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, last)
    }

    /// Where the test's own processes (gateway, partitioning, auth) are seen from nodes.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.address(1)
    }

    /// The address ZooKeeper listens on, and only ZooKeeper.
    pub fn zookeeper_ip(&self) -> Ipv4Addr {
        self.address(2)
    }

    pub fn node_ip(&self, index: usize) -> Ipv4Addr {
        self.address(11 + index as u8)
    }

    /// The command prefix that runs a program inside node `index`'s namespace.
    pub fn exec_prefix(&self, index: usize) -> Vec<String> {
        vec!["netns".into(), "exec".into(), self.namespace(index)]
    }

    fn build(&self) -> Result<(), String> {
        let bridge = self.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        for host in [self.host_ip(), self.zookeeper_ip()] {
            ip(&["addr", "add", &format!("{host}/24"), "dev", &bridge])?;
        }
        ip(&["link", "set", &bridge, "up"])?;
        for index in 0..self.nodes {
            let ns = self.namespace(index);
            let veth = format!("{}v{index}", self.tag);
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            let node = format!("{}/24", self.node_ip(index));
            ip(&["-n", &ns, "addr", "add", &node, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn blackhole(&mut self, index: usize, to: Ipv4Addr) {
        if self.cuts.insert((index, to)) {
            let route = format!("{to}/32");
            ip(&[
                "-n",
                &self.namespace(index),
                "route",
                "add",
                "blackhole",
                &route,
            ])
            .expect("adding a blackhole route");
        }
    }

    /// Cuts nodes `a` and `b` (0-based) off each other; both still reach everything else.
    pub fn cut(&mut self, a: usize, b: usize) {
        let (ip_a, ip_b) = (self.node_ip(a), self.node_ip(b));
        self.blackhole(a, ip_b);
        self.blackhole(b, ip_a);
    }

    /// Cuts node `index` off ZooKeeper only: peers and the gateway still reach it.
    pub fn cut_from_zookeeper(&mut self, index: usize) {
        let zookeeper = self.zookeeper_ip();
        self.blackhole(index, zookeeper);
    }

    /// Cuts node `index` off everything: ZooKeeper, peers, gateway.
    pub fn isolate(&mut self, index: usize) {
        for to in [self.host_ip(), self.zookeeper_ip()] {
            self.blackhole(index, to);
        }
        for other in (0..self.nodes).filter(|o| *o != index) {
            self.cut(index, other);
        }
    }

    /// Removes every cut.
    pub fn heal(&mut self) {
        for (index, to) in std::mem::take(&mut self.cuts) {
            let route = format!("{to}/32");
            let _ = ip(&[
                "-n",
                &self.namespace(index),
                "route",
                "del",
                "blackhole",
                &route,
            ]);
        }
    }

    fn remove(&self) {
        for index in 0..self.nodes {
            let _ = ip(&["netns", "del", &self.namespace(index)]);
            let _ = ip(&["link", "del", &format!("{}v{index}", self.tag)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.remove();
    }
}
