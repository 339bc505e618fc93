//! Waking pulls that wait: a pull with `wait_ms` that finds nothing to lease parks on its
//! mailbox's signal here instead of polling, and the partition tasks signal a mailbox once a
//! committed publish to it is applied (or every mailbox, when this node starts serving a
//! partition). A released lease signals its mailbox too; a lapsing lease is a timer of the
//! waiting pull itself (see `BrokerService::pull`).
//!
//! Invariants: a signal is a `watch` version bump, so a pull that subscribed before it looked
//! for messages cannot miss one sent between its look and its wait; a mailbox's entry lives
//! only while some pull waits on it. `StopWaiting` may arrive before the pull it names (two
//! calls on one connection race), so stopping an unknown id leaves a mark the pull finds when it
//! registers; marks nobody picked up are dropped after [`STOP_MARK_LIFETIME`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a stop for a pull that has not arrived (yet) is remembered.
const STOP_MARK_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Wakeups {
    mailboxes: Mutex<HashMap<String, watch::Sender<()>>>,
    stops: Mutex<HashMap<String, (watch::Sender<bool>, Instant)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps of channels: a panic cannot leave them half-changed.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A waiting pull's view of its mailbox's signal; dropping it forgets the mailbox once nobody
/// waits on it.
pub struct MailboxWatch {
    wakeups: Arc<Wakeups>,
    key: String,
    receiver: Option<watch::Receiver<()>>,
}

impl MailboxWatch {
    /// Forgets signals so far: call before looking for messages.
    pub fn mark_seen(&mut self) {
        if let Some(receiver) = &mut self.receiver {
            receiver.borrow_and_update();
        }
    }

    /// Resolves at the first signal since [`MailboxWatch::mark_seen`].
    pub async fn signalled(&mut self) {
        match &mut self.receiver {
            Some(receiver) => {
                if receiver.changed().await.is_err() {
                    std::future::pending::<()>().await
                }
            }
            None => std::future::pending().await,
        }
    }
}

impl Drop for MailboxWatch {
    fn drop(&mut self) {
        self.receiver = None;
        let mut mailboxes = lock(&self.wakeups.mailboxes);
        if mailboxes
            .get(&self.key)
            .is_some_and(|s| s.receiver_count() == 0)
        {
            mailboxes.remove(&self.key);
        }
    }
}

/// Whether a waiting pull was told to stop; dropping it forgets the pull's id.
pub struct StopWatch {
    wakeups: Arc<Wakeups>,
    id: String,
    receiver: watch::Receiver<bool>,
}

impl StopWatch {
    /// Resolves once `StopWaiting` named this pull (at once if it did already).
    pub async fn stopped(&mut self) {
        if self.receiver.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await
        }
    }
}

impl Drop for StopWatch {
    fn drop(&mut self) {
        lock(&self.wakeups.stops).remove(&self.id);
    }
}

impl Wakeups {
    /// Subscribes to `mailbox`'s signal.
    pub fn watch(self: &Arc<Self>, mailbox: &str) -> MailboxWatch {
        let receiver = lock(&self.mailboxes)
            .entry(mailbox.to_owned())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe();
        MailboxWatch {
            wakeups: self.clone(),
            key: mailbox.to_owned(),
            receiver: Some(receiver),
        }
    }

    /// Wakes the pulls waiting on these mailboxes.
    pub fn wake<'a>(&self, mailboxes: impl IntoIterator<Item = &'a str>) {
        let senders = lock(&self.mailboxes);
        if senders.is_empty() {
            return;
        }
        for mailbox in mailboxes {
            if let Some(sender) = senders.get(mailbox) {
                sender.send_modify(|_| {});
            }
        }
    }

    /// Wakes every waiting pull (a partition started being served here: it may hold anything).
    pub fn wake_all(&self) {
        for sender in lock(&self.mailboxes).values() {
            sender.send_modify(|_| {});
        }
    }

    /// Registers a waiting pull by its id.
    pub fn stop_watch(self: &Arc<Self>, id: &str) -> StopWatch {
        let receiver = lock(&self.stops)
            .entry(id.to_owned())
            .or_insert_with(|| (watch::channel(false).0, Instant::now()))
            .0
            .subscribe();
        StopWatch {
            wakeups: self.clone(),
            id: id.to_owned(),
            receiver,
        }
    }

    /// Tells the pull named `id` to answer now; remembers it for a while if it has not come.
    pub fn stop(&self, id: &str) {
        let mut stops = lock(&self.stops);
        let now = Instant::now();
        stops.retain(|_, (sender, since)| {
            sender.receiver_count() > 0 || now.duration_since(*since) < STOP_MARK_LIFETIME
        });
        stops
            .entry(id.to_owned())
            .or_insert_with(|| (watch::channel(false).0, now))
            .0
            .send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_between_look_and_wait_is_not_missed_and_entries_go_with_waiters() {
        let wakeups = Arc::new(Wakeups::default());
        let mut watch = wakeups.watch("q/x");
        watch.mark_seen();
        wakeups.wake(["q/y", "q/x"]);
        tokio::time::timeout(Duration::from_secs(1), watch.signalled())
            .await
            .expect("woken");
        drop(watch);
        assert!(lock(&wakeups.mailboxes).is_empty());
    }

    #[tokio::test]
    async fn a_stop_before_the_pull_registers_still_stops_it() {
        let wakeups = Arc::new(Wakeups::default());
        wakeups.stop("w1");
        let mut stop = wakeups.stop_watch("w1");
        tokio::time::timeout(Duration::from_secs(1), stop.stopped())
            .await
            .expect("stopped");
        drop(stop);
        assert!(lock(&wakeups.stops).is_empty());
    }
}
