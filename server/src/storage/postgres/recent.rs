//! Two things that keep round trips off the submission path of a cluster
//! frontend:
//!
//! - [`RecentEntries`]: the bytes of the entries this process sequenced and
//!   that are not yet (or only just) integrated. The integrator reads the
//!   sequenced range and the prefix of the partial bundle from here when
//!   all of it is present, and from PostgreSQL otherwise (another
//!   frontend's entries, or after a restart). Only a cache: PostgreSQL is
//!   the record.
//! - [`CheckpointPublisher`]: writes the bucket's `checkpoint` object on a
//!   thread of its own, latest first (a newer note replaces one not yet
//!   written). The object is a convenience copy for bucket readers: its
//!   tiles exist before PostgreSQL names the checkpoint, and it only ever
//!   grows (`Objects::publish_checkpoint`), so writing it late is safe. A
//!   failed write is retried until a newer one supersedes it.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::storage::objects::Objects;
use crate::storage::tiles::TILE_WIDTH;

/// Most entries kept; past that the cache is cleared (PostgreSQL answers).
const MAX_RECENT: usize = 131_072;
/// Pause before a failed checkpoint write is retried.
const PUBLISH_RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct RecentEntries {
    map: Mutex<BTreeMap<u64, Arc<Vec<u8>>>>,
}

impl RecentEntries {
    pub fn insert(&self, entries: impl IntoIterator<Item = (u64, Vec<u8>)>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for (index, bytes) in entries {
            map.insert(index, Arc::new(bytes));
        }
        if map.len() > MAX_RECENT {
            map.clear();
        }
    }

    /// Entries `[from, to)` if every one is cached.
    pub fn range(&self, from: u64, to: u64) -> Option<Vec<Vec<u8>>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let found: Vec<Vec<u8>> = map.range(from..to).map(|(_, b)| b.to_vec()).collect();
        (found.len() as u64 == to.saturating_sub(from)).then_some(found)
    }

    /// Drops what no integration needs any more: everything before the
    /// partial bundle of `size`.
    pub fn integrated(&self, size: u64) {
        let keep = size / TILE_WIDTH * TILE_WIDTH;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        *map = map.split_off(&keep);
    }
}

struct Slot {
    next: Option<(u64, String)>,
    closed: bool,
}

/// See the module documentation.
pub struct CheckpointPublisher {
    shared: Arc<(Mutex<Slot>, Condvar)>,
}

impl CheckpointPublisher {
    pub fn start(objects: Arc<Objects>) -> Self {
        let shared = Arc::new((
            Mutex::new(Slot {
                next: None,
                closed: false,
            }),
            Condvar::new(),
        ));
        let worker = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("attestlog-checkpoint".into())
            .spawn(move || run(&objects, &worker));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the checkpoint publisher");
        }
        CheckpointPublisher { shared }
    }

    /// Queues `note` (tree size `size`) unless a larger one is queued.
    pub fn publish(&self, size: u64, note: &str) {
        let (slot, wake) = &*self.shared;
        let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
        if s.next.as_ref().is_none_or(|(queued, _)| *queued < size) {
            s.next = Some((size, note.to_string()));
            wake.notify_one();
        }
    }
}

impl Drop for CheckpointPublisher {
    fn drop(&mut self) {
        let (slot, wake) = &*self.shared;
        slot.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        wake.notify_one();
    }
}

fn run(objects: &Objects, shared: &(Mutex<Slot>, Condvar)) {
    let (slot, wake) = shared;
    loop {
        let (size, note) = {
            let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(next) = s.next.take() {
                    break next;
                }
                if s.closed {
                    return;
                }
                s = wake.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        };
        if let Err(e) = objects.publish_checkpoint(size, &note) {
            tracing::warn!(size, error = %e, "checkpoint not yet written to the object store; retrying");
            std::thread::sleep(PUBLISH_RETRY);
            let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
            if s.next.is_none() && !s.closed {
                s.next = Some((size, note));
            }
        }
    }
}
