//! Scripted, deterministic scenarios for the replication protocol core.
//!
//! Each test drives real [`Replica`]s through one situation that Kafka's replication design
//! (KIP-101, KIP-279, KIP-320) or a Jepsen run cares about, step by step, with no randomness.
//! The harness below plays the shell: it keeps each node's log twice, as written (what the
//! node serves from) and as durable (what survives a crash, written in order by a store that
//! flushes when told to, reporting each append's end the way the server's store does), models
//! ZooKeeper as one partition state changed by compare-and-set, and carries messages in FIFO
//! order unless a test cuts a node off or delivers them by hand.
//!
//! The last six tests each showed a real defect of an earlier version (found by a second reader).

use mom_replicator::protocol::{
    Action, Entry, Epoch, FetchOutcome, FetchReply, FetchRequest, LogOutline, NodeId, Offset,
    Payload, Refusal, Replica, ReplicaConfig, Role, View,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    EpochStart,
    Put(u64),
}

impl Payload for Op {
    fn epoch_start() -> Self {
        Op::EpochStart
    }
}

fn name(n: usize) -> NodeId {
    format!("n{n}")
}

fn index(id: &str) -> usize {
    id[1..].parse().expect("node names are n<digit>")
}

fn names(nodes: &[usize]) -> Vec<NodeId> {
    nodes.iter().map(|n| name(*n)).collect()
}

fn config() -> ReplicaConfig {
    ReplicaConfig {
        min_insync: 2,
        lag_timeout_ms: 1_000,
        max_fetch_wait_ms: 100,
        fetch_timeout_ms: 300,
        max_fetch_entries: 16,
    }
}

/// A copy of a partition log as the shell holds it: entries from `start` on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Log {
    start: Offset,
    prev_epoch: Epoch,
    entries: Vec<Entry<Op>>,
}

#[derive(Debug, Clone)]
enum Write {
    Append(Vec<Entry<Op>>),
    Truncate(Offset),
    Reset { start: Offset, prev_epoch: Epoch },
    Compact { start: Offset, prev_epoch: Epoch },
}

impl Log {
    fn end(&self) -> Offset {
        self.start + self.entries.len() as u64
    }

    fn entry(&self, offset: Offset) -> Option<&Entry<Op>> {
        offset
            .checked_sub(self.start)
            .and_then(|i| self.entries.get(i as usize))
    }

    fn outline(&self) -> LogOutline {
        LogOutline::of_entries(
            self.start,
            self.prev_epoch,
            self.entries.iter().map(|e| e.epoch),
        )
    }

    fn apply(&mut self, write: &Write) {
        match write {
            Write::Append(entries) => {
                for entry in entries {
                    assert_eq!(entry.offset, self.end(), "append at the log end");
                    self.entries.push(entry.clone());
                }
            }
            Write::Truncate(offset) => {
                let keep = offset.saturating_sub(self.start) as usize;
                self.entries.truncate(keep);
            }
            Write::Reset { start, prev_epoch } => {
                *self = Log {
                    start: *start,
                    prev_epoch: *prev_epoch,
                    entries: Vec::new(),
                }
            }
            Write::Compact { start, prev_epoch } => {
                let drop = start.saturating_sub(self.start) as usize;
                self.entries.drain(..drop.min(self.entries.len()));
                self.start = *start;
                self.prev_epoch = *prev_epoch;
            }
        }
    }

    /// Whether this copy has `entry` (or compacted it away, having had it).
    fn holds(&self, entry: &Entry<Op>) -> bool {
        entry.offset < self.start || self.entry(entry.offset) == Some(entry)
    }
}

struct Node {
    replica: Replica<Op>,
    incarnation: u64,
    /// Every write issued, applied at once: what this node serves fetches from.
    written: Log,
    /// What survives a crash: the writes the store has flushed, in order.
    durable: Log,
    unflushed: VecDeque<Write>,
    /// Flush every write at once (reporting appends right away), or only when a test says so.
    auto_flush: bool,
    /// The HW this node's applied state is at.
    applied: Offset,
}

#[derive(Debug, Clone)]
enum Msg {
    Fetch {
        from: usize,
        to: usize,
        request: FetchRequest,
    },
    Reply {
        from: usize,
        to: usize,
        reply: FetchReply<Op>,
    },
}

impl Msg {
    fn ends(&self) -> (usize, usize) {
        match self {
            Msg::Fetch { from, to, .. } | Msg::Reply { from, to, .. } => (*from, *to),
        }
    }
}

struct Cluster {
    now: u64,
    config: ReplicaConfig,
    nodes: Vec<Node>,
    zk: View,
    /// ZooKeeper views not yet delivered, per node.
    views: Vec<VecDeque<View>>,
    /// Nodes whose views stay queued until a test delivers them.
    views_held: BTreeSet<usize>,
    net: VecDeque<Msg>,
    /// Every message ever sent, for replaying stale ones.
    sent: Vec<Msg>,
    /// Nodes cut off the network: messages to or from them are dropped.
    cut: BTreeSet<usize>,
    /// Nodes that are down (not live, not driven).
    down: BTreeSet<usize>,
    /// Resolve `WriteIsr` at once by compare-and-set, or queue it for the test.
    auto_isr: bool,
    isr_writes: VecDeque<(usize, Vec<NodeId>, i32, Option<NodeId>)>,
    next_incarnation: u64,
    next_request: u64,
    replies: BTreeMap<u64, Result<Offset, Refusal>>,
    /// Entries a client was told are committed.
    acked: Vec<Entry<Op>>,
    /// `Records` answers: (leader, follower, from, to).
    chunks: Vec<(usize, usize, Offset, Offset)>,
    truncations: Vec<(usize, Offset)>,
    resets: Vec<(usize, Offset)>,
}

impl Cluster {
    /// `count` nodes, all replicas, `isr` in sync, `leader` leading epoch 1; settled.
    fn new(count: usize, isr: &[usize], leader: usize) -> Cluster {
        Cluster::start(count, isr, leader, &[])
    }

    /// As `new`, with the `cut` nodes cut off the network from the start.
    fn start(count: usize, isr: &[usize], leader: usize, cut: &[usize]) -> Cluster {
        let config = config();
        let zk = View {
            leader: name(leader),
            epoch: 1,
            replicas: (0..count).map(name).collect(),
            isr: names(isr),
            version: 0,
        };
        let mut cluster = Cluster {
            now: 1_000,
            config: config.clone(),
            nodes: Vec::new(),
            zk: zk.clone(),
            views: vec![VecDeque::new(); count],
            views_held: BTreeSet::new(),
            net: VecDeque::new(),
            sent: Vec::new(),
            cut: cut.iter().copied().collect(),
            down: BTreeSet::new(),
            auto_isr: true,
            isr_writes: VecDeque::new(),
            next_incarnation: 0,
            next_request: 0,
            replies: BTreeMap::new(),
            acked: Vec::new(),
            chunks: Vec::new(),
            truncations: Vec::new(),
            resets: Vec::new(),
        };
        for n in 0..count {
            cluster.next_incarnation += 1;
            cluster.nodes.push(Node {
                replica: Replica::new(
                    name(n),
                    config.clone(),
                    cluster.next_incarnation,
                    LogOutline::default(),
                    0,
                ),
                incarnation: cluster.next_incarnation,
                written: Log::default(),
                durable: Log::default(),
                unflushed: VecDeque::new(),
                auto_flush: true,
                applied: 0,
            });
        }
        cluster.broadcast_live();
        // The leader first, so that the followers' first fetches find it leading.
        cluster.view_to(leader, zk.clone());
        for n in (0..count).filter(|n| *n != leader) {
            cluster.view_to(n, zk.clone());
        }
        cluster.settle();
        cluster
    }

