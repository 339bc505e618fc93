//! Leases: which consumer holds which message of a mailbox, until when.
//!
//! Leases are the leader's own memory, never replicated: a pull costs no log write. When
//! leadership moves the new leader starts with no leases, so a message that was leased but not
//! acked may be delivered again before its lease would have ended — at-least-once delivery
//! allows that, and it saves a replicated write per delivery.
//!
//! A receipt names its partition, the message's log offset and the lease:
//! `<partition>/<offset>/<epoch>.<serial>`. An ack is refused as stale only when this leader
//! has since leased the message again (to someone else); a receipt from an earlier leadership
//! still acks a message nobody holds now.

use crate::store::PendingMessage;
pub use mom_common::receipt::Receipt;
use mom_replicator::protocol::{Epoch, Offset};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug)]
struct Lease {
    name: String,
    deliveries: u32,
    visible_at_ms: u64,
}

/// One delivery handed out by [`Leases::take`].
#[derive(Debug)]
pub struct Leased {
    pub message: PendingMessage,
    pub receipt: Receipt,
    pub delivery_count: u32,
}

/// What one pull asks of a mailbox.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub max: usize,
    /// Stop before a message that would take the size of what is taken (payloads and headers,
    /// [`PendingMessage::size`]) above this, so that a reply stays within gRPC's limits...
    pub max_bytes: usize,
    /// ... except that the first message taken may be larger (a pull that has nothing yet
    /// must be able to get any message).
    pub first_may_exceed: bool,
    pub now_ms: u64,
    pub visibility_ms: u64,
}

/// The leases of one partition (guarded by a mutex in its owner).
#[derive(Debug, Default)]
pub struct Leases {
    epoch: Epoch,
    serial: u64,
    by_mailbox: HashMap<String, BTreeMap<Offset, Lease>>,
}

impl Leases {
    /// Forgets everything when a new leadership starts.
    fn for_epoch(&mut self, epoch: Epoch) {
        if self.epoch != epoch {
            *self = Leases {
                epoch,
                ..Leases::default()
            };
        }
    }

    /// How many messages of `mailbox` are leased right now.
    pub fn active(&mut self, epoch: Epoch, mailbox: &str, now_ms: u64) -> u64 {
        self.for_epoch(epoch);
        self.by_mailbox.get(mailbox).map_or(0, |leases| {
            leases.values().filter(|l| l.visible_at_ms > now_ms).count() as u64
        })
    }

    /// The first `max` of `offsets` (oldest first) that nobody holds now, leasing nothing.
    pub fn free(
        &mut self,
        epoch: Epoch,
        mailbox: &str,
        offsets: Vec<Offset>,
        max: usize,
        now_ms: u64,
    ) -> Vec<Offset> {
        self.for_epoch(epoch);
        let leases = self.by_mailbox.get(mailbox);
        offsets
            .into_iter()
            .filter(|offset| {
                leases
                    .and_then(|l| l.get(offset))
                    .is_none_or(|lease| lease.visible_at_ms <= now_ms)
            })
            .take(max)
            .collect()
    }

    /// Whether some of `candidates` is free to lease now (nobody holds it), leasing nothing.
    pub fn any_free(
        &mut self,
        epoch: Epoch,
        mailbox: &str,
        candidates: &[PendingMessage],
        now_ms: u64,
    ) -> bool {
        let offsets = candidates.iter().map(|message| message.offset).collect();
        !self.free(epoch, mailbox, offsets, 1, now_ms).is_empty()
    }

    /// Leases up to `max` of `candidates` (oldest first) that nobody holds now.
    pub fn take(
        &mut self,
        epoch: Epoch,
        partition: u32,
        mailbox: &str,
        candidates: Vec<PendingMessage>,
        wanted: Wanted,
    ) -> Vec<Leased> {
        let Wanted {
            max,
            max_bytes,
            first_may_exceed,
            now_ms,
            visibility_ms,
        } = wanted;
        self.for_epoch(epoch);
        let leases = self.by_mailbox.entry(mailbox.to_owned()).or_default();
        let mut taken = Vec::new();
        let mut bytes = 0usize;
        for message in candidates {
            if taken.len() == max {
                break;
            }
            let lease = leases.entry(message.offset).or_insert(Lease {
                name: String::new(),
                deliveries: 0,
                visible_at_ms: 0,
            });
            if lease.visible_at_ms > now_ms {
                continue;
            }
            let size = message.size();
            let first = taken.is_empty() && first_may_exceed;
            if bytes.saturating_add(size) > max_bytes && !first {
                // Oldest first: what does not fit waits for the next pull.
                break;
            }
            bytes = bytes.saturating_add(size);
            self.serial += 1;
            lease.name = format!("{epoch}.{}", self.serial);
            lease.deliveries += 1;
            lease.visible_at_ms = now_ms.saturating_add(visibility_ms);
            taken.push(Leased {
                receipt: Receipt {
                    partition,
                    offset: message.offset,
                    lease: lease.name.clone(),
                },
                delivery_count: lease.deliveries,
                message,
            });
        }
        taken
    }

