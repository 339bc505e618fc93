//! The thin async shell around one partition's protocol core: it owns the partition's
//! `Replica`, feeds it events (ZooKeeper views, live nodes, proposals, fetches, fetch replies,
//! "durable up to", ticks) and carries out the actions it returns, in order:
//!
//! - appends, truncations and commits go to the node's storage writer, which keeps them in
//!   order; "durable" comes back as an event;
//! - client answers wait until the commit before them has been applied here, so a publish
//!   answered 201 is visible to the next pull;
//! - fetches to the leader and compare-and-set writes of the in-sync set to ZooKeeper run in
//!   tasks of their own, whose outcomes come back as events: the protocol state is never
//!   borrowed across a network call;
//! - a follower has its commits applied at most every `FOLLOWER_APPLY_EVERY_MS` (nothing
//!   reads its applied state), always before any later write but an append and as soon as it
//!   leads, so its store sees writes in the order the protocol issued them
//!   ([`super::follower_apply`]).
//!
//! Recent entries stay in memory (`tail`), so a leader serves followers what it has just
//! appended while its own fsync runs alongside theirs.
//!
//! Once a commit is applied here, the pulls waiting on the mailboxes its publishes went to are
//! woken ([`crate::wakeups`]). The status says the partition is served only once the store
//! has applied what the replica had committed when it began serving (a barrier behind those
//! writes), so the predecessors' acks are in before any pull; every waiting pull is woken then.
//!
//! When this node stops serving the partition (it steps down, say), the status says so and
//! then the partition's leases lock is taken once, both before anything else the step
//! produces is carried out: a pull that hands out messages re-checks the status under that
//! lock, so none hands any out here once the first fetch at the new epoch has left, which the
//! new leader takes as proof that this node serves no more.

use super::follower_apply::FollowerApply;
use super::Shared;
use crate::leases::Leases;
use crate::records::{self, Record};
use crate::store::Write;
use crate::wakeups::Wakeups;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use mom_catalog::partitions::{self, PartitionState, Versioned};
use mom_common::proto::{self, log_record::Kind};
use mom_replicator::protocol::{
    Action, Entry, Epoch, FetchReply, LogOutline, NodeId, Offset, Refusal, Replica, RequestId,
    Role, View,
};
use mom_replicator::{wire, MAX_FETCH_BYTES};
use std::collections::BTreeSet;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};

/// Entries kept in memory after they were appended.
const TAIL_ENTRIES: usize = 8_192;
const TICK: Duration = Duration::from_millis(50);
const MAINTENANCE: Duration = Duration::from_secs(1);
/// Events handled in one go before their actions are carried out.
const MAX_EVENTS_AT_ONCE: usize = 256;
/// How often a follower has the store apply what it learnt is committed ([`FollowerApply`]).
const FOLLOWER_APPLY_EVERY_MS: u64 = 50;

/// Joins appends that follow each other into one (their entries are contiguous) and keeps
/// only the last commit (a commit applies everything below its HW, and the HW only grows),
/// keeping every other action where it was.
fn merge_writes(actions: Vec<Action<Record>>) -> Vec<Action<Record>> {
    let last_commit = actions.iter().rposition(|a| matches!(a, Action::Commit(_)));
    let mut merged: Vec<Action<Record>> = Vec::with_capacity(actions.len());
    for (index, action) in actions.into_iter().enumerate() {
        match (merged.last_mut(), action) {
            (_, Action::Commit(_)) if Some(index) != last_commit => {}
            (Some(Action::Append(entries)), Action::Append(more)) => entries.extend(more),
            (_, action) => merged.push(action),
        }
    }
    merged
}

type Answer = oneshot::Sender<Result<Offset, Refusal>>;

pub enum Event {
    /// Append `records` (those not in the log already) and answer once they, and the entry at
    /// `after` if given, are committed.
    Propose {
        records: Vec<Record>,
        after: Option<Offset>,
        reply: Answer,
    },
    /// A follower's fetch (this node leads, or thinks so).
    Fetch {
        request: proto::FetchRequest,
        reply: oneshot::Sender<proto::FetchReply>,
    },
    /// The leader answered this node's fetch.
    FetchAnswer {
        leader: NodeId,
        reply: proto::FetchReply,
    },
    IsrWritten(Option<View>),
    /// Everything submitted to the store before the replica began serving at this epoch is
    /// applied (or, if not `applied`, the store failed and it is asked again).
    ServingApplied {
        epoch: Epoch,
        applied: bool,
    },
}