    fn replica(&self, n: usize) -> &Replica<Op> {
        &self.nodes[n].replica
    }

    // ---- the shell ----

    fn run(&mut self, n: usize, actions: Vec<Action<Op>>) {
        let mut queue: VecDeque<Action<Op>> = actions.into();
        loop {
            while let Some(action) = queue.pop_front() {
                self.execute(n, action, &mut queue);
            }
            if self.nodes[n].auto_flush && !self.nodes[n].unflushed.is_empty() {
                while let Some(actions) = self.flush_one_inner(n) {
                    queue.extend(actions);
                }
                continue;
            }
            break;
        }
    }

    fn execute(&mut self, n: usize, action: Action<Op>, queue: &mut VecDeque<Action<Op>>) {
        let now = self.now;
        match action {
            Action::Append(entries) => {
                let write = Write::Append(entries);
                self.nodes[n].written.apply(&write);
                self.nodes[n].unflushed.push_back(write);
            }
            Action::Truncate(offset) => {
                assert!(
                    offset >= self.nodes[n].applied,
                    "n{n} truncated to {offset}, below its applied HW {}",
                    self.nodes[n].applied
                );
                self.truncations.push((n, offset));
                let write = Write::Truncate(offset);
                self.nodes[n].written.apply(&write);
                self.nodes[n].unflushed.push_back(write);
            }
            Action::Reset { start, prev_epoch } => {
                self.resets.push((n, start));
                let write = Write::Reset { start, prev_epoch };
                self.nodes[n].written.apply(&write);
                self.nodes[n].unflushed.push_back(write);
                self.nodes[n].applied = start;
            }
            Action::Commit(hw) => {
                let node = &mut self.nodes[n];
                assert!(hw <= node.written.end(), "n{n} committed past its log");
                node.applied = node.applied.max(hw);
            }
            Action::Fetch { leader, request } => self.send(Msg::Fetch {
                from: n,
                to: index(&leader),
                request,
            }),
            Action::Respond {
                follower,
                seq,
                leader_epoch,
                outcome,
            } => {
                let entries = match &outcome {
                    FetchOutcome::Records { from, to, .. } => {
                        self.chunks.push((n, index(&follower), *from, *to));
                        (*from..*to)
                            .map(|o| {
                                self.nodes[n]
                                    .written
                                    .entry(o)
                                    .unwrap_or_else(|| panic!("n{n} serves {o}, which it lacks"))
                                    .clone()
                            })
                            .collect()
                    }
                    _ => Vec::new(),
                };
                self.send(Msg::Reply {
                    from: n,
                    to: index(&follower),
                    reply: FetchReply {
                        seq,
                        leader_epoch,
                        outcome,
                        entries,
                    },
                });
            }
            Action::WriteIsr {
                isr,
                expected_version,
                hand_over_to,
            } => {
                if self.auto_isr {
                    let written = self.cas_isr(n, isr, expected_version, hand_over_to);
                    queue.extend(self.nodes[n].replica.on_isr_written(written, now));
                } else {
                    self.isr_writes
                        .push_back((n, isr, expected_version, hand_over_to));
                }
            }
            Action::Reply { id, result } => {
                if let Ok(last) = &result {
                    if let Some(entry) = self.nodes[n].written.entry(*last) {
                        self.acked.push(entry.clone());
                    }
                }
                let previous = self.replies.insert(id, result);
                assert!(previous.is_none(), "request {id} answered twice");
            }
        }
    }

    /// The store flushes its oldest write; an append reports its end, as the server's does.
    fn flush_one_inner(&mut self, n: usize) -> Option<Vec<Action<Op>>> {
        let write = self.nodes[n].unflushed.pop_front()?;
        self.nodes[n].durable.apply(&write);
        let now = self.now;
        Some(match write {
            Write::Append(entries) => {
                let end = entries.last().map_or(0, |e| e.offset + 1);
                self.nodes[n].replica.on_persisted(end, now)
            }
            // A reset reports its (empty) log durable too: the fix proposed for
            // `a_reset_follower_is_not_counted_before_its_reset_is_durable` relies on it.
            Write::Reset { start, .. } => self.nodes[n].replica.on_persisted(start, now),
            _ => Vec::new(),
        })
    }

    /// Flushes one write of a node that does not flush by itself.
    fn flush_one(&mut self, n: usize) {
        if let Some(actions) = self.flush_one_inner(n) {
            self.run(n, actions);
        }
    }

    fn send(&mut self, msg: Msg) {
        self.sent.push(msg.clone());
        self.net.push_back(msg);
    }

    fn deliver(&mut self, msg: Msg) {
        let (from, to) = msg.ends();
        if self.cut.contains(&from) || self.cut.contains(&to) || self.down.contains(&to) {
            return;
        }
        let now = self.now;
        let actions = match msg {
            Msg::Fetch { request, .. } => {
                self.nodes[to].replica.on_fetch(&name(from), request, now)
            }
            Msg::Reply { reply, .. } => {
                self.nodes[to]
                    .replica
                    .on_fetch_reply(&name(from), reply, now)
            }
        };
        self.run(to, actions);
    }

    /// Delivers the oldest message in flight; false when there is none.
    fn step(&mut self) -> bool {
        match self.net.pop_front() {
            Some(msg) => {
                self.deliver(msg);
                true
            }
            None => false,
        }
    }

    /// Delivers views and messages until nothing is in flight.
    fn settle(&mut self) {
        for _ in 0..1_000_000 {
            let mut moved = false;
            for n in 0..self.nodes.len() {
                if self.views_held.contains(&n) || self.down.contains(&n) {
                    continue;
                }
                while let Some(view) = self.views[n].pop_front() {
                    self.view_to(n, view);
                    moved = true;
                }
            }
            if !self.step() && !moved {
                return;
            }
        }
        panic!("the cluster does not settle");
    }

    fn tick(&mut self, n: usize) {
        let now = self.now;
        let actions = self.nodes[n].replica.tick(now);
        self.run(n, actions);
    }

    /// Lets `ms` pass in steps of 50 ms, ticking every node and delivering what is sent.
    fn run_for(&mut self, ms: u64) {
        let mut left = ms;
        while left > 0 {
            let step = left.min(50);
            left -= step;
            self.advance(step);
            self.settle();
        }
    }

