//! The user table in SQLite.
//!
//! Every method blocks on disk I/O, so callers on the async executor must run them through
//! `web::block`.

use rusqlite::{params, Connection, OptionalExtension};
use std::{
    path::Path,
    sync::{Mutex, MutexGuard, PoisonError},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open user database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("user database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Outcome of [`UserStore::insert`]; a taken name is an expected answer, not a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Created,
    AlreadyExists,
}

/// One SQLite connection shared by all workers. Registrations and logins are rare and short
/// next to the password hashing around them, so a pool would buy nothing.
pub struct UserStore {
    conn: Mutex<Connection>,
}

impl UserStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Self::init(conn)
    }

    /// A private in-memory database, for unit tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        // WAL lets readers (backups, tests, an operator's sqlite3 shell) look at the file while
        // the service writes. `synchronous` stays at its default FULL: a 201 for a registration
        // must survive a power cut, and the rate of registrations makes the fsync free.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (
                username      TEXT PRIMARY KEY,
                password_hash TEXT NOT NULL,
                created_at_ms INTEGER
            )",
        )?;
        Ok(UserStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (each statement is
        // atomic), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a user unless the name is taken. The primary key decides, so two concurrent
    /// registrations of one name cannot both succeed.
    pub fn insert(
        &self,
        username: &str,
        password_hash: &str,
        created_at_ms: i64,
    ) -> Result<Inserted, StoreError> {
        let changed = self.conn().execute(
            "INSERT INTO users (username, password_hash, created_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (username) DO NOTHING",
            params![username, password_hash, created_at_ms],
        )?;
        Ok(if changed == 1 {
            Inserted::Created
        } else {
            Inserted::AlreadyExists
        })
    }

    /// The stored PHC hash string of a user, if the user exists.
    pub fn password_hash(&self, username: &str) -> Result<Option<String>, StoreError> {
        let hash = self
            .conn()
            .query_row(
                "SELECT password_hash FROM users WHERE username = ?1",
                [username],
                |row| row.get(0),
            )
            .optional()?;
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_insert_of_a_name_is_refused_and_keeps_the_first_hash() {
        let store = UserStore::open_in_memory().unwrap();
        assert_eq!(store.insert("alice", "h1", 1).unwrap(), Inserted::Created);
        assert_eq!(
            store.insert("alice", "h2", 2).unwrap(),
            Inserted::AlreadyExists
        );
        assert_eq!(store.password_hash("alice").unwrap().as_deref(), Some("h1"));
        assert_eq!(store.password_hash("bob").unwrap(), None);
    }

    #[test]
    fn file_database_uses_wal_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.db");
        UserStore::open(&path)
            .unwrap()
            .insert("alice", "h", 1)
            .unwrap();
        let store = UserStore::open(&path).unwrap();
        let mode: String = store
            .conn()
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(store.password_hash("alice").unwrap().as_deref(), Some("h"));
    }
}
