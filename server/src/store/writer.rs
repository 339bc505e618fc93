//! The node's one writer: a thread that owns the writing SQLite connection and commits every
//! write queued meanwhile (any partitions) together — group commit: the commits (applying
//! entries already durable) in one transaction, then everything else in one transaction.
//!
//! Transactions are written, not fsync'd, by this thread (`synchronous = NORMAL`); a second
//! thread, the syncer, fsyncs the WAL and only then tells the writes that must be durable
//! (appends, truncations, resets, ...) that they are done. So the writer never waits on the
//! disk: a leader's commit, which its clients' answers wait for, is not queued behind an fsync
//! of other partitions' appends, and the appends written while one fsync runs share the next
//! (one fsync per batch per node still, pipelined with the writing of the next batch).
//!
//! Writes are carried out in the order they were submitted, so a partition's truncation never
//! overtakes the append before it and a commit (applying entries) never precedes their append;
//! only a commit may go ahead of writes queued with it, and never of its own partition's.
//! Writes are told in order too, except commits and forgotten ids, which need no fsync and are
//! told once written: a barrier is told only after every write before it.
//! A write that fails stops the process: the replication protocol has already counted on it,
//! and a replica that carried on with a log it cannot write would lie to its leader. On
//! restart the node rebuilds its state from what is on disk (fail-stop, like Kafka on a log
//! directory failure).
//!
//! Durability: the WAL is written in order, so an fsync of it makes every transaction written
//! before the fsync began durable, whichever descriptor it goes through. The syncer's
//! descriptor is opened once, with the store, so it hears of every write error after that
//! (see `store::open_wal`). A power loss can undo only transactions not fsync'd yet, never
//! told as durable; SQLite recovers to the last complete one. Checkpoints sync the WAL
//! before copying it and the database after, in NORMAL as in FULL, so a WAL that starts over
//! never holds the only copy of an unsynced page.

use super::{log_pos, log_range, offset_of};
use crate::records::Record;
use mom_common::proto::log_record::Kind;
use mom_replicator::protocol::{Entry, Offset};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::fs::File;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// The most writes one transaction takes, so one commit's latency stays bounded.
const MAX_BATCH: usize = 4_096;

#[derive(Debug)]
pub enum Write {
    /// Entries appended at the log's end.
    Append {
        partition: u32,
        entries: Vec<Entry<Record>>,
    },
    /// Drop entries at or after `from` (an uncommitted divergent suffix).
    Truncate { partition: u32, from: Offset },
    /// Drop the whole log and applied state; the log restarts, empty, at `start`.
    Reset {
        partition: u32,
        start: Offset,
        prev_epoch: u64,
    },
    /// Apply the entries below `hw` not applied yet, and record `hw`.
    Commit { partition: u32, hw: Offset },
    /// Delete entries before `start`, no longer needed by any message or replica.
    Compact {
        partition: u32,
        start: Offset,
        prev_epoch: u64,
    },
    /// Forget a partition this node no longer replicates.
    Drop { partition: u32 },
    /// Forget the message ids (for deduplication) of messages published before this time.
    ForgetIds {
        partition: u32,
        published_before_ms: u64,
    },
    /// Nothing: its completion says every earlier write is done.
    Barrier,
}

impl Write {
    /// The partition whose rows the write changes; `None` for a barrier.
    fn partition(&self) -> Option<u32> {
        match self {
            Write::Append { partition, .. }
            | Write::Truncate { partition, .. }
            | Write::Reset { partition, .. }
            | Write::Commit { partition, .. }
            | Write::Compact { partition, .. }
            | Write::Drop { partition }
            | Write::ForgetIds { partition, .. } => Some(*partition),
            Write::Barrier => None,
        }
    }
}

/// A write waiting for the writer: when it was submitted, and who to tell once it is done.
type Queued = (Write, std::time::Instant, oneshot::Sender<()>);

pub struct Writer {
    queue: mpsc::Sender<Queued>,
}

