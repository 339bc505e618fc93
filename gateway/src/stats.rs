//! Traffic counters for the dashboard (`GET /stats`): messages published per exchange and
//! topic, delivered and acked per queue and subscription, and every mailbox's consumers (the
//! distinct users that pulled from it in the last [`CONSUMER_WINDOW`]).
//!
//! The counters live in this gateway's memory and count only the requests this gateway
//! served, from its start: with several gateways behind a load balancer each has its own
//! figures, and a restart starts them from zero (`instance` tells readings apart). The
//! dashboard turns two successive readings into rates. Counters of resources that were
//! deleted are dropped at the next reading, and once a minute anyway.

use crate::openapi::Routes;
use crate::permissions::visible;
use crate::{caller::Caller, error::ApiError, AppState};
use actix_web::{http::Method, web, HttpResponse};
use mom_catalog::access::ResourceKind;
use mom_common::proto::DestinationKind;
use mom_common::{ExchangeKind, MailboxName};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A user counts as a consumer of a mailbox for this long after its last pull.
pub const CONSUMER_WINDOW: Duration = Duration::from_secs(30);
/// How often counters of deleted resources are dropped when nobody reads `/stats`.
const FORGET_EVERY: Duration = Duration::from_secs(60);

pub struct Stats {
    /// Names this gateway process, so that readers notice a restart or another gateway.
    instance: String,
    started_at_ms: u64,
    counters: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    /// Messages stored per exchange and per topic.
    exchanges: HashMap<String, u64>,
    topics: HashMap<String, u64>,
    mailboxes: HashMap<MailboxName, MailboxCounters>,
}

#[derive(Default)]
struct MailboxCounters {
    delivered: u64,
    acked: u64,
    /// When each user last pulled from the mailbox.
    pullers: HashMap<String, Instant>,
}

impl MailboxCounters {
    fn consumers(&self, now: Instant) -> usize {
        self.pullers
            .values()
            .filter(|last| now.duration_since(**last) < CONSUMER_WINDOW)
            .count()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            instance: uuid::Uuid::now_v7().to_string(),
            started_at_ms: now_ms(),
            counters: Mutex::default(),
        }
    }
}

