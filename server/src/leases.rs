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
}
