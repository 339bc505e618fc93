//! Deterministic, seeded simulation of the replication protocol (no I/O, no threads).
//!
//! Three replicas of one partition run the real [`Replica`] state machine over a network that
//! drops, delays, reorders and duplicates messages and cuts links; nodes crash (losing what
//! was not fsync'd yet), restart, lose their disk, or lose ZooKeeper while still running.
//! ZooKeeper is modelled as one authoritative partition state changed only by compare-and-set,
//! a controller that elects a live in-sync replica with a higher epoch, and views that reach
//! each node late. Clients publish and ack through whoever leads.
//!
//! After every step it checks:
//! - nothing acknowledged is lost: every acknowledged entry is on the disk of every in-sync
//!   replica ZooKeeper names (so any next leader has it);
//! - replicas agree on every entry below both of their high watermarks;
//! - no acked message comes back: a serving leader never hands out a message whose ack was
//!   acknowledged;
//! - per-key order: a replica's pending messages are in publish order.
//!
//! A failing seed prints itself; rerun one with `MOM_SIM_SEED=<seed> cargo test -p
//! mom-replicator --test simulation`.

use mom_replicator::protocol::{
    Action, Entry, FetchOutcome, FetchReply, FetchRequest, LogOutline, Offset, Payload, Refusal,
    Replica, ReplicaConfig, Role, View,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    EpochStart,
    Publish(u64),
    Ack(u64),
}

impl Payload for Op {
    fn epoch_start() -> Self {
        Op::EpochStart
    }
}

const NODES: usize = 3;

fn name(n: usize) -> String {
    format!("n{n}")
}

fn index(id: &str) -> usize {
    id[1..].parse().unwrap()
}

/// What survives a crash: the fsync'd log, the HW checkpoint and the state applied up to it.
#[derive(Debug, Default, Clone)]
struct Disk {
    start: Offset,
    prev_epoch: u64,
    /// Entries from `start` on; the first `synced` of them are durable.
    entries: Vec<Entry<Op>>,
    synced: usize,
    hw: Offset,
    /// Applied state: pending publishes by offset.
    pending: BTreeMap<Offset, u64>,
}

impl Disk {
    fn end(&self) -> Offset {
        self.start + self.entries.len() as u64
    }

    fn durable_end(&self) -> Offset {
        self.start + self.synced as u64
    }

    fn entry(&self, offset: Offset) -> Option<&Entry<Op>> {
        offset
            .checked_sub(self.start)
            .and_then(|i| self.entries.get(i as usize))
    }

    fn outline(&self) -> LogOutline {
        let durable = self.entries[..self.synced].iter().map(|e| e.epoch);
        LogOutline::of_entries(self.start, self.prev_epoch, durable)
    }

    fn crash(&mut self) {
        self.entries.truncate(self.synced);
    }

    fn apply(&mut self, hw: Offset) {
        assert!(hw <= self.durable_end(), "committed past the durable end");
        for offset in self.hw.max(self.start)..hw {
            match self
                .entry(offset)
                .expect("committed entry present")
                .data
                .clone()
            {
                Op::Publish(id) => {
                    self.pending.insert(offset, id);
                }
                Op::Ack(id) => self.pending.retain(|_, p| *p != id),
                Op::EpochStart => {}
            }
        }
        self.hw = self.hw.max(hw);
    }
}

#[derive(Debug, Clone)]
enum Message {
    Fetch(FetchRequest),
    Reply(FetchReply<Op>),
}

#[derive(Debug, Clone)]
struct Envelope {
    from: usize,
    to: usize,
    message: Message,
}

struct Node {
    disk: Disk,
    replica: Option<Replica<Op>>,
    /// Views from ZooKeeper not delivered yet, oldest first.
    views: Vec<View>,
    /// Lost its ZooKeeper session but still runs (deposed, not dead).
    zk_cut: bool,
    wiped: bool,
    incarnation: u64,
    /// Answers to in-sync writes not delivered yet.
    isr_answers: Vec<Option<View>>,
}

#[derive(Debug)]
enum Client {
    Publish(u64, u64),
    Ack(u64),
}