    /// Whether `receipt` may ack its message: nobody leased it again since.
    pub fn may_ack(&mut self, epoch: Epoch, mailbox: &str, receipt: &Receipt) -> bool {
        self.for_epoch(epoch);
        match self
            .by_mailbox
            .get(mailbox)
            .and_then(|l| l.get(&receipt.offset))
        {
            Some(lease) => lease.name == receipt.lease,
            None => true,
        }
    }

    /// The message was acked: its lease is over for good.
    pub fn release(&mut self, epoch: Epoch, mailbox: &str, offset: Offset) {
        self.for_epoch(epoch);
        if let Some(leases) = self.by_mailbox.get_mut(mailbox) {
            leases.remove(&offset);
        }
    }

    /// Puts a leased message back, ready at once, if `receipt` is still its lease: the gateway
    /// leased it but handed it to nobody, so the delivery does not count either. The lease keeps
    /// its name, so the receipt still acks the message until someone leases it again.
    pub fn put_back(
        &mut self,
        epoch: Epoch,
        mailbox: &str,
        receipt: &Receipt,
        now_ms: u64,
    ) -> bool {
        self.for_epoch(epoch);
        let Some(lease) = self
            .by_mailbox
            .get_mut(mailbox)
            .and_then(|l| l.get_mut(&receipt.offset))
        else {
            return false;
        };
        if lease.name != receipt.lease || lease.visible_at_ms <= now_ms {
            return false;
        }
        lease.visible_at_ms = 0;
        lease.deliveries = lease.deliveries.saturating_sub(1);
        true
    }

    /// When the next lease of `mailbox` that is running now lapses (its message is ready
    /// again then), for pulls that wait.
    pub fn next_lapse(&mut self, epoch: Epoch, mailbox: &str, now_ms: u64) -> Option<u64> {
        self.for_epoch(epoch);
        self.by_mailbox.get(mailbox).and_then(|leases| {
            leases
                .values()
                .map(|l| l.visible_at_ms)
                .filter(|at| *at > now_ms)
                .min()
        })
    }

    /// Takes out of `candidates` the messages delivered `max_deliveries` times already that
    /// nobody holds now, and holds them for `hold_ms` (invisible) while they are
    /// dead-lettered; with their delivery counts. Should dead-lettering fail, they come back
    /// when the hold ends, and go the same way then.
    pub fn exhausted(
        &mut self,
        epoch: Epoch,
        mailbox: &str,
        candidates: &mut Vec<PendingMessage>,
        max_deliveries: u32,
        (now_ms, hold_ms): (u64, u64),
    ) -> Vec<(PendingMessage, u32)> {
        self.for_epoch(epoch);
        let Some(leases) = self.by_mailbox.get_mut(mailbox) else {
            return Vec::new();
        };
        let mut exhausted = Vec::new();
        let mut kept = Vec::with_capacity(candidates.len());
        for message in candidates.drain(..) {
            match leases.get_mut(&message.offset) {
                Some(lease)
                    if lease.visible_at_ms <= now_ms && lease.deliveries >= max_deliveries =>
                {
                    lease.visible_at_ms = now_ms.saturating_add(hold_ms);
                    exhausted.push((message, lease.deliveries));
                }
                _ => kept.push(message),
            }
        }
        *candidates = kept;
        exhausted
    }

    /// The leases that ran out (their messages ready again), as (mailbox, offset, deliveries):
    /// for the sweep that dead-letters messages past their queue's delivery limit.
    pub fn lapsed(&mut self, epoch: Epoch, now_ms: u64) -> Vec<(String, Offset, u32)> {
        self.for_epoch(epoch);
        let mut lapsed = Vec::new();
        for (mailbox, leases) in &self.by_mailbox {
            for (offset, lease) in leases {
                if lease.visible_at_ms <= now_ms && lease.deliveries > 0 {
                    lapsed.push((mailbox.clone(), *offset, lease.deliveries));
                }
            }
        }
        lapsed
    }

