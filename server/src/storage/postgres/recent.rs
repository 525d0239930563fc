//! [`RecentEntries`], which keeps round trips off the submission path of a
//! cluster frontend: the bytes of the entries this process sequenced and
//! that are not yet (or only just) integrated. The integrator reads
//! what it holds from here and only the rest from PostgreSQL
//! (another frontend's entries, or all after a restart). Only a
//! cache: PostgreSQL is the record.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::storage::tiles::TILE_WIDTH;

/// Most entries kept; past that the cache is cleared (PostgreSQL answers).
const MAX_RECENT: usize = 131_072;

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

    /// Entries `[from, to)`, each one `None` where it is not cached.
    pub fn lookup(&self, from: u64, to: u64) -> Vec<Option<Vec<u8>>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        (from..to)
            .map(|i| map.get(&i).map(|b| b.to_vec()))
            .collect()
    }

    /// Drops what no integration needs any more: everything before the
    /// partial bundle of `size`.
    pub fn integrated(&self, size: u64) {
        let keep = size / TILE_WIDTH * TILE_WIDTH;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        *map = map.split_off(&keep);
    }
}
