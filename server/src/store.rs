//! Durable message storage of one node: SQLite in WAL mode, fsync'd on every commit, so a
//! message is on disk before its publish is acknowledged.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create data directory: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub message_id: String,
    pub exchange: String,
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub published_at_ms: u64,
    pub expires_at_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    pub message_id: String,
    pub exchange: String,
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub published_at_ms: u64,
    /// 1 on the first delivery; each redelivery adds one.
    pub delivery_count: u32,
}

impl StoredDelivery {
    pub fn receipt(&self) -> Receipt {
        Receipt {
            message_id: self.message_id.clone(),
            delivery_count: self.delivery_count,
        }
    }
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
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
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
CREATE INDEX IF NOT EXISTS messages_by_mailbox_seq ON messages(mailbox, seq);
CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages(expires_at_ms) WHERE expires_at_ms IS NOT NULL;
";

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is fsync'd before it returns, which is what makes a publish ack durable.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so a poisoned lock is still safe to use.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores one copy of the message per mailbox, all or none.
    pub fn insert(&self, message: &NewMessage, mailboxes: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO messages
                 (mailbox, message_id, exchange, routing_key, payload, published_at_ms, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for mailbox in mailboxes {
                insert.execute(params![
                    mailbox,
                    message.message_id,
                    message.exchange,
                    message.routing_key,
                    message.payload,
                    message.published_at_ms as i64,
                    message.expires_at_ms.map(|t| t as i64),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Leases up to `max` ready messages, oldest first, until `now_ms + visibility_ms`.
    pub fn pull(
        &self,
        mailbox: &str,
        max: u32,
        now_ms: u64,
        visibility_ms: u64,
    ) -> Result<Vec<StoredDelivery>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms as i64;
        tx.execute(
            "DELETE FROM messages WHERE mailbox = ?1 AND expires_at_ms <= ?2",
            params![mailbox, now],
        )?;
        let mut leased = Vec::new();
        {
            let mut select = tx.prepare_cached(
                "SELECT seq, message_id, exchange, routing_key, payload, published_at_ms, delivery_count
                 FROM messages WHERE mailbox = ?1 AND visible_at_ms <= ?2
                 ORDER BY seq LIMIT ?3",
            )?;
            let mut lease = tx.prepare_cached(
                "UPDATE messages SET delivery_count = delivery_count + 1, visible_at_ms = ?2
                 WHERE seq = ?1",
            )?;
            let rows = select.query_map(params![mailbox, now, max], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    StoredDelivery {
                        message_id: row.get(1)?,
                        exchange: row.get(2)?,
                        routing_key: row.get(3)?,
                        payload: row.get(4)?,
                        published_at_ms: row.get::<_, i64>(5)? as u64,
                        delivery_count: row.get::<_, u32>(6)? + 1,
                    },
                ))
            })?;
            for row in rows {
                let (seq, delivery) = row?;
                lease.execute(params![seq, now.saturating_add(visibility_ms as i64)])?;
                leased.push(delivery);
            }
        }
        tx.commit()?;
        Ok(leased)
    }

    /// Deletes the messages whose receipts name their latest delivery; returns the others.
    pub fn ack(&self, mailbox: &str, receipts: &[Receipt]) -> Result<(u32, Vec<Receipt>)> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut acked = 0;
        let mut stale = Vec::new();
        {
            let mut delete = tx.prepare_cached(
                "DELETE FROM messages WHERE mailbox = ?1 AND message_id = ?2 AND delivery_count = ?3",
            )?;
            for receipt in receipts {
                if delete.execute(params![mailbox, receipt.message_id, receipt.delivery_count])?
                    == 1
                {
                    acked += 1;
                } else {
                    stale.push(receipt.clone());
                }
            }
        }
        tx.commit()?;
        Ok((acked, stale))
    }

    pub fn purge(&self, mailbox: &str) -> Result<u64> {
        Ok(self
            .conn()
            .execute("DELETE FROM messages WHERE mailbox = ?1", params![mailbox])?
            as u64)
    }