impl Stats {
    fn lock(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `messages` were stored for `destination` (called once a publish succeeded).
    pub fn published(&self, kind: DestinationKind, destination: &str, messages: usize) {
        if messages == 0 {
            return;
        }
        let mut counters = self.lock();
        let counts = match kind {
            DestinationKind::Exchange => &mut counters.exchanges,
            DestinationKind::Topic => &mut counters.topics,
            // The default exchange is no exchange of the catalog: its publishes show as the
            // queue's deliveries only.
            DestinationKind::Queue => return,
        };
        match counts.get_mut(destination) {
            Some(count) => *count += messages as u64,
            None => {
                counts.insert(destination.to_owned(), messages as u64);
            }
        }
    }

    /// `user` pulled from `mailbox` and got `delivered` messages (perhaps none: it still
    /// counts as a consumer).
    pub fn pulled(&self, mailbox: &MailboxName, user: &str, delivered: usize) {
        let now = Instant::now();
        let mut counters = self.lock();
        if !counters.mailboxes.contains_key(mailbox) {
            counters
                .mailboxes
                .insert(mailbox.clone(), MailboxCounters::default());
        }
        let Some(counts) = counters.mailboxes.get_mut(mailbox) else {
            return;
        };
        counts.delivered += delivered as u64;
        match counts.pullers.get_mut(user) {
            Some(last) => *last = now,
            None => {
                counts
                    .pullers
                    .retain(|_, last| now.duration_since(*last) < CONSUMER_WINDOW);
                counts.pullers.insert(user.to_owned(), now);
            }
        }
    }

    /// `acked` messages of `mailbox` were acknowledged.
    pub fn acked(&self, mailbox: &MailboxName, acked: u64) {
        if acked == 0 {
            return;
        }
        if let Some(counts) = self.lock().mailboxes.get_mut(mailbox) {
            counts.acked += acked;
        }
    }

    /// Drops the counters of everything `existing` does not hold any more.
    fn forget_missing(&self, existing: &Existing) {
        let exchanges: BTreeSet<&str> = existing.exchanges.iter().map(|e| e.0.as_str()).collect();
        let queues: BTreeSet<&str> = existing.queues.iter().map(String::as_str).collect();
        let topics: BTreeSet<&str> = existing.topics.iter().map(|t| t.0.as_str()).collect();
        let subscriptions: BTreeSet<(&str, &str)> = existing
            .topics
            .iter()
            .flat_map(|(t, subs)| subs.iter().map(move |s| (t.as_str(), s.as_str())))
            .collect();
        let now = Instant::now();
        let mut counters = self.lock();
        counters
            .exchanges
            .retain(|name, _| exchanges.contains(name.as_str()));
        counters
            .topics
            .retain(|name, _| topics.contains(name.as_str()));
        counters.mailboxes.retain(|mailbox, counts| {
            counts
                .pullers
                .retain(|_, last| now.duration_since(*last) < CONSUMER_WINDOW);
            match mailbox {
                MailboxName::Queue(queue) => queues.contains(queue.as_str()),
                MailboxName::Subscription { topic, subscriber } => {
                    subscriptions.contains(&(topic.as_str(), subscriber.as_str()))
                }
            }
        });
    }

    /// The figures of the given resources (those the caller may see), zero where nothing was
    /// counted yet.
    fn report(&self, visible: Existing) -> StatsReport {
        let now = Instant::now();
        let counters = self.lock();
        let mailbox = |name: &MailboxName| {
            counters
                .mailboxes
                .get(name)
                .map_or((0, 0, 0), |c| (c.delivered, c.acked, c.consumers(now)))
        };
        let exchanges = visible
            .exchanges
            .into_iter()
            .map(|(name, kind)| ExchangeStats {
                published: counters.exchanges.get(&name).copied().unwrap_or(0),
                name,
                kind,
            })
            .collect();
        let queues = visible
            .queues
            .into_iter()
            .map(|name| {
                let (delivered, acked, consumers) = mailbox(&MailboxName::Queue(name.clone()));
                QueueStats {
                    name,
                    delivered,
                    acked,
                    consumers,
                }
            })
            .collect();
        let mut subscriptions = Vec::new();
        let mut topics = Vec::new();
        for (topic, subscribers) in visible.topics {
            for subscriber in &subscribers {
                let (delivered, acked, consumers) = mailbox(&MailboxName::Subscription {
                    topic: topic.clone(),
                    subscriber: subscriber.clone(),
                });
                subscriptions.push(SubscriptionStats {
                    topic: topic.clone(),
                    subscriber: subscriber.clone(),
                    delivered,
                    acked,
                    consumers,
                });
            }
            topics.push(TopicStats {
                published: counters.topics.get(&topic).copied().unwrap_or(0),
                name: topic,
                subscribers,
            });
        }
        StatsReport {
            instance: self.instance.clone(),
            started_at_ms: self.started_at_ms,
            now_ms: now_ms(),
            consumer_window_ms: CONSUMER_WINDOW.as_millis() as u64,
            exchanges,
            topics,
            queues,
            subscriptions,
        }
    }
}

/// `GET /stats`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsReport {
    /// This gateway process; another value means the counters started over (or another
    /// gateway answered), so rates must not be computed across it.
    pub instance: String,
    pub started_at_ms: u64,
    /// The gateway's clock when it read the counters (unix milliseconds).
    pub now_ms: u64,
    pub consumer_window_ms: u64,
    pub exchanges: Vec<ExchangeStats>,
    pub topics: Vec<TopicStats>,
    pub queues: Vec<QueueStats>,
    pub subscriptions: Vec<SubscriptionStats>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExchangeStats {
    pub name: String,
    pub kind: ExchangeKind,
    pub published: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopicStats {
    pub name: String,
    pub published: u64,
    pub subscribers: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub name: String,
    pub delivered: u64,
    pub acked: u64,
    pub consumers: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionStats {
    pub topic: String,
    pub subscriber: String,
    pub delivered: u64,
    pub acked: u64,
    pub consumers: usize,
}

/// What the catalog holds now: exchanges with their kind, queues, topics with their
/// subscribers.
struct Existing {
    exchanges: Vec<(String, ExchangeKind)>,
    queues: Vec<String>,
    topics: Vec<(String, Vec<String>)>,
}

impl Existing {
    async fn read(state: &AppState) -> Result<Existing, ApiError> {
        let catalog = &state.catalog;
        let (exchanges, queues, topics) = futures::try_join!(
            catalog.list_exchanges(),
            catalog.list_queues(),
            catalog.list_topics(),
        )?;
        let topics = futures::future::join_all(topics.into_iter().map(|topic| async move {
            // A topic deleted meanwhile has no subscribers.
            let subscribers = catalog.subscribers(&topic).await.unwrap_or_default();
            (topic, subscribers)
        }))
        .await;
        Ok(Existing {
            exchanges,
            queues,
            topics,
        })
    }
}

/// `GET /stats`: the counters of the exchanges, topics, queues and subscriptions the caller
/// may see (a subscription is seen with its topic).
#[utoipa::path(
    get,
    path = "/stats",
    operation_id = "stats",
    tag = "operations",
    responses((status = 200, description = "This gateway's traffic counters since it started", body = StatsReport)),
)]
pub async fn render(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let existing = Existing::read(&state).await?;
    state.stats.forget_missing(&existing);
    let exchanges = visible(
        &state,
        &caller,
        ResourceKind::Exchange,
        existing.exchanges,
        |e| &e.0,
    )
    .await?;
    let queues = visible(&state, &caller, ResourceKind::Queue, existing.queues, |q| q).await?;
    let topics = visible(&state, &caller, ResourceKind::Topic, existing.topics, |t| {
        &t.0
    })
    .await?;
    Ok(HttpResponse::Ok().json(state.stats.report(Existing {
        exchanges,
        queues,
        topics,
    })))
}

/// Drops the counters of deleted resources once a minute, so that a gateway nobody asks for
/// `/stats` does not keep them forever. Runs as long as the gateway.
pub async fn forget_deleted(state: Arc<AppState>) {
    let mut every = tokio::time::interval(FORGET_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match Existing::read(&state).await {
            Ok(existing) => state.stats.forget_missing(&existing),
            Err(e) => tracing::debug!(error = %e, "stats: catalog not readable; retrying later"),
        }
    }
}

pub fn routes<R: Routes>(r: &mut R) {
    r.add(Method::GET, "/stats", render);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str) -> MailboxName {
        MailboxName::Queue(name.into())
    }