    /// Holds a message whose lease ran out (invisible until `until_ms`) while it is
    /// dead-lettered; false if it is leased again or gone.
    pub fn hold(
        &mut self,
        epoch: Epoch,
        mailbox: &str,
        offset: Offset,
        (now_ms, until_ms): (u64, u64),
    ) -> bool {
        self.for_epoch(epoch);
        match self
            .by_mailbox
            .get_mut(mailbox)
            .and_then(|l| l.get_mut(&offset))
        {
            Some(lease) if lease.visible_at_ms <= now_ms => {
                lease.visible_at_ms = until_ms;
                true
            }
            _ => false,
        }
    }

    /// A consumer gave a leased message back (`nack`) while `receipt` is still its lease:
    /// with `requeue` it is ready again at once, its delivery counted; without, it is held
    /// for `hold_ms` while it is dead-lettered. Returns its delivery count, or None if the
    /// receipt is stale.
    pub fn give_back(
        &mut self,
        epoch: Epoch,
        mailbox: &str,
        receipt: &Receipt,
        requeue: bool,
        (now_ms, hold_ms): (u64, u64),
    ) -> Option<u32> {
        self.for_epoch(epoch);
        let lease = self
            .by_mailbox
            .get_mut(mailbox)?
            .get_mut(&receipt.offset)
            .filter(|l| l.name == receipt.lease && l.visible_at_ms > now_ms)?;
        lease.visible_at_ms = if requeue {
            0
        } else {
            now_ms.saturating_add(hold_ms)
        };
        Some(lease.deliveries)
    }