    pub fn depth(&self, mailbox: &str, now_ms: u64) -> Result<Depth> {
        let conn = self.conn();
        let (ready, leased) = conn.query_row(
            "SELECT
                COALESCE(SUM(visible_at_ms <= ?2), 0),
                COALESCE(SUM(visible_at_ms > ?2), 0)
             FROM messages
             WHERE mailbox = ?1 AND (expires_at_ms IS NULL OR expires_at_ms > ?2)",
            params![mailbox, now_ms as i64],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
        )?;
        Ok(Depth {
            ready: ready as u64,
            leased: leased as u64,
        })
    }

    /// Deletes every expired message; returns how many.
    pub fn sweep_expired(&self, now_ms: u64) -> Result<u64> {
        Ok(self.conn().execute(
            "DELETE FROM messages WHERE expires_at_ms <= ?1",
            params![now_ms as i64],
        )? as u64)
    }

    pub fn contains(&self, mailbox: &str, message_id: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM messages WHERE mailbox = ?1 AND message_id = ?2",
                params![mailbox, message_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, expires_at_ms: Option<u64>) -> NewMessage {
        NewMessage {
            message_id: id.to_owned(),
            exchange: "ex".into(),
            routing_key: "k".into(),
            payload: id.as_bytes().to_vec(),
            published_at_ms: 1,
            expires_at_ms,
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        (dir, store)
    }

    fn ids(deliveries: &[StoredDelivery]) -> Vec<&str> {
        deliveries.iter().map(|d| d.message_id.as_str()).collect()
    }

    #[test]
    fn pulls_in_publish_order_and_leases() {
        let (_dir, store) = open();
        for id in ["a", "b", "c"] {
            store.insert(&message(id, None), &["q/x".into()]).unwrap();
        }
        assert_eq!(ids(&store.pull("q/x", 2, 100, 1_000).unwrap()), ["a", "b"]);
        // Leased messages are not handed out again before the lease ends.
        assert_eq!(ids(&store.pull("q/x", 10, 200, 1_000).unwrap()), ["c"]);
        assert!(store.pull("q/x", 10, 300, 1_000).unwrap().is_empty());
        assert_eq!(
            store.depth("q/x", 300).unwrap(),
            Depth {
                ready: 0,
                leased: 3
            }
        );
    }

    #[test]
    fn unacked_messages_come_back_with_a_new_receipt() {
        let (_dir, store) = open();
        store.insert(&message("a", None), &["q/x".into()]).unwrap();
        let first = store.pull("q/x", 1, 100, 1_000).unwrap().remove(0);
        let second = store.pull("q/x", 1, 1_100, 1_000).unwrap().remove(0);
        assert_eq!((first.delivery_count, second.delivery_count), (1, 2));
        // The first consumer's late ack must not delete what the second one holds.
        let (acked, stale) = store.ack("q/x", &[first.receipt()]).unwrap();
        assert_eq!((acked, stale), (0, vec![first.receipt()]));
        let (acked, stale) = store.ack("q/x", &[second.receipt()]).unwrap();
        assert_eq!((acked, stale.len()), (1, 0));
        assert!(store.pull("q/x", 1, 10_000, 1_000).unwrap().is_empty());
    }

    #[test]
    fn expired_messages_are_never_delivered() {
        let (_dir, store) = open();
        store
            .insert(&message("old", Some(150)), &["q/x".into()])
            .unwrap();
        store
            .insert(&message("new", None), &["q/x".into()])
            .unwrap();
        assert_eq!(ids(&store.pull("q/x", 10, 200, 1_000).unwrap()), ["new"]);
        store
            .insert(&message("soon", Some(500)), &["q/y".into()])
            .unwrap();
        assert_eq!(store.sweep_expired(600).unwrap(), 1);
    }

    #[test]
    fn mailboxes_are_independent_and_copies_are_per_mailbox() {
        let (_dir, store) = open();
        store
            .insert(&message("a", None), &["q/x".into(), "q/y".into()])
            .unwrap();
        let from_x = store.pull("q/x", 1, 100, 1_000).unwrap().remove(0);
        store.ack("q/x", &[from_x.receipt()]).unwrap();
        assert!(store.contains("q/y", "a").unwrap());
        assert_eq!(store.purge("q/y").unwrap(), 1);
    }

    #[test]
    fn messages_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        Store::open(&path)
            .unwrap()
            .insert(&message("a", None), &["q/x".into()])
            .unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(ids(&store.pull("q/x", 1, 100, 1_000).unwrap()), ["a"]);
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
