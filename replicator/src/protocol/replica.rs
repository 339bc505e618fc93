//! One replica of one partition: leader, follower or offline, as ZooKeeper's view says.
//!
//! Leader: appends proposals (one entry each), serves fetches (parking them until there is
//! something new), tracks each follower's fetch offset, advances the HW to the smallest offset
//! every in-sync replica has on disk, answers clients once the HW passed their entries, and
//! proposes in-sync changes: a follower that lags longer than `lag_timeout_ms` or whose node
//! died leaves, one that reached the HW in this epoch comes back. A leader whose shrink would
//! leave fewer than `min_insync` copies while ZooKeeper still sees the lagging followers alive
//! resigns instead, handing leadership to one of them at the next epoch: it is the one cut off.
//!
//! Follower: fetches from the leader of its view, appends what it gets, fetches again once
//! that is on disk, applies up to the leader's HW, and truncates a divergent suffix when the
//! leader says where its log diverges.
//!
//! Invariants kept here: the HW only grows; an in-sync shrink counts only once ZooKeeper has
//! it (until then the HW waits for the leaving follower too), while an addition counts at
//! once ("maximal ISR"); a follower's progress counts only from fetches of this leadership and
//! of its latest incarnation.

use super::{
    Action, Entry, Epoch, FetchOutcome, FetchReply, FetchRequest, LogOutline, NodeId, Offset,
    Payload, Refusal, RequestId, View,
};
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

/// Slack for the network delay of a fetch still on its way to the previous leader.
const LEASE_MARGIN_MS: u64 = 100;

#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Copies (leader included) a client's entry needs before it is answered as committed.
    pub min_insync: usize,
    /// A follower that has not caught up with the leader's log end for this long leaves the
    /// in-sync set.
    pub lag_timeout_ms: u64,
    /// How long a leader keeps a fetch waiting for new entries before answering it empty.
    pub max_fetch_wait_ms: u64,
    /// A follower sends its fetch again when unanswered for this long.
    pub fetch_timeout_ms: u64,
    /// Most entries one fetch reply carries: large backlogs stream in bounded chunks.
    pub max_fetch_entries: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Offline,
    Follower,
    Leader,
}

#[derive(Debug, Clone)]
struct Progress {
    incarnation: u64,
    /// Everything before this is on the follower's disk and equal to the leader's log.
    fetch_offset: Offset,
    /// Last time the follower had everything the leader had (Kafka's lastCaughtUpTime).
    caught_up_at: u64,
    /// The leader's log end when it last answered this follower, and when.
    answered_end: Offset,
    answered_at: u64,
}

#[derive(Debug)]
struct Leading {
    epoch: Epoch,
    /// Offset of this leadership's first entry.
    epoch_start: Offset,
    started_at: u64,
    progress: BTreeMap<NodeId, Progress>,
    /// At most one waiting fetch per follower, with the time it arrived.
    parked: BTreeMap<NodeId, (FetchRequest, u64)>,
    /// Client requests by the offset of their last entry.
    waiters: BTreeMap<Offset, Vec<RequestId>>,
    /// An in-sync set written to ZooKeeper and not confirmed yet.
    isr_change: Option<Vec<NodeId>>,
    /// When each follower last fetched at this epoch: the read lease.
    heard_at: BTreeMap<NodeId, u64>,
    /// Whether the previous epoch's leader may still serve reads on a late view.
    predecessor: Predecessor,
}

/// The previous epoch's leader, as far as a new leader knows, for the read lease.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Predecessor {
    /// It cannot serve any more: it had lost its ZooKeeper session (a client sees itself
    /// disconnected before the server expires its session), or it has fetched from this
    /// leader at this epoch (it follows, so it has stepped down), or it was this replica.
    Gone,
    /// This node led the epoch just before and is alive: it stops serving when it sees the
    /// new view, which its first fetch here at this epoch proves.
    Alive(NodeId),
    /// The views skipped an epoch: who led last is not known, so only its lease ends it.
    Unknown,
}