/// What the rest of the node may read about the partition without asking its task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionStatus {
    pub role: Option<Role>,
    pub serving: bool,
    pub epoch: Epoch,
    pub hw: Offset,
    /// The local log's end.
    pub log_end: Offset,
    /// Size of the in-sync set, as this replica's last view has it.
    pub isr_size: usize,
    /// Leader only: entries the furthest-behind in-sync follower still has to fetch.
    pub follower_lag: u64,
}

/// The partition's state as ZooKeeper holds it, retried for a while.
async fn read_back(catalog: &mom_catalog::Catalog, partition: u32) -> Option<View> {
    for _ in 0..50 {
        match partitions::read_partition(&catalog.zookeeper(), partition).await {
            Ok(Some(versioned)) => return Some(super::to_view(&versioned)),
            Ok(None) => return None,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    None
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

struct Actor {
    partition: u32,
    shared: Arc<Shared>,
    replica: Replica<Record>,
    events: mpsc::UnboundedSender<Event>,
    status: watch::Sender<PartitionStatus>,
    clients: HashMap<RequestId, Answer>,
    next_request: RequestId,
    /// Followers' fetches waiting for an answer, one per follower (the newest).
    fetches: HashMap<NodeId, (u64, oneshot::Sender<proto::FetchReply>)>,
    tail: VecDeque<Entry<Record>>,
    /// Message ids of publishes in `tail`, with their offset and when they were appended,
    /// for deduplication (within the window) before they reach the store.
    recent_ids: HashMap<String, (Offset, u64)>,
    /// Whether this node's data of the partition was dropped (it is no replica any more).
    dropped: bool,
    /// Appends and resets not durable yet, oldest first, each with the log end it makes
    /// durable: reported to the core strictly in the order they were written.
    durable: FuturesOrdered<BoxFuture<'static, Option<Offset>>>,
    /// Where waiting pulls are woken, and the leases pulls take.
    reads: Reads,
    /// The HW up to which waiting pulls were (or will be, once applied) woken.
    woken_to: Offset,
    /// Whether the last status said the partition is served, to wake everyone when it starts
    /// and to fence pulls when it stops.
    was_serving: bool,
    /// The leader epoch for which the store has applied what the replica had committed when
    /// it began serving (the predecessors' acks among it): only then does the status say
    /// served, so no pull hands out a message whose ack is committed but not applied here.
    applied_for_serving: Option<Epoch>,
    /// The epoch whose `ServingApplied` barrier is in the store's queue.
    serving_barrier: Option<Epoch>,
    /// When commits go to the store: a follower's wait a little, and then go before any
    /// later write but an append ([`Actor::apply_waiting_commit`]).
    follower_apply: FollowerApply,
}

/// What the partition's task shares with the pulls that read from it.
#[derive(Clone)]
pub struct Reads {
    /// Where waiting pulls are woken.
    pub wakeups: Arc<Wakeups>,
    /// The partition's leader-local leases ([`crate::leases`]); taken by the task only to
    /// fence off pulls in flight when it stops serving.
    pub leases: Arc<Mutex<Leases>>,
}

/// Which waiting pulls a commit wakes.
enum Woken {
    All,
    Mailboxes(BTreeSet<String>),
}

pub fn spawn(
    partition: u32,
    shared: Arc<Shared>,
    log: LogOutline,
    hw: Offset,
    mut views: watch::Receiver<BTreeMap<u32, Versioned>>,
    mut connected: watch::Receiver<bool>,
    reads: Reads,
) -> (
    mpsc::UnboundedSender<Event>,
    watch::Receiver<PartitionStatus>,
) {
    let (events, mut incoming) = mpsc::unbounded_channel();
    let (status, status_receiver) = watch::channel(PartitionStatus::default());
    let replica = Replica::new(
        shared.me.clone(),
        shared.config.clone(),
        shared.incarnation,
        log,
        hw,
    );
    let mut actor = Actor {
        partition,
        shared,
        replica,
        events: events.clone(),
        status,
        clients: HashMap::new(),
        next_request: 0,
        fetches: HashMap::new(),
        tail: VecDeque::new(),
        recent_ids: HashMap::new(),
        dropped: false,
        durable: FuturesOrdered::new(),
        reads,
        woken_to: hw,
        was_serving: false,
        applied_for_serving: None,
        serving_barrier: None,
        follower_apply: FollowerApply::new(FOLLOWER_APPLY_EVERY_MS),
    };
    let mut live = actor.shared.live.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        let mut maintenance = tokio::time::interval(MAINTENANCE);
        live.mark_changed();
        views.mark_changed();
        loop {
            let actions = tokio::select! {
                event = incoming.recv() => match event {
                    Some(event) => actor.on_event(event),
                    None => return,
                },
                changed = views.changed() => {
                    if changed.is_err() { return; }
                    let view = views.borrow_and_update().get(&partition).map(super::to_view);
                    match view {
                        Some(view) => actor.replica.on_view(view, now_ms()),
                        None => Vec::new(),
                    }
                }
                changed = live.changed() => {
                    if changed.is_err() { return; }
                    let nodes: BTreeMap<NodeId, u64> = live
                        .borrow_and_update()
                        .iter()
                        .map(|n| (n.id.clone(), n.incarnation))
                        .collect();
                    actor.replica.set_live(nodes, now_ms())
                }
                changed = connected.changed() => {
                    if changed.is_err() { return; }
                    let up = *connected.borrow_and_update();
                    actor.replica.set_connected(up);
                    Vec::new()
                }
                Some(end) = actor.durable.next(), if !actor.durable.is_empty() => match end {
                    Some(end) => actor.replica.on_persisted(end, now_ms()),
                    None => Vec::new(),
                },
                _ = tick.tick() => actor.replica.tick(now_ms()),
                _ = maintenance.tick() => actor.maintain(),
            };
            // Whatever else is already queued is handled now too, so that under load many
            // proposals make one append and one commit (store writes) instead of one each.
            let mut actions = actions;
            for _ in 0..MAX_EVENTS_AT_ONCE {
                match incoming.try_recv() {
                    Ok(event) => actions.extend(actor.on_event(event)),
                    Err(_) => break,
                }
            }
            if actor.was_serving && !actor.replica.serving() {
                // Before the step's actions go out: a fetch at a new epoch must not leave
                // while pulls may still be served here.
                actor.publish_status();
            }
            actor.execute(merge_writes(actions));
            actor.publish_status();
        }
    });
    (events, status_receiver)
}

impl Actor {
    fn on_event(&mut self, event: Event) -> Vec<Action<Record>> {
        let now = now_ms();
        match event {
            Event::Propose {
                records,
                mut after,
                reply,
            } => {
                let id = self.client(reply);
                let mut fresh = Vec::with_capacity(records.len());
                // A message id twice in one proposal (a retry joined into the same call as its
                // original, say) is stored once: `recent_ids` learns ids only once appended.
                let mut proposed_ids = HashSet::new();
                for record in records {
                    if let Some(message_id) = &record.message_id {
                        if !proposed_ids.insert(message_id.clone()) {
                            continue;
                        }
                    }
                    let known = record
                        .message_id
                        .as_ref()
                        .and_then(|m| self.recent_ids.get(m))
                        .filter(|(_, at)| now.saturating_sub(*at) < self.shared.dedup_window_ms)
                        .map(|(offset, _)| *offset);
                    match known {
                        Some(offset) => after = after.max(Some(offset)),
                        None => fresh.push(record),
                    }
                }
                // Entries already in the log lie before any appended now, so waiting for the
                // new ones covers them (the HW only grows).
                match (fresh.is_empty(), after) {
                    (true, Some(offset)) => self.replica.await_offset(id, offset, now),
                    _ => self.replica.propose(id, fresh, now),
                }
            }
            Event::Fetch { request, reply } => {
                let follower = request.follower.clone();
                self.fetches.insert(follower.clone(), (request.seq, reply));
                self.replica
                    .on_fetch(&follower, wire::request_from_wire(&request), now)
            }
            Event::FetchAnswer { leader, reply } => {
                let Some(outcome) = wire::outcome_from_wire(reply.outcome) else {
                    return Vec::new();
                };
                let reply = FetchReply {
                    seq: reply.seq,
                    leader_epoch: reply.leader_epoch,
                    outcome,
                    entries: reply.entries.into_iter().map(records::from_wire).collect(),
                };
                self.replica.on_fetch_reply(&leader, reply, now)
            }
            Event::IsrWritten(view) => self.replica.on_isr_written(view, now),
            Event::ServingApplied { epoch, applied } => {
                if self.serving_barrier == Some(epoch) {
                    self.serving_barrier = None;
                }
                if applied {
                    self.applied_for_serving = Some(epoch);
                }
                Vec::new()
            }
        }
    }

    fn client(&mut self, reply: Answer) -> RequestId {
        self.next_request += 1;
        self.clients.insert(self.next_request, reply);
        self.next_request
    }

    fn answer(&mut self, id: RequestId, result: Result<Offset, Refusal>) {
        if let Some(reply) = self.clients.remove(&id) {
            // The caller may have given up; the record stays in the log either way.
            let _ = reply.send(result);
        }
    }

    /// The mailboxes that committed publishes in `[from, to)` went to; `All` when the tail no
    /// longer holds them all.
    fn published_to(&self, from: Offset, to: Offset) -> Woken {
        let mut mailboxes = BTreeSet::new();
        if from >= to {
            return Woken::Mailboxes(mailboxes);
        }
        let Some(first) = self.tail.front().map(|e| e.offset) else {
            return Woken::All;
        };
        if from < first || to > first + self.tail.len() as u64 {
            return Woken::All;
        }
        for entry in self
            .tail
            .range((from - first) as usize..(to - first) as usize)
        {
            // Only publishes carry a message id; the others make nothing ready.
            if entry.data.message_id.is_none() {
                continue;
            }
            mailboxes.extend(records::published_to(&entry.data.bytes));
        }
        Woken::Mailboxes(mailboxes)
    }

    fn execute(&mut self, actions: Vec<Action<Record>>) {
        let mut answers = Vec::new();
        let mut applied: Option<oneshot::Receiver<()>> = None;
        let mut woken: Option<Woken> = None;
        if self.replica.role() != Role::Follower {
            // It leads now (or is offline): its applied state must catch up first.
            self.apply_waiting_commit();
        }
        for action in actions {
            match action {
                Action::Append(entries) => self.append(entries),
                Action::Truncate(from) => {
                    self.apply_waiting_commit();
                    while self.tail.back().is_some_and(|e| e.offset >= from) {
                        self.tail.pop_back();
                    }
                    self.recent_ids.retain(|_, (offset, _)| *offset < from);
                    self.shared.store.submit_detached(Write::Truncate {
                        partition: self.partition,
                        from,
                    });
                }
                Action::Reset { start, prev_epoch } => {
                    self.apply_waiting_commit();
                    self.tail.clear();
                    self.recent_ids.clear();
                    let done = self.shared.store.submit(Write::Reset {
                        partition: self.partition,
                        start,
                        prev_epoch,
                    });
                    // The follower fetches (and is counted at `start`) only once this is durable.
                    self.durable
                        .push_back(async move { done.await.ok().map(|_| start) }.boxed());
                }
                Action::Commit(hw) => {
                    // Only a serving leader has pulls to wake; what a follower applies is woken
                    // for all at once if it comes to serve.
                    if self.replica.serving() && hw > self.woken_to {
                        woken = Some(self.published_to(self.woken_to, hw));
                    }
                    self.woken_to = self.woken_to.max(hw);
                    let following = self.replica.role() == Role::Follower;
                    let Some(hw) = self.follower_apply.commit(hw, following, now_ms()) else {
                        continue;
                    };
                    applied = Some(self.shared.store.submit(Write::Commit {
                        partition: self.partition,
                        hw,
                    }));
                }
                Action::Fetch { leader, request } => self.send_fetch(leader, request),
                Action::Respond {
                    follower,
                    seq,
                    leader_epoch,
                    outcome,
                } => self.respond(follower, seq, leader_epoch, outcome),
                Action::WriteIsr {
                    isr,
                    expected_version,
                    hand_over_to,
                } => self.write_isr(isr, expected_version, hand_over_to),
                Action::Reply { id, result } => answers.push((id, result)),
            }
        }
        // The partition's ticks bring this round at least every `TICK`.
        if let Some(hw) = self.follower_apply.due(now_ms()) {
            self.apply_detached(hw);
        }
        let woken = woken.filter(|w| !matches!(w, Woken::Mailboxes(m) if m.is_empty()));
        if answers.is_empty() && woken.is_none() {
            return;
        }
        // Refusals go out at once; acknowledgements only once what they promise is applied.
        let wait = applied.or_else(|| {
            answers
                .iter()
                .any(|(_, r)| r.is_ok())
                .then(|| self.shared.store.submit(Write::Barrier))
        });
        match wait {
            Some(done) => {
                // The waiting task answers the clients itself, not through this task's queue:
                // the answer leaves as soon as the store has applied the commit. Should the
                // store fail, the answers are dropped and their callers told it is unavailable.
                let answers: Vec<(Answer, Result<Offset, Refusal>)> = answers
                    .into_iter()
                    .filter_map(|(id, result)| Some((self.clients.remove(&id)?, result)))
                    .collect();
                let wakeups = self.reads.wakeups.clone();
                tokio::spawn(async move {
                    if done.await.is_ok() {
                        // Applied: a pull woken now finds the messages in the store.
                        match woken {
                            Some(Woken::All) => wakeups.wake_all(),
                            Some(Woken::Mailboxes(mailboxes)) => {
                                wakeups.wake(mailboxes.iter().map(String::as_str))
                            }
                            None => {}
                        }
                        for (reply, result) in answers {
                            // The caller may have given up; the record stays in the log.
                            let _ = reply.send(result);
                        }
                    }
                });
            }
            None => {
                for (id, result) in answers {
                    self.answer(id, result);
                }
            }
        }
    }

    /// Hands the follower's waiting commit, if any, to the store now: before a write other
    /// than an append, or because the replica leads now.
    fn apply_waiting_commit(&mut self) {
        if let Some(hw) = self.follower_apply.take(now_ms()) {
            self.apply_detached(hw);
        }
    }

    /// A follower's commit, which nobody waits on.
    fn apply_detached(&self, hw: Offset) {
        self.shared.store.submit_detached(Write::Commit {
            partition: self.partition,
            hw,
        });
    }

    fn append(&mut self, entries: Vec<Entry<Record>>) {
        let Some(end) = entries.last().map(|e| e.offset + 1) else {
            return;
        };
        for entry in &entries {
            if let Some(id) = &entry.data.message_id {
                self.recent_ids.insert(id.clone(), (entry.offset, now_ms()));
            }
            self.tail.push_back(entry.clone());
        }
        while self.tail.len() > TAIL_ENTRIES {
            if let Some(old) = self.tail.pop_front() {
                if let Some(id) = &old.data.message_id {
                    self.recent_ids.remove(id);
                }
            }
        }
        let done = self.shared.store.submit(Write::Append {
            partition: self.partition,
            entries,
        });
        self.durable
            .push_back(async move { done.await.ok().map(|_| end) }.boxed());
    }

    /// Entries `[from, to)` from memory if the tail holds them all, else from the store; at
    /// most about [`MAX_FETCH_BYTES`], so a backlog streams in bounded chunks.
    fn read(&self, from: Offset, to: Offset) -> Vec<Entry<Record>> {
        let in_tail = self.tail.front().is_some_and(|first| {
            first.offset <= from && to <= first.offset + self.tail.len() as u64
        });
        let mut entries = if in_tail {
            let first = self.tail.front().map_or(0, |e| e.offset);
            self.tail
                .range((from - first) as usize..(to - first) as usize)
                .cloned()
                .collect()
        } else {
            let store = self.shared.store.clone();
            tokio::task::block_in_place(|| store.entries(self.partition, from, to)).unwrap_or_else(
                |e| {
                    tracing::warn!(partition = self.partition, error = %e, "cannot read the log");
                    Vec::new()
                },
            )
        };
        let mut bytes = 0;
        let keep = entries
            .iter()
            .position(|e| {
                bytes += e.data.bytes.len();
                bytes > MAX_FETCH_BYTES
            })
            .map_or(entries.len(), |i| i.max(1));
        entries.truncate(keep);
        entries
    }

    fn respond(
        &mut self,
        follower: NodeId,
        seq: u64,
        leader_epoch: Epoch,
        outcome: mom_replicator::protocol::FetchOutcome,
    ) {
        let Some((waiting_seq, reply)) = self.fetches.remove(&follower) else {
            return;
        };
        if waiting_seq != seq {
            self.fetches.insert(follower, (waiting_seq, reply));
            return;
        }
        let (outcome, entries) = match outcome {
            mom_replicator::protocol::FetchOutcome::Records { from, to, hw } => {
                let entries = self.read(from, to);
                let to = from + entries.len() as u64;
                (
                    mom_replicator::protocol::FetchOutcome::Records { from, to, hw },
                    entries.iter().map(records::to_wire).collect(),
                )
            }
            other => (other, Vec::new()),
        };
        let _ = reply.send(proto::FetchReply {
            seq,
            leader_epoch,
            outcome: Some(wire::outcome_to_wire(&outcome)),
            entries,
        });
    }

    fn send_fetch(&self, leader: NodeId, request: mom_replicator::protocol::FetchRequest) {
        let Some(node) = self.shared.node(&leader) else {
            // Not live: the core sends again after its fetch timeout.
            return;
        };
        let wire = wire::request_to_wire(self.partition, &self.shared.me, &request);
        let shared = self.shared.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            match shared.fetcher.fetch(&node.grpc_addr, wire).await {
                Ok(reply) => {
                    let _ = events.send(Event::FetchAnswer { leader, reply });
                }
                Err(status) => {
                    tracing::debug!(leader = %leader, %status, "fetch failed; the core retries")
                }
            }
        });
    }

    fn write_isr(&self, isr: Vec<NodeId>, expected_version: i32, hand_over_to: Option<NodeId>) {
        let Some(view) = self.replica.view().cloned() else {
            return;
        };
        let (leader, epoch) = match hand_over_to {
            Some(successor) => {
                tracing::warn!(
                    partition = self.partition,
                    %successor,
                    "in-sync followers stopped fetching but are alive: handing leadership over"
                );
                (successor, view.epoch + 1)
            }
            None => (view.leader.clone(), view.epoch),
        };
        let state = PartitionState {
            leader: leader.clone(),
            epoch,
            replicas: view.replicas.clone(),
            isr: isr.clone(),
        };
        let (catalog, partition, events) = (
            self.shared.catalog.clone(),
            self.partition,
            self.events.clone(),
        );
        tokio::spawn(async move {
            let zk = catalog.zookeeper();
            let written =
                partitions::write_partition(&zk, partition, &state, Some(expected_version)).await;
            let view = match written {
                Ok(true) => {
                    tracing::info!(partition, ?isr, "in-sync replicas changed");
                    Some(View {
                        leader,
                        epoch,
                        isr,
                        version: expected_version + 1,
                        ..view
                    })
                }
                Ok(false) => None,
                // The write may or may not have landed: report what ZooKeeper holds now, so
                // an addition that did land is never forgotten.
                Err(e) => {
                    tracing::warn!(partition, error = %e, "in-sync write unanswered; reading back");
                    read_back(&catalog, partition).await
                }
            };
            let _ = events.send(Event::IsrWritten(view));
        });
    }

    /// Once a second: expire messages (as a record, so replicas agree), compact the log below
    /// what every message and in-sync replica still needs, drop the data of a partition this
    /// node no longer replicates.
    fn maintain(&mut self) -> Vec<Action<Record>> {
        // Before the compaction and drop below, which must come after it.
        self.apply_waiting_commit();
        let store = self.shared.store.clone();
        let partition = self.partition;
        let now = now_ms();
        let mut actions = Vec::new();
        if self.replica.serving()
            && tokio::task::block_in_place(|| store.has_expired(partition, now)).unwrap_or(false)
        {
            let record = Record::new(Kind::Expire(proto::Expire { until_ms: now }));
            let (reply, _) = oneshot::channel();
            let id = self.client(reply);
            actions.extend(self.replica.propose(id, vec![record], now));
        }
        // Message ids older than the deduplication window are forgotten (the window is a lower
        // bound: each replica forgets on its own clock, and only a leader consults them).
        store.submit_detached(Write::ForgetIds {
            partition,
            published_before_ms: now.saturating_sub(self.shared.dedup_window_ms),
        });
        let needed = tokio::task::block_in_place(|| store.compaction_point(partition)).ok();
        if let Some(needed) = needed {
            if let Some(start) = self.replica.compact(needed) {
                let prev_epoch = self.replica.log().prev_epoch;
                store.submit_detached(Write::Compact {
                    partition,
                    start,
                    prev_epoch,
                });
            }
        }
        let not_a_replica = self
            .replica
            .view()
            .is_some_and(|v| !v.replicas.contains(&self.shared.me));
        if !not_a_replica {
            self.dropped = false;
        } else if !self.dropped && self.replica.role() == Role::Offline {
            self.dropped = true;
            tracing::info!(partition, "no longer a replica: dropping this copy");
            store.submit_detached(Write::Drop { partition });
            actions.extend(self.forget_log());
        }
        actions
    }

    /// Starts the replica over with an empty log (its copy was dropped), keeping what it
    /// knows of ZooKeeper.
    fn forget_log(&mut self) -> Vec<Action<Record>> {
        self.tail.clear();
        self.recent_ids.clear();
        let view = self.replica.view().cloned();
        self.replica = Replica::new(
            self.shared.me.clone(),
            self.shared.config.clone(),
            self.shared.incarnation,
            LogOutline::default(),
            0,
        );
        let now = now_ms();
        let live: BTreeMap<NodeId, u64> = self
            .shared
            .live
            .borrow()
            .iter()
            .map(|n| (n.id.clone(), n.incarnation))
            .collect();
        let mut actions = self.replica.set_live(live, now);
        if let Some(view) = view {
            actions.extend(self.replica.on_view(view, now));
        }
        actions
    }

    /// Whether pulls may be served here now: the replica serves and the store has applied
    /// what it had committed when it began to. Asks the store for that the first time.
    fn serving(&mut self) -> bool {
        let epoch = self.replica.leader_epoch();
        if !self.replica.serving() {
            return false;
        }
        if self.applied_for_serving == epoch {
            return true;
        }
        if self.serving_barrier != epoch {
            // Submitted after this step's writes (commits included), so applied after them.
            self.apply_waiting_commit();
            self.serving_barrier = epoch;
            let epoch = epoch.expect("a serving replica leads");
            let done = self.shared.store.submit(Write::Barrier);
            let events = self.events.clone();
            tokio::spawn(async move {
                let applied = done.await.is_ok();
                let _ = events.send(Event::ServingApplied { epoch, applied });
            });
        }
        false
    }

    fn publish_status(&mut self) {
        let serving = self.serving();
        let log_end = self.replica.log().end;
        let view = self.replica.view();
        let follower_lag = self
            .replica
            .follower_offsets()
            .into_iter()
            .filter(|(id, _)| view.is_some_and(|v| v.isr.contains(id)))
            .map(|(_, offset)| log_end.saturating_sub(offset))
            .max()
            .unwrap_or(0);
        let status = PartitionStatus {
            role: Some(self.replica.role()),
            serving,
            epoch: self.replica.leader_epoch().unwrap_or(0),
            hw: self.replica.hw(),
            log_end,
            isr_size: view.map_or(0, |v| v.isr.len()),
            follower_lag,
        };
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
        if serving && !self.was_serving {
            // What was applied while not serving (or before a new epoch) is pullable here now.
            self.reads.wakeups.wake_all();
            tracing::info!(partition = self.partition, "serving reads");
        } else if !serving && self.was_serving {
            // The status says not served now. Pulls that saw it served before finish under
            // the leases lock, which they check it again under; later ones see it is not.
            drop(self.reads.leases.lock().unwrap_or_else(|p| p.into_inner()));
            tracing::info!(
                partition = self.partition,
                leading = self.replica.role() == Role::Leader,
                "stopped serving reads"
            );
        }
        self.was_serving = serving;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(offsets: &[u64]) -> Action<Record> {
        Action::Append(
            offsets
                .iter()
                .map(|o| Entry {
                    offset: *o,
                    epoch: 1,
                    data: Record {
                        message_id: None,
                        bytes: vec![],
                    },
                })
                .collect(),
        )
    }

    #[test]
    fn adjacent_appends_join_and_only_the_last_commit_stays() {
        let merged = merge_writes(vec![
            append(&[0]),
            Action::Commit(1),
            append(&[1]),
            append(&[2, 3]),
            Action::Truncate(9),
            append(&[9]),
            Action::Commit(3),
        ]);
        assert_eq!(
            merged,
            vec![
                append(&[0, 1, 2, 3]),
                Action::Truncate(9),
                append(&[9]),
                Action::Commit(3)
            ]
        );
    }
}