    /// Lets one fetch wait pass, so that followers learn the leader's HW: it rides on the next
    /// answer with entries, or on the one at the end of a follower's wait.
    fn spread_hw(&mut self) {
        self.run_for(self.config.max_fetch_wait_ms);
    }

    /// Lets a new leader's wait for its predecessor's read lease pass (followers keep
    /// fetching meanwhile, so the leader's own lease holds).
    fn wait_out_leases(&mut self) {
        let step = self.config.max_fetch_wait_ms / 2;
        for _ in 0..(self.config.lag_timeout_ms * 2 / step.max(1)) {
            self.advance(step);
            self.settle();
        }
    }

    /// Lets `ms` pass and ticks every node that is up.
    fn advance(&mut self, ms: u64) {
        self.now += ms;
        for n in 0..self.nodes.len() {
            if !self.down.contains(&n) {
                self.tick(n);
            }
        }
    }

    fn propose(&mut self, n: usize, items: Vec<Op>) -> u64 {
        self.next_request += 1;
        let id = self.next_request;
        let now = self.now;
        let actions = self.nodes[n].replica.propose(id, items, now);
        self.run(n, actions);
        id
    }

    fn compact(&mut self, n: usize, offset: Offset) -> Option<Offset> {
        let start = self.nodes[n].replica.compact(offset)?;
        let prev_epoch = self.nodes[n].replica.log().prev_epoch;
        let write = Write::Compact { start, prev_epoch };
        self.nodes[n].written.apply(&write);
        self.nodes[n].unflushed.push_back(write);
        if self.nodes[n].auto_flush {
            self.flush_one(n);
        }
        Some(start)
    }

    // ---- ZooKeeper ----

    fn live(&self) -> BTreeMap<NodeId, u64> {
        (0..self.nodes.len())
            .filter(|n| !self.down.contains(n))
            .map(|n| (name(n), self.nodes[n].incarnation))
            .collect()
    }

    fn live_to(&mut self, n: usize, live: BTreeMap<NodeId, u64>) {
        let now = self.now;
        let actions = self.nodes[n].replica.set_live(live, now);
        self.run(n, actions);
    }

    fn broadcast_live(&mut self) {
        let live = self.live();
        for n in 0..self.nodes.len() {
            if !self.down.contains(&n) {
                self.live_to(n, live.clone());
            }
        }
    }

    fn view_to(&mut self, n: usize, view: View) {
        let now = self.now;
        let actions = self.nodes[n].replica.on_view(view, now);
        self.run(n, actions);
    }

    /// Writes the partition state unconditionally (the controller, or a node leaving the
    /// in-sync sets) and queues the view for every node.
    /// The controller hands leadership to `to` at `epoch` (the rest of the view unchanged);
    /// every view and message is delivered (but views held back stay held).
    fn move_leadership(&mut self, to: usize, epoch: Epoch) {
        let next = View {
            leader: name(to),
            epoch,
            ..self.zk.clone()
        };
        self.zk_write(next);
        self.settle();
        assert_eq!(self.replica(to).role(), Role::Leader);
    }

    fn zk_write(&mut self, mut next: View) -> View {
        next.version = self.zk.version + 1;
        self.zk = next.clone();
        for views in &mut self.views {
            views.push_back(next.clone());
        }
        next
    }

    /// A leader's compare-and-set of the in-sync set.
    fn cas_isr(
        &mut self,
        writer: usize,
        isr: Vec<NodeId>,
        expected: i32,
        hand_over_to: Option<NodeId>,
    ) -> Option<View> {
        if self.zk.version != expected || self.zk.leader != name(writer) {
            return None;
        }
        let mut next = View {
            isr,
            ..self.zk.clone()
        };
        if let Some(successor) = hand_over_to {
            next.leader = successor;
            next.epoch += 1;
        }
        Some(self.zk_write(next))
    }

    /// Resolves the oldest queued `WriteIsr` against ZooKeeper and tells its writer.
    fn resolve_isr_write(&mut self) -> Option<View> {
        let (writer, isr, expected, hand_over_to) =
            self.isr_writes.pop_front().expect("a pending write");
        let written = self.cas_isr(writer, isr, expected, hand_over_to);
        let now = self.now;
        let actions = self.nodes[writer]
            .replica
            .on_isr_written(written.clone(), now);
        self.run(writer, actions);
        written
    }

    // ---- faults ----

    /// The node loses its disk and comes back as a new process with an empty log.
    fn wipe(&mut self, n: usize) {
        self.next_incarnation += 1;
        let node = &mut self.nodes[n];
        node.incarnation = self.next_incarnation;
        node.replica = Replica::new(
            name(n),
            self.config.clone(),
            self.next_incarnation,
            LogOutline::default(),
            0,
        );
        node.written = Log::default();
        node.durable = Log::default();
        node.unflushed.clear();
        node.applied = 0;
        self.views[n].clear();
        self.net.retain(|m| m.ends().1 != n);
    }

    /// The node's process crashes (losing what the store had not flushed) and starts again
    /// from its disk, as a new incarnation that registers at once.
    fn restart(&mut self, n: usize) {
        self.next_incarnation += 1;
        let node = &mut self.nodes[n];
        node.unflushed.clear();
        node.written = node.durable.clone();
        node.applied = node.applied.min(node.durable.end());
        node.incarnation = self.next_incarnation;
        node.replica = Replica::new(
            name(n),
            self.config.clone(),
            self.next_incarnation,
            node.durable.outline(),
            node.applied,
        );
        self.views[n] = VecDeque::from([self.zk.clone()]);
        self.net.retain(|m| m.ends().1 != n);
        self.broadcast_live();
    }

    // ---- checks ----

    /// Nothing acknowledged is lost: every in-sync replica ZooKeeper names holds every
    /// acknowledged entry on disk.
    fn check_acked_on_isr(&self) {
        for id in &self.zk.isr {
            let node = &self.nodes[index(id)];
            for entry in &self.acked {
                assert!(
                    node.durable.holds(entry),
                    "in-sync replica {id} lacks acknowledged entry {entry:?} on disk: has {:?}",
                    node.durable.entry(entry.offset)
                );
            }
        }
    }

    /// Replicas agree on every entry below both of their high watermarks.
    fn check_agreement(&self) {
        for a in 0..self.nodes.len() {
            for b in a + 1..self.nodes.len() {
                let (x, y) = (&self.nodes[a], &self.nodes[b]);
                let upto = x.replica.hw().min(y.replica.hw());
                for offset in x.written.start.max(y.written.start)..upto {
                    assert_eq!(
                        x.written.entry(offset),
                        y.written.entry(offset),
                        "n{a} and n{b} disagree at {offset}, below their HWs"
                    );
                }
            }
        }
    }
}

fn puts(range: std::ops::Range<u64>) -> Vec<Op> {
    range.map(Op::Put).collect()
}

