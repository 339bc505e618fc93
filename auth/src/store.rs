//! The auth service's own SQLite table of users and their password hashes.
//!
//! Invariants: one row per user name (the primary key decides races); `published` is set
//! once the user's ZooKeeper record has been created, and never cleared, so that the start
//! of the service publishes a row at most once: a user an admin deleted from ZooKeeper is
//! not brought back by a leftover row. Rows of databases older than that column count as
//! unpublished.
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
                created_at_ms INTEGER,
                published     INTEGER NOT NULL DEFAULT 0
            )",
        )?;
        let has_published: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('users') WHERE name = 'published'",
            [],
            |row| row.get(0),
        )?;
        if !has_published {
            conn.execute_batch(
                "ALTER TABLE users ADD COLUMN published INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        Ok(UserStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (each statement is
        // atomic), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an unpublished user unless the name is taken. The primary key decides, so two
    /// concurrent registrations of one name cannot both succeed.
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

    /// Replaces a user's password hash; false if there is no such user.
    pub fn set_password_hash(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE users SET password_hash = ?2 WHERE username = ?1",
            params![username, password_hash],
        )?;
        Ok(changed == 1)
    }

    /// Removes a user; false if there was no such user.
    pub fn delete(&self, username: &str) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .execute("DELETE FROM users WHERE username = ?1", [username])?;
        Ok(changed == 1)
    }

    /// Records that the user's ZooKeeper record has been created.
    pub fn mark_published(&self, username: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE users SET published = 1 WHERE username = ?1",
            [username],
        )?;
        Ok(())
    }

    /// Users whose ZooKeeper record may never have been created, by name.
    pub fn unpublished(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut statement =
            conn.prepare("SELECT username FROM users WHERE published = 0 ORDER BY username")?;
        let names = statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(names)
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

    #[test]
    fn rows_are_published_once_changed_and_deleted() {
        let store = UserStore::open_in_memory().unwrap();
        store.insert("alice", "h1", 1).unwrap();
        store.insert("bob", "h1", 1).unwrap();
        assert_eq!(store.unpublished().unwrap(), ["alice", "bob"]);
        store.mark_published("alice").unwrap();
        assert_eq!(store.unpublished().unwrap(), ["bob"]);

        assert!(store.set_password_hash("alice", "h2").unwrap());
        assert_eq!(store.password_hash("alice").unwrap().as_deref(), Some("h2"));
        assert!(!store.set_password_hash("carol", "h2").unwrap());

        assert!(store.delete("bob").unwrap());
        assert!(!store.delete("bob").unwrap());
        assert!(store.unpublished().unwrap().is_empty());
    }

    #[test]
    fn a_database_without_the_published_column_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
                                 created_at_ms INTEGER);
             INSERT INTO users VALUES ('old-user', 'h', 1);",
        )
        .unwrap();
        drop(old);
        let store = UserStore::open(&path).unwrap();
        assert_eq!(store.unpublished().unwrap(), ["old-user"]);
        // Opening again finds the column and leaves it alone.
        drop(store);
        assert_eq!(
            UserStore::open(&path).unwrap().unpublished().unwrap(),
            ["old-user"]
        );
    }
}