    /// Drops the leases of a purged mailbox.
    pub fn forget(&mut self, mailbox: &str) {
        self.by_mailbox.remove(mailbox);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(max: usize, now_ms: u64, visibility_ms: u64) -> Wanted {
        Wanted {
            max,
            max_bytes: usize::MAX,
            first_may_exceed: true,
            now_ms,
            visibility_ms,
        }
    }

    fn message(offset: Offset) -> PendingMessage {
        PendingMessage {
            offset,
            message_id: format!("m{offset}"),
            exchange: "ex".into(),
            routing_key: "k".into(),
            payload: Vec::new(),
            published_at_ms: 0,
            headers: Default::default(),
            content_type: String::new(),
        }
    }

    #[test]
    fn any_free_sees_unleased_and_lapsed_messages_and_leases_nothing() {
        let mut leases = Leases::default();
        let held = leases.take(1, 0, "q/x", vec![message(0)], wanted(1, 100, 50));
        assert_eq!(held.len(), 1);
        assert!(!leases.any_free(1, "q/x", &[message(0)], 120));
        assert!(leases.any_free(1, "q/x", &[message(0), message(1)], 120));
        assert!(
            leases.any_free(1, "q/x", &[message(0)], 150),
            "its lease lapsed"
        );
        assert!(!leases.any_free(1, "q/x", &[], 120));
        // Looking leased nothing: message 1 is still there to take.
        let taken = leases.take(1, 0, "q/x", vec![message(1)], wanted(1, 120, 50));
        assert_eq!((taken.len(), taken[0].delivery_count), (1, 1));
    }

    #[test]
    fn free_offsets_skip_held_ones_keep_lapsed_ones_and_stop_at_max() {
        let mut leases = Leases::default();
        let taken = leases.take(
            1,
            0,
            "q/x",
            vec![message(0), message(2)],
            wanted(2, 100, 50),
        );
        assert_eq!(taken.len(), 2);
        assert_eq!(leases.free(1, "q/x", vec![0, 1, 2, 3, 4], 2, 120), [1, 3]);
        assert_eq!(
            leases.free(1, "q/x", vec![0, 1, 2, 3], 9, 150),
            [0, 1, 2, 3]
        );
        assert_eq!(
            leases.free(1, "q/y", vec![0, 2], 9, 120),
            [0, 2],
            "another mailbox"
        );
        assert!(leases.free(1, "q/x", vec![0, 2], 9, 120).is_empty());
        // Looking leased nothing.
        assert_eq!(leases.active(1, "q/x", 120), 2);
    }

    #[test]
    fn a_leased_message_is_skipped_until_its_lease_ends_then_redelivered() {
        let mut leases = Leases::default();
        let first = leases.take(
            1,
            0,
            "q/x",
            vec![message(0), message(1)],
            wanted(1, 100, 50),
        );
        assert_eq!(first.len(), 1);
        let second = leases.take(
            1,
            0,
            "q/x",
            vec![message(0), message(1)],
            wanted(5, 120, 50),
        );
        assert_eq!(
            second.iter().map(|l| l.message.offset).collect::<Vec<_>>(),
            [1]
        );
        let again = leases.take(1, 0, "q/x", vec![message(0)], wanted(5, 200, 50));
        assert_eq!(again[0].delivery_count, 2);
        assert!(
            !leases.may_ack(1, "q/x", &first[0].receipt),
            "re-leased: stale"
        );
        assert!(leases.may_ack(1, "q/x", &again[0].receipt));
        assert_eq!(leases.active(1, "q/x", 210), 1);
    }

    #[test]
    fn a_message_put_back_is_ready_at_once_and_its_delivery_not_counted() {
        let mut leases = Leases::default();
        let taken = leases.take(1, 0, "q/x", vec![message(0)], wanted(1, 100, 50));
        assert_eq!(leases.next_lapse(1, "q/x", 100), Some(150));
        assert!(leases.put_back(1, "q/x", &taken[0].receipt, 110));
        assert!(!leases.put_back(1, "q/x", &taken[0].receipt, 110), "once");
        assert_eq!(leases.next_lapse(1, "q/x", 110), None);
        let again = leases.take(1, 0, "q/x", vec![message(0)], wanted(1, 120, 50));
        assert_eq!(
            again[0].delivery_count, 1,
            "the put-back delivery never happened"
        );
        assert!(
            !leases.put_back(1, "q/x", &taken[0].receipt, 130),
            "leased again since"
        );
    }

    #[test]
    fn a_new_leadership_forgets_leases_and_accepts_old_receipts() {
        let mut leases = Leases::default();
        let taken = leases.take(1, 0, "q/x", vec![message(0)], wanted(1, 100, 50_000));
        assert!(leases.may_ack(2, "q/x", &taken[0].receipt));
        assert_eq!(leases.active(2, "q/x", 100), 0);
    }

    #[test]
    fn a_pull_takes_what_fits_its_byte_budget_but_always_one_message() {
        let big = |offset| PendingMessage {
            payload: vec![0; 100],
            ..message(offset)
        };
        let mut leases = Leases::default();
        let budget = |max_bytes, first_may_exceed| Wanted {
            max_bytes,
            first_may_exceed,
            ..wanted(10, 100, 50)
        };
        let taken = leases.take(1, 0, "q/x", vec![big(0), big(1), big(2)], budget(250, true));
        assert_eq!(taken.len(), 2, "two of about 100 bytes fit in 250");
        let taken = leases.take(1, 0, "q/a", vec![big(0), big(1)], budget(10, true));
        assert_eq!(taken.len(), 1, "the first is taken whatever its size");
        let taken = leases.take(1, 0, "q/b", vec![big(0)], budget(10, false));
        assert!(
            taken.is_empty(),
            "nothing over the budget after other partitions"
        );
    }
    #[test]
    fn a_message_delivered_max_times_is_held_for_dead_lettering() {
        let mut leases = Leases::default();
        let first = leases.take(
            1,
            0,
            "q/x",
            vec![message(0), message(1)],
            wanted(2, 100, 50),
        );
        assert_eq!(first.len(), 2);
        // Both lapse; message 0 was delivered once, which is the limit.
        let mut candidates = vec![message(0), message(1)];
        let dead = leases.exhausted(1, "q/x", &mut candidates, 1, (200, 1_000));
        assert_eq!(
            dead.iter().map(|(m, n)| (m.offset, *n)).collect::<Vec<_>>(),
            [(0, 1), (1, 1)]
        );
        assert!(candidates.is_empty());
        // Held: neither exhausted again nor leased while it is being dead-lettered.
        let mut again = vec![message(0)];
        assert!(leases
            .exhausted(1, "q/x", &mut again, 1, (300, 1_000))
            .is_empty());
        assert!(leases
            .take(1, 0, "q/x", again, wanted(1, 300, 50))
            .is_empty());
    }

    #[test]
    fn a_nacked_message_is_ready_again_or_held_and_a_stale_nack_changes_nothing() {
        let mut leases = Leases::default();
        let taken = leases.take(
            1,
            0,
            "q/x",
            vec![message(0), message(1)],
            wanted(2, 100, 50),
        );
        assert_eq!(
            leases.give_back(1, "q/x", &taken[0].receipt, true, (110, 1_000)),
            Some(1)
        );
        let again = leases.take(1, 0, "q/x", vec![message(0)], wanted(1, 120, 50));
        assert_eq!(again[0].delivery_count, 2, "a requeued delivery counts");
        assert_eq!(
            leases.give_back(1, "q/x", &taken[0].receipt, true, (130, 1_000)),
            None
        );
        assert_eq!(
            leases.give_back(1, "q/x", &taken[1].receipt, false, (130, 1_000)),
            Some(1)
        );
        assert!(leases
            .take(1, 0, "q/x", vec![message(1)], wanted(1, 500, 50))
            .is_empty());
    }
}