impl Writer {
    /// Starts the writer on `conn` and the syncer of its WAL file, `wal` (open for good).
    pub fn start(conn: Connection, wal: File) -> Writer {
        let (queue, incoming) = mpsc::channel();
        let (to_syncer, syncs) = mpsc::channel();
        std::thread::Builder::new()
            .name("mom-store-sync".into())
            .spawn(move || sync_loop(&wal, syncs))
            .expect("spawn the storage syncer thread");
        std::thread::Builder::new()
            .name("mom-store-writer".into())
            .spawn(move || run(conn, incoming, to_syncer))
            .expect("spawn the storage writer thread");
        Writer { queue }
    }

    pub fn submit(&self, write: Write) -> oneshot::Receiver<()> {
        let (done, receiver) = oneshot::channel();
        // The writer thread lives as long as the process (it exits it on failure).
        let _ = self.queue.send((write, std::time::Instant::now(), done));
        receiver
    }
}

/// Whether a write must be on disk before it counts. Applying committed entries need not be:
/// the applied state and its HW checkpoint can be rebuilt from the (durable) log, and the WAL
/// is written in order, so a later fsync'd commit carries every earlier one with it. Only a
/// power loss can undo such a commit, and then the node re-applies from its log.
fn must_sync(write: &Write) -> bool {
    // Forgetting dedup ids needs no fsync: after a crash they are only forgotten again.
    !matches!(
        write,
        Write::Commit { .. } | Write::Barrier | Write::ForgetIds { .. }
    )
}

/// How long writes waited for their group commit, by kind; the handles are made once, so
/// recording is an atomic update, not a registry lookup per write on this one thread.
struct QueueWaits {
    append: metrics::Histogram,
    commit: metrics::Histogram,
    other: metrics::Histogram,
}

impl QueueWaits {
    fn new() -> QueueWaits {
        let wait =
            |kind: &'static str| metrics::histogram!("mom_store_queue_seconds", "write" => kind);
        QueueWaits {
            append: wait("append"),
            commit: wait("commit"),
            other: wait("other"),
        }
    }

    fn of(&self, write: &Write) -> &metrics::Histogram {
        match write {
            Write::Append { .. } => &self.append,
            Write::Commit { .. } => &self.commit,
            _ => &self.other,
        }
    }
}

fn run(mut conn: Connection, incoming: mpsc::Receiver<Queued>, syncer: mpsc::Sender<GroupWritten>) {
    if let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
        tracing::error!(error = %e, "cannot set up the storage writer; stopping the node");
        std::process::exit(70);
    }
    let queue_waits = QueueWaits::new();
    let commit_times = CommitTimes::new();
    while let Ok(first) = incoming.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        for (write, submitted, _) in &batch {
            queue_waits
                .of(write)
                .record(started.duration_since(*submitted).as_secs_f64());
        }
        let (commits, rest) = hoist_commits(batch);
        // The commits first, in a transaction of their own: the answers and pulls waiting on
        // them need not wait for the appends' fsync, nor for the appends to be written.
        for group in [commits, rest] {
            if group.is_empty() {
                continue;
            }
            let written = commit_group(&mut conn, group, &commit_times);
            if written.told_at_once() {
                for done in written.waiters {
                    let _ = done.send(());
                }
            } else {
                // The syncer lives as long as the process (it exits it on failure).
                let _ = syncer.send(written);
            }
        }
    }
}

/// Fsyncs the WAL for every run of written transactions that must be durable, then tells
/// their waiters, in the order written.
fn sync_loop(wal: &File, written: mpsc::Receiver<GroupWritten>) {
    let sync_seconds = metrics::histogram!("mom_store_sync_seconds");
    while let Ok(first) = written.recv() {
        let mut round = vec![first];
        while let Ok(next) = written.try_recv() {
            round.push(next);
        }
        if round.iter().any(|w| w.sync) {
            let started = std::time::Instant::now();
            if let Err(e) = wal.sync_data() {
                tracing::error!(error = %e, "cannot fsync the WAL; stopping the node");
                std::process::exit(70);
            }
            sync_seconds.record(started.elapsed().as_secs_f64());
        }
        for done in round.into_iter().flat_map(|w| w.waiters) {
            let _ = done.send(());
        }
    }
}