fn isr_writes_naming(actions: &[Action<Op>], id: &str) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::WriteIsr { isr, .. } if isr.iter().any(|m| m == id)))
        .count()
}

// ---------------------------------------------------------------------------------------
// The protocol's promises, one scenario each.
// ---------------------------------------------------------------------------------------

/// min_insync counts copies, not "whatever the in-sync set happens to hold": with two of three
/// replicas out, a proposal is refused; it is accepted again once a follower catches up and
/// rejoins.
#[test]
fn min_insync_is_not_capped_by_a_shrunken_isr_and_writes_resume_after_a_rejoin() {
    let mut c = Cluster::start(3, &[0], 0, &[1, 2]);
    let id = c.propose(0, vec![Op::Put(1)]);
    assert_eq!(
        c.replies[&id],
        Err(Refusal::NotEnoughReplicas {
            in_sync: 1,
            required: 2
        })
    );
    assert_eq!(
        c.replica(0).log().end,
        1,
        "a refused proposal is not appended"
    );

    // n1 comes back, catches up and rejoins through a compare-and-set.
    c.cut.remove(&1);
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    assert_eq!(c.zk.isr, names(&[0, 1]));

    let id = c.propose(0, vec![Op::Put(2)]);
    c.settle();
    assert_eq!(c.replies[&id], Ok(1));
    assert!(c.nodes[1].durable.holds(&c.acked[0]));
    c.check_acked_on_isr();
}

/// "Maximal ISR": a follower the leader proposes to add counts at once, so proposals waiting
/// when it joins are only answered once the newcomer has them too.
#[test]
fn a_joining_follower_holds_back_waiting_proposals_until_it_has_them() {
    let mut c = Cluster::start(3, &[0, 1], 0, &[2]);
    c.auto_isr = false;
    let a = c.propose(0, vec![Op::Put(1)]);
    c.settle();
    assert_eq!(c.replies[&a], Ok(1));

    // n2 catches up to the HW; the leader proposes it (the write is still in flight).
    c.cut.remove(&2);
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    assert_eq!(c.isr_writes.len(), 1);
    assert_eq!(c.isr_writes[0].1, names(&[0, 1, 2]));

    // A proposal made now reaches n1 but not n2: it must wait for n2.
    c.cut.insert(2);
    let b = c.propose(0, vec![Op::Put(2)]);
    c.settle();
    assert!(c.nodes[1].durable.holds(&c.nodes[0].written.entries[2]));
    assert!(
        !c.replies.contains_key(&b),
        "answered before the joining n2 had it"
    );
    assert_eq!(c.replica(0).hw(), 2);

    // The write lands while n2 is still behind; n2 then catches up and b is answered.
    c.resolve_isr_write();
    assert_eq!(c.zk.isr, names(&[0, 1, 2]));
    c.check_acked_on_isr();
    c.cut.remove(&2);
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    assert_eq!(c.replies[&b], Ok(2));
    c.check_acked_on_isr();
}

/// A shrink the leader proposes does not count until ZooKeeper has it: the HW keeps waiting for
/// the leaving follower through a refused write and until the confirming view arrives.
#[test]
fn an_isr_shrink_counts_only_once_zookeeper_confirms_it() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    c.auto_isr = false;
    c.cut.insert(2);
    let x = c.propose(0, vec![Op::Put(1)]);
    c.settle();
    assert_eq!(c.replica(0).hw(), 1, "n2 lacks x");

    c.run_for(c.config.lag_timeout_ms + 100);
    assert_eq!(c.isr_writes.len(), 1);
    assert_eq!(c.isr_writes[0].1, names(&[0, 1]));
    assert!(!c.replies.contains_key(&x), "a proposed shrink counted");
    assert_eq!(c.replica(0).hw(), 1);

    // ZooKeeper refuses it (the znode moved on): still nothing.
    let (writer, _, _, _) = c.isr_writes.pop_front().unwrap();
    let now = c.now;
    let actions = c.nodes[writer].replica.on_isr_written(None, now);
    c.run(writer, actions);
    c.settle();
    assert!(!c.replies.contains_key(&x), "a refused shrink counted");

    // Proposed again and written; the view through the watch is what lets the HW move.
    c.advance(10);
    assert_eq!(c.isr_writes.len(), 1);
    let (writer, isr, expected, hand_over_to) = c.isr_writes.pop_front().unwrap();
    let view = c
        .cas_isr(writer, isr, expected, hand_over_to)
        .expect("the write lands");
    assert!(
        !c.replies.contains_key(&x),
        "counted before the view arrived"
    );
    c.views[0].clear();
    c.view_to(0, view.clone());
    assert_eq!(c.replies[&x], Ok(1));
    // The write's own answer, arriving after its view, changes nothing.
    let now = c.now;
    let actions = c.nodes[0].replica.on_isr_written(Some(view), now);
    assert!(actions.iter().all(|a| !matches!(a, Action::Reply { .. })));
    c.check_acked_on_isr();
}

/// A view older than the one a replica has (lower epoch, or same epoch and lower version)
/// changes nothing, for a leader and for a follower.
#[test]
fn a_late_view_with_a_lower_epoch_or_version_changes_nothing() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    let old = c.zk.clone();
    // n1 takes over at epoch 2; then it shrinks the set to {n1, n2} at version 2.
    let next = View {
        leader: name(1),
        epoch: 2,
        ..c.zk.clone()
    };
    c.zk_write(next);
    c.settle();
    let shrunk = View {
        isr: names(&[1, 2]),
        ..c.zk.clone()
    };
    let current = c.zk_write(shrunk);
    c.settle();
    assert_eq!(c.replica(1).role(), Role::Leader);

    let same_epoch_older = View {
        version: current.version - 1,
        isr: names(&[0, 1, 2]),
        ..current.clone()
    };
    for late in [old.clone(), same_epoch_older] {
        let now = c.now;
        assert!(c.nodes[1].replica.on_view(late.clone(), now).is_empty());
        assert_eq!(c.replica(1).leader_epoch(), Some(2));
        assert_eq!(c.replica(1).view(), Some(&current));
        assert!(c.nodes[2].replica.on_view(late, now).is_empty());
        assert_eq!(c.replica(2).role(), Role::Follower);
    }
    // n2 still fetches from n1 at epoch 2.
    c.now += c.config.fetch_timeout_ms;
    let now = c.now;
    let actions = c.nodes[2].replica.tick(now);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Fetch { leader, request } if *leader == name(1) && request.epoch == 2
    )));
    // And n0, which led epoch 1, does not lead again on its late view.
    assert!(c.nodes[0].replica.on_view(old, now).is_empty());
    assert_ne!(c.replica(0).role(), Role::Leader);
}