#[derive(Debug)]
struct Following {
    leader: NodeId,
    epoch: Epoch,
    seq: u64,
    /// The latest fetch sent and when; replies to any other are ignored.
    outstanding: Option<(u64, u64)>,
    leader_hw: Offset,
}

#[derive(Debug)]
enum State {
    Offline,
    Following(Following),
    Leading(Leading),
}

#[derive(Debug)]
pub struct Replica<D> {
    me: NodeId,
    config: ReplicaConfig,
    incarnation: u64,
    log: LogOutline,
    /// Everything before this is on this replica's disk.
    durable_end: Offset,
    hw: Offset,
    /// An append is being written; a follower fetches again only once it is durable.
    appending: bool,
    view: Option<View>,
    /// Live broker nodes with the incarnation each registered with, when known. Only a
    /// follower's fetches from its registered incarnation count: a wiped node that came back
    /// must not be vouched for by what its earlier life had fetched.
    live: Option<BTreeMap<NodeId, u64>>,
    /// Whether this node's ZooKeeper session is connected. A client learns it is cut off
    /// before the server expires its session, so a leader that stops serving reads then has
    /// stopped before ZooKeeper can elect its successor.
    connected: bool,
    state: State,
    now: u64,
    /// Fetch sequence numbers survive role changes, so an old reply never matches a new fetch.
    next_seq: u64,
    /// The epoch of the leadership whose `WriteIsr` is unanswered: its answer must not be
    /// taken for that of a later leadership's write.
    isr_write_in_flight: Option<Epoch>,
    _data: PhantomData<D>,
}

/// A follower's fetch offset, if it counts: it comes from the incarnation the follower is
/// registered with now.
fn counted(
    live: &Option<BTreeMap<NodeId, u64>>,
    progress: &BTreeMap<NodeId, Progress>,
    id: &NodeId,
) -> Option<Offset> {
    let registered = live.as_ref()?.get(id)?;
    progress
        .get(id)
        .filter(|p| p.incarnation == *registered)
        .map(|p| p.fetch_offset)
}

impl<D: Payload> Replica<D> {
    /// A replica restarting from its durable state: the log's outline and its HW checkpoint.
    pub fn new(
        me: NodeId,
        config: ReplicaConfig,
        incarnation: u64,
        log: LogOutline,
        hw: Offset,
    ) -> Self {
        let hw = hw.clamp(log.start, log.end);
        Replica {
            me,
            config,
            incarnation,
            durable_end: log.end,
            log,
            hw,
            appending: false,
            view: None,
            live: None,
            connected: true,
            state: State::Offline,
            now: 0,
            // Distinct from an earlier life's sequence numbers, so its late replies never match.
            next_seq: incarnation << 16,
            isr_write_in_flight: None,
            _data: PhantomData,
        }
    }

    pub fn role(&self) -> Role {
        match self.state {
            State::Offline => Role::Offline,
            State::Following(_) => Role::Follower,
            State::Leading(_) => Role::Leader,
        }
    }

    pub fn hw(&self) -> Offset {
        self.hw
    }

    pub fn log(&self) -> &LogOutline {
        &self.log
    }

    pub fn view(&self) -> Option<&View> {
        self.view.as_ref()
    }

    /// The epoch this replica leads at, if it leads.
    pub fn leader_epoch(&self) -> Option<Epoch> {
        match &self.state {
            State::Leading(l) => Some(l.epoch),
            _ => None,
        }
    }

    /// Whether this replica may hand out messages from its applied state: it leads, is
    /// connected to ZooKeeper, and its HW has passed the start of its own epoch (so that it has
    /// applied everything its predecessors committed, acks included).
    pub fn serving(&self) -> bool {
        match &self.state {
            State::Leading(l) => {
                self.connected
                    && self.hw > l.epoch_start
                    && self.lease_held(l)
                    // The previous leader counted this replica (then its follower) for its own
                    // lease until it stopped fetching there, when this leadership started: wait
                    // that lease out, so two leaders never serve at once.
                    && (l.predecessor == Predecessor::Gone
                        || self.now >= l.started_at + self.lease() + LEASE_MARGIN_MS)
            }
            _ => false,
        }
    }

