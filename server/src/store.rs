//! Durable message storage of one node: SQLite in WAL mode, fsync'd on every commit, so a
//! change is on disk before it is acknowledged.
//!
//! Messages belong to partitions. Every change to a partition is a [`Change`] numbered
//! `(epoch, seq)`: the leader decides it and every replica applies the same change, so all
//! copies stay alike. A replica only applies the change that directly follows the last one it
//! has; anything else needs a snapshot from the leader.

use mom_common::proto::{change, Change, Lease, Removal, StoredMessage};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{mpsc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create data directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("change ({epoch}, {seq}) does not follow ({have_epoch}, {have_seq}) of partition {partition}")]
    OutOfOrder {
        partition: u32,
        epoch: u64,
        seq: u64,
        have_epoch: u64,
        have_seq: u64,
    },
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("snapshot of epoch {epoch} is older than epoch {have_epoch} of partition {partition}")]
    StaleSnapshot {
        partition: u32,
        epoch: u64,
        have_epoch: u64,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where a partition's copy stands: the last change applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub epoch: u64,
    pub seq: u64,
}

/// Whether a change must directly follow the stored position (followers) or sets it (leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Must directly follow the stored position.
    Follow,
    /// Sets the position; refused only if the stored epoch is newer.
    Lead,
}

/// Names one delivery of one message: `<message id>:<delivery count>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: String,
    pub delivery_count: u32,
}

impl Receipt {
    pub fn parse(text: &str) -> Option<Receipt> {
        let (message_id, count) = text.rsplit_once(':')?;
        Some(Receipt {
            message_id: message_id.to_owned(),
            delivery_count: count.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.message_id, self.delivery_count)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    pub ready: u64,
    pub leased: u64,
}

pub struct Store {
    conn: Mutex<Connection>,
    queue: Mutex<Vec<PendingChange>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    partition       INTEGER NOT NULL,
    mailbox         TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    exchange        TEXT    NOT NULL,
    routing_key     TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    published_at_ms INTEGER NOT NULL,
    expires_at_ms   INTEGER,
    delivery_count  INTEGER NOT NULL DEFAULT 0,
    visible_at_ms   INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_mailbox_id ON messages(mailbox, message_id);
CREATE INDEX IF NOT EXISTS messages_by_mailbox_partition ON messages(mailbox, partition, seq);
CREATE INDEX IF NOT EXISTS messages_by_partition ON messages(partition, seq);
CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages(expires_at_ms) WHERE expires_at_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS partitions (
    partition INTEGER PRIMARY KEY,
    epoch     INTEGER NOT NULL,
    seq       INTEGER NOT NULL
);
";

const COLUMNS: &str = "mailbox, message_id, exchange, routing_key, payload, published_at_ms, \
                       expires_at_ms, delivery_count, visible_at_ms";

fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        mailbox: row.get(0)?,
        message_id: row.get(1)?,
        exchange: row.get(2)?,
        routing_key: row.get(3)?,
        payload: row.get(4)?,
        published_at_ms: row.get::<_, i64>(5)? as u64,
        expires_at_ms: row.get::<_, Option<i64>>(6)?.unwrap_or(0) as u64,
        delivery_count: row.get(7)?,
        visible_at_ms: row.get::<_, i64>(8)? as u64,
    })
}

fn insert_message(tx: &Connection, partition: u32, m: &StoredMessage) -> rusqlite::Result<()> {
    tx.prepare_cached(&format!("INSERT OR IGNORE INTO messages (partition, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"))?
        .execute(params![
            partition,
            m.mailbox,
            m.message_id,
            m.exchange,
            m.routing_key,
            m.payload,
            m.published_at_ms as i64,
            (m.expires_at_ms > 0).then_some(m.expires_at_ms as i64),
            m.delivery_count,
            m.visible_at_ms as i64,
        ])?;
    Ok(())
}

