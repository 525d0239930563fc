//! [`ReadCache`]: a byte-bounded cache of the read data that never changes.
//!
//! # Contract
//! - Only immutable data goes in: FULL hash tiles (with their `mid`, so a
//!   proof hashes at most 7 nodes per subtree it takes), FULL
//!   entry bundles, and the gzip encoding of full bundles. A full tile or
//!   bundle is the same bytes forever (C2SP tlog-tiles), so an entry is
//!   never invalidated and a hit is always the right answer. Partial tiles
//!   and bundles grow and are never cached; [`Log`](super::Log) checks
//!   fullness before it inserts.
//! - The bound is on bytes: the values' lengths plus [`ENTRY_OVERHEAD`]
//!   per entry never exceed the capacity given to [`ReadCache::new`]
//!   ([`DEFAULT_READ_CACHE_BYTES`] in the server). A value larger than the
//!   whole capacity is not kept. Capacity 0 disables the cache: nothing is
//!   kept, every lookup misses.
//! - Eviction is CLOCK (second chance): a hit sets the entry's reference
//!   bit; the hand sweeps the ring of entries, clearing set bits and
//!   evicting entries whose bit is clear until the new value fits; the new
//!   entry takes an evicted place just behind the hand. Entries read once
//!   (a mirror copying every tile) then evict each other, not the hot set.
//! - Values are [`Bytes`]: a hit is a reference count increment, and the
//!   HTTP layer sends it without copying. One short mutex guards the map
//!   (a lookup and a bit set, never I/O), so every method may be called
//!   from an async thread.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

/// The read cache's default capacity: 64 MiB, ~7,300 full tiles with their
/// `mid` and `top` (9,152 bytes each: 1.86M entries' level-0 tiles), or
/// fewer bundles.
pub const DEFAULT_READ_CACHE_BYTES: usize = 64 << 20;

/// Bytes counted per entry beyond its value: the key, the slot, the map
/// entry and the `Bytes` header, rounded up.
pub const ENTRY_OVERHEAD: usize = 96;

/// What a cached value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheKey {
    /// Full hash tile `(level, index)`: its 8,192 bytes of hashes followed
    /// by its `mid` and `top` (`tiles.rs`, `full_tile_value`).
    Tile { level: u8, index: u64 },
    /// Full entry bundle `index`, as served.
    Bundle(u64),
    /// The gzip encoding of full entry bundle `index`.
    BundleGzip(u64),
}

struct Slot {
    key: CacheKey,
    value: Bytes,
    referenced: bool,
}

/// The clock: a ring of slots (`None` where an entry was evicted and none
/// has taken its place yet) and the hand.
#[derive(Default)]
struct Clock {
    slots: Vec<Option<Slot>>,
    /// Empty slots, the one freed last at the end (just behind the hand).
    free: Vec<usize>,
    index: HashMap<CacheKey, usize>,
    hand: usize,
    bytes: usize,
}

impl Clock {
    /// Evicts entries in CLOCK order until `need` more bytes fit in
    /// `capacity`.
    fn make_room(&mut self, need: usize, capacity: usize) {
        while self.bytes + need > capacity && !self.index.is_empty() {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let at = self.hand;
            self.hand += 1;
            let Some(slot) = &mut self.slots[at] else {
                continue;
            };
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            if let Some(gone) = self.slots[at].take() {
                self.index.remove(&gone.key);
                self.bytes -= gone.value.len() + ENTRY_OVERHEAD;
                self.free.push(at);
            }
        }
    }