/// A reply that is duplicated, answers an older fetch, comes from another leader or epoch is
/// ignored; and even a (forged) divergence below the HW never truncates below it.
#[test]
fn stale_or_duplicated_fetch_replies_are_ignored_and_a_follower_never_truncates_below_its_hw() {
    let mut c = Cluster::new(2, &[0, 1], 0);
    let a = c.propose(0, vec![Op::Put(1)]);
    // The leader answers n1's parked fetch with `a`; deliver that reply and keep a copy.
    let Some(Msg::Reply { reply, .. }) = c.net.front().cloned() else {
        panic!("expected a reply in flight: {:?}", c.net)
    };
    assert!(!reply.entries.is_empty());
    c.step();
    let now = c.now;
    for stale in [
        reply.clone(),
        FetchReply {
            leader_epoch: 2,
            ..reply.clone()
        },
    ] {
        assert!(c.nodes[1]
            .replica
            .on_fetch_reply("n0", stale, now)
            .is_empty());
    }
    assert!(c.nodes[1]
        .replica
        .on_fetch_reply("n2", reply.clone(), now)
        .is_empty());
    c.settle();
    assert_eq!(c.replies[&a], Ok(1));
    assert_eq!(c.replica(1).log().end, 2);
    // The old reply, once more after newer fetches: still ignored.
    assert!(c.nodes[1]
        .replica
        .on_fetch_reply("n0", reply, now)
        .is_empty());
    assert_eq!(c.replica(1).log().end, 2);

    // n1 gets b (uncommitted on it: HW 2, end 3); its next fetch is held back and a reply
    // claiming divergence at offset 0 is answered to it instead.
    c.propose(0, vec![Op::Put(2)]);
    c.step(); // the records reach n1, which appends b and fetches again
    assert_eq!(c.replica(1).log().end, 3);
    assert_eq!(c.replica(1).hw(), 2);
    let Some(Msg::Fetch { request, .. }) = c.net.pop_back() else {
        panic!("expected n1's fetch")
    };
    let forged = FetchReply {
        seq: request.seq,
        leader_epoch: 1,
        outcome: FetchOutcome::Diverging {
            epoch: 0,
            end_offset: 0,
        },
        entries: Vec::new(),
    };
    let actions = c.nodes[1].replica.on_fetch_reply("n0", forged, now);
    for action in &actions {
        if let Action::Truncate(offset) = action {
            assert!(*offset >= 2, "truncated to {offset}, below the HW 2");
        }
    }
    assert!(c.replica(1).log().end >= 2);
    c.run(1, actions);
    c.settle();
    assert_eq!(c.nodes[1].written, c.nodes[0].written);
    c.check_agreement();
}

/// A duplicated or delayed fetch request never lowers what the leader counts for a follower,
/// and one from before a truncation cannot vouch for what was truncated.
#[test]
fn a_stale_fetch_request_does_not_lower_or_inflate_a_followers_progress() {
    let mut c = Cluster::new(2, &[0, 1], 0);
    let first = c
        .sent
        .iter()
        .find_map(|m| match m {
            Msg::Fetch {
                from: 1, request, ..
            } => Some(request.clone()),
            _ => None,
        })
        .unwrap();
    c.propose(0, puts(0..5));
    c.settle();
    assert_eq!(c.replica(0).follower_offsets(), vec![(name(1), 6)]);
    let now = c.now;
    let actions = c.nodes[0].replica.on_fetch("n1", first, now);
    c.run(0, actions);
    c.settle();
    assert_eq!(c.replica(0).follower_offsets(), vec![(name(1), 6)]);
    assert_eq!(c.replica(0).hw(), 6);
}

/// KIP-101/279: a follower holding a dead leader's uncommitted suffix truncates exactly the
/// part the new leader lacks (found by leader epoch), keeps the part it shares, and then
/// matches the new leader.
#[test]
fn a_divergent_uncommitted_suffix_is_truncated_by_leader_epoch_and_then_matches() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    c.propose(0, puts(0..2));
    c.settle();
    assert_eq!(c.replica(0).hw(), 3);

    // c reaches both followers, but n2's next fetch is lost: n0's HW stays at 3.
    c.propose(0, vec![Op::Put(10)]);
    c.step();
    c.step();
    assert_eq!((c.replica(1).log().end, c.replica(2).log().end), (4, 4));
    c.cut.insert(2);
    // d reaches n1 only.
    c.propose(0, vec![Op::Put(11)]);
    c.settle();
    assert_eq!(c.replica(1).log().end, 5);
    assert_eq!(c.replica(0).hw(), 3);
    assert!(c.replica(1).hw() <= 3);

    // n0 dies; the controller elects n2 at epoch 2.
    c.down.insert(0);
    c.cut.remove(&2);
    c.broadcast_live();
    let next = View {
        leader: name(2),
        epoch: 2,
        isr: names(&[1, 2]),
        ..c.zk.clone()
    };
    c.zk_write(next);
    c.settle();

    assert_eq!(c.replica(2).role(), Role::Leader);
    assert_eq!(
        c.truncations,
        vec![(1, 4)],
        "n1 drops d (epoch 1, offset 4) and nothing else"
    );
    assert_eq!(c.nodes[1].written, c.nodes[2].written);
    assert_eq!(c.nodes[1].written.entry(3).unwrap().data, Op::Put(10));
    assert_eq!(c.nodes[1].written.entry(4).unwrap().epoch, 2);
    let id = c.propose(2, vec![Op::Put(12)]);
    c.settle();
    assert_eq!(c.replies[&id], Ok(5));
    c.spread_hw();
    assert_eq!(c.replica(1).hw(), 6);
    c.check_agreement();
    c.check_acked_on_isr();
}

