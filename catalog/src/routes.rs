//! Routes kept in memory: each exchange's kind and bindings, each topic's subscribers, read
//! from ZooKeeper once and dropped when a watch says they changed, so a publish costs no
//! ZooKeeper read.
//!
//! A bind acknowledged before a publish starts must be honoured, even when the bind went
//! through another process's session and this one's watch event is still on its way. So the
//! gateway, before it acknowledges a change of routes, has every live node [`RouteCache::refresh`]:
//! wait for a ZooKeeper `sync()` that started after the call did, then take the watch events
//! that arrived before the sync's answer (ZooKeeper delivers a session's events and replies in
//! order). Concurrent refreshes share one sync. A publish itself only applies the events that
//! have arrived, so it costs no ZooKeeper round trip.

use crate::{Catalog, QueueSettings, Result, EXCHANGES, QUEUES, TOPICS};
use futures::FutureExt;
use mom_common::{routing::binding_matches, ExchangeKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use zookeeper_client::{AddWatchMode, EventType, PersistentWatcher};

#[derive(Default)]
struct Cached {
    exchanges: HashMap<String, (ExchangeKind, Vec<crate::Binding>)>,
    topics: HashMap<String, TopicRoutes>,
    queues: HashMap<String, QueueSettings>,
    /// Grows with every invalidation: a read that raced one is not cached.
    generation: u64,
}

/// The watches of the current session; none once it ended, until [`RouteCache::renew`].
struct Watching {
    watchers: Vec<PersistentWatcher>,
    /// The session ended: its watchers report nothing more (and must not be polled again).
    ended: bool,
}

async fn watch_routes(zk: &zookeeper_client::Client) -> Result<Vec<PersistentWatcher>> {
    Ok(vec![
        zk.watch(EXCHANGES, AddWatchMode::PersistentRecursive)
            .await?,
        zk.watch(TOPICS, AddWatchMode::PersistentRecursive).await?,
        zk.watch(QUEUES, AddWatchMode::PersistentRecursive).await?,
    ])
}

#[derive(Default)]
struct SyncRounds {
    started: u64,
    completed: u64,
    running: bool,
}

/// Where a topic's messages go: its subscribers, and how long it retains them.
#[derive(Debug, Clone)]
pub struct TopicRoutes {
    pub subscribers: Vec<String>,
    pub retention_ms: u64,
}

/// One exchange's routing rules.
#[derive(Debug, Clone)]
pub struct ExchangeRoutes {
    kind: ExchangeKind,
    bindings: Vec<crate::Binding>,
}

impl ExchangeRoutes {
    /// The queues a message with `routing_key` goes to, each once.
    pub fn queues(&self, routing_key: &str) -> Vec<String> {
        let mut queues: Vec<String> = self
            .bindings
            .iter()
            .filter(|b| binding_matches(self.kind, &b.routing_key, routing_key))
            .map(|b| b.queue.clone())
            .collect();
        queues.sort();
        queues.dedup();
        queues
    }
}

#[derive(Clone)]
pub struct RouteCache {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: Catalog,
    /// The cached routes; never held across an await.
    cached: Mutex<Cached>,
    /// Watch events not applied yet. Only the runner of a sync round drains them, after its
    /// sync returned (never locked across the sync itself).
    watchers: tokio::sync::Mutex<Watching>,
    /// Which sync rounds started and finished; guards nothing else.
    rounds: Mutex<SyncRounds>,
    finished: Notify,
}

impl RouteCache {
    pub async fn new(catalog: Catalog) -> Result<RouteCache> {
        let watchers = watch_routes(&catalog.zookeeper()).await?;
        Ok(RouteCache {
            inner: Arc::new(Inner {
                catalog,
                cached: Mutex::default(),
                watchers: tokio::sync::Mutex::new(Watching {
                    watchers,
                    ended: false,
                }),
                rounds: Mutex::default(),
                finished: Notify::new(),
            }),
        })
    }

    /// Goes on with the catalog's new session (the previous one expired): watches through it
    /// and forgets every cached route, since changes may have been missed meanwhile.
    pub async fn renew(&self) -> Result<()> {
        let watchers = watch_routes(&self.inner.catalog.zookeeper()).await?;
        let mut watching = self.inner.watchers.lock().await;
        *watching = Watching {
            watchers,
            ended: false,
        };
        let mut cached = self.cached();
        cached.generation += 1;
        cached.exchanges.clear();
        cached.topics.clear();
        cached.queues.clear();
        Ok(())
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Cached> {
        // Plain maps: a panic cannot leave them half-updated in a way that matters.
        self.inner.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rounds(&self) -> std::sync::MutexGuard<'_, SyncRounds> {
        self.inner.rounds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once a sync that started after this call has finished and its events are in.
    pub async fn refresh(&self) -> Result<()> {
        let wanted = {
            let rounds = self.rounds();
            if rounds.running {
                rounds.started + 1
            } else {
                rounds.completed + 1
            }
        };
        loop {
            let finished = self.inner.finished.notified();
            let round = {
                let mut rounds = self.rounds();
                if rounds.completed >= wanted {
                    return Ok(());
                }
                if rounds.running {
                    None
                } else {
                    rounds.running = true;
                    rounds.started = rounds.completed + 1;
                    Some(rounds.started)
                }
            };
            let Some(round) = round else {
                finished.await;
                continue;
            };
            let outcome = self.sync_and_drain().await;
            {
                let mut rounds = self.rounds();
                rounds.running = false;
                if outcome.is_ok() {
                    rounds.completed = round;
                }
            }
            self.inner.finished.notify_waiters();
            outcome?;
        }
    }

    async fn sync_and_drain(&self) -> Result<()> {
        self.inner.catalog.zookeeper().sync(crate::ROOT).await?;
        let mut watchers = self.inner.watchers.lock().await;
        self.apply_events(&mut watchers);
        Ok(())
    }

    /// Applies the watch events that have arrived, unless a refresh is doing so right now.
    fn take_arrived_events(&self) {
        if let Ok(mut watchers) = self.inner.watchers.try_lock() {
            self.apply_events(&mut watchers);
        }
    }

    fn apply_events(&self, watching: &mut Watching) {
        if watching.ended {
            return;
        }
        for watcher in watching.watchers.iter_mut() {
            while let Some(event) = watcher.changed().now_or_never() {
                let mut cached = self.cached();
                cached.generation += 1;
                if event.session_state.is_terminated() {
                    // No more events through this session: read routes afresh from now on
                    // (they fail until the session is renewed) rather than trust the cache.
                    cached.exchanges.clear();
                    cached.topics.clear();
                    cached.queues.clear();
                    watching.ended = true;
                    return;
                }
                if event.event_type == EventType::Session {
                    // While disconnected, publishes go on with the routes they had (ZooKeeper
                    // could not have acknowledged a change meanwhile through this session);
                    // once connected again, events may have been missed: read routes afresh.
                    if event.session_state == zookeeper_client::SessionState::SyncConnected {
                        cached.exchanges.clear();
                        cached.topics.clear();
                        cached.queues.clear();
                    }
                    continue;
                }
                let mut parts = event.path.trim_start_matches('/').split('/').skip(1);
                match (parts.next(), parts.next()) {
                    (Some("exchanges"), Some(name)) => {
                        cached.exchanges.remove(name);
                    }
                    (Some("topics"), Some(name)) => {
                        cached.topics.remove(name);
                    }
                    (Some("queues"), Some(name)) => {
                        cached.queues.remove(name);
                    }
                    _ => {}
                }
            }
        }
    }

    /// An exchange's kind and bindings, as of the last refresh or later.
    pub async fn exchange(&self, exchange: &str) -> Result<ExchangeRoutes> {
        self.take_arrived_events();
        let hit = self.cached().exchanges.get(exchange).cloned();
        let (kind, bindings) = match hit {
            Some(found) => found,
            None => {
                let generation = self.cached().generation;
                let found = self.inner.catalog.exchange_routes(exchange).await?;
                let mut cached = self.cached();
                if cached.generation == generation {
                    cached.exchanges.insert(exchange.to_owned(), found.clone());
                }
                found
            }
        };
        Ok(ExchangeRoutes { kind, bindings })
    }

    /// A queue's dead-letter settings.
    pub async fn queue(&self, queue: &str) -> Result<QueueSettings> {
        self.take_arrived_events();
        if let Some(found) = self.cached().queues.get(queue).cloned() {
            return Ok(found);
        }
        let generation = self.cached().generation;
        let found = self.inner.catalog.queue_settings(queue).await?;
        let mut cached = self.cached();
        if cached.generation == generation {
            cached.queues.insert(queue.to_owned(), found.clone());
        }
        Ok(found)
    }

    /// The subscribers of a topic and its retention.
    pub async fn topic(&self, topic: &str) -> Result<TopicRoutes> {
        self.take_arrived_events();
        if let Some(found) = self.cached().topics.get(topic).cloned() {
            return Ok(found);
        }
        let generation = self.cached().generation;
        let settings = self.inner.catalog.topic_settings(topic).await?;
        let found = TopicRoutes {
            subscribers: self.inner.catalog.subscribers(topic).await?,
            retention_ms: settings.retention_ms,
        };
        let mut cached = self.cached();
        if cached.generation == generation {
            cached.topics.insert(topic.to_owned(), found.clone());
        }
        Ok(found)
    }
}
