//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL
//! past `wal_autocheckpoint` pages: the committing thread copies the WAL's
//! pages into the database file and fsyncs it, holding the writer, and every
//! submission of that batch and of the batches queued behind it waits. So the
//! writer connection instead registers a WAL hook (which turns SQLite's
//! automatic checkpoint off) that records the WAL's length at each commit,
//! and after each commit [`Checkpointer::after_commit`]:
//! - at [`CHECKPOINT_PAGES`] or more, wakes this module's thread, which runs
//!   `PRAGMA wal_checkpoint(PASSIVE)` on its own connection while the writer
//!   goes on committing (a PASSIVE checkpoint takes no write lock and never
//!   waits for one);
//! - at [`BACKSTOP_PAGES`] or more (the thread is behind, or gone), runs the
//!   same checkpoint itself, as SQLite's automatic one would, so the WAL
//!   stays bounded.
//!
//! Durability does not change: a COMMIT is durable once its frames are in
//! the WAL and the WAL is synced (`synchronous=FULL`). A checkpoint only
//! copies committed pages into the main file, syncing the WAL first and the
//! file after, and a crash during one is recovered from the WAL at the next
//! open. SQLite starts the WAL over at the first commit after a checkpoint
//! has copied all of it and no reader still uses it, as before.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::hooks::Wal;
use rusqlite::Connection;

use crate::storage::StorageError;

/// WAL pages (4 KiB each) that wake the checkpoint thread: 64 MiB, the
/// `wal_autocheckpoint` the writer had before. Fewer, larger checkpoints
/// write each often-dirtied index page fewer times.
pub const CHECKPOINT_PAGES: u32 = 16_384;

/// The checkpoint thread's name (in `ps`, and in the error if it cannot start).
const THREAD_NAME: &str = "sqlite-checkpoint";

/// WAL pages at which the writer checkpoints itself: 256 MiB.
pub const BACKSTOP_PAGES: u32 = 4 * CHECKPOINT_PAGES;

thread_local! {
    /// The WAL's length in pages after the latest commit made on this
    /// thread by a connection with [`record_wal_pages`] as its hook.
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

/// The writer's WAL hook: keeps the WAL's length for [`Checkpointer::after_commit`].
/// A plain `fn` (rusqlite's hook type), so the value travels through a
/// thread-local: the hook runs in the COMMIT, on the committing thread,
/// which reads it right after under the writer's mutex.
fn record_wal_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

/// Registers the WAL hook on the writer connection; this replaces (turns
/// off) SQLite's automatic checkpoint.
pub fn install(writer: &Connection) {
    writer.wal_hook(Some(record_wal_pages));
}

/// Runs a PASSIVE checkpoint on `conn`: `(WAL pages, pages copied)`.
/// SQLITE_BUSY (another checkpoint is running) is not an error here: that
/// one does the work.
fn checkpoint(conn: &Connection) -> Result<Option<(i64, i64)>, rusqlite::Error> {
    let (busy, log, copied): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok((busy == 0).then_some((log, copied)))
}

/// The checkpoint thread of one log file; stopped and joined on drop.
pub struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    trigger: u32,
    backstop: u32,
}

impl Checkpointer {
    /// Starts the thread, with its own connection to the file at `path`.
    pub fn start(path: &Path) -> Result<Self, StorageError> {
        Self::with_limits(path, CHECKPOINT_PAGES, BACKSTOP_PAGES)
    }

    fn with_limits(path: &Path, trigger: u32, backstop: u32) -> Result<Self, StorageError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(super::conn::BUSY_TIMEOUT)?;
        conn.execute_batch("PRAGMA synchronous = FULL;")?;
        let (wake, woken) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    let started = Instant::now();
                    match checkpoint(&conn) {
                        Ok(Some((log, copied))) => tracing::debug!(
                            wal_pages = log,
                            copied,
                            ms = started.elapsed().as_millis() as u64,
                            "WAL checkpoint"
                        ),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                    }
                }
            })
            .map_err(|source| StorageError::Thread {
                name: THREAD_NAME,
                source,
            })?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
            trigger,
            backstop,
        })
    }

    /// Call on the committing thread right after a commit on `writer`:
    /// wakes the thread, or checkpoints in line past the backstop.
    pub fn after_commit(&self, writer: &Connection) {
        let pages = WAL_PAGES.with(|p| p.replace(0));
        let pages = u32::try_from(pages).unwrap_or(0);
        if pages >= self.backstop {
            tracing::info!(pages, "WAL past the backstop: the writer checkpoints");
            if let Err(e) = checkpoint(writer) {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        } else if pages >= self.trigger {
            if let Some(wake) = &self.wake {
                // Full: a wake-up is pending already.
                let _ = wake.try_send(());
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn writer(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        let mode: String = c
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        c.execute_batch("PRAGMA synchronous = FULL; CREATE TABLE t (b BLOB);")
            .unwrap();
        install(&c);
        c
    }

    fn write(c: &Connection, cp: &Checkpointer, kib: usize) {
        c.execute("INSERT INTO t VALUES (?1)", [vec![7u8; kib * 1024]])
            .unwrap();
        cp.after_commit(c);
    }

    fn main_file_len(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// The hook turns SQLite's own checkpoint off, and the thread, woken
    /// past the trigger, copies the WAL into the main file.
    #[test]
    fn the_thread_checkpoints_past_the_trigger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let c = writer(&path);
        let cp = Checkpointer::with_limits(&path, 256, u32::MAX).unwrap();
        let before = main_file_len(&path);
        // 15 commits of 9 or 10 WAL frames each (8 overflow pages, the
        // table's page, page 1): below the trigger, nothing copied.
        for _ in 0..15 {
            write(&c, &cp, 32);
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(main_file_len(&path), before);
        // Past 256 frames the thread copies them.
        for _ in 0..15 {
            write(&c, &cp, 32);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while main_file_len(&path) < 30 * 32 * 1024 {
            assert!(Instant::now() < deadline, "no checkpoint within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Then, with the trigger out of reach, SQLite's automatic
        // checkpoint (1,000 pages by default) stays off.
        let cp = Checkpointer::with_limits(&path, u32::MAX, u32::MAX).unwrap();
        let len = main_file_len(&path);
        for _ in 0..40 {
            write(&c, &cp, 128);
        }
        assert_eq!(main_file_len(&path), len);
    }

    /// Past the backstop the writer copies the WAL itself, before
    /// `after_commit` returns.
    #[test]
    fn the_writer_checkpoints_past_the_backstop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let c = writer(&path);
        let cp = Checkpointer::with_limits(&path, u32::MAX, 256).unwrap();
        for _ in 0..7 {
            write(&c, &cp, 128);
        }
        assert!(main_file_len(&path) < 1024 * 1024);
        for _ in 0..3 {
            write(&c, &cp, 128);
        }
        assert!(main_file_len(&path) >= 1024 * 1024);
    }
}