/// Splits a batch into the commits that can go before everything else in it, and the rest,
/// in order. A commit applies entries that were durable before it was submitted (the HW never
/// passes a replica's durable end), so it depends on no append queued with it; it is still
/// kept behind any earlier write to its partition's log in the batch, to depend on nothing
/// but that rule. Writes to other partitions touch other rows, in any order.
fn hoist_commits(batch: Vec<Queued>) -> (Vec<Queued>, Vec<Queued>) {
    let mut touched: std::collections::HashSet<u32> = std::collections::HashSet::new();
    let (mut commits, mut rest) = (Vec::new(), Vec::with_capacity(batch.len()));
    for queued in batch {
        match &queued.0 {
            Write::Commit { partition, .. } if !touched.contains(partition) => commits.push(queued),
            Write::Commit { .. } | Write::Barrier => rest.push(queued),
            write => {
                if let Some(partition) = write.partition() {
                    touched.insert(partition);
                }
                rest.push(queued);
            }
        }
    }
    (commits, rest)
}

/// What one written transaction leaves to do: whether its waiters need an fsync first, and
/// whether they must be told only after every earlier write (a barrier's promise). Handed
/// to the syncer, in the order written, unless it is told at once.
struct GroupWritten {
    sync: bool,
    ordered: bool,
    waiters: Vec<oneshot::Sender<()>>,
}

impl GroupWritten {
    /// A group of commits and forgotten ids (which need no fsync, see `must_sync`) is told as
    /// soon as it is written; a group with a write that must be durable, or with a barrier
    /// (which waits for everything before it), goes through the syncer, in order.
    fn told_at_once(&self) -> bool {
        !self.sync && !self.ordered
    }
}

/// How long writing a group's transaction took, by whether it holds durable writes; made
/// once, like [`QueueWaits`].
struct CommitTimes {
    durable: metrics::Histogram,
    written: metrics::Histogram,
}

impl CommitTimes {
    fn new() -> CommitTimes {
        let time = |durability: &'static str| metrics::histogram!("mom_store_commit_seconds", "durability" => durability);
        CommitTimes {
            durable: time("fsync"),
            written: time("written"),
        }
    }
}

/// Writes `group` as one transaction (not fsync'd: see the module's comment).
fn commit_group(conn: &mut Connection, group: Vec<Queued>, times: &CommitTimes) -> GroupWritten {
    let sync = group.iter().any(|(write, _, _)| must_sync(write));
    let ordered = group
        .iter()
        .any(|(write, _, _)| matches!(write, Write::Barrier));
    let started = std::time::Instant::now();
    let outcome = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
        for (write, _, _) in &group {
            execute(&tx, write)?;
        }
        tx.commit()
    })();
    if let Err(e) = outcome {
        tracing::error!(error = %e, "storage write failed; stopping the node");
        std::process::exit(70);
    }
    let time = if sync { &times.durable } else { &times.written };
    time.record(started.elapsed().as_secs_f64());
    metrics::counter!("mom_store_writes_total").increment(group.len() as u64);
    GroupWritten {
        sync,
        ordered,
        waiters: group.into_iter().map(|(_, _, done)| done).collect(),
    }
}

fn set_hw(tx: &Transaction<'_>, partition: u32, hw: Offset) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO partitions (partition, log_start, prev_epoch, hw) VALUES (?1, 0, 0, ?2)
         ON CONFLICT(partition) DO UPDATE SET hw = MAX(hw, excluded.hw)",
    )?
    .execute(params![partition, hw as i64])?;
    Ok(())
}

