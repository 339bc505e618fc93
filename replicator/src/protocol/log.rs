//! What the replication protocol must know about one replica's copy of a partition log: where
//! it starts and ends, and at which offset each leader epoch began (Kafka's leader-epoch cache,
//! KIP-101). The entries themselves live in storage; this is only their outline.
//!
//! Invariants: `start <= end`; `epochs` is sorted by epoch and by first offset, every first
//! offset lies in `[start, end)`, and an epoch appears only if the log holds an entry of it
//! (the first entry with a given epoch sits at that epoch's first offset).

use super::{Epoch, Offset};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOutline {
    /// First offset the log holds; everything before it was compacted away.
    pub start: Offset,
    /// The offset the next entry gets.
    pub end: Offset,
    /// Epoch of the entry just before `start` (0 if none): what a replica that starts at
    /// `start` says it last fetched.
    pub prev_epoch: Epoch,
    /// `(epoch, first offset)` for every epoch the log holds entries of.
    pub epochs: Vec<(Epoch, Offset)>,
}

impl LogOutline {
    /// The outline of a log starting at `start` (after an entry of `prev_epoch`) and holding
    /// entries of these epochs, in offset order.
    pub fn of_entries(
        start: Offset,
        prev_epoch: Epoch,
        epochs: impl IntoIterator<Item = Epoch>,
    ) -> Self {
        let mut log = LogOutline {
            start,
            end: start,
            prev_epoch,
            epochs: Vec::new(),
        };
        for epoch in epochs {
            log.append(epoch);
        }
        log
    }

    /// The epoch of the last entry, or of the entry before `start` for an empty log.
    pub fn last_epoch(&self) -> Epoch {
        self.epochs.last().map_or(self.prev_epoch, |(e, _)| *e)
    }

    /// Records that an entry of `epoch` was appended at `end`.
    pub fn append(&mut self, epoch: Epoch) {
        if self.epochs.last().is_none_or(|(e, _)| *e < epoch) {
            self.epochs.push((epoch, self.end));
        }
        self.end += 1;
    }

    /// Drops every entry at or after `offset`.
    pub fn truncate(&mut self, offset: Offset) {
        let offset = offset.max(self.start);
        if offset >= self.end {
            return;
        }
        self.end = offset;
        self.epochs.retain(|(_, first)| *first < offset);
    }

    /// Forgets entries before `offset` (compaction). The epoch covering `offset` stays, with
    /// its first offset moved up to `offset`.
    pub fn advance_start(&mut self, offset: Offset) {
        if offset <= self.start {
            return;
        }
        let offset = offset.min(self.end);
        // The epoch of the entry at offset - 1 becomes prev_epoch.
        if let Some((e, _)) = self.epochs.iter().rev().find(|(_, first)| *first < offset) {
            self.prev_epoch = *e;
        }
        let covering = self.epochs.iter().rposition(|(_, first)| *first <= offset);
        if let Some(index) = covering {
            self.epochs.drain(..index);
            if let Some(first) = self.epochs.first_mut() {
                if first.1 < offset {
                    first.1 = offset;
                }
            }
        }
        // An epoch whose first offset equals end holds no entry any more.
        self.epochs
            .retain(|(_, first)| *first < offset.max(self.end));
        self.start = offset;
    }

    /// Replaces the log with an empty one starting at `start` (a follower too far behind).
    pub fn reset(&mut self, start: Offset, prev_epoch: Epoch) {
        *self = LogOutline {
            start,
            end: start,
            prev_epoch,
            epochs: Vec::new(),
        };
    }

    /// KIP-279's end offset for an epoch: the largest epoch this log holds that is at most
    /// `epoch`, and the offset where it ends (the first offset of the next epoch, or `end`).
    /// None when the log holds nothing that old and cannot tell.
    pub fn end_offset_for(&self, epoch: Epoch) -> Option<(Epoch, Offset)> {
        match self.epochs.iter().rposition(|(e, _)| *e <= epoch) {
            Some(index) => {
                let found = self.epochs[index].0;
                let end = self.epochs.get(index + 1).map_or(self.end, |(_, f)| *f);
                Some((found, end))
            }
            None if self.prev_epoch <= epoch => Some((self.prev_epoch, self.start)),
            None => None,
        }
    }

    /// The epoch of the entry at `offset`, if the log holds it.
    pub fn epoch_at(&self, offset: Offset) -> Option<Epoch> {
        if offset < self.start || offset >= self.end {
            return None;
        }
        self.epochs
            .iter()
            .rev()
            .find(|(_, first)| *first <= offset)
            .map(|(e, _)| *e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(epochs_per_entry: &[Epoch]) -> LogOutline {
        LogOutline::of_entries(0, 0, epochs_per_entry.iter().copied())
    }

    #[test]
    fn end_offsets_per_epoch() {
        let log = log(&[1, 1, 2, 2, 2, 4]);
        assert_eq!(log.end_offset_for(1), Some((1, 2)));
        assert_eq!(log.end_offset_for(2), Some((2, 5)));
        assert_eq!(log.end_offset_for(3), Some((2, 5)));
        assert_eq!(log.end_offset_for(9), Some((4, 6)));
        assert_eq!(log.end_offset_for(0), Some((0, 0)));
        assert_eq!(log.epoch_at(4), Some(2));
        assert_eq!(log.last_epoch(), 4);
    }

    #[test]
    fn truncation_drops_epochs_that_lose_all_entries() {
        let mut log = log(&[1, 1, 2, 2, 3]);
        log.truncate(2);
        assert_eq!((log.end, log.epochs.clone()), (2, vec![(1, 0)]));
        log.append(5);
        assert_eq!(log.end_offset_for(2), Some((1, 2)));
    }

    #[test]
    fn compaction_keeps_the_covering_epoch() {
        let mut log = log(&[1, 1, 2, 2, 3]);
        log.advance_start(3);
        assert_eq!(log.start, 3);
        assert_eq!(log.prev_epoch, 2);
        assert_eq!(log.epochs, vec![(2, 3), (3, 4)]);
        assert_eq!(log.end_offset_for(1), None);
        log.advance_start(5);
        assert_eq!((log.start, log.prev_epoch, log.epochs.len()), (5, 3, 0));
        assert_eq!(log.end_offset_for(3), Some((3, 5)));
        assert_eq!(log.last_epoch(), 3);
    }
}