struct Sim {
    rng: StdRng,
    now: u64,
    nodes: Vec<Node>,
    zk: View,
    network: Vec<Envelope>,
    cut_links: BTreeSet<(usize, usize)>,
    incarnations: u64,
    next_request: u64,
    next_message: u64,
    requests: HashMap<u64, (usize, Client)>,
    /// Acknowledged entries: offset → (epoch, op).
    acknowledged: BTreeMap<Offset, (u64, Op)>,
    acked_ids: BTreeSet<u64>,
    /// Messages a consumer tried to ack (the ack may have been committed unanswered).
    ack_attempts: BTreeSet<u64>,
    published_ids: BTreeSet<u64>,
    config: ReplicaConfig,
    trace: Vec<String>,
    /// No faults at all: for checking that the protocol makes progress.
    calm: bool,
}

fn config() -> ReplicaConfig {
    ReplicaConfig {
        min_insync: 2,
        lag_timeout_ms: 1_500,
        max_fetch_wait_ms: 150,
        fetch_timeout_ms: 500,
        max_fetch_entries: 16,
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let ids: Vec<String> = (0..NODES).map(name).collect();
        let zk = View {
            leader: name(0),
            epoch: 1,
            replicas: ids.clone(),
            isr: ids,
            version: 0,
        };
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            now: 0,
            nodes: Vec::new(),
            zk,
            network: Vec::new(),
            cut_links: BTreeSet::new(),
            incarnations: 0,
            next_request: 0,
            next_message: 0,
            requests: HashMap::new(),
            acknowledged: BTreeMap::new(),
            acked_ids: BTreeSet::new(),
            ack_attempts: BTreeSet::new(),
            published_ids: BTreeSet::new(),
            config: config(),
            trace: Vec::new(),
            calm: false,
        };
        for _ in 0..NODES {
            sim.nodes.push(Node {
                disk: Disk::default(),
                replica: None,
                views: Vec::new(),
                zk_cut: false,
                wiped: false,
                incarnation: 0,
                isr_answers: Vec::new(),
            });
        }
        for n in 0..NODES {
            sim.start(n);
        }
        sim
    }

    fn note(&mut self, what: String) {
        self.trace.push(format!("t={} {what}", self.now));
    }

    /// Live nodes with the incarnation they registered with.
    fn live(&self) -> BTreeMap<String, u64> {
        (0..NODES)
            .filter(|n| self.nodes[*n].replica.is_some() && !self.nodes[*n].zk_cut)
            .map(|n| (name(n), self.nodes[n].incarnation))
            .collect()
    }

    fn start(&mut self, n: usize) {
        self.incarnations += 1;
        let disk = &self.nodes[n].disk;
        let replica = Replica::new(
            name(n),
            self.config.clone(),
            self.incarnations,
            disk.outline(),
            disk.hw,
        );
        self.nodes[n].replica = Some(replica);
        self.nodes[n].incarnation = self.incarnations;
        self.nodes[n].zk_cut = false;
        if std::mem::take(&mut self.nodes[n].wiped) {
            // A node back without its data leaves every in-sync set before it serves (the
            // server does this at start-up).
            let mut next = self.zk.clone();
            next.isr.retain(|id| *id != name(n));
            if next.isr.is_empty() {
                next.leader.clear();
            } else if next.leader == name(n) {
                next.leader = next.isr[0].clone();
                next.epoch += 1;
            }
            self.zk_write(next);
        } else if self.zk.leader == name(n) {
            // A restarted leader starts a new epoch: entries it served but lost (not yet
            // fsync'd) must not be confused with new ones at the same offsets.
            let mut next = self.zk.clone();
            next.epoch += 1;
            self.zk_write(next);
        }
        // A fresh session reads the current state.
        self.nodes[n].views = vec![self.zk.clone()];
        self.broadcast_live();
    }

    fn zk_write(&mut self, mut next: View) {
        next.version = self.zk.version + 1;
        self.note(format!(
            "zk: leader={} epoch={} isr={:?}",
            next.leader, next.epoch, next.isr
        ));
        self.zk = next;
        for node in &mut self.nodes {
            if node.replica.is_some() && !node.zk_cut {
                node.views.push(self.zk.clone());
            }
        }
    }

    fn broadcast_live(&mut self) {
        let live = self.live();
        for n in 0..NODES {
            if self.nodes[n].zk_cut {
                continue;
            }
            if let Some(replica) = &mut self.nodes[n].replica {
                let actions = replica.set_live(live.clone(), self.now);
                self.run(n, actions);
            }
        }
    }

    /// The controller: replace a dead leader by a live in-sync replica, drop dead ones.
    fn control(&mut self) {
        let live = self.live();
        let live_isr: Vec<String> = self
            .zk
            .isr
            .iter()
            .filter(|id| live.contains_key(*id))
            .cloned()
            .collect();
        if live_isr.is_empty() {
            return;
        }
        let mut next = self.zk.clone();
        next.isr = live_isr;
        if !live.contains_key(&next.leader) {
            let choice = self.rng.gen_range(0..next.isr.len());
            next.leader = next.isr[choice].clone();
            next.epoch += 1;
        }
        if next.leader != self.zk.leader || next.isr != self.zk.isr {
            self.zk_write(next);
        }
    }

    /// The controller moves leadership to another live in-sync replica (the preferred leader
    /// after a join, say) while the old leader is alive.
    fn move_leadership(&mut self) {
        let live = self.live();
        let candidates: Vec<String> = self
            .zk
            .isr
            .iter()
            .filter(|id| live.contains_key(*id) && **id != self.zk.leader)
            .cloned()
            .collect();
        if candidates.is_empty() {
            return;
        }
        let mut next = self.zk.clone();
        next.leader = candidates[self.rng.gen_range(0..candidates.len())].clone();
        next.epoch += 1;
        self.zk_write(next);
    }

    /// A node compacts its log below what its applied state still needs, as the server does.
    fn compact(&mut self) {
        let n = self.rng.gen_range(0..NODES);
        let node = &mut self.nodes[n];
        let Some(replica) = node.replica.as_mut() else {
            return;
        };
        let needed = node
            .disk
            .pending
            .keys()
            .next()
            .copied()
            .unwrap_or(node.disk.hw)
            .min(node.disk.hw);
        if let Some(start) = replica.compact(needed) {
            let drop = (start - node.disk.start) as usize;
            node.disk.prev_epoch = node.disk.entries[drop - 1].epoch;
            node.disk.entries.drain(..drop);
            node.disk.synced -= drop.min(node.disk.synced);
            node.disk.start = start;
        }
    }

    fn send(&mut self, from: usize, to: usize, message: Message) {
        self.next_message += 1;
        self.network.push(Envelope { from, to, message });
    }

    /// Carries out a replica's actions, the way the server's shell does.
    fn run(&mut self, n: usize, actions: Vec<Action<Op>>) {
        let mut queue: std::collections::VecDeque<Action<Op>> = actions.into();
        while let Some(action) = queue.pop_front() {
            let node = &mut self.nodes[n];
            match action {
                Action::Append(entries) => {
                    for entry in entries {
                        assert_eq!(entry.offset, node.disk.end(), "append at the log end");
                        node.disk.entries.push(entry);
                    }
                }
                Action::Truncate(offset) => {
                    assert!(offset >= node.disk.hw, "truncated below the HW");
                    let keep = (offset - node.disk.start) as usize;
                    node.disk.entries.truncate(keep);
                    node.disk.synced = node.disk.synced.min(keep);
                }
                Action::Reset { start, prev_epoch } => {
                    node.disk = Disk {
                        start,
                        prev_epoch,
                        hw: start,
                        ..Disk::default()
                    };
                }
                Action::Commit(hw) => node.disk.apply(hw),
                Action::Fetch { leader, request } => {
                    self.send(n, index(&leader), Message::Fetch(request))
                }
                Action::Respond {
                    follower,
                    seq,
                    leader_epoch,
                    outcome,
                } => {
                    let entries = match &outcome {
                        FetchOutcome::Records { from, to, .. } => (*from..*to)
                            .map(|o| node.disk.entry(o).expect("served entry").clone())
                            .collect(),
                        _ => Vec::new(),
                    };
                    let reply = FetchReply {
                        seq,
                        leader_epoch,
                        outcome,
                        entries,
                    };
                    self.send(n, index(&follower), Message::Reply(reply));
                }
                Action::WriteIsr {
                    isr,
                    expected_version,
                    hand_over_to,
                } => {
                    let written = if !node.zk_cut
                        && self.zk.version == expected_version
                        && self.zk.leader == name(n)
                    {
                        self.trace.push(format!(
                            "t={} n{n} writes isr {isr:?} (hand over to {hand_over_to:?})",
                            self.now
                        ));
                        let mut next = View {
                            isr,
                            ..self.zk.clone()
                        };
                        if let Some(successor) = hand_over_to {
                            next.leader = successor;
                            next.epoch += 1;
                        }
                        self.zk_write(next);
                        Some(self.zk.clone())
                    } else {
                        None
                    };
                    // ZooKeeper's answer comes back later, like any reply.
                    self.nodes[n].isr_answers.push(written);
                }
                Action::Reply { id, result } => self.answer(id, result),
            }
        }
    }

    fn answer(&mut self, id: u64, result: Result<Offset, Refusal>) {
        let Some((n, client)) = self.requests.remove(&id) else {
            panic!("reply to unknown request {id}");
        };
        let Ok(offset) = result else { return };
        let disk = &self.nodes[n].disk;
        let entry = disk
            .entry(offset)
            .expect("acknowledged entry in the leader's log")
            .clone();
        match client {
            Client::Publish(epoch, message) => {
                assert_eq!(entry.data, Op::Publish(message));
                self.note(format!("ack publish {message} @{offset}"));
                self.acknowledged
                    .insert(offset, (epoch, entry.data.clone()));
            }
            Client::Ack(message) => {
                assert_eq!(entry.data, Op::Ack(message));
                self.note(format!("ack ack {message} @{offset}"));
                self.acknowledged
                    .insert(offset, (entry.epoch, entry.data.clone()));
                self.acked_ids.insert(message);
            }
        }
    }

    fn leader(&self) -> Option<usize> {
        (0..NODES).find(|n| {
            self.nodes[*n]
                .replica
                .as_ref()
                .is_some_and(|r| r.role() == Role::Leader)
        })
    }

    fn deliver(&mut self, envelope: Envelope) {
        let Envelope { from, to, message } = envelope;
        if self.cut_links.contains(&(from.min(to), from.max(to))) {
            return;
        }
        let now = self.now;
        let Some(replica) = self.nodes[to].replica.as_mut() else {
            return;
        };
        let actions = match message {
            Message::Fetch(request) => replica.on_fetch(&name(from), request, now),
            Message::Reply(reply) => replica.on_fetch_reply(&name(from), reply, now),
        };
        self.run(to, actions);
    }

    fn step(&mut self) {
        self.now += self.rng.gen_range(1..15);
        let mut roll = self.rng.gen_range(0..1000);
        if self.calm && roll >= 380 && !(415..810).contains(&roll) {
            roll = 999;
        }
        match roll {
            0..=379 if !self.network.is_empty() => {
                let i = self.rng.gen_range(0..self.network.len());
                let envelope = self.network.swap_remove(i);
                self.deliver(envelope);
            }
            380..=399 if !self.network.is_empty() => {
                let i = self.rng.gen_range(0..self.network.len());
                self.network.swap_remove(i);
            }
            400..=414 if !self.network.is_empty() => {
                let i = self.rng.gen_range(0..self.network.len());
                let copy = self.network[i].clone();
                self.network.push(copy);
            }
            415..=459 => {
                // ZooKeeper's answer to an in-sync write reaches its writer (late).
                let n = self.rng.gen_range(0..NODES);
                if self.nodes[n].replica.is_some() && !self.nodes[n].isr_answers.is_empty() {
                    let answer = self.nodes[n].isr_answers.remove(0);
                    let now = self.now;
                    let actions = self.nodes[n]
                        .replica
                        .as_mut()
                        .unwrap()
                        .on_isr_written(answer, now);
                    self.run(n, actions);
                }
            }
            460..=519 => {
                // A view reaches a node (in order, late).
                let n = self.rng.gen_range(0..NODES);
                if self.nodes[n].replica.is_some() && !self.nodes[n].views.is_empty() {
                    let view = self.nodes[n].views.remove(0);
                    let now = self.now;
                    let actions = self.nodes[n].replica.as_mut().unwrap().on_view(view, now);
                    self.run(n, actions);
                }
            }
            520..=569 => {
                let n = self.rng.gen_range(0..NODES);
                let now = self.now;
                if let Some(replica) = self.nodes[n].replica.as_mut() {
                    let actions = replica.tick(now);
                    self.run(n, actions);
                }
            }
            570..=689 => {
                // fsync
                let n = self.rng.gen_range(0..NODES);
                let node = &mut self.nodes[n];
                if let Some(replica) = node.replica.as_mut() {
                    node.disk.synced = node.disk.entries.len();
                    let actions = replica.on_persisted(node.disk.end(), self.now);
                    self.run(n, actions);
                }
            }
            690..=769 => self.publish(),
            770..=809 => self.consume(),
            810..=819 => self.control(),
            820..=823 => self.move_leadership(),
            824..=826 => self.compact(),
            827..=829 => self.control(),
            830..=841 => {
                let n = self.rng.gen_range(0..NODES);
                if self.nodes[n].replica.is_some() && self.up_count() > 1 {
                    self.note(format!("crash n{n}"));
                    self.crash(n);
                }
            }
            842..=846 => {
                // Lose the disk too, only where another in-sync copy survives.
                let n = self.rng.gen_range(0..NODES);
                let others_in_sync = self
                    .zk
                    .isr
                    .iter()
                    .filter(|id| **id != name(n) && !self.nodes[index(id)].wiped)
                    .count();
                let one_wiped = self.nodes.iter().any(|node| node.wiped);
                if self.nodes[n].replica.is_some()
                    && self.up_count() > 1
                    && others_in_sync >= 1
                    && !one_wiped
                {
                    self.note(format!("wipe n{n}"));
                    self.crash(n);
                    self.nodes[n].disk = Disk::default();
                    self.nodes[n].wiped = true;
                }
            }
            847..=899 => {
                let n = self.rng.gen_range(0..NODES);
                if self.nodes[n].replica.is_none() {
                    self.note(format!("restart n{n}"));
                    self.start(n);
                }
            }
            900..=919 => {
                let (a, b) = (self.rng.gen_range(0..NODES), self.rng.gen_range(0..NODES));
                if a != b {
                    self.note(format!("cut n{a}-n{b}"));
                    self.cut_links.insert((a.min(b), a.max(b)));
                }
            }
            920..=959 if !self.cut_links.is_empty() => {
                self.note("heal links".into());
                self.cut_links.clear();
            }
            960..=969 => {
                // A node loses ZooKeeper but keeps running: its session expires.
                let n = self.rng.gen_range(0..NODES);
                if self.nodes[n].replica.is_some() && !self.nodes[n].zk_cut {
                    self.note(format!("zk cut n{n}"));
                    self.nodes[n].zk_cut = true;
                    self.nodes[n].views.clear();
                    self.nodes[n].replica.as_mut().unwrap().set_connected(false);
                    self.broadcast_live();
                }
            }
            970..=989 => {
                // Back to ZooKeeper with a new session, as a restarted process would be.
                let n = self.rng.gen_range(0..NODES);
                if self.nodes[n].zk_cut {
                    self.note(format!("zk back n{n} (restart)"));
                    self.crash(n);
                    self.start(n);
                }
            }
            _ => {}
        }
    }

    fn up_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.replica.is_some()).count()
    }

    fn crash(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.replica = None;
        node.views.clear();
        node.isr_answers.clear();
        node.disk.crash();
        // In-flight answers to it are gone with its process.
        let requests: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, (at, _))| *at == n)
            .map(|(id, _)| *id)
            .collect();
        for id in requests {
            self.requests.remove(&id);
        }
        self.network.retain(|e| e.to != n);
        self.broadcast_live();
    }

    fn publish(&mut self) {
        let Some(n) = self.leader() else { return };
        self.next_request += 1;
        let id = self.next_request;
        let message = 1_000 + id;
        let epoch = self.nodes[n]
            .replica
            .as_ref()
            .unwrap()
            .leader_epoch()
            .unwrap();
        self.published_ids.insert(message);
        self.propose(n, id, Client::Publish(epoch, message), Op::Publish(message));
    }

    /// A client's request at node `n`: one entry, answered through `self.requests`.
    fn propose(&mut self, n: usize, id: u64, client: Client, op: Op) {
        self.requests.insert(id, (n, client));
        let now = self.now;
        let actions = self.nodes[n]
            .replica
            .as_mut()
            .unwrap()
            .propose(id, vec![op], now);
        self.run(n, actions);
    }

    fn consume(&mut self) {
        let Some(n) = self.leader() else { return };
        let replica = self.nodes[n].replica.as_ref().unwrap();
        if !replica.serving() {
            return;
        }
        let Some(message) = self.nodes[n]
            .disk
            .pending
            .values()
            .find(|m| !self.ack_attempts.contains(*m))
            .copied()
        else {
            return;
        };
        assert!(
            !self.acked_ids.contains(&message),
            "leader n{n} handed out {message}, whose ack was acknowledged"
        );
        self.next_request += 1;
        let id = self.next_request;
        self.ack_attempts.insert(message);
        self.propose(n, id, Client::Ack(message), Op::Ack(message));
    }

    fn check(&self) {
        // Nothing acknowledged is lost: every named in-sync replica holds it durably.
        for id in &self.zk.isr {
            let node = &self.nodes[index(id)];
            if node.wiped {
                continue;
            }
            for (offset, (epoch, op)) in &self.acknowledged {
                if *offset < node.disk.start {
                    continue;
                }
                let held = node
                    .disk
                    .entry(*offset)
                    .filter(|_| *offset < node.disk.durable_end());
                assert!(
                    held.is_some_and(|e| e.epoch == *epoch && e.data == *op),
                    "in-sync replica {id} lacks acknowledged entry {offset} ({epoch}, {op:?}): has {held:?}"
                );
            }
        }
        // Replicas agree below their high watermarks.
        for a in 0..NODES {
            for b in a + 1..NODES {
                let (x, y) = (&self.nodes[a].disk, &self.nodes[b].disk);
                let upto = x.hw.min(y.hw);
                for offset in x.start.max(y.start)..upto {
                    assert_eq!(
                        x.entry(offset),
                        y.entry(offset),
                        "n{a} and n{b} disagree at {offset} below their HWs"
                    );
                }
            }
        }
        for (n, node) in self.nodes.iter().enumerate() {
            // Per-key order: pending messages in publish order.
            let ids: Vec<u64> = node.disk.pending.values().copied().collect();
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "n{n} holds messages out of order: {ids:?}"
            );
            assert!(node.disk.hw <= node.disk.durable_end());
            // No acked message comes back: what a serving leader could hand out.
            if node.replica.as_ref().is_some_and(|r| r.serving()) {
                let back: Vec<&u64> = node
                    .disk
                    .pending
                    .values()
                    .filter(|m| self.acked_ids.contains(*m))
                    .collect();
                assert!(
                    back.is_empty(),
                    "serving leader n{n} would hand out {back:?}, whose acks were acknowledged"
                );
            }
        }
    }

    /// Heals every fault and lets the cluster settle; then every acknowledged message that was
    /// not acked must be pending at the leader.
    fn settle(&mut self) {
        self.cut_links.clear();
        for n in 0..NODES {
            if self.nodes[n].zk_cut {
                self.crash(n);
            }
            if self.nodes[n].replica.is_none() {
                self.start(n);
            }
        }
        for _ in 0..3_000 {
            self.now += 5;
            self.control();
            for n in 0..NODES {
                let views = std::mem::take(&mut self.nodes[n].views);
                for view in views {
                    let now = self.now;
                    let actions = self.nodes[n].replica.as_mut().unwrap().on_view(view, now);
                    self.run(n, actions);
                }
                let answers = std::mem::take(&mut self.nodes[n].isr_answers);
                for answer in answers {
                    let now = self.now;
                    let actions = self.nodes[n]
                        .replica
                        .as_mut()
                        .unwrap()
                        .on_isr_written(answer, now);
                    self.run(n, actions);
                }
                let node = &mut self.nodes[n];
                node.disk.synced = node.disk.entries.len();
                let replica = node.replica.as_mut().unwrap();
                let mut actions = replica.on_persisted(node.disk.end(), self.now);
                actions.extend(replica.tick(self.now));
                self.run(n, actions);
            }
            let network = std::mem::take(&mut self.network);
            for envelope in network {
                self.deliver(envelope);
            }
            self.check();
        }
        let leader = self.leader().unwrap_or_else(|| {
            panic!(
                "no leader after settling: zk {:?}\n{}",
                self.zk,
                self.trace.join("\n")
            )
        });
        let disk = &self.nodes[leader].disk;
        let pending: BTreeSet<u64> = disk.pending.values().copied().collect();
        for (offset, (_, op)) in &self.acknowledged {
            if let Op::Publish(message) = op {
                if !self.ack_attempts.contains(message) {
                    assert!(
                        pending.contains(message),
                        "acknowledged message {message} (@{offset}) lost; leader n{leader} pending {pending:?}"
                    );
                }
            }
        }
        for message in &pending {
            assert!(
                !self.acked_ids.contains(message),
                "acked {message} came back"
            );
            assert!(self.published_ids.contains(message));
        }
    }
}