fn execute(tx: &Transaction<'_>, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::Append { partition, entries } => {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO log (pos, epoch, message_id, published_at_ms, record)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for entry in entries {
                // Only publishes carry an id, and their time.
                let published_at = entry
                    .data
                    .message_id
                    .as_ref()
                    .and_then(|_| crate::records::published_at_ms(&entry.data.bytes))
                    .map(|ms| ms.min(i64::MAX as u64) as i64);
                insert.execute(params![
                    log_pos(*partition, entry.offset),
                    entry.epoch as i64,
                    entry.data.message_id,
                    published_at,
                    entry.data.bytes
                ])?;
            }
        }
        Write::Truncate { partition, from } => {
            let (from, end) = log_range(*partition, *from);
            tx.execute(
                "DELETE FROM log WHERE pos >= ?1 AND pos < ?2",
                params![from, end],
            )?;
        }
        Write::Reset {
            partition,
            start,
            prev_epoch,
        } => {
            // The dedup table stays: its ids are of committed publishes, true whatever the
            // log restarts from (a follower reset behind its leader's log start would
            // otherwise forget ids the leader still honours, and lead without them).
            remember_ids(tx, *partition, None)?;
            delete_log(tx, *partition, u64::MAX)?;
            for table in ["pending", "history"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE partition = ?1"),
                    params![partition],
                )?;
            }
            tx.execute(
                "INSERT INTO partitions (partition, log_start, prev_epoch, hw) VALUES (?1, ?2, ?3, ?2)
                 ON CONFLICT(partition) DO UPDATE SET log_start = ?2, prev_epoch = ?3, hw = ?2",
                params![partition, *start as i64, *prev_epoch as i64],
            )?;
        }
        Write::Commit { partition, hw } => apply(tx, *partition, *hw)?,
        Write::Compact {
            partition,
            start,
            prev_epoch,
        } => {
            remember_ids(tx, *partition, Some(*start))?;
            delete_log(tx, *partition, *start)?;
            tx.execute(
                "INSERT INTO partitions (partition, log_start, prev_epoch, hw) VALUES (?1, ?2, ?3, ?2)
                 ON CONFLICT(partition) DO UPDATE SET log_start = ?2, prev_epoch = ?3",
                params![partition, *start as i64, *prev_epoch as i64],
            )?;
        }
        Write::Drop { partition } => {
            delete_log(tx, *partition, u64::MAX)?;
            for table in ["pending", "dedup", "history", "partitions"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE partition = ?1"),
                    params![partition],
                )?;
            }
        }
        Write::ForgetIds {
            partition,
            published_before_ms,
        } => {
            tx.prepare_cached("DELETE FROM dedup WHERE partition = ?1 AND published_at_ms < ?2")?
                .execute(params![partition, *published_before_ms as i64])?;
        }
        Write::Barrier => {}
    }
    Ok(())
}

/// Deletes a partition's log entries before `before` (all of them with `u64::MAX`).
fn delete_log(tx: &Transaction<'_>, partition: u32, before: Offset) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM log WHERE pos >= ?1 AND pos < ?2")?
        .execute(params![log_pos(partition, 0), log_pos(partition, before)])?;
    Ok(())
}

