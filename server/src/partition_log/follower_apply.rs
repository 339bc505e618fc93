//! When a follower has its store apply what it learnt is committed.
//!
//! Nothing reads a follower's applied state (only a serving leader answers pulls), so instead
//! of one store transaction per fetch adding the pending rows of that fetch's few entries, a
//! follower applies at most every `every_ms`: one transaction for many fetches' worth.
//!
//! What keeps that safe is the order the store sees writes in: the order the protocol issued
//! them, except that appends may go ahead of a waiting commit (a commit applies only entries
//! that were durable before it was issued, so it depends on no append after it). So the
//! shell hands the waiting commit to the store before any other write (a truncation, reset,
//! compaction, drop or barrier), and as soon as the replica is no follower, before it serves.

use mom_replicator::protocol::Offset;

#[derive(Debug)]
pub struct FollowerApply {
    every_ms: u64,
    /// The latest HW issued and not handed to the store yet.
    waiting: Option<Offset>,
    /// When a commit was last handed to the store.
    applied_at_ms: u64,
}

impl FollowerApply {
    pub fn new(every_ms: u64) -> FollowerApply {
        FollowerApply {
            every_ms,
            waiting: None,
            applied_at_ms: 0,
        }
    }

    /// The protocol issued a commit to `hw`: the HW to apply now, or `None` while it waits (a
    /// follower that had one applied less than `every_ms` ago). A leader's never waits.
    pub fn commit(&mut self, hw: Offset, following: bool, now_ms: u64) -> Option<Offset> {
        if following && now_ms < self.applied_at_ms.saturating_add(self.every_ms) {
            self.waiting = Some(hw);
            return None;
        }
        self.waiting = None;
        self.applied_at_ms = now_ms;
        Some(hw)
    }

    /// The waiting HW, to apply now: before a write other than an append, or because the
    /// replica leads now.
    pub fn take(&mut self, now_ms: u64) -> Option<Offset> {
        let hw = self.waiting.take()?;
        self.applied_at_ms = now_ms;
        Some(hw)
    }

    /// The waiting HW, if `every_ms` has passed since the last one applied.
    pub fn due(&mut self, now_ms: u64) -> Option<Offset> {
        if now_ms >= self.applied_at_ms.saturating_add(self.every_ms) {
            self.take(now_ms)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_applies_every_commit_at_once() {
        let mut apply = FollowerApply::new(50);
        assert_eq!(apply.commit(3, false, 1_000), Some(3));
        assert_eq!(apply.commit(4, false, 1_001), Some(4));
        assert_eq!(apply.take(1_002), None, "nothing waits");
    }

    #[test]
    fn a_follower_applies_the_latest_hw_once_per_interval() {
        let mut apply = FollowerApply::new(50);
        assert_eq!(
            apply.commit(3, true, 1_000),
            Some(3),
            "the first goes at once"
        );
        assert_eq!(apply.commit(5, true, 1_010), None);
        assert_eq!(apply.commit(8, true, 1_020), None);
        assert_eq!(apply.due(1_049), None, "not yet");
        assert_eq!(apply.due(1_050), Some(8), "the latest");
        assert_eq!(apply.due(1_200), None, "once");
        assert_eq!(
            apply.commit(9, true, 1_060),
            None,
            "the interval runs from 1050"
        );
        assert_eq!(apply.commit(10, true, 1_100), Some(10));
    }

    #[test]
    fn a_waiting_commit_is_taken_at_once_before_another_write_or_on_leading() {
        let mut apply = FollowerApply::new(50);
        assert_eq!(apply.commit(3, true, 1_000), Some(3));
        assert_eq!(apply.commit(5, true, 1_010), None);
        assert_eq!(apply.take(1_011), Some(5), "before a truncation, say");
        assert_eq!(apply.take(1_012), None);
        assert_eq!(apply.commit(6, true, 1_020), None);
        // Leading now: its own commits go at once, and one issued as a leader replaces
        // the waiting one (a commit applies everything below its HW).
        assert_eq!(apply.commit(7, false, 1_021), Some(7));
        assert_eq!(apply.take(1_022), None);
    }
}