    /// The read lease: every other in-sync replica (and one joining) fetched at this epoch
    /// within the lease, so none of them can have moved on to a successor for longer than
    /// that. A follower's fetch may wait here up to `max_fetch_wait_ms`, so the lease is
    /// never shorter than one such wait and a half. (It assumes bounded delays and clock
    /// rates, as ZooKeeper's own sessions do.)
    fn lease(&self) -> u64 {
        let wait = self.config.max_fetch_wait_ms;
        (self.config.lag_timeout_ms / 2).max(wait + wait / 2)
    }

    /// Whether every other in-sync replica (pending additions included) fetched at this epoch
    /// within the lease. Any of them may be made leader next: so a deposed leader whose view is
    /// late stops serving within a lease of its successor's start, and the successor waits
    /// that long before it serves.
    fn lease_held(&self, l: &Leading) -> bool {
        let lease = self.lease();
        let Some(view) = &self.view else {
            return false;
        };
        view.isr
            .iter()
            .chain(l.isr_change.iter().flatten())
            .filter(|id| **id != self.me)
            .all(|id| {
                l.heard_at
                    .get(id)
                    .is_some_and(|at| self.now.saturating_sub(*at) <= lease)
            })
    }

    /// The ZooKeeper session was lost or is back.
    pub fn set_connected(&mut self, connected: bool) {
        self.connected = connected;
    }

