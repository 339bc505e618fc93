//! Copies the WAL's pages into the database file (SQLite's checkpoint) on a thread of its own,
//! so that the writer thread, which every append, commit and ack waits for, does not.
//!
//! SQLite checkpoints on the connection whose commit makes the WAL reach
//! `wal_autocheckpoint` pages: by default the writer, every 1,000 pages. A profile of the
//! batch publish row put a third of the writer's time there, and each write queued behind
//! the checkpoint waited for it. Here a `PASSIVE` checkpoint runs every `EVERY` on its own
//! connection: it takes no lock a writer or reader waits for, and copies each page once per
//! round however often it was rewritten in between (log leaves fill over several commits;
//! index and state pages change on every one), so larger rounds also copy less.
//!
//! Invariants: what is durable does not depend on this thread: a commit is durable once it is
//! in the fsync'd WAL, and a checkpoint only moves committed pages. The writer keeps SQLite's
//! own checkpoint at `WRITER_AUTOCHECKPOINT_PAGES` as a bound: a WAL starts over only once it
//! is wholly copied when a write begins, which steady writes (or a reader's snapshot) may keep
//! from happening here; the writer's own checkpoint, between its writes, ends that.

use rusqlite::Connection;
use std::sync::mpsc;
use std::time::Duration;

/// How often the checkpointer copies what the WAL gained. Measured against the writer's
/// own checkpoint every 1,000 pages: 100 ms gave ~5% more msg/s in batches and ~3% at 32
/// publishes in flight, with the same p99; 500 ms copied less still but its rounds' fsyncs
/// of the database file raised the batches' p99 from ~38 to ~50-60 ms.
const EVERY: Duration = Duration::from_millis(100);
/// The writer checkpoints itself once the WAL holds this many pages (64 MiB of 4 KiB pages).
pub const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// The running checkpointer; it stops when this is dropped (with the store).
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    pub fn start(conn: Connection) -> std::io::Result<Checkpointer> {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("mom-store-ckpt".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    checkpoint(&conn);
                }
            })?;
        Ok(Checkpointer { _stop: stop })
    }
}

fn checkpoint(conn: &Connection) {
    // (busy, pages in the WAL, pages copied); busy only means another checkpoint ran.
    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match done {
        Ok((in_wal, copied)) => {
            metrics::gauge!("mom_store_wal_pages").set(in_wal as f64);
            tracing::trace!(in_wal, copied, "checkpointed");
        }
        Err(e) => tracing::warn!(error = %e, "checkpoint failed; the next round tries again"),
    }
}