/// A follower that lost its disk (new incarnation, empty log) is not counted on the strength
/// of what its earlier life had fetched, not even by a delayed request of that life.
#[test]
fn a_wiped_follower_is_not_counted_on_its_earlier_incarnations_progress() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    c.cut.insert(2);
    let b = c.propose(0, vec![Op::Put(1)]);
    c.settle();
    assert_eq!(c.replica(0).follower_offsets()[0], (name(1), 2));
    let old_fetch = c
        .sent
        .iter()
        .rev()
        .find_map(|m| match m {
            Msg::Fetch {
                from: 1, request, ..
            } => Some(request.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(old_fetch.fetch_offset, 2);

    // n1 loses its disk and registers its new life; n0 has no new view yet.
    c.wipe(1);
    c.broadcast_live();
    c.view_to(1, c.zk.clone());
    c.cut.insert(1);
    c.cut.remove(&2);
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    assert_eq!(c.replica(2).log().end, 2, "n2 has b");
    assert!(
        !c.replies.contains_key(&b),
        "b counted on n1's earlier life"
    );
    // A delayed fetch of n1's earlier life does not vouch for it either.
    let now = c.now;
    let actions = c.nodes[0].replica.on_fetch("n1", old_fetch, now);
    c.run(0, actions);
    c.settle();
    assert!(!c.replies.contains_key(&b));
    assert_eq!(c.replica(0).hw(), 1);

    // Once n1's new life has b, b is committed.
    c.cut.remove(&1);
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    assert_eq!(c.replies[&b], Ok(1));
    assert!(c.nodes[1].durable.holds(&c.acked[0]));
    c.check_acked_on_isr();
}

/// A follower 10,000 entries behind streams them in chunks of at most `max_fetch_entries`,
/// then rejoins the in-sync set.
#[test]
fn a_follower_far_behind_catches_up_in_bounded_chunks_and_rejoins() {
    let mut c = Cluster::start(3, &[0, 1], 0, &[2]);
    let id = c.propose(0, puts(0..10_000));
    c.settle();
    assert_eq!(c.replies[&id], Ok(10_000));
    assert_eq!(c.zk.isr, names(&[0, 1]));

    c.chunks.clear();
    c.cut.remove(&2);
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    let to_n2: Vec<_> = c
        .chunks
        .iter()
        .filter(|(_, f, from, to)| *f == 2 && to > from)
        .collect();
    assert!(to_n2
        .iter()
        .all(|(_, _, from, to)| to - from <= c.config.max_fetch_entries));
    assert!(to_n2.len() as u64 >= 10_001 / c.config.max_fetch_entries);
    assert_eq!(c.nodes[2].written, c.nodes[0].written);
    assert_eq!(c.zk.isr, names(&[0, 1, 2]));
    assert_eq!(c.replica(2).hw(), 10_001);
    c.check_agreement();
}

/// ZooKeeper naming a node leader is not enough: it must be in the in-sync set (say the last
/// in-sync member lost its disk and left it). Such a node neither leads nor accepts writes.
#[test]
fn a_node_named_leader_but_not_in_the_isr_does_not_lead() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    let next = View {
        leader: name(1),
        epoch: 2,
        isr: names(&[2]),
        ..c.zk.clone()
    };
    c.zk_write(next);
    c.settle();
    for n in 0..3 {
        assert_ne!(c.replica(n).role(), Role::Leader, "n{n} leads");
    }
    let id = c.propose(1, vec![Op::Put(1)]);
    assert!(matches!(c.replies[&id], Err(Refusal::NotLeader { .. })));

    // With no leader at all (the only copy left), nobody leads either.
    let next = View {
        leader: String::new(),
        epoch: 3,
        isr: Vec::new(),
        ..c.zk.clone()
    };
    c.zk_write(next);
    c.settle();
    for n in 0..3 {
        assert_eq!(c.replica(n).role(), Role::Offline, "n{n}");
        assert!(!c.replica(n).serving());
    }
}

/// A leader that lost its ZooKeeper session stops serving at once; its successor serves only
/// once its HW has passed the start of its own epoch (so it applied all that was committed).
#[test]
fn a_leader_cut_off_from_zookeeper_stops_serving_and_a_new_leader_waits_for_its_epoch_start() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    c.wait_out_leases();
    assert!(c.replica(0).serving());
    c.nodes[0].replica.set_connected(false);
    assert!(!c.replica(0).serving());

    // ZooKeeper expires n0's session; the controller elects n1.
    c.down.insert(0);
    c.broadcast_live();
    c.down.remove(&0);
    c.views_held.insert(0);
    c.cut.insert(2);
    let next = View {
        leader: name(1),
        epoch: 2,
        isr: names(&[1, 2]),
        ..c.zk.clone()
    };
    c.zk_write(next);
    c.settle();
    assert_eq!(c.replica(1).role(), Role::Leader);
    assert!(c.replica(1).hw() <= 1);
    assert!(
        !c.replica(1).serving(),
        "serves before its epoch start commits"
    );

    c.cut.remove(&2);
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    assert_eq!(c.replica(1).hw(), 2);
    c.wait_out_leases();
    assert!(c.replica(1).serving());
    assert!(!c.replica(0).serving());
}

/// Compaction: a follower behind the leader's log start is told `OutOfRange`, resets to the
/// leader's start, catches up from there and rejoins.
#[test]
fn a_follower_behind_the_log_start_is_reset_and_catches_up() {
    let mut c = Cluster::start(3, &[0, 1], 0, &[2]);
    c.propose(0, puts(0..49));
    c.settle();
    assert_eq!(c.replica(0).hw(), 50);
    assert_eq!(c.compact(0, 40), Some(40));
    assert_eq!(c.compact(1, 40), Some(40));
    // Never past the HW.
    assert_eq!(c.compact(0, 1_000), Some(50));
    assert_eq!(c.replica(0).log().start, 50);
    c.propose(0, puts(100..103));
    c.settle();

    c.cut.remove(&2);
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    assert_eq!(c.resets, vec![(2, 50)]);
    assert_eq!(c.nodes[2].written, c.nodes[0].written);
    assert_eq!(c.replica(2).log().start, 50);
    assert_eq!(c.replica(2).hw(), 53);
    assert_eq!(c.zk.isr, names(&[0, 1, 2]));
    c.check_agreement();
}

/// Compaction in the middle of an epoch and at an epoch boundary keeps the epoch lookup right:
/// a follower diverging above the log start is still truncated by epoch, not reset.
#[test]
fn compaction_keeps_truncation_by_epoch_working_above_the_log_start() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    c.propose(0, puts(0..9));
    c.settle();
    c.spread_hw();
    // An uncommitted suffix on n1 only.
    c.cut.insert(2);
    c.propose(0, puts(20..23));
    c.settle();
    assert_eq!(c.replica(1).log().end, 13);
    // n0 dies; n2 leads epoch 2, and compacts up to its HW.
    c.down.insert(0);
    c.broadcast_live();
    c.cut.remove(&2);
    c.views_held.insert(1);
    let next = View {
        leader: name(2),
        epoch: 2,
        isr: names(&[1, 2]),
        ..c.zk.clone()
    };
    c.zk_write(next);
    c.settle();
    assert_eq!(c.replica(2).role(), Role::Leader);
    assert_eq!(c.compact(2, 8), Some(8));
    c.views_held.remove(&1);
    c.settle();
    assert!(c.resets.is_empty(), "n1 needs no reset: {:?}", c.resets);
    assert_eq!(c.truncations, vec![(1, 10)]);
    assert_eq!(
        c.nodes[1].written.entries[8..],
        c.nodes[2].written.entries[..]
    );
    c.check_agreement();
}

/// A follower that crashes loses what it had not flushed and restarts as a new incarnation:
/// the leader counts it only from its new life's fetches (which tell what is really on its
/// disk), so the HW does not pass the entries it lost until it has them again.
#[test]
fn a_restarted_follower_is_counted_only_for_what_its_disk_still_holds() {
    let mut c = Cluster::new(2, &[0, 1], 0);
    c.nodes[1].auto_flush = false;
    let x = c.propose(0, vec![Op::Put(1)]);
    c.settle();
    assert_eq!(c.replica(1).log().end, 2, "n1 has x in its store's queue");
    assert!(!c.replies.contains_key(&x));
    c.restart(1);
    c.nodes[1].auto_flush = true;
    c.settle();
    assert_eq!(c.replica(1).log().end, 2, "n1 fetched x again");
    assert_eq!(c.replies[&x], Ok(1));
    c.check_acked_on_isr();
    c.check_agreement();
}

