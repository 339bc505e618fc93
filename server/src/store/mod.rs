//! Durable storage of one node: every partition's log and the state applied from it, in one
//! SQLite database (WAL mode).
//!
//! - `log`: the entries of each partition log, `(partition, offset)`, with their leader epoch.
//!   Publishes carry the payload, headers and content type; nothing else stores them.
//! - `pending`: the applied state, one row per message still waiting in a mailbox, naming the
//!   log entry that holds it. Only entries below the partition's high watermark are applied,
//!   so the state never needs undoing when a follower truncates an uncommitted suffix.
//! - `partitions`: per partition, its log start (entries before it were compacted), the epoch
//!   of the entry just before it, and the high watermark applied.
//!
//! All writes go through one writer thread ([`writer`]), which commits whatever is queued in
//! one transaction and one fsync (group commit) and keeps each partition's writes in order.
//! Reads use their own connection and see only what the writer committed. Checkpoints (the
//! WAL's pages copied into the database) run on a thread of their own ([`checkpointer`]).

mod checkpointer;
mod writer;

pub use writer::Write;

use crate::records::Record;
use mom_common::proto::log_record::Kind;
use mom_replicator::protocol::{Entry, LogOutline, Offset};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create or sync the data files: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The log table, under the name given (the migration below builds it beside the old one).
/// A rowid table, not `WITHOUT ROWID`: a row of a `WITHOUT ROWID` table (an index b-tree)
/// keeps at most ~1,000 bytes of a 4 KiB page in its leaf, so every 1 KiB record spilled its
/// rest into an overflow page of its own: 4 KiB written twice (WAL, then checkpoint) per
/// message, and a database four times its payload. A table b-tree keeps records of up to
/// ~4,000 bytes in the leaf.
///
/// Its rowid `pos` is the entry's partition and offset in one integer ([`log_pos`]), so a
/// partition's entries lie in one rowid range, in offset order: appends, reads and range
/// deletes walk the table b-tree alone. With `(partition, offset)` as a primary key beside
/// the rowid, every append wrote one b-tree more and every read or compacted entry sought
/// through it first (compaction, which deletes consumed entries one by one, took ~1/3 of
/// all CPU while a 150k backlog was consumed).
macro_rules! log_table {
    ($name:literal) => {
        concat!(
            "CREATE TABLE IF NOT EXISTS ",
            $name,
            " (
    pos             INTEGER PRIMARY KEY,
    epoch           INTEGER NOT NULL,
    message_id      TEXT,
    -- A publish's time, copied out of its record so that compaction can remember the id
    -- without reading the record; NULL for other records and entries of older layouts.
    published_at_ms INTEGER,
    record          BLOB    NOT NULL
);
"
        )
    };
}

/// The rowid rides in every index entry, so the first entry of a message id in a partition
/// is read from the index alone.
macro_rules! log_by_message_id {
    () => {
        "CREATE INDEX IF NOT EXISTS log_by_message_id ON log(message_id) WHERE message_id IS NOT NULL;\n"
    };
}

/// Bits of a log row's `pos` below its partition: offsets stay below 2^48 (~2.8 × 10^14
/// entries in one partition, 9 years at a million a second). The migration's SQL writes
/// the same shift as a literal.
const OFFSET_BITS: u32 = 48;
/// Partitions a node's store can hold (their number is fixed when the cluster is made):
/// the end of the last one's key range, `MAX_PARTITIONS << 48`, must fit in an `i64`.
pub const MAX_PARTITIONS: u32 = (1 << 15) - 1;

/// The log row key of `offset` in `partition`; an offset at or past 2^48 maps to the end of
/// the partition's range, so it still serves as an exclusive upper bound.
fn log_pos(partition: u32, offset: Offset) -> i64 {
    debug_assert!(partition < MAX_PARTITIONS);
    (i64::from(partition) << OFFSET_BITS) + offset.min(1 << OFFSET_BITS) as i64
}

/// The offset of a log row key.
fn offset_of(pos: i64) -> Offset {
    (pos & ((1 << OFFSET_BITS) - 1)) as u64
}

/// The keys of a partition's log rows from `from` on: `[start, end)`.
fn log_range(partition: u32, from: Offset) -> (i64, i64) {
    (log_pos(partition, from), log_pos(partition, u64::MAX))
}

