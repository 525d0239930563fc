//! [`RecentEntries`], which keeps round trips off the write path of a
//! cluster frontend: the bytes of the entries this process sequenced, or
//! read back as the integrator, that are not yet integrated or sit in the
//! head's partial bundle. The integrator reads what it holds from here and
//! only the rest from PostgreSQL (another frontend's entries the first
//! time, or all after a restart); completing a bundle and flushing the
//! partial one then find every entry here. Only a cache: PostgreSQL is the
//! record.
//!
//! Bounded by bytes, not by count: entries are up to 64 KiB each. Past
//! [`MAX_RECENT_BYTES`] (a stalled integration while sequencing goes on,
//! say) the cache is cleared and PostgreSQL answers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::storage::tiles::TILE_WIDTH;

/// Most entry bytes kept: a few seconds of a busy log's entries, and more
/// than a full bundle of the largest entries (256 × 64 KiB = 16 MiB).
pub const MAX_RECENT_BYTES: usize = 64 << 20;

#[derive(Default)]
struct Held {
    map: BTreeMap<u64, Arc<Vec<u8>>>,
    bytes: usize,
}

#[derive(Default)]
pub struct RecentEntries {
    held: Mutex<Held>,
}

impl RecentEntries {
    /// Keeps `entries` (index, bytes); an index already held keeps its
    /// bytes (an index names one entry forever).
    pub fn insert(&self, entries: impl IntoIterator<Item = (u64, Vec<u8>)>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for (index, bytes) in entries {
            let len = bytes.len();
            if let std::collections::btree_map::Entry::Vacant(v) = held.map.entry(index) {
                v.insert(Arc::new(bytes));
                held.bytes += len;
            }
        }
        if held.bytes > MAX_RECENT_BYTES {
            *held = Held::default();
        }
    }

    /// Entries `[from, to)`, each one `None` where it is not cached.
    pub fn lookup(&self, from: u64, to: u64) -> Vec<Option<Vec<u8>>> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        (from..to)
            .map(|i| held.map.get(&i).map(|b| b.to_vec()))
            .collect()
    }

    /// Drops what no integration needs any more: everything before the
    /// partial bundle of `size`.
    pub fn integrated(&self, size: u64) {
        let keep = size / TILE_WIDTH * TILE_WIDTH;
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let kept = held.map.split_off(&keep);
        held.bytes = kept.values().map(|b| b.len()).sum();
        held.map = kept;
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_on_bytes_and_integration_keeps_the_partial_bundle() {
        let recent = RecentEntries::default();
        recent.insert((0..300).map(|i| (i, vec![1u8; 1000])));
        assert_eq!(recent.bytes(), 300_000);
        // The same index again keeps its first bytes.
        recent.insert([(5, vec![2u8; 10])]);
        assert_eq!(recent.lookup(5, 6), vec![Some(vec![1u8; 1000])]);
        // Integrated up to 300: the partial bundle 256.. stays.
        recent.integrated(300);
        assert_eq!(recent.bytes(), 44_000);
        assert!(recent.lookup(255, 257)[0].is_none());
        assert!(recent.lookup(256, 257)[0].is_some());
        // Past the bound, everything goes: PostgreSQL answers.
        let big = MAX_RECENT_BYTES / 65_536 + 1;
        recent.insert((1000..1000 + big as u64).map(|i| (i, vec![0u8; 65_536])));
        assert_eq!(recent.bytes(), 0);
        assert!(recent.lookup(256, 300).iter().all(Option::is_none));
    }
}