// ---------------------------------------------------------------------------------------
// Defects found while reading; each test fails on the current code.
// ---------------------------------------------------------------------------------------

/// A leader deposed with proposals still being written becomes a follower whose durable end
/// lags its log end, yet it fetches at once (only follower appends set `appending`). The new
/// leader's divergence answer makes it truncate over writes still in the store's queue, and
/// when the store then reports the old append ("persisted up to 3", as the server's store
/// does per append), the replica takes the new leader's entries at those offsets for durable.
/// It fetches claiming them, the new leader counts it and acknowledges `c`, while on disk the
/// deposed leader still holds its own old entry: a crash of both loses an acknowledged write.
#[test]

fn a_deposed_leader_does_not_claim_unflushed_entries_after_truncating() {
    let mut c = Cluster::new(2, &[0, 1], 0);
    c.nodes[0].auto_flush = false;
    c.cut.insert(1);
    c.propose(0, vec![Op::Put(1)]); // a @1
    c.flush_one(0); // a is on disk
    c.propose(0, vec![Op::Put(2)]); // b @2, still in the store's queue
    assert_eq!(c.nodes[0].durable.end(), 2);

    // The controller moves leadership to n1 (preferred leader), which never saw a or b, and
    // which takes c (at 2, after its epoch start at 1) before n0 sees the new view.
    c.cut.remove(&1);
    c.net.clear();
    c.views_held.insert(0);
    let next = View {
        leader: name(1),
        epoch: 2,
        ..c.zk.clone()
    };
    c.zk_write(next);
    c.settle();
    assert_eq!(c.replica(1).role(), Role::Leader);
    let cc = c.propose(1, vec![Op::Put(3)]);
    c.views_held.remove(&0);
    c.settle();
    assert_eq!(c.replica(0).role(), Role::Follower);

    // Now the store finishes b's append and reports it.
    c.flush_one(0);
    c.settle();
    if let Ok(last) = c
        .replies
        .get(&cc)
        .cloned()
        .unwrap_or(Err(Refusal::LeadershipLost))
    {
        let entry = c.nodes[1].written.entry(last).unwrap().clone();
        assert!(
            c.nodes[0].durable.holds(&entry),
            "c acknowledged with n0 counted, but n0's disk holds {:?} at {last}",
            c.nodes[0].durable.entry(last)
        );
    }
    // Whatever the order, once everything is flushed the two agree and c is acknowledged.
    while !c.nodes[0].unflushed.is_empty() {
        c.flush_one(0);
        c.settle();
    }
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    assert_eq!(c.replies.get(&cc), Some(&Ok(2)));
    c.check_acked_on_isr();
}

/// A node that lost its disk leaves the in-sync sets before it registers its new life, and
/// (see `register_node`) its previous process's registration may still be live. The leader
/// then sees the shrink while its live set still names the earlier incarnation, whose progress
/// it still holds: on its next tick it writes the wiped node straight back into the in-sync set.
#[test]

fn a_wiped_follower_that_left_the_isr_is_not_readded_on_its_earlier_progress() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    c.propose(0, puts(0..3));
    c.settle();
    assert_eq!(c.replica(0).hw(), 4);

    // n1 comes back without its disk: it leaves the in-sync set first (as
    // `leave_in_sync_sets` does); n0 sees that before n1's new registration.
    c.wipe(1);
    c.views_held.insert(1);
    let left = View {
        isr: names(&[0, 2]),
        ..c.zk.clone()
    };
    let left = c.zk_write(left);
    c.views[0].clear();
    c.view_to(0, left);
    c.now += 10;
    let now = c.now;
    let actions = c.nodes[0].replica.tick(now);
    assert_eq!(
        isr_writes_naming(&actions, "n1"),
        0,
        "n0 writes the wiped n1 back into the in-sync set: {actions:?}"
    );
}

/// The answer to an in-sync write of an earlier leadership of the same replica clears the
/// change the current leadership has in flight. If that change adds a follower, the HW stops
/// waiting for it and entries are acknowledged without it, yet the write lands in ZooKeeper:
/// the new member lacks acknowledged entries (and may be elected next).
#[test]

fn an_isr_write_answer_from_an_earlier_leadership_does_not_cancel_the_pending_change() {
    let mut c = Cluster::start(3, &[0, 1], 0, &[2]);
    c.auto_isr = false;
    // n2 catches up; n0 (epoch 1) proposes to add it. The write is slow.
    c.cut.remove(&2);
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    assert_eq!(c.isr_writes.len(), 1);
    // Meanwhile the controller moves leadership to n1 and back to n0 (epochs 2 and 3).
    let to_n1 = View {
        leader: name(1),
        epoch: 2,
        ..c.zk.clone()
    };
    c.zk_write(to_n1);
    let back = View {
        leader: name(0),
        epoch: 3,
        ..c.zk.clone()
    };
    c.zk_write(back);
    // n0 sees both views; n1 and n2 only the second.
    c.views[1].pop_front();
    c.views[2].pop_front();
    c.settle();
    assert_eq!(c.replica(0).leader_epoch(), Some(3));
    // At epoch 3, n0 proposes n2 again (this write will land) while the epoch-1 write is
    // still unanswered.
    // The epoch-1 write's answer (refused: the znode moved on) arrives now.
    assert_eq!(c.resolve_isr_write(), None);

    // A proposal reaching n1 but not n2.
    c.cut.insert(2);
    let x = c.propose(0, vec![Op::Put(1)]);
    c.settle();
    // The epoch-3 write lands: n2 is in sync in ZooKeeper, so it must have all that was
    // acknowledged.
    while !c.isr_writes.is_empty() {
        c.resolve_isr_write();
    }
    c.check_acked_on_isr();
    // n2 catches up in the end, and x is committed.
    c.auto_isr = true;
    c.cut.remove(&2);
    c.run_for(c.config.fetch_timeout_ms);
    assert_eq!(c.replies[&x], Ok(2));
    assert_eq!(c.zk.isr, names(&[0, 1, 2]));
    c.check_acked_on_isr();
}

/// A follower told `OutOfRange` resets and fetches from the leader's log start at once,
/// before its reset is on disk; the leader counts it there and, when the log was compacted up
/// to the HW, adds it to the in-sync set. If it crashes now, it restarts from its old, short
/// log while ZooKeeper names it in sync, so it may be elected without committed entries.
#[test]

fn a_reset_follower_is_not_counted_before_its_reset_is_durable() {
    let mut c = Cluster::start(3, &[0, 1], 0, &[2]);
    c.propose(0, puts(0..20));
    c.settle();
    assert_eq!(c.replica(0).hw(), 21);
    assert_eq!(c.compact(0, 21), Some(21));

    c.nodes[2].auto_flush = false;
    c.cut.remove(&2);
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    assert_eq!(c.resets, vec![(2, 21)]);
    if c.zk.isr.contains(&name(2)) {
        assert!(
            c.nodes[2].durable.end() >= c.replica(0).hw(),
            "n2 is in sync in ZooKeeper, but its disk still ends at {}",
            c.nodes[2].durable.end()
        );
    }
    // Once the reset is on disk, n2 is counted and rejoins.
    while !c.nodes[2].unflushed.is_empty() {
        c.flush_one(2);
    }
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    assert_eq!(c.zk.isr, names(&[0, 1, 2]));
}