    fn existing(queues: &[&str]) -> Existing {
        Existing {
            exchanges: vec![("x".into(), ExchangeKind::Direct)],
            queues: queues.iter().map(|q| q.to_string()).collect(),
            topics: vec![("t".into(), vec!["s".into()])],
        }
    }

    #[test]
    fn counts_publishes_deliveries_acks_and_distinct_consumers() {
        let stats = Stats::default();
        stats.published(DestinationKind::Exchange, "x", 3);
        stats.published(DestinationKind::Exchange, "x", 2);
        stats.published(DestinationKind::Topic, "t", 1);
        stats.pulled(&queue("q"), "alice", 2);
        stats.pulled(&queue("q"), "alice", 0);
        stats.pulled(&queue("q"), "bob", 1);
        stats.acked(&queue("q"), 2);
        let sub = MailboxName::Subscription {
            topic: "t".into(),
            subscriber: "s".into(),
        };
        stats.pulled(&sub, "carol", 1);
        let report = stats.report(existing(&["q", "idle"]));
        assert_eq!(report.exchanges[0].published, 5);
        assert_eq!(report.topics[0].published, 1);
        let q = &report.queues[0];
        assert_eq!((q.delivered, q.acked, q.consumers), (3, 2, 2));
        let idle = &report.queues[1];
        assert_eq!((idle.delivered, idle.acked, idle.consumers), (0, 0, 0));
        let s = &report.subscriptions[0];
        assert_eq!((s.delivered, s.acked, s.consumers), (1, 0, 1));
    }

    #[test]
    fn consumers_leave_after_the_window_and_deleted_resources_are_forgotten() {
        let stats = Stats::default();
        stats.pulled(&queue("q"), "alice", 1);
        stats.published(DestinationKind::Exchange, "gone", 1);
        stats
            .lock()
            .mailboxes
            .get_mut(&queue("q"))
            .unwrap()
            .pullers
            .insert("old".into(), Instant::now() - CONSUMER_WINDOW);
        assert_eq!(stats.report(existing(&["q"])).queues[0].consumers, 1);
        stats.forget_missing(&existing(&[]));
        assert!(stats.lock().mailboxes.is_empty());
        assert!(stats.lock().exchanges.is_empty());
    }
}