    /// Puts `slot` in the slot freed last (just behind the hand, so it is
    /// looked at only after a full turn), or at the end of the ring.
    fn place(&mut self, slot: Slot) -> usize {
        match self.free.pop() {
            Some(at) => {
                self.slots[at] = Some(slot);
                at
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        }
    }
}

/// A byte-bounded CLOCK cache of immutable tiles and bundles (see the module
/// documentation). `Send + Sync`; every method is non-blocking.
pub struct ReadCache {
    capacity: usize,
    clock: Mutex<Clock>,
}

impl ReadCache {
    /// A cache holding at most `capacity` bytes (values plus
    /// [`ENTRY_OVERHEAD`] each); 0 keeps nothing.
    pub fn new(capacity: usize) -> Self {
        ReadCache {
            capacity,
            clock: Mutex::new(Clock::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value under `key`, marking it recently used.
    pub fn get(&self, key: &CacheKey) -> Option<Bytes> {
        if self.capacity == 0 {
            return None;
        }
        let mut clock = self.lock();
        let at = *clock.index.get(key)?;
        let slot = clock.slots[at].as_mut()?;
        slot.referenced = true;
        Some(slot.value.clone())
    }

    /// Keeps `value` under `key`, evicting as needed; a key already present
    /// keeps its value (the data is immutable: both are the same bytes).
    pub fn insert(&self, key: CacheKey, value: Bytes) {
        let need = value.len() + ENTRY_OVERHEAD;
        if need > self.capacity {
            return;
        }
        let mut clock = self.lock();
        if clock.index.contains_key(&key) {
            return;
        }
        clock.make_room(need, self.capacity);
        let at = clock.place(Slot {
            key,
            value,
            referenced: false,
        });
        clock.index.insert(key, at);
        clock.bytes += need;
    }

    /// The capacity in bytes given to [`Self::new`].
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held now (values plus [`ENTRY_OVERHEAD`] each), at most
    /// [`Self::capacity`].
    pub fn used_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().index.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn stays_within_its_bound_and_keeps_what_was_inserted() {
        let cap = 10 * (1000 + ENTRY_OVERHEAD);
        let cache = ReadCache::new(cap);
        for i in 0..100u64 {
            cache.insert(CacheKey::Bundle(i), value(1000, i as u8));
            assert!(
                cache.used_bytes() <= cap,
                "after {i}: {}",
                cache.used_bytes()
            );
        }
        assert_eq!(cache.len(), 10);
        assert_eq!(cache.used_bytes(), cap);
        // The last ten are kept, with their own bytes.
        for i in 90..100u64 {
            assert_eq!(cache.get(&CacheKey::Bundle(i)), Some(value(1000, i as u8)));
        }
        assert_eq!(cache.get(&CacheKey::Bundle(0)), None);
    }

    #[test]
    fn a_referenced_entry_gets_a_second_chance() {
        let cap = 4 * (100 + ENTRY_OVERHEAD);
        let cache = ReadCache::new(cap);
        for i in 0..4u64 {
            cache.insert(CacheKey::Bundle(i), value(100, 1));
        }
        let hot = CacheKey::Tile { level: 0, index: 0 };
        assert!(cache.get(&hot).is_none());
        assert!(cache.get(&CacheKey::Bundle(0)).is_some());
        // Each insert takes the place of one unreferenced entry; Bundle(0)
        // survives the sweep with its bit cleared.
        for i in 10..13u64 {
            cache.insert(CacheKey::Bundle(i), value(100, 2));
        }
        assert!(cache.get(&CacheKey::Bundle(0)).is_some());
        for i in 1..4u64 {
            assert!(cache.get(&CacheKey::Bundle(i)).is_none(), "{i}");
        }
    }

    #[test]
    fn mixed_sizes_never_exceed_the_bound() {
        let cap = 50_000;
        let cache = ReadCache::new(cap);
        let mut seed = 7u64;
        for i in 0..2_000u64 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let len = (seed >> 33) as usize % 9_000;
            let key = match i % 3 {
                0 => CacheKey::Tile {
                    level: (i % 4) as u8,
                    index: i,
                },
                1 => CacheKey::Bundle(i),
                _ => CacheKey::BundleGzip(i),
            };
            cache.insert(key, value(len, 3));
            if i % 5 == 0 {
                let _ = cache.get(&CacheKey::Bundle(i.saturating_sub(3)));
            }
            assert!(cache.used_bytes() <= cap);
        }
        assert!(!cache.is_empty());
    }

    #[test]
    fn zero_capacity_and_oversized_values_keep_nothing() {
        let off = ReadCache::new(0);
        off.insert(CacheKey::Bundle(1), value(0, 0));
        assert!(off.get(&CacheKey::Bundle(1)).is_none());
        assert!(off.is_empty());
        let small = ReadCache::new(1000);
        small.insert(CacheKey::Bundle(1), value(1000, 0));
        assert!(small.is_empty());
        small.insert(CacheKey::Bundle(2), value(10, 9));
        assert_eq!(small.get(&CacheKey::Bundle(2)), Some(value(10, 9)));
    }
}