fn position_in(tx: &Connection, partition: u32) -> rusqlite::Result<Position> {
    Ok(tx
        .query_row(
            "SELECT epoch, seq FROM partitions WHERE partition = ?1",
            params![partition],
            |row| {
                Ok(Position {
                    epoch: row.get::<_, i64>(0)? as u64,
                    seq: row.get::<_, i64>(1)? as u64,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

fn set_position(tx: &Connection, partition: u32, position: Position) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO partitions (partition, epoch, seq) VALUES (?1, ?2, ?3)
         ON CONFLICT(partition) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq",
        params![partition, position.epoch as i64, position.seq as i64],
    )?;
    Ok(())
}

struct PendingChange {
    partition: u32,
    epoch: u64,
    seq: u64,
    change: Change,
    order: Order,
    reply: mpsc::Sender<Result<()>>,
}

/// Commits queued changes in one transaction; every caller learns its own outcome.
fn commit_batch(conn: &mut Connection, batch: Vec<PendingChange>) {
    let mut outcomes = Vec::with_capacity(batch.len());
    let committed = (|| -> rusqlite::Result<()> {
        let mut tx = conn.transaction()?;
        for pending in &batch {
            let savepoint = tx.savepoint()?;
            let outcome = apply_one(&savepoint, pending);
            if outcome.is_ok() {
                savepoint.commit()?;
            }
            outcomes.push(outcome);
        }
        tx.commit()
    })();
    if let Err(e) = committed {
        outcomes = batch
            .iter()
            .map(|_| Err(StoreError::Commit(e.to_string())))
            .collect();
    }
    for (pending, outcome) in batch.into_iter().zip(outcomes) {
        // The caller is blocked on the answer; it cannot have gone.
        let _ = pending.reply.send(outcome);
    }
}

fn apply_one(tx: &Connection, pending: &PendingChange) -> Result<()> {
    let PendingChange {
        partition,
        epoch,
        seq,
        order,
        ..
    } = *pending;
    let change = &pending.change;
    let have = position_in(tx, partition)?;
    let follows = have.epoch == epoch && have.seq + 1 == seq;
    // A leader never writes under an epoch older than its copy already has: a newer
    // leader's snapshot got there first.
    let deposed = have.epoch > epoch;
    if (order == Order::Follow && !follows) || deposed {
        return Err(StoreError::OutOfOrder {
            partition,
            epoch,
            seq,
            have_epoch: have.epoch,
            have_seq: have.seq,
        });
    }
    match &change.kind {
        Some(change::Kind::Insert(insert)) => {
            for message in &insert.messages {
                insert_message(tx, partition, message)?;
            }
        }
        Some(change::Kind::Leases(leases)) => {
            let mut update = tx.prepare_cached(
                "UPDATE messages SET delivery_count = ?3, visible_at_ms = ?4 WHERE mailbox = ?1 AND message_id = ?2",
            )?;
            for lease in &leases.leases {
                update.execute(params![
                    lease.mailbox,
                    lease.message_id,
                    lease.delivery_count,
                    lease.visible_at_ms as i64
                ])?;
            }
        }
        Some(change::Kind::Removals(removals)) => {
            let mut delete =
                tx.prepare_cached("DELETE FROM messages WHERE mailbox = ?1 AND message_id = ?2")?;
            for removal in &removals.removals {
                delete.execute(params![removal.mailbox, removal.message_id])?;
            }
        }
        None => {}
    }
    set_position(tx, partition, Position { epoch, seq })?;
    Ok(())
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is fsync'd before it returns, which is what makes an ack durable.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
            queue: Mutex::default(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so a poisoned lock is still safe to use.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn position(&self, partition: u32) -> Result<Position> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        Ok(position_in(&tx, partition)?)
    }

    /// Marks the start of this node's leadership at `epoch`, so that snapshots it sends from
    /// now on carry the new epoch (which fences off the previous leader).
    pub fn begin_epoch(&self, partition: u32, epoch: u64) -> Result<Position> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let position = Position {
            epoch,
            seq: position_in(&tx, partition)?.seq,
        };
        set_position(&tx, partition, position)?;
        tx.commit()?;
        Ok(position)
    }

    /// Whether this node holds anything of a partition.
    pub fn holds(&self, partition: u32) -> Result<bool> {
        let conn = self.conn();
        let mut query = conn.prepare_cached(
            "SELECT 1 FROM partitions WHERE partition = ?1
             UNION ALL SELECT 1 FROM messages WHERE partition = ?1 LIMIT 1",
        )?;
        let holds = query.exists(params![partition])?;
        Ok(holds)
    }

    /// Applies change `seq` of `epoch` to a partition, atomically with its new position.
    /// Applies change `seq` of `epoch` to a partition, atomically with its new position.
    ///
    /// Group commit: concurrent calls (any partitions) share one transaction and one fsync.
    /// Each call queues its change; whoever gets the connection commits everything queued,
    /// each change in its own savepoint so that one refused change does not undo the others.
    pub fn apply(
        &self,
        partition: u32,
        epoch: u64,
        seq: u64,
        change: &Change,
        order: Order,
    ) -> Result<()> {
        let (reply, outcome) = mpsc::channel();
        let pending = PendingChange {
            partition,
            epoch,
            seq,
            change: change.clone(),
            order,
            reply,
        };
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pending);
        loop {
            if let Ok(result) = outcome.try_recv() {
                return result;
            }
            let mut conn = self.conn();
            // Committed by whoever held the connection while this call waited for it.
            if let Ok(result) = outcome.try_recv() {
                return result;
            }
            let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
            commit_batch(&mut conn, batch);
        }
    }

    /// Everything a partition holds, for a follower to copy.
    pub fn snapshot(&self, partition: u32) -> Result<(Position, Vec<StoredMessage>)> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let position = position_in(&tx, partition)?;
        let messages = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages WHERE partition = ?1 ORDER BY seq"
            ))?
            .query_map(params![partition], message_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(tx);
        Ok((position, messages))
    }

    /// Replaces a partition's copy with a leader's snapshot, unless it comes from an older
    /// epoch than this copy already follows (a deposed leader's).
    pub fn install_snapshot(
        &self,
        partition: u32,
        position: Position,
        messages: &[StoredMessage],
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let have = position_in(&tx, partition)?;
        if position.epoch < have.epoch {
            return Err(StoreError::StaleSnapshot {
                partition,
                epoch: position.epoch,
                have_epoch: have.epoch,
            });
        }
        tx.execute(
            "DELETE FROM messages WHERE partition = ?1",
            params![partition],
        )?;
        for message in messages {
            insert_message(&tx, partition, message)?;
        }
        set_position(&tx, partition, position)?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a partition this node no longer replicates.
    pub fn drop_partition(&self, partition: u32) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let dropped = tx.execute(
            "DELETE FROM messages WHERE partition = ?1",
            params![partition],
        )?;
        tx.execute(
            "DELETE FROM partitions WHERE partition = ?1",
            params![partition],
        )?;
        tx.commit()?;
        Ok(dropped as u64)
    }

    /// The leases a pull of up to `max` messages would take: ready messages, oldest first.
    pub fn next_leases(
        &self,
        mailbox: &str,
        partition: u32,
        max: u32,
        now_ms: u64,
        visibility_ms: u64,
    ) -> Result<Vec<(StoredMessage, Lease)>> {
        let conn = self.conn();
        let mut select = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages
             WHERE mailbox = ?1 AND partition = ?2 AND visible_at_ms <= ?3
               AND (expires_at_ms IS NULL OR expires_at_ms > ?3)
             ORDER BY seq LIMIT ?4"
        ))?;
        let rows = select.query_map(
            params![mailbox, partition, now_ms as i64, max],
            message_from_row,
        )?;
        let mut leases = Vec::new();
        for row in rows {
            let mut message = row?;
            message.delivery_count += 1;
            let lease = Lease {
                mailbox: message.mailbox.clone(),
                message_id: message.message_id.clone(),
                delivery_count: message.delivery_count,
                visible_at_ms: now_ms.saturating_add(visibility_ms),
            };
            leases.push((message, lease));
        }
        Ok(leases)
    }

    /// Splits receipts into removals (they name the latest delivery) and stale ones.
    pub fn current_receipts(
        &self,
        mailbox: &str,
        receipts: Vec<Receipt>,
    ) -> Result<(Vec<Removal>, Vec<Receipt>)> {
        let conn = self.conn();
        let mut check = conn.prepare_cached(
            "SELECT 1 FROM messages WHERE mailbox = ?1 AND message_id = ?2 AND delivery_count = ?3",
        )?;
        let mut current = Vec::new();
        let mut stale = Vec::new();
        for receipt in receipts {
            if check.exists(params![mailbox, receipt.message_id, receipt.delivery_count])? {
                current.push(Removal {
                    mailbox: mailbox.to_owned(),
                    message_id: receipt.message_id,
                });
            } else {
                stale.push(receipt);
            }
        }
        Ok((current, stale))
    }

    /// Drops every copy of a mailbox's messages (its queue or subscription was deleted).
    pub fn purge(&self, mailbox: &str) -> Result<u64> {
        Ok(self
            .conn()
            .execute("DELETE FROM messages WHERE mailbox = ?1", params![mailbox])?
            as u64)
    }

    pub fn depth(&self, mailbox: &str, partition: u32, now_ms: u64) -> Result<Depth> {
        let conn = self.conn();
        let (ready, leased) = conn.query_row(
            "SELECT
                COALESCE(SUM(visible_at_ms <= ?3), 0),
                COALESCE(SUM(visible_at_ms > ?3), 0)
             FROM messages
             WHERE mailbox = ?1 AND partition = ?2 AND (expires_at_ms IS NULL OR expires_at_ms > ?3)",
            params![mailbox, partition, now_ms as i64],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
        )?;
        Ok(Depth {
            ready: ready as u64,
            leased: leased as u64,
        })
    }

    /// Deletes every expired message; returns how many. Every replica does this on its own:
    /// expiry depends only on the message, so copies agree without replicating it.
    pub fn sweep_expired(&self, now_ms: u64) -> Result<u64> {
        Ok(self.conn().execute(
            "DELETE FROM messages WHERE expires_at_ms <= ?1",
            params![now_ms as i64],
        )? as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mom_common::proto::{Insert, Leases, Removals};

    fn message(id: &str, expires_at_ms: u64) -> StoredMessage {
        StoredMessage {
            mailbox: "q/x".into(),
            message_id: id.to_owned(),
            exchange: "ex".into(),
            routing_key: "k".into(),
            payload: id.as_bytes().to_vec(),
            published_at_ms: 1,
            expires_at_ms,
            delivery_count: 0,
            visible_at_ms: 0,
        }
    }

    fn insert(messages: Vec<StoredMessage>) -> Change {
        Change {
            kind: Some(change::Kind::Insert(Insert { messages })),
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        (dir, store)
    }

    /// Leases like a leader would: decide, then apply the decision as the next change.
    fn pull(store: &Store, max: u32, now: u64) -> Vec<StoredMessage> {
        let leases = store.next_leases("q/x", 0, max, now, 1_000).unwrap();
        let seq = store.position(0).unwrap().seq + 1;
        let change = Change {
            kind: Some(change::Kind::Leases(Leases {
                leases: leases.iter().map(|(_, l)| l.clone()).collect(),
            })),
        };
        store.apply(0, 1, seq, &change, Order::Lead).unwrap();
        leases.into_iter().map(|(m, _)| m).collect()
    }

    fn ids(messages: &[StoredMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.message_id.as_str()).collect()
    }

    #[test]
    fn pulls_in_publish_order_and_leases() {
        let (_dir, store) = open();
        store
            .apply(
                0,
                1,
                1,
                &insert(vec![message("a", 0), message("b", 0), message("c", 0)]),
                Order::Lead,
            )
            .unwrap();
        assert_eq!(ids(&pull(&store, 2, 100)), ["a", "b"]);
        assert_eq!(ids(&pull(&store, 10, 200)), ["c"]);
        assert!(pull(&store, 10, 300).is_empty());
        assert_eq!(
            store.depth("q/x", 0, 300).unwrap(),
            Depth {
                ready: 0,
                leased: 3
            }
        );
        // Leases end: everything is ready again, in the original order.
        assert_eq!(ids(&pull(&store, 10, 5_000)), ["a", "b", "c"]);
    }

    #[test]
    fn only_the_latest_delivery_can_be_acked() {
        let (_dir, store) = open();
        store
            .apply(0, 1, 1, &insert(vec![message("a", 0)]), Order::Lead)
            .unwrap();
        let first = pull(&store, 1, 100).remove(0);
        let second = pull(&store, 1, 1_100).remove(0);
        assert_eq!((first.delivery_count, second.delivery_count), (1, 2));
        let old = Receipt {
            message_id: "a".into(),
            delivery_count: 1,
        };
        let new = Receipt {
            message_id: "a".into(),
            delivery_count: 2,
        };
        let (removals, stale) = store
            .current_receipts("q/x", vec![old.clone(), new])
            .unwrap();
        assert_eq!((removals.len(), stale), (1, vec![old]));
        let change = Change {
            kind: Some(change::Kind::Removals(Removals { removals })),
        };
        store.apply(0, 1, 4, &change, Order::Lead).unwrap();
        assert!(pull(&store, 1, 10_000).is_empty());
    }

    #[test]
    fn concurrent_changes_commit_together_and_a_refused_one_undoes_nothing_else() {
        let (_dir, store) = open();
        let store = std::sync::Arc::new(store);
        let writers: Vec<_> = (0..6u32)
            .map(|partition| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store
                        .install_snapshot(partition, Position { epoch: 1, seq: 0 }, &[])
                        .unwrap();
                    for seq in 1..=20u64 {
                        let id = format!("p{partition}-{seq}");
                        store
                            .apply(
                                partition,
                                1,
                                seq,
                                &insert(vec![message(&id, 0)]),
                                Order::Follow,
                            )
                            .unwrap();
                        // Out of order: refused, and must not take the good changes with it.
                        let refused = store.apply(
                            partition,
                            1,
                            seq + 5,
                            &insert(vec![message("bad", 0)]),
                            Order::Follow,
                        );
                        assert!(matches!(refused, Err(StoreError::OutOfOrder { .. })));
                    }
                })
            })
            .collect();
        store
            .install_snapshot(9, Position { epoch: 1, seq: 0 }, &[])
            .unwrap();
        for writer in writers {
            writer.join().unwrap();
        }
        for partition in 0..6 {
            let (position, messages) = store.snapshot(partition).unwrap();
            assert_eq!(
                (position, messages.len()),
                (Position { epoch: 1, seq: 20 }, 20)
            );
            assert!(messages.iter().all(|m| m.message_id != "bad"));
        }
    }

    #[test]
    fn a_deposed_leader_cannot_write_under_its_old_epoch() {
        let (_dir, store) = open();
        store
            .install_snapshot(0, Position { epoch: 3, seq: 1 }, &[])
            .unwrap();
        let stale = store.apply(0, 2, 2, &insert(vec![message("a", 0)]), Order::Lead);
        assert!(matches!(stale, Err(StoreError::OutOfOrder { .. })));
        assert!(store.snapshot(0).unwrap().1.is_empty());
    }

    #[test]
    fn followers_apply_only_the_next_change_of_their_epoch() {
        let (_dir, store) = open();
        let change = insert(vec![message("a", 0)]);
        store
            .install_snapshot(0, Position { epoch: 2, seq: 5 }, &[])
            .unwrap();
        assert!(matches!(
            store.apply(0, 2, 7, &change, Order::Follow),
            Err(StoreError::OutOfOrder { .. })
        ));
        assert!(matches!(
            store.apply(0, 1, 6, &change, Order::Follow),
            Err(StoreError::OutOfOrder { .. })
        ));
        store.apply(0, 2, 6, &change, Order::Follow).unwrap();
        assert_eq!(store.position(0).unwrap(), Position { epoch: 2, seq: 6 });
    }

    #[test]
    fn snapshots_replace_a_partition_but_never_go_back_an_epoch() {
        let (_dir, store) = open();
        store
            .apply(0, 3, 1, &insert(vec![message("stale", 0)]), Order::Lead)
            .unwrap();
        store
            .apply(
                1,
                1,
                1,
                &insert(vec![StoredMessage {
                    mailbox: "q/y".into(),
                    ..message("other", 0)
                }]),
                Order::Lead,
            )
            .unwrap();
        let old = store.install_snapshot(0, Position { epoch: 2, seq: 9 }, &[message("x", 0)]);
        assert!(matches!(old, Err(StoreError::StaleSnapshot { .. })));
        store
            .install_snapshot(0, Position { epoch: 4, seq: 2 }, &[message("fresh", 0)])
            .unwrap();
        let (position, messages) = store.snapshot(0).unwrap();
        assert_eq!(
            (position, ids(&messages)),
            (Position { epoch: 4, seq: 2 }, vec!["fresh"])
        );
        assert_eq!(
            ids(&store.snapshot(1).unwrap().1),
            ["other"],
            "other partitions untouched"
        );
    }

    #[test]
    fn expired_messages_are_never_leased() {
        let (_dir, store) = open();
        store
            .apply(
                0,
                1,
                1,
                &insert(vec![message("old", 150), message("new", 0)]),
                Order::Lead,
            )
            .unwrap();
        assert_eq!(ids(&pull(&store, 10, 200)), ["new"]);
        assert_eq!(store.sweep_expired(600).unwrap(), 1);
    }

    #[test]
    fn messages_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        Store::open(&path)
            .unwrap()
            .apply(0, 1, 1, &insert(vec![message("a", 0)]), Order::Lead)
            .unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.position(0).unwrap(), Position { epoch: 1, seq: 1 });
        assert_eq!(ids(&pull(&store, 1, 100)), ["a"]);
    }

    #[test]
    fn receipts_round_trip() {
        let receipt = Receipt {
            message_id: "0190-ab".into(),
            delivery_count: 3,
        };
        assert_eq!(Receipt::parse(&receipt.to_string()), Some(receipt));
        assert_eq!(Receipt::parse("nonsense"), None);
    }
}