/// Copies the message ids of applied publishes below `before` (all applied ones if `None`)
/// from the log into `dedup`, as their entries are about to leave the log: an id is found in
/// the log (`log_by_message_id`) while its entry is there, and in `dedup` after, until the
/// deduplication window forgets it. Done here rather than as each publish is applied, which
/// wrote two more b-trees per message on the hot path. Entries not applied (above the HW)
/// are not copied: they may be truncated, and a retry of a publish never committed must be
/// stored, not taken as a duplicate.
fn remember_ids(
    tx: &Transaction<'_>,
    partition: u32,
    before: Option<Offset>,
) -> rusqlite::Result<()> {
    let applied: i64 = tx
        .prepare_cached("SELECT MAX(hw, log_start) FROM partitions WHERE partition = ?1")?
        .query_row(params![partition], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let until = before.map_or(applied, |b| (b as i64).min(applied));
    let range = (log_pos(partition, 0), log_pos(partition, until as u64));
    // In SQL, reading no record: a copy of every compacted record into the writer took a
    // quarter of its time while a large backlog was consumed. An entry without a publish time
    // (moved from an older layout) counts as published now, which keeps its id at least as
    // long as the window asks.
    tx.prepare_cached(
        "INSERT OR IGNORE INTO dedup (partition, message_id, offset, published_at_ms)
         SELECT ?1, message_id, pos - ?2, COALESCE(published_at_ms, ?4) FROM log
         WHERE pos >= ?2 AND pos < ?3 AND message_id IS NOT NULL",
    )?
    .execute(params![
        partition,
        range.0,
        range.1,
        crate::service::now_ms() as i64
    ])?;
    Ok(())
}

/// Applies the partition's entries from its applied HW up to `hw`, in offset order.
fn apply(tx: &Transaction<'_>, partition: u32, hw: Offset) -> rusqlite::Result<()> {
    let applied: i64 = tx
        .prepare_cached("SELECT MAX(hw, log_start) FROM partitions WHERE partition = ?1")?
        .query_row(params![partition], |row| row.get(0))
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(0),
            e => Err(e),
        })?;
    if applied as u64 >= hw {
        return Ok(());
    }
    let range = (log_pos(partition, applied as u64), log_pos(partition, hw));
    let entries: Vec<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT pos, record FROM log WHERE pos >= ?1 AND pos < ?2 ORDER BY pos")?
        .query_map(params![range.0, range.1], |row| {
            Ok((offset_of(row.get(0)?) as i64, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (offset, bytes) in entries {
        match Record::decode(&bytes) {
            Some(Kind::Publish(publish)) => {
                let expires = (publish.expires_at_ms > 0).then_some(publish.expires_at_ms as i64);
                let visible = (publish.deliver_at_ms > 0).then_some(publish.deliver_at_ms as i64);
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO pending (mailbox, partition, offset, expires_at_ms, visible_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for mailbox in &publish.mailboxes {
                    insert.execute(params![mailbox, partition, offset, expires, visible])?;
                }
                if publish.retain_until_ms > 0 {
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO history (partition, offset, topic, published_at_ms, retain_until_ms, expires_at_ms, bytes)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        partition,
                        offset,
                        publish.exchange,
                        publish.published_at_ms as i64,
                        publish.retain_until_ms.min(i64::MAX as u64) as i64,
                        expires,
                        publish.payload.len() as i64
                    ])?;
                }
            }
            Some(Kind::Acks(acks)) => {
                let mut delete = tx.prepare_cached(
                    "DELETE FROM pending WHERE mailbox = ?1 AND partition = ?2 AND offset = ?3",
                )?;
                for acked in &acks.acked {
                    delete.execute(params![acked.mailbox, partition, acked.offset as i64])?;
                }
            }
            Some(Kind::Purge(purge)) => {
                tx.prepare_cached("DELETE FROM pending WHERE mailbox = ?1 AND partition = ?2")?
                    .execute(params![purge.mailbox, partition])?;
                if !purge.history_of_topic.is_empty() {
                    tx.prepare_cached("DELETE FROM history WHERE topic = ?1 AND partition = ?2")?
                        .execute(params![purge.history_of_topic, partition])?;
                }
            }
            Some(Kind::Replay(replay)) => {
                // Entries applied before this one only: later publishes reach the new
                // subscription through routing. INSERT OR IGNORE: a message routed to it as
                // well is there once.
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO pending (mailbox, partition, offset, expires_at_ms)
                     SELECT ?1, partition, offset, expires_at_ms FROM history
                     WHERE topic = ?2 AND partition = ?3 AND offset >= ?4 AND offset < ?5
                       AND published_at_ms >= ?6 AND retain_until_ms > ?7",
                )?
                .execute(params![
                    replay.mailbox,
                    replay.topic,
                    partition,
                    replay.from_offset.min(i64::MAX as u64) as i64,
                    offset,
                    replay.from_time_ms.min(i64::MAX as u64) as i64,
                    replay.at_ms.min(i64::MAX as u64) as i64
                ])?;
            }
            Some(Kind::Expire(expire)) => {
                tx.prepare_cached(
                    "DELETE FROM pending WHERE partition = ?1 AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?2",
                )?
                .execute(params![partition, expire.until_ms as i64])?;
                tx.prepare_cached(
                    "DELETE FROM history WHERE partition = ?1 AND retain_until_ms <= ?2",
                )?
                .execute(params![partition, expire.until_ms as i64])?;
            }
            Some(Kind::EpochStart(_)) | None => {}
        }
    }
    set_hw(tx, partition, hw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(write: Write) -> Queued {
        (write, std::time::Instant::now(), oneshot::channel().0)
    }

    fn kinds(group: &[Queued]) -> Vec<String> {
        group
            .iter()
            .map(|(write, _, _)| match write {
                Write::Append { partition, .. } => format!("append {partition}"),
                Write::Commit { partition, hw } => format!("commit {partition}@{hw}"),
                Write::Barrier => "barrier".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn commits_go_first_unless_their_partition_was_written_before_them_in_the_batch() {
        let batch = vec![
            queued(Write::Append {
                partition: 1,
                entries: vec![],
            }),
            queued(Write::Barrier),
            queued(Write::Commit {
                partition: 2,
                hw: 5,
            }),
            queued(Write::Commit {
                partition: 1,
                hw: 7,
            }),
            queued(Write::Append {
                partition: 2,
                entries: vec![],
            }),
            queued(Write::Commit {
                partition: 2,
                hw: 6,
            }),
        ];
        let (commits, rest) = hoist_commits(batch);
        assert_eq!(kinds(&commits), ["commit 2@5"]);
        assert_eq!(
            kinds(&rest),
            [
                "append 1",
                "barrier",
                "commit 1@7",
                "append 2",
                "commit 2@6"
            ]
        );
    }

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = crate::store::open_connection(&path).unwrap();
        conn.execute_batch(crate::store::SCHEMA).unwrap();
        let wal = crate::store::open_wal(&conn).unwrap();
        let writer = Writer::start(conn, wal);
        (dir, writer)
    }

    fn append(partition: u32, offset: Offset) -> Write {
        Write::Append {
            partition,
            entries: vec![Entry {
                offset,
                epoch: 1,
                data: Record {
                    message_id: None,
                    bytes: vec![1; 100],
                },
            }],
        }
    }

    #[test]
    fn only_groups_without_durable_writes_or_barriers_are_told_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open_connection(&dir.path().join("w.db")).unwrap();
        conn.execute_batch(crate::store::SCHEMA).unwrap();
        let mut told_at_once = |writes: Vec<Write>| {
            commit_group(
                &mut conn,
                writes.into_iter().map(queued).collect(),
                &CommitTimes::new(),
            )
            .told_at_once()
        };
        assert!(told_at_once(vec![Write::Commit {
            partition: 0,
            hw: 0
        }]));
        assert!(told_at_once(vec![Write::ForgetIds {
            partition: 0,
            published_before_ms: 0
        }]));
        assert!(!told_at_once(vec![Write::Barrier]));
        assert!(!told_at_once(vec![
            Write::Commit {
                partition: 1,
                hw: 0
            },
            append(0, 0)
        ]));
        assert!(!told_at_once(vec![Write::Truncate {
            partition: 0,
            from: 0
        }]));
    }

    #[test]
    fn a_barrier_is_told_only_after_every_write_before_it() {
        let (_dir, writer) = writer();
        for round in 0..200 {
            let appended: Vec<_> = (0..4).map(|p| writer.submit(append(p, round))).collect();
            let barrier = writer.submit(Write::Barrier);
            barrier.blocking_recv().unwrap();
            for mut done in appended {
                assert!(
                    done.try_recv().is_ok(),
                    "round {round}: an append was not told yet"
                );
            }
        }
    }

    #[test]
    fn the_syncer_syncs_the_file_sqlite_writes_its_wal_to() {
        let dir = tempfile::tempdir().unwrap();
        // Through a symlink: SQLite names the WAL after the file the link points to.
        let real = dir.path().join("real.db");
        let link = dir.path().join("link.db");
        std::fs::File::create(&real).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let conn = crate::store::open_connection(&link).unwrap();
        conn.execute_batch(crate::store::SCHEMA).unwrap();
        let wal = crate::store::wal_path(&conn).unwrap();
        assert_eq!(wal, dir.path().join("real.db-wal"));
        let wal_file = crate::store::open_wal(&conn).unwrap();
        let writer = Writer::start(conn, wal_file);
        writer.submit(append(0, 0)).blocking_recv().unwrap();
        assert!(
            std::fs::metadata(&wal).unwrap().len() > 0,
            "{}",
            wal.display()
        );
    }
}