/// The controller moves leadership to the preferred leader while the old one is alive and
/// connected. The old leader, whose view is late, keeps `serving()`; the new one shrinks it out
/// after the lag timeout and serves too. Two nodes hand out messages at once: an ack committed
/// at the new leader is unknown to the old one, which hands the message out again.
#[test]

fn two_leaders_never_serve_at_once_after_a_leadership_move() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    c.wait_out_leases();
    assert!(c.replica(0).serving());
    c.views_held.insert(0);
    c.move_leadership(1, 2);
    // n0 does not fetch from n1 (it has not seen the view): n1 drops it after the lag timeout.
    for _ in 0..4 {
        c.advance(c.config.lag_timeout_ms / 2);
        c.settle();
    }
    assert_eq!(c.zk.isr, names(&[1, 2]));
    c.wait_out_leases();
    assert!(c.replica(1).serving());
    c.advance(10);
    assert!(
        !c.replica(0).serving(),
        "n0 (epoch 1) still serves while n1 (epoch 2) serves"
    );
}

/// A planned move (the controller hands leadership to the preferred replica while the old
/// leader is alive): the new leader serves as soon as the old one fetches from it at the new
/// epoch, which proves it stepped down, instead of waiting out a read lease that readers would
/// see as a second or more of empty pulls.
#[test]
fn a_new_leader_serves_once_its_live_predecessor_follows_it() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    c.wait_out_leases();
    assert!(c.replica(0).serving());
    let moved_at = c.now;
    c.move_leadership(1, 2);
    assert_eq!(c.replica(0).role(), Role::Follower);
    assert_eq!(c.now, moved_at, "no time passed");
    assert!(
        c.replica(1).serving(),
        "the new leader waits for a lease though its predecessor follows it"
    );
    assert!(!c.replica(0).serving());
}

/// Two moves within a lease: n0 (epoch 1) does not see the move to n1 (epoch 2), so n1 waits
/// for it and never serves; then leadership moves on to n2 (epoch 3). n1 follows n2 at once,
/// but n1 never ended n0's leadership, so its fetch alone must not let n2 serve while n0 still
/// may: n0 is in the in-sync set, whose every member must have fetched at epoch 3 (the read
/// lease) before n2 serves; n0 has not, so n2 serves only once n0's lease on epoch 1 is over.
#[test]
fn a_predecessor_that_never_served_does_not_vouch_for_the_one_before() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    c.wait_out_leases();
    assert!(c.replica(0).serving());
    c.views_held.insert(0);
    c.move_leadership(1, 2);
    assert!(!c.replica(1).serving(), "n1 serves while n0 may");
    c.move_leadership(2, 3);
    assert_eq!(c.replica(1).role(), Role::Follower);
    assert!(
        !c.replica(2).serving(),
        "n2 serves on n1's word while n0 (epoch 1) may still serve"
    );
    c.wait_out_leases();
    assert!(c.replica(2).serving());
    assert!(!c.replica(0).serving());
}

/// Defence in depth. A leader that crashes after serving an entry it had not flushed, and that
/// ZooKeeper still names at the same epoch when it comes back, leads that epoch again: its new
/// epoch-start entry takes the lost entry's offset under the same epoch, the follower's copy
/// "matches" by (offset, epoch), and the two disagree below their HWs. The server avoids it by
/// bumping the epoch first (`restart_leaderships`); the core's own guard (`view.epoch >=
/// log.last_epoch()`) lets it through.
#[test]

fn a_restarted_leader_does_not_lead_again_at_the_epoch_it_led() {
    let mut c = Cluster::new(2, &[0, 1], 0);
    c.nodes[0].auto_flush = false;
    c.propose(0, vec![Op::Put(1)]);
    c.settle();
    assert_eq!(c.nodes[1].durable.end(), 2, "n1 has n0's unflushed entry");
    c.restart(0); // no epoch bump in ZooKeeper
    c.nodes[0].auto_flush = true;
    c.settle();
    c.advance(c.config.fetch_timeout_ms);
    c.settle();
    c.check_agreement();
}

/// A leader cut off from its followers, while ZooKeeper still sees all of them: shrinking the
/// in-sync set to itself would refuse every write until the network heals, so it hands
/// leadership over (by compare-and-set, at the next epoch) to an in-sync follower, which the
/// other follower reaches. What was acknowledged survives; writes go on at the new leader.
#[test]
fn a_leader_cut_off_from_its_followers_but_not_zookeeper_hands_leadership_over() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    let before = c.propose(0, puts(0..3));
    c.settle();
    assert!(c.replies[&before].is_ok());

    c.cut.insert(0);
    let refused = c.propose(0, vec![Op::Put(10)]);
    c.run_for(c.config.lag_timeout_ms + 2 * c.config.fetch_timeout_ms);
    assert_ne!(c.zk.leader, name(0), "the cut-off leader still leads");
    assert_eq!(c.zk.epoch, 2);
    assert!(!c.zk.isr.contains(&name(0)));
    assert!(
        c.replies.get(&refused).is_none_or(|r| r.is_err()),
        "a write the followers never saw was acknowledged"
    );
    let successor = index(&c.zk.leader);
    assert_eq!(c.replica(successor).role(), Role::Leader);
    assert_ne!(c.replica(0).role(), Role::Leader);

    let after = c.propose(successor, vec![Op::Put(11)]);
    c.settle();
    assert!(c.replies[&after].is_ok(), "writes go on at the new leader");
    for entry in &c.acked {
        let others = (0..3).filter(|n| *n != 0 && c.nodes[*n].durable.holds(entry));
        assert_eq!(others.count(), 2, "{entry:?} is on both connected replicas");
    }

    // Healed, the old leader follows, truncates what was never committed and rejoins.
    c.cut.remove(&0);
    c.run_for(c.config.lag_timeout_ms);
    assert_eq!(c.zk.isr.len(), 3);
    c.check_acked_on_isr();
    c.check_agreement();
}

/// A leader whose followers died (ZooKeeper says so) keeps leading and shrinks the set: there
/// is nobody to hand over to, and writes wait (503) for a replica to come back.
#[test]
fn a_leader_whose_followers_died_does_not_hand_over() {
    let mut c = Cluster::new(3, &[0, 1, 2], 0);
    c.down.insert(1);
    c.down.insert(2);
    c.broadcast_live();
    c.run_for(c.config.lag_timeout_ms + c.config.fetch_timeout_ms);
    assert_eq!(c.zk.leader, name(0));
    assert_eq!(c.zk.isr, names(&[0]));
}