    /// How far each follower has fetched, for operators (leader only).
    pub fn follower_offsets(&self) -> Vec<(NodeId, Offset)> {
        match &self.state {
            State::Leading(l) => l
                .progress
                .iter()
                .map(|(id, p)| (id.clone(), p.fetch_offset))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn required(&self) -> usize {
        self.config.min_insync.max(1)
    }

    fn leader_hint(&self) -> Option<NodeId> {
        self.view
            .as_ref()
            .map(|v| v.leader.clone())
            .filter(|l| !l.is_empty() && *l != self.me)
    }

    // ---- views and liveness ----

    /// A (possibly late) view of the partition from ZooKeeper.
    pub fn on_view(&mut self, view: View, now: u64) -> Vec<Action<D>> {
        self.now = now;
        if let Some(current) = &self.view {
            if (view.epoch, view.version) <= (current.epoch, current.version) {
                return Vec::new();
            }
        }
        let predecessor = match &self.view {
            Some(previous) if previous.epoch + 1 == view.epoch => {
                let gone = previous.leader.is_empty()
                    || previous.leader == self.me
                    || self
                        .live
                        .as_ref()
                        .is_some_and(|live| !live.contains_key(&previous.leader));
                if gone {
                    Predecessor::Gone
                } else {
                    Predecessor::Alive(previous.leader.clone())
                }
            }
            _ => Predecessor::Unknown,
        };
        let previous_isr = self
            .view
            .as_ref()
            .map(|v| v.isr.clone())
            .unwrap_or_default();
        self.view = Some(view.clone());
        let mut actions = Vec::new();
        let leads = view.leader == self.me
            && view.isr.contains(&self.me)
            // A view older than what this log already saw cannot make it lead, and an epoch
            // this log already holds entries of can be continued but not started again (a
            // restarted leader may have served entries it then lost).
            && (view.epoch > self.log.last_epoch()
                || matches!(&self.state, State::Leading(l) if l.epoch == view.epoch));
        if leads {
            match &mut self.state {
                State::Leading(l) if l.epoch == view.epoch => {
                    if l.isr_change.as_ref() == Some(&view.isr) {
                        l.isr_change = None;
                    }
                    // A follower that left the in-sync set proves itself again from its next
                    // fetch: it may have left because it lost its disk, while the live set
                    // still names its earlier life.
                    l.progress
                        .retain(|id, _| view.isr.contains(id) || !previous_isr.contains(id));
                    self.advance_hw(&mut actions);
                }
                _ => {
                    self.step_down(&mut actions);
                    self.become_leader(view.epoch, predecessor, &mut actions);
                }
            }
            return actions;
        }
        let follows =
            !view.leader.is_empty() && view.leader != self.me && view.replicas.contains(&self.me);
        match &self.state {
            State::Following(f) if follows && f.leader == view.leader && f.epoch == view.epoch => {}
            _ => {
                self.step_down(&mut actions);
                if follows {
                    self.state = State::Following(Following {
                        leader: view.leader.clone(),
                        epoch: view.epoch,
                        seq: 0,
                        outstanding: None,
                        leader_hw: 0,
                    });
                    self.send_fetch(&mut actions);
                }
            }
        }
        actions
    }

    /// The set of live broker nodes changed; a leader drops dead followers from the in-sync
    /// set at once rather than waiting for them to lag.
    pub fn set_live(&mut self, live: BTreeMap<NodeId, u64>, now: u64) -> Vec<Action<D>> {
        self.now = now;
        self.live = Some(live);
        let mut actions = Vec::new();
        self.maybe_change_isr(&mut actions);
        actions
    }

    fn step_down(&mut self, actions: &mut Vec<Action<D>>) {
        if let State::Leading(l) = std::mem::replace(&mut self.state, State::Offline) {
            for (_, ids) in l.waiters {
                for id in ids {
                    actions.push(Action::Reply {
                        id,
                        result: Err(Refusal::LeadershipLost),
                    });
                }
            }
        }
    }

    /// `predecessor`: what is known of the leader of the epoch just before this one, which
    /// decides whether this leadership must wait out a read lease before it serves.
    fn become_leader(
        &mut self,
        epoch: Epoch,
        predecessor: Predecessor,
        actions: &mut Vec<Action<D>>,
    ) {
        let entry = Entry {
            offset: self.log.end,
            epoch,
            data: D::epoch_start(),
        };
        self.state = State::Leading(Leading {
            epoch,
            epoch_start: self.log.end,
            started_at: self.now,
            progress: BTreeMap::new(),
            parked: BTreeMap::new(),
            waiters: BTreeMap::new(),
            isr_change: None,
            heard_at: BTreeMap::new(),
            predecessor,
        });
        self.log.append(epoch);
        actions.push(Action::Append(vec![entry]));
    }

    // ---- leader: proposals ----

    /// Appends one entry per item (leader only); `id` is answered once all are committed.
    pub fn propose(&mut self, id: RequestId, items: Vec<D>, now: u64) -> Vec<Action<D>> {
        self.now = now;
        let mut actions = Vec::new();
        let in_sync = self.view.as_ref().map_or(0, |v| v.isr.len());
        let required = self.required();
        let State::Leading(l) = &mut self.state else {
            actions.push(Action::Reply {
                id,
                result: Err(Refusal::NotLeader {
                    leader: self.leader_hint(),
                }),
            });
            return actions;
        };
        if in_sync < required {
            actions.push(Action::Reply {
                id,
                result: Err(Refusal::NotEnoughReplicas { in_sync, required }),
            });
            return actions;
        }
        if items.is_empty() {
            actions.push(Action::Reply {
                id,
                result: Ok(self.hw),
            });
            return actions;
        }
        let epoch = l.epoch;
        let mut entries = Vec::with_capacity(items.len());
        for data in items {
            entries.push(Entry {
                offset: self.log.end,
                epoch,
                data,
            });
            self.log.append(epoch);
        }
        l.waiters.entry(self.log.end - 1).or_default().push(id);
        actions.push(Action::Append(entries));
        self.serve_parked(&mut actions, false);
        actions
    }

    /// Answers `id` once the entry at `offset`, already in this leader's log (a retried
    /// publish found by its message id), is committed.
    pub fn await_offset(&mut self, id: RequestId, offset: Offset, now: u64) -> Vec<Action<D>> {
        self.now = now;
        let in_sync = self.view.as_ref().map_or(0, |v| v.isr.len());
        let required = self.required();
        let hint = self.leader_hint();
        let State::Leading(l) = &mut self.state else {
            return vec![Action::Reply {
                id,
                result: Err(Refusal::NotLeader { leader: hint }),
            }];
        };
        if offset < self.hw {
            // Every current in-sync replica holds everything below the HW.
            let result = if in_sync >= required {
                Ok(offset)
            } else {
                Err(Refusal::NotEnoughReplicas { in_sync, required })
            };
            return vec![Action::Reply { id, result }];
        }
        if offset >= self.log.end {
            return vec![Action::Reply {
                id,
                result: Err(Refusal::LeadershipLost),
            }];
        }
        l.waiters.entry(offset).or_default().push(id);
        Vec::new()
    }

    /// The shell wrote the log durably up to `end`.
    pub fn on_persisted(&mut self, end: Offset, now: u64) -> Vec<Action<D>> {
        self.now = now;
        self.durable_end = self.durable_end.max(end.min(self.log.end));
        self.appending = self.durable_end < self.log.end;
        let mut actions = Vec::new();
        match &self.state {
            State::Leading(_) => self.advance_hw(&mut actions),
            State::Following(f) => {
                let candidate = f.leader_hw.min(self.durable_end);
                self.commit_to(candidate, &mut actions);
                if !self.appending {
                    self.send_fetch(&mut actions);
                }
            }
            State::Offline => {}
        }
        actions
    }

    fn commit_to(&mut self, hw: Offset, actions: &mut Vec<Action<D>>) {
        if hw > self.hw {
            self.hw = hw;
            actions.push(Action::Commit(hw));
        }
    }

    /// Moves the HW to the smallest durable end among the (maximal) in-sync set, and answers
    /// the clients it passed.
    fn advance_hw(&mut self, actions: &mut Vec<Action<D>>) {
        let required = self.required();
        let Some(view) = &self.view else { return };
        let State::Leading(l) = &mut self.state else {
            return;
        };
        let mut members: BTreeSet<&NodeId> = view.isr.iter().collect();
        if let Some(change) = &l.isr_change {
            members.extend(change.iter());
        }
        let mut hw = self.durable_end;
        for member in &members {
            if **member == self.me {
                continue;
            }
            match counted(&self.live, &l.progress, member) {
                Some(offset) => hw = hw.min(offset),
                None => return,
            }
        }
        if hw <= self.hw {
            return;
        }
        self.hw = hw;
        actions.push(Action::Commit(hw));
        let counted = members.len();
        let still_waiting = l.waiters.split_off(&hw);
        let done = std::mem::replace(&mut l.waiters, still_waiting);
        for (last, ids) in done {
            for id in ids {
                let result = if counted >= required {
                    Ok(last)
                } else {
                    Err(Refusal::NotEnoughReplicas {
                        in_sync: counted,
                        required,
                    })
                };
                actions.push(Action::Reply { id, result });
            }
        }
        self.serve_parked(actions, false);
    }

    // ---- leader: fetches ----

    /// A follower's fetch (leader side).
    pub fn on_fetch(&mut self, follower: &str, request: FetchRequest, now: u64) -> Vec<Action<D>> {
        self.now = now;
        let mut actions = Vec::new();
        let is_replica = self
            .view
            .as_ref()
            .is_some_and(|v| v.replicas.iter().any(|r| r == follower));
        let respond = |outcome, epoch| Action::Respond {
            follower: follower.to_owned(),
            seq: request.seq,
            leader_epoch: epoch,
            outcome,
        };
        let State::Leading(l) = &mut self.state else {
            actions.push(respond(FetchOutcome::NotLeader, 0));
            return actions;
        };
        let epoch = l.epoch;
        if request.epoch > epoch || !is_replica || follower == self.me {
            actions.push(respond(FetchOutcome::NotLeader, epoch));
            return actions;
        }
        if request.epoch < epoch {
            actions.push(respond(FetchOutcome::Fenced, epoch));
            return actions;
        }
        l.heard_at.insert(follower.to_owned(), now);
        if matches!(&l.predecessor, Predecessor::Alive(id) if id == follower) {
            // The last leader follows at this epoch: it has stepped down and serves no more
            // (its node fences its pulls before the first fetch goes out), so a planned move
            // of leadership costs readers no lease. Leaders before it need no word of their
            // own: one still serving on a late view is in the in-sync set (a member leaves it
            // only by lagging, for longer than a lease, or with its session), so
            // `lease_held` waits for its fetch here too.
            l.predecessor = Predecessor::Gone;
        }
        // Where does the follower's log stand against ours (KIP-279)?
        let matched = self.log.end_offset_for(request.last_fetched_epoch);
        let outcome = match matched {
            _ if request.fetch_offset < self.log.start => Some(FetchOutcome::OutOfRange {
                log_start: self.log.start,
                prev_epoch: self.log.prev_epoch,
            }),
            None => Some(FetchOutcome::OutOfRange {
                log_start: self.log.start,
                prev_epoch: self.log.prev_epoch,
            }),
            Some((e, end)) if e == request.last_fetched_epoch && end >= request.fetch_offset => {
                None
            }
            Some((e, end)) => Some(FetchOutcome::Diverging {
                epoch: e,
                end_offset: end,
            }),
        };
        if let Some(outcome) = outcome {
            actions.push(respond(outcome, epoch));
            return actions;
        }
        // The follower holds our log up to fetch_offset: count it, if the request comes from
        // the incarnation it registered with.
        let registered = self
            .live
            .as_ref()
            .and_then(|live| live.get(follower))
            .copied();
        if registered == Some(request.incarnation) {
            let fresh = Progress {
                incarnation: request.incarnation,
                fetch_offset: request.fetch_offset,
                caught_up_at: l.started_at,
                answered_end: Offset::MAX,
                answered_at: now,
            };
            let progress = l
                .progress
                .entry(follower.to_owned())
                .or_insert(fresh.clone());
            if progress.incarnation != request.incarnation {
                *progress = fresh;
            }
            progress.fetch_offset = progress.fetch_offset.max(request.fetch_offset);
            if progress.fetch_offset >= progress.answered_end {
                progress.caught_up_at = progress.caught_up_at.max(progress.answered_at);
            }
            if progress.fetch_offset >= self.log.end {
                progress.caught_up_at = now;
            }
        } else if l
            .progress
            .get(follower)
            .is_some_and(|p| p.incarnation < request.incarnation)
        {
            // The follower restarted and the live set has not caught up yet: what its earlier
            // life fetched vouches for nothing now.
            l.progress.remove(follower);
        }
        l.parked.insert(follower.to_owned(), (request, now));
        self.advance_hw(&mut actions);
        self.maybe_change_isr(&mut actions);
        self.serve_parked(&mut actions, false);
        actions
    }

    /// Answers parked fetches that have new entries (or all of them, on `flush`). A fetch is
    /// not answered just because the HW moved: the new HW rides on the next answer with
    /// entries, or on the one at the end of the wait, as in Kafka. Followers need the HW only
    /// to apply, and answering for it alone would double the fetches each batch costs.
    fn serve_parked(&mut self, actions: &mut Vec<Action<D>>, flush_expired: bool) {
        let State::Leading(l) = &mut self.state else {
            return;
        };
        let (end, hw, now) = (self.log.end, self.hw, self.now);
        let max_wait = self.config.max_fetch_wait_ms;
        let max_entries = self.config.max_fetch_entries.max(1);
        let ready: Vec<NodeId> = l
            .parked
            .iter()
            .filter(|(_, (request, since))| {
                request.fetch_offset < end
                    || (flush_expired && now.saturating_sub(*since) >= max_wait)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ready {
            let (request, _) = l.parked.remove(&id).expect("listed above");
            let to = end.min(request.fetch_offset.saturating_add(max_entries));
            if let Some(progress) = l.progress.get_mut(&id) {
                if progress.incarnation == request.incarnation {
                    progress.answered_end = end;
                    progress.answered_at = now;
                }
            }
            actions.push(Action::Respond {
                follower: id,
                seq: request.seq,
                leader_epoch: l.epoch,
                outcome: FetchOutcome::Records {
                    from: request.fetch_offset,
                    to,
                    hw,
                },
            });
        }
    }

    /// Proposes at most one in-sync change at a time: drop dead or lagging followers, or add
    /// one that caught up in this epoch.
    fn maybe_change_isr(&mut self, actions: &mut Vec<Action<D>>) {
        let Some(view) = &self.view else { return };
        let State::Leading(l) = &mut self.state else {
            return;
        };
        if l.isr_change.is_some() || self.isr_write_in_flight.is_some() {
            return;
        }
        let now = self.now;
        let lag = self.config.lag_timeout_ms;
        let live = &self.live;
        let end = self.log.end;
        let keep = |id: &NodeId| {
            if *id == self.me {
                return true;
            }
            let alive = live.as_ref().is_none_or(|set| set.contains_key(id));
            // A fetch waiting here for entries past our end is caught up right now.
            let waiting_at_end = l.parked.get(id).is_some_and(|(r, _)| {
                r.fetch_offset >= end && counted(live, &l.progress, id).is_some_and(|o| o >= end)
            });
            let caught_up_at = if waiting_at_end {
                now
            } else {
                l.progress.get(id).map_or(l.started_at, |p| p.caught_up_at)
            };
            alive && now.saturating_sub(caught_up_at) <= lag
        };
        let kept: Vec<NodeId> = view.isr.iter().filter(|id| keep(id)).cloned().collect();
        let required = self.config.min_insync.max(1);
        let mut hand_over_to = None;
        let proposal = if kept.len() < view.isr.len() {
            // Shrinking below what a write needs while ZooKeeper still sees the lagging
            // followers alive: most likely this leader is the one cut off (they reach
            // ZooKeeper, not us). Staying would refuse every write until the network heals;
            // resigning to one of them lets the partition go on. It is safe: every in-sync
            // member has everything below the HW, the only part anyone was promised.
            let successor = (kept.len() < required)
                .then(|| {
                    view.isr
                        .iter()
                        .filter(|id| **id != self.me && !kept.contains(id))
                        .filter(|id| live.as_ref().is_some_and(|set| set.contains_key(*id)))
                        .max_by_key(|id| l.progress.get(*id).map_or(0, |p| p.fetch_offset))
                        .cloned()
                })
                .flatten();
            match successor {
                Some(successor) => {
                    hand_over_to = Some(successor);
                    Some(
                        view.isr
                            .iter()
                            .filter(|id| **id != self.me)
                            .cloned()
                            .collect(),
                    )
                }
                None => Some(kept),
            }
        } else {
            let floor = self.hw.max(l.epoch_start + 1);
            view.replicas
                .iter()
                .find(|id| {
                    !view.isr.contains(id)
                        && counted(live, &l.progress, id).is_some_and(|offset| offset >= floor)
                })
                .map(|joining| {
                    let mut isr = view.isr.clone();
                    isr.push(joining.clone());
                    isr
                })
        };
        if let Some(isr) = proposal {
            self.isr_write_in_flight = Some(l.epoch);
            l.isr_change = Some(isr.clone());
            actions.push(Action::WriteIsr {
                isr,
                expected_version: view.version,
                hand_over_to,
            });
        }
    }

    /// The outcome of a `WriteIsr`: the view it produced, or None if ZooKeeper refused it
    /// (the znode changed meanwhile; the watch brings the new view).
    pub fn on_isr_written(&mut self, written: Option<View>, now: u64) -> Vec<Action<D>> {
        self.now = now;
        let issued_by = self.isr_write_in_flight.take();
        if let State::Leading(l) = &mut self.state {
            if issued_by == Some(l.epoch) {
                l.isr_change = None;
            }
        }
        match written {
            Some(view) => self.on_view(view, now),
            None => Vec::new(),
        }
    }

    // ---- follower ----

    fn send_fetch(&mut self, actions: &mut Vec<Action<D>>) {
        // Also covers a deposed leader whose proposals are still being written: a divergence
        // answer would truncate over them, and their late "persisted up to" would then vouch
        // for the new leader's entries at those offsets.
        if self.appending || self.durable_end < self.log.end {
            return;
        }
        let State::Following(f) = &mut self.state else {
            return;
        };
        self.next_seq += 1;
        f.seq = self.next_seq;
        f.outstanding = Some((f.seq, self.now));
        actions.push(Action::Fetch {
            leader: f.leader.clone(),
            request: FetchRequest {
                seq: f.seq,
                incarnation: self.incarnation,
                epoch: f.epoch,
                fetch_offset: self.durable_end,
                last_fetched_epoch: self.log.last_epoch(),
            },
        });
    }

    /// The leader's answer to this replica's fetch (follower side).
    pub fn on_fetch_reply(
        &mut self,
        leader: &str,
        reply: FetchReply<D>,
        now: u64,
    ) -> Vec<Action<D>> {
        self.now = now;
        let mut actions = Vec::new();
        let State::Following(f) = &mut self.state else {
            return actions;
        };
        if f.leader != leader
            || f.epoch != reply.leader_epoch
            || f.outstanding.map(|(seq, _)| seq) != Some(reply.seq)
        {
            return actions;
        }
        f.outstanding = None;
        match reply.outcome {
            FetchOutcome::Records { from, to, hw } => {
                let contiguous = from == self.log.end
                    && reply.entries.len() as u64 == to.saturating_sub(from)
                    && reply
                        .entries
                        .iter()
                        .enumerate()
                        .all(|(i, e)| e.offset == from + i as u64);
                if !contiguous {
                    self.send_fetch(&mut actions);
                    return actions;
                }
                f.leader_hw = f.leader_hw.max(hw);
                if reply.entries.is_empty() {
                    let candidate = f.leader_hw.min(self.durable_end);
                    self.commit_to(candidate, &mut actions);
                    self.send_fetch(&mut actions);
                    return actions;
                }
                for entry in &reply.entries {
                    self.log.append(entry.epoch);
                }
                self.appending = true;
                actions.push(Action::Append(reply.entries));
            }
            FetchOutcome::Diverging { epoch, end_offset } => {
                let own_end = self
                    .log
                    .end_offset_for(epoch)
                    .map_or(self.log.start, |(_, end)| end);
                let mut target = end_offset.min(own_end);
                if target < self.hw {
                    // Cannot happen while the invariants hold: never undo committed entries.
                    tracing::error!(
                        target,
                        hw = self.hw,
                        "leader asked to truncate below the high watermark; refused"
                    );
                    target = self.hw;
                }
                if target < self.log.end {
                    self.log.truncate(target);
                    self.durable_end = self.durable_end.min(target);
                    actions.push(Action::Truncate(target));
                }
                self.send_fetch(&mut actions);
            }
            FetchOutcome::OutOfRange {
                log_start,
                prev_epoch,
            } => {
                if log_start > self.log.end || log_start > self.log.start {
                    self.log.reset(log_start, prev_epoch);
                    self.durable_end = log_start;
                    self.hw = log_start;
                    // Fetch (and so be counted at log_start) only once the shell reports the
                    // reset durable with `on_persisted(log_start)`.
                    self.appending = true;
                    actions.push(Action::Reset {
                        start: log_start,
                        prev_epoch,
                    });
                }
                self.send_fetch(&mut actions);
            }
            // Wait for a newer view (or for the leader to get it); tick retries.
            FetchOutcome::Fenced | FetchOutcome::NotLeader => {}
        }
        actions
    }

    // ---- time ----

    pub fn tick(&mut self, now: u64) -> Vec<Action<D>> {
        self.now = now;
        let mut actions = Vec::new();
        match &self.state {
            State::Leading(_) => {
                self.serve_parked(&mut actions, true);
                self.maybe_change_isr(&mut actions);
            }
            State::Following(f) => {
                let resend = match f.outstanding {
                    None => true,
                    Some((_, sent)) => now.saturating_sub(sent) >= self.config.fetch_timeout_ms,
                };
                if resend {
                    self.send_fetch(&mut actions);
                }
            }
            State::Offline => {}
        }
        actions
    }

    /// Forgets log entries before `offset`, as far as is safe (never at or past the HW).
    /// Returns the new log start if it moved; the shell then deletes what lies before it.
    pub fn compact(&mut self, offset: Offset) -> Option<Offset> {
        let target = offset.min(self.hw);
        if target <= self.log.start {
            return None;
        }
        self.log.advance_start(target);
        Some(self.log.start)
    }
}