const SCHEMA: &str = concat!(
    log_table!("log"),
    log_by_message_id!(),
    "
CREATE TABLE IF NOT EXISTS pending (
    mailbox       TEXT    NOT NULL,
    partition     INTEGER NOT NULL,
    offset        INTEGER NOT NULL,
    expires_at_ms INTEGER,
    -- A delayed message: not delivered before this time; NULL: at once.
    visible_at_ms INTEGER,
    PRIMARY KEY (mailbox, partition, offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_partition ON pending(partition, offset);
CREATE INDEX IF NOT EXISTS pending_by_expiry ON pending(partition, expires_at_ms) WHERE expires_at_ms IS NOT NULL;
-- Ids of applied publishes whose entries left the log (compaction, reset), kept for the
-- deduplication window: a retry of a consumed message is still stored once. While its entry
-- is in the log, an id is found through log_by_message_id.
CREATE TABLE IF NOT EXISTS dedup (
    partition       INTEGER NOT NULL,
    message_id      TEXT    NOT NULL,
    offset          INTEGER NOT NULL,
    published_at_ms INTEGER NOT NULL,
    PRIMARY KEY (partition, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_by_age ON dedup(partition, published_at_ms);
-- Topic messages retained for new subscriptions (the topic's retention), by log entry.
CREATE TABLE IF NOT EXISTS history (
    partition       INTEGER NOT NULL,
    offset          INTEGER NOT NULL,
    topic           TEXT    NOT NULL,
    published_at_ms INTEGER NOT NULL,
    retain_until_ms INTEGER NOT NULL,
    expires_at_ms   INTEGER,
    bytes           INTEGER NOT NULL,
    PRIMARY KEY (partition, offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_by_topic ON history(topic, partition, offset);
CREATE INDEX IF NOT EXISTS history_by_age ON history(partition, retain_until_ms);
CREATE TABLE IF NOT EXISTS partitions (
    partition  INTEGER PRIMARY KEY,
    log_start  INTEGER NOT NULL,
    prev_epoch INTEGER NOT NULL,
    hw         INTEGER NOT NULL
);
"
);

/// A message waiting in a mailbox, with what a delivery needs.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    pub offset: Offset,
    pub message_id: String,
    pub exchange: String,
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub published_at_ms: u64,
    /// The publisher's headers and content type (empty: none), as the record holds them.
    pub headers: BTreeMap<String, String>,
    pub content_type: String,
}

impl PendingMessage {
    fn of(offset: Offset, publish: mom_common::proto::Publish) -> PendingMessage {
        PendingMessage {
            offset,
            message_id: publish.message_id,
            exchange: publish.exchange,
            routing_key: publish.routing_key,
            payload: publish.payload,
            published_at_ms: publish.published_at_ms,
            headers: publish.headers,
            content_type: publish.content_type,
        }
    }

    /// About how many bytes the message takes in a delivery: its payload, headers and
    /// content type.
    pub fn size(&self) -> usize {
        self.payload.len()
            + self.content_type.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// Most rows a read may touch to run in place on an async thread when the reader is free
/// (index lookups and short scans in the page cache take microseconds): handing the thread's
/// other tasks away (`block_in_place`) costs more than such a read.
pub const MAX_ROWS_READ_IN_PLACE: usize = 32;

pub struct Store {
    /// Reads only; the writer thread owns the connection that writes.
    reader: Mutex<Connection>,
    writer: writer::Writer,
    _checkpointer: checkpointer::Checkpointer,
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is fsync'd before it returns. The writer sets NORMAL on its own
    // connection and has its syncer fsync the WAL instead (see `writer`).
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn partition_row(conn: &Connection, partition: u32) -> Result<(Offset, u64, Offset)> {
    Ok(conn
        .query_row(
            "SELECT log_start, prev_epoch, hw FROM partitions WHERE partition = ?1",
            params![partition],
            |row| {
                Ok((
                    row.get::<_, i64>(0)? as u64,
                    row.get::<_, i64>(1)? as u64,
                    row.get::<_, i64>(2)? as u64,
                ))
            },
        )
        .optional()?
        .unwrap_or((0, 0, 0)))
}

/// Data directories from before delayed delivery have no `pending.visible_at_ms`: add it
/// (NULL for every waiting message, which is what they were: deliverable at once).
fn add_visible_at_column(conn: &Connection) -> Result<()> {
    let present = conn
        .prepare("SELECT 1 FROM pragma_table_info('pending') WHERE name = 'visible_at_ms'")?
        .exists([])?;
    if !present {
        conn.execute_batch("ALTER TABLE pending ADD COLUMN visible_at_ms INTEGER")?;
    }
    Ok(())
}

/// Data directories from before the log was keyed by `pos` hold it with `partition` and
/// `offset` columns (as a `WITHOUT ROWID` table, or a rowid table with those as primary key),
/// and for a while it was keyed without `published_at_ms`: copy such a log into the current
/// layout, in one transaction (a crash midway leaves the old table as it was). The moved
/// entries carry no publish time (compaction stamps their ids with its own).
fn move_log_to_keyed_table(conn: &mut Connection) -> Result<()> {
    let has_column = |column: &str| -> Result<bool> {
        Ok(conn
            .prepare("SELECT 1 FROM pragma_table_info('log') WHERE name = ?1")?
            .exists([column])?)
    };
    let key = if has_column("published_at_ms")? || !has_column("record")? {
        return Ok(());
    } else if has_column("pos")? {
        "pos"
    } else {
        "(partition << 48) + offset"
    };
    tracing::info!("moving the log to its keyed layout (once)");
    let tx = conn.transaction()?;
    tx.execute_batch(log_table!("log_keyed"))?;
    tx.execute_batch(&format!(
        "INSERT INTO log_keyed (pos, epoch, message_id, record)
             SELECT {key}, epoch, message_id, record FROM log;
         DROP TABLE log;
         ALTER TABLE log_keyed RENAME TO log;
         {}",
        log_by_message_id!()
    ))?;
    tx.commit()?;
    Ok(())
}

/// The WAL file of the database `conn` has open, as SQLite names it: after the database's
/// full path as SQLite resolved it (through symlinks), plus `-wal`.
fn wal_path(conn: &Connection) -> Result<std::path::PathBuf> {
    let database = conn.path().filter(|p| !p.is_empty()).ok_or_else(|| {
        StoreError::Io(std::io::Error::other("the database has no file, so no WAL"))
    })?;
    Ok(format!("{database}-wal").into())
}

/// Opens the WAL for the writer's syncer, which keeps it open for the process's life: a
/// disk write error is reported to every descriptor open when it happened, so a descriptor
/// opened later could miss one another connection (the checkpointer's) already saw, and be
/// told "synced". SQLite never deletes the WAL while a connection has the database open.
/// The WAL is synced once here, before anything reads the log: a node killed before its last
/// fsync finds transactions that reached the page cache but not the disk, and would
/// otherwise report them as its durable log end.
fn open_wal(conn: &Connection) -> Result<std::fs::File> {
    let wal = std::fs::File::open(wal_path(conn)?)?;
    wal.sync_data()?;
    Ok(wal)
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = open_connection(path)?;
        // Before the schema: its `CREATE ... IF NOT EXISTS` would otherwise meet the old log.
        move_log_to_keyed_table(&mut conn)?;
        conn.execute_batch(SCHEMA)?;
        add_visible_at_column(&conn)?;
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            checkpointer::WRITER_AUTOCHECKPOINT_PAGES,
        )?;
        // The schema's statements opened the WAL, so it exists now.
        let wal = open_wal(&conn)?;
        let reader = open_connection(path)?;
        let checkpointer = checkpointer::Checkpointer::start(open_connection(path)?)?;
        Ok(Store {
            reader: Mutex::new(reader),
            writer: writer::Writer::start(conn, wal),
            _checkpointer: checkpointer,
        })
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Reads cannot leave the connection half-done, so a poisoned lock is still usable.
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `read` on the reader from an async task: in place if it is `small` (see
    /// [`MAX_ROWS_READ_IN_PLACE`]) and the reader is free now, else on this thread once its
    /// other tasks are handed to another (`block_in_place`), so a long read or a wait for the
    /// reader stalls no other task.
    pub fn read<T>(&self, small: bool, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if small {
            if let Some(conn) = self.free_reader() {
                return read(&conn);
            }
        }
        tokio::task::block_in_place(|| read(&self.reader()))
    }

    /// Runs `read` in place if the reader is free now (for reads that stay small, see
    /// [`MAX_ROWS_READ_IN_PLACE`]); `None`, having run nothing, if another read holds it.
    pub fn read_in_place<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T>,
    ) -> Option<Result<T>> {
        self.free_reader().map(|conn| read(&conn))
    }

    /// The reader if no other read holds it now.
    fn free_reader(&self) -> Option<std::sync::MutexGuard<'_, Connection>> {
        match self.reader.try_lock() {
            Ok(conn) => Some(conn),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Queues a write; the receiver fires once it is durable.
    pub fn submit(&self, write: Write) -> tokio::sync::oneshot::Receiver<()> {
        self.writer.submit(write)
    }

    /// Queues a write nobody waits for; later writes still come after it.
    pub fn submit_detached(&self, write: Write) {
        drop(self.writer.submit(write));
    }

    /// The log's outline and the applied HW of a partition, to restart its replica from.
    pub fn outline(&self, partition: u32) -> Result<(LogOutline, Offset)> {
        let conn = self.reader();
        let (start, prev_epoch, hw) = partition_row(&conn, partition)?;
        let mut log = LogOutline {
            start,
            end: start,
            prev_epoch,
            epochs: Vec::new(),
        };
        let mut epochs = conn.prepare_cached(
            "SELECT epoch, MIN(pos), MAX(pos) FROM log WHERE pos >= ?1 AND pos < ?2
             GROUP BY epoch ORDER BY epoch",
        )?;
        let (first_pos, end_pos) = log_range(partition, 0);
        let rows = epochs.query_map(params![first_pos, end_pos], |row| {
            Ok((
                row.get::<_, i64>(0)? as u64,
                offset_of(row.get(1)?),
                offset_of(row.get(2)?),
            ))
        })?;
        for row in rows {
            let (epoch, first, last) = row?;
            log.epochs.push((epoch, first.max(start)));
            log.end = log.end.max(last + 1);
        }
        Ok((log, hw))
    }

    /// Entries `[from, to)` of a partition's log, as far as the log holds them.
    pub fn entries(&self, partition: u32, from: Offset, to: Offset) -> Result<Vec<Entry<Record>>> {
        let conn = self.reader();
        let mut select = conn.prepare_cached(
            "SELECT pos, epoch, message_id, record FROM log
             WHERE pos >= ?1 AND pos < ?2 ORDER BY pos",
        )?;
        let range = (log_pos(partition, from), log_pos(partition, to));
        let rows = select.query_map(params![range.0, range.1], |row| {
            Ok(Entry {
                offset: offset_of(row.get(0)?),
                epoch: row.get::<_, i64>(1)? as u64,
                data: Record {
                    message_id: row.get(2)?,
                    bytes: row.get(3)?,
                },
            })
        })?;
        let mut entries = Vec::new();
        for row in rows {
            let entry = row?;
            // Stop at a gap: what follows cannot be sent as one contiguous run.
            if entry.offset != from + entries.len() as u64 {
                break;
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    /// The offset of the publish with this message id in a partition's log, or of one
    /// applied within the deduplication window (its entry perhaps compacted away), if any.
    pub fn find_message(&self, partition: u32, message_id: &str) -> Result<Option<Offset>> {
        Ok(Self::find_messages_with(&self.reader(), partition, [Some(message_id)])?[0])
    }

    /// [`Store::find_message`] for each id of a publish call (`None`: a record without one),
    /// under one hold of the reader.
    pub fn find_messages_with<'a>(
        conn: &Connection,
        partition: u32,
        message_ids: impl IntoIterator<Item = Option<&'a str>>,
    ) -> Result<Vec<Option<Offset>>> {
        let mut in_log = conn.prepare_cached(
            "SELECT pos FROM log WHERE message_id = ?1 AND pos >= ?2 AND pos < ?3
             ORDER BY pos LIMIT 1",
        )?;
        let (first_pos, end_pos) = log_range(partition, 0);
        let mut in_dedup = conn
            .prepare_cached("SELECT offset FROM dedup WHERE partition = ?1 AND message_id = ?2")?;
        let mut found = Vec::new();
        for message_id in message_ids {
            let Some(message_id) = message_id else {
                found.push(None);
                continue;
            };
            let in_log = in_log
                .query_row(params![message_id, first_pos, end_pos], |row| {
                    row.get::<_, i64>(0)
                })
                .optional()?
                .map(offset_of);
            let offset = match in_log {
                Some(offset) => Some(offset),
                None => in_dedup
                    .query_row(params![partition, message_id], |row| row.get::<_, i64>(0))
                    .optional()?
                    .map(|o| o as u64),
            };
            found.push(offset);
        }
        Ok(found)
    }

    /// Offsets of the messages waiting in `mailbox` in one partition, oldest first, leaving
    /// out expired ones and delayed ones not due yet; at most `limit`. Reads no payloads: a
    /// pull skips the leased ones among them before it reads any message
    /// ([`Store::pending_at_offsets`]), and with a large prefetch most of them are leased.
    pub fn pending_offsets(
        conn: &Connection,
        mailbox: &str,
        partition: u32,
        limit: u32,
        now_ms: u64,
    ) -> Result<Vec<Offset>> {
        let mut select = conn.prepare_cached(
            "SELECT offset FROM pending
             WHERE mailbox = ?1 AND partition = ?2
               AND (expires_at_ms IS NULL OR expires_at_ms > ?3)
               AND (visible_at_ms IS NULL OR visible_at_ms <= ?3)
             ORDER BY offset LIMIT ?4",
        )?;
        let rows = select.query_map(params![mailbox, partition, now_ms as i64, limit], |row| {
            Ok(row.get::<_, i64>(0)? as u64)
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The messages at `offsets` that still wait in `mailbox` in one partition (unexpired and
    /// due), in the order given: checked again here, as an ack may have been applied since
    /// the offsets were read.
    pub fn pending_at_offsets(
        conn: &Connection,
        mailbox: &str,
        partition: u32,
        offsets: &[Offset],
        now_ms: u64,
    ) -> Result<Vec<PendingMessage>> {
        let mut select = conn.prepare_cached(
            "SELECT l.record FROM pending p, log l
             WHERE p.mailbox = ?1 AND p.partition = ?2 AND p.offset = ?3
               AND (p.expires_at_ms IS NULL OR p.expires_at_ms > ?4)
               AND (p.visible_at_ms IS NULL OR p.visible_at_ms <= ?4)
               AND l.pos = ?5",
        )?;
        let mut messages = Vec::with_capacity(offsets.len());
        for &offset in offsets {
            let pos = log_pos(partition, offset);
            let bytes: Option<Vec<u8>> = select
                .query_row(
                    params![mailbox, partition, offset as i64, now_ms as i64, pos],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(Kind::Publish(publish)) = bytes.as_deref().and_then(Record::decode) {
                messages.push(PendingMessage::of(offset, publish));
            }
        }
        Ok(messages)
    }

    /// The message at `offset` if it still waits in `mailbox` (not acked, purged, expired),
    /// visible or not.
    pub fn pending_at(
        &self,
        mailbox: &str,
        partition: u32,
        offset: Offset,
        now_ms: u64,
    ) -> Result<Option<PendingMessage>> {
        let conn = self.reader();
        let bytes: Option<Vec<u8>> = conn
            .prepare_cached(
                "SELECT l.record FROM pending p, log l
                 WHERE p.mailbox = ?1 AND p.partition = ?2 AND p.offset = ?3
                   AND (p.expires_at_ms IS NULL OR p.expires_at_ms > ?4)
                   AND l.pos = ?5",
            )?
            .query_row(
                params![
                    mailbox,
                    partition,
                    offset as i64,
                    now_ms as i64,
                    log_pos(partition, offset)
                ],
                |row| row.get(0),
            )
            .optional()?;
        Ok(bytes.and_then(|b| match Record::decode(&b) {
            Some(Kind::Publish(publish)) => Some(PendingMessage::of(offset, publish)),
            _ => None,
        }))
    }

    /// Which of `offsets` still wait in `mailbox` (not acked, purged, expired), in order.
    pub fn are_pending_with(
        conn: &Connection,
        mailbox: &str,
        partition: u32,
        offsets: &[Offset],
        now_ms: u64,
    ) -> Result<Vec<bool>> {
        let mut select = conn.prepare_cached(
            "SELECT 1 FROM pending WHERE mailbox = ?1 AND partition = ?2 AND offset = ?3
               AND (expires_at_ms IS NULL OR expires_at_ms > ?4)",
        )?;
        offsets
            .iter()
            .map(|offset| {
                let exists =
                    select.exists(params![mailbox, partition, *offset as i64, now_ms as i64])?;
                Ok(exists)
            })
            .collect()
    }

    /// Unexpired messages waiting in `mailbox` in one partition (delayed ones once due).
    pub fn count_pending(&self, mailbox: &str, partition: u32, now_ms: u64) -> Result<u64> {
        let conn = self.reader();
        let count: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM pending WHERE mailbox = ?1 AND partition = ?2
                   AND (expires_at_ms IS NULL OR expires_at_ms > ?3)
                   AND (visible_at_ms IS NULL OR visible_at_ms <= ?3)",
            )?
            .query_row(params![mailbox, partition, now_ms as i64], |row| row.get(0))?;
        Ok(count as u64)
    }

    /// How many unexpired messages wait in each mailbox of a partition (for metrics; delayed
    /// ones once due).
    pub fn pending_by_mailbox(&self, partition: u32, now_ms: u64) -> Result<Vec<(String, u64)>> {
        let conn = self.reader();
        let mut query = conn.prepare_cached(
            "SELECT mailbox, COUNT(*) FROM pending WHERE partition = ?1
               AND (expires_at_ms IS NULL OR expires_at_ms > ?2)
               AND (visible_at_ms IS NULL OR visible_at_ms <= ?2) GROUP BY mailbox",
        )?;
        let rows = query.query_map(params![partition, now_ms as i64], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// When the next delayed message of `mailbox` in this partition becomes deliverable, if
    /// one waits: a pull waiting for messages is woken then.
    pub fn next_visible_at(
        &self,
        mailbox: &str,
        partition: u32,
        now_ms: u64,
    ) -> Result<Option<u64>> {
        let conn = self.reader();
        let at: Option<i64> = conn
            .prepare_cached(
                "SELECT MIN(visible_at_ms) FROM pending WHERE mailbox = ?1 AND partition = ?2
                   AND visible_at_ms > ?3",
            )?
            .query_row(params![mailbox, partition, now_ms as i64], |row| row.get(0))?;
        Ok(at.map(|t| t as u64))
    }

    /// How many messages of `topic` this partition retains for new subscriptions, their
    /// payload bytes, and the publish time of the oldest (if any).
    pub fn history(
        &self,
        topic: &str,
        partition: u32,
        now_ms: u64,
    ) -> Result<(u64, u64, Option<u64>)> {
        let conn = self.reader();
        let (count, bytes, oldest): (i64, Option<i64>, Option<i64>) = conn
            .prepare_cached(
                "SELECT COUNT(*), SUM(bytes), MIN(published_at_ms) FROM history
                 WHERE topic = ?1 AND partition = ?2 AND retain_until_ms > ?3",
            )?
            .query_row(params![topic, partition, now_ms as i64], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        Ok((
            count as u64,
            bytes.unwrap_or(0) as u64,
            oldest.map(|t| t as u64),
        ))
    }

    /// Where the partition's log may be compacted up to: below the applied HW and below the
    /// oldest entry a waiting or retained message still needs, read from one snapshot. (The protocol's HW
    /// may be ahead of what is applied; entries between them may still become messages.)
    pub fn compaction_point(&self, partition: u32) -> Result<Offset> {
        let mut conn = self.reader();
        let tx = conn.transaction()?;
        let (_, _, hw) = partition_row(&tx, partition)?;
        let oldest: Option<i64> = tx
            .prepare_cached(
                "SELECT MIN(o) FROM (SELECT MIN(offset) AS o FROM pending WHERE partition = ?1
                 UNION ALL SELECT MIN(offset) FROM history WHERE partition = ?1)",
            )?
            .query_row(params![partition], |row| row.get(0))?;
        Ok(oldest.map_or(hw, |o| (o as u64).min(hw)))
    }

    /// Whether some message of the partition expired at or before `now_ms`.
    pub fn has_expired(&self, partition: u32, now_ms: u64) -> Result<bool> {
        let conn = self.reader();
        let exists = conn
            .prepare_cached(
                "SELECT 1 FROM pending WHERE partition = ?1 AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?2
                 UNION ALL SELECT 1 FROM history WHERE partition = ?1 AND retain_until_ms <= ?2 LIMIT 1",
            )?
            .exists(params![partition, now_ms as i64])?;
        Ok(exists)
    }

    /// Whether this node holds anything of a partition.
    pub fn holds(&self, partition: u32) -> Result<bool> {
        let (first_pos, end_pos) = log_range(partition, 0);
        let conn = self.reader();
        let holds = conn
            .prepare_cached(
                "SELECT 1 FROM partitions WHERE partition = ?1
                 UNION ALL SELECT 1 FROM log WHERE pos >= ?2 AND pos < ?3 LIMIT 1",
            )?
            .exists(params![partition, first_pos, end_pos])?;
        Ok(holds)
    }
}

#[cfg(test)]
mod tests;