fn run_seed(seed: u64, steps: usize) -> (usize, usize) {
    let mut sim = Sim::new(seed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..steps {
            sim.step();
            sim.check();
        }
        sim.settle();
    }));
    if let Err(panic) = outcome {
        let tail: Vec<&String> = sim.trace.iter().rev().take(40).collect();
        for (n, node) in sim.nodes.iter().enumerate() {
            let epochs: Vec<(u64, u64)> = node
                .disk
                .entries
                .iter()
                .map(|e| (e.offset, e.epoch))
                .collect();
            eprintln!(
                "n{n}: start {} synced {} hw {} role {:?} view {:?} followers {:?} entries {epochs:?}",
                node.disk.start,
                node.disk.synced,
                node.disk.hw,
                node.replica.as_ref().map(|r| r.role()),
                node.replica.as_ref().and_then(|r| r.view().cloned()),
                node.replica.as_ref().map(|r| r.follower_offsets()),
            );
        }
        eprintln!("seed {seed} failed; last events (newest first):");
        for line in tail {
            eprintln!("  {line}");
        }
        std::panic::resume_unwind(panic);
    }
    (sim.acknowledged.len(), sim.acked_ids.len())
}

#[test]
fn thousands_of_seeds_keep_every_invariant() {
    if let Ok(seed) = std::env::var("MOM_SIM_SEED") {
        run_seed(seed.parse().expect("MOM_SIM_SEED is a number"), 1_500);
        return;
    }
    let seeds: u64 = std::env::var("MOM_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let (mut acknowledged, mut acked) = (0, 0);
    for seed in 0..seeds {
        let (a, b) = run_seed(seed, 1_500);
        acknowledged += a;
        acked += b;
    }
    // The faults must leave room for progress, or the checks would be vacuous.
    assert!(
        acknowledged > seeds as usize * 4,
        "only {acknowledged} acknowledged entries over {seeds} seeds"
    );
    assert!(
        acked > seeds as usize / 2,
        "only {acked} acks over {seeds} seeds"
    );
    eprintln!("{seeds} seeds: {acknowledged} acknowledged entries, {acked} acknowledged acks");
}

#[test]
fn without_faults_almost_every_publish_is_acknowledged() {
    let mut sim = Sim::new(7);
    sim.calm = true;
    for _ in 0..3_000 {
        sim.step();
        sim.check();
    }
    sim.settle();
    let published = sim.published_ids.len();
    let acknowledged = sim
        .acknowledged
        .values()
        .filter(|(_, op)| matches!(op, Op::Publish(_)))
        .count();
    assert!(
        acknowledged * 10 >= published * 9,
        "{acknowledged} of {published} publishes acknowledged\n{}",
        sim.trace.join("\n")
    );
}
