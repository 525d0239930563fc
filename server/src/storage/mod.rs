//! Storage layer of the attestlog log server: one SQLite file holding the
//! entries, the RFC 6962 Merkle tree as C2SP hash tiles, every signed
//! checkpoint, and search keys.
//!
//! # Interface
//! [`LogStore`] is the only type with behaviour. It is `Send + Sync`; share it
//! in an `Arc` and call it from tokio through `spawn_blocking` (every method
//! blocks on SQLite). One writer connection (behind a mutex) runs appends; a
//! small pool of read-only connections serves reads concurrently (WAL).
//!
//! # Lifecycle
//! 1. [`LogStore::open`] creates or migrates the file (`migrations/*.sql`,
//!    tracked by `PRAGMA user_version`; a newer schema is refused), enables
//!    WAL with `synchronous=FULL`, then loads the tree size, the latest
//!    checkpoint and the right edge of the tree (O(log n) hashes, read from the
//!    tiles) and checks the recomputed root against the latest checkpoint.
//! 2. [`LogStore::append_batch`] sequences a batch in ONE transaction: entries,
//!    dedup rows, search rows, the grown tiles (with their `mid` hashes) and
//!    the new signed checkpoint.
//!    The in-memory state (size, root, right edge, latest note) is updated
//!    only after the commit, so readers never see a size the file lacks.
//!    After a crash the file holds a prefix of committed batches, and every
//!    checkpoint ever returned to a caller is in it.
//! 3. Reads (`entry`, `entry_bundle`, `hash_tile`, proofs, `search`,
//!    checkpoints) use the pooled readers and are relative to
//!    [`LogStore::tree_size`]. Everything they read below that size is
//!    immutable except partial tiles, which only grow, so no read transaction
//!    is needed. A proof at exactly the current size takes the right-edge
//!    nodes from the in-memory edge (checked against the latest checkpoint at
//!    open, then grown by appends), so it skips the partial tiles; every other
//!    subtree comes from the tiles.
//!
//! # Why tiles, not one row per node
//! A tile row holds 256 level-8L hashes (8 KiB): ~32 bytes per entry for the
//! whole tree versus ~2 rows (and their index entries) per leaf for per-node
//! storage. A proof needs one tile per tile level it touches (at most ~3 at
//! 10M entries); hashes at levels 8L+1..8L+7 are recomputed from the tile.
//! Each row also stores the tile's level-8L+4 hashes (`mid`, 512 bytes per
//! full tile, ~2 bytes per entry), so that costs at most 7 node hashes per
//! proof hash instead of 127. The `hashes` column is exactly what the C2SP
//! read API serves, as Sunlight and Tessera store it.
//!
//! # Dedup
//! `leaf_index(leaf_hash PRIMARY KEY)` maps a leaf hash to its index, and
//! `claim_index(claim_id PRIMARY KEY)` an attestlog claim id (everything an
//! entry says except the COSE signature) to the index of its first entry; an
//! append looks each new entry up in both (and in the batch so far) and
//! returns the existing index, with that entry's leaf hash, and
//! `duplicate = true`. Same bytes or same claim, same index, across restarts.
//! Search keys of a duplicate are not added again. See `dedup.rs`.

mod dedup;
mod error;
mod sqlite;
mod tiles;
pub mod tree;

use std::path::Path;
use std::sync::{Mutex, RwLock};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

pub use error::StorageError;
pub use sqlite::SCHEMA_VERSION;
use tiles::{hashes_at_level, LevelAppend, TileReader, UpperTileCache, TILE_WIDTH};
use tree::RightEdge;

/// A SHA-256 Merkle hash.
pub type Hash = [u8; 32];

/// Largest entry: bundles prefix entries with a 2-byte length.
pub const MAX_ENTRY_LEN: usize = 65_535;

/// Read-only connections kept for concurrent readers.
const READERS: usize = 4;

/// Kinds of search key stored with an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchKind {
    /// SHA-256 of a built artifact.
    ArtifactSha256,
    /// Source commit (e.g. git commit hash).
    Commit,
    /// Enclave image measurement PCR0.
    Pcr0,
}

impl SearchKind {
    fn code(self) -> i64 {
        match self {
            SearchKind::ArtifactSha256 => 1,
            SearchKind::Commit => 2,
            SearchKind::Pcr0 => 3,
        }
    }
}

/// One entry to append.
#[derive(Clone, Debug)]
pub struct NewEntry {
    /// Entry bytes, at most [`MAX_ENTRY_LEN`].
    pub bytes: Vec<u8>,
    /// Must equal `tree::leaf_hash(&bytes)` (checked).
    pub leaf_hash: Hash,
    /// `(kind, key)` rows to index this entry under.
    pub search_keys: Vec<(SearchKind, Vec<u8>)>,
}

impl NewEntry {
    /// An entry with its leaf hash computed.
    pub fn new(bytes: Vec<u8>, search_keys: Vec<(SearchKind, Vec<u8>)>) -> Self {
        let leaf_hash = tree::leaf_hash(&bytes);
        NewEntry {
            bytes,
            leaf_hash,
            search_keys,
        }
    }
}

/// Where one input of a batch ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    /// The same bytes, or the same claim, were already in the log (or earlier
    /// in the batch).
    pub duplicate: bool,
    /// Leaf hash of the entry logged at `index`: the input's own, except for
    /// a duplicate of the same claim in other bytes.
    pub leaf_hash: Hash,
}

/// Result of [`LogStore::append_batch`].
#[derive(Clone, Debug)]
pub struct BatchOutcome {
    /// One per input, in input order.
    pub entries: Vec<Appended>,
    pub tree_size: u64,
    pub root: Hash,
    /// Signed note covering `tree_size`; `None` only while the log is empty.
    pub checkpoint: Option<String>,
}

/// Signs a checkpoint for `(tree_size, root)`, returning the signed note.
pub type SignFn<'a> = &'a dyn Fn(u64, Hash) -> Result<String, String>;

struct State {
    edge: RightEdge,
    root: Hash,
    checkpoint: Option<String>,
    /// The latest witnessed checkpoint: (size, cosigned note).
    cosigned: Option<(u64, String)>,
}

/// The log's storage. See the module documentation.
pub struct LogStore {
    writer: Mutex<Connection>,
    readers: sqlite::ReaderPool,
    state: RwLock<State>,
    upper_tiles: UpperTileCache,
}

impl LogStore {
    /// Opens or creates the log at `path` (a real file: WAL needs one).
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let conn = sqlite::open_writer(path)?;
        let size: u64 =
            conn.query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries", [], |r| {
                r.get::<_, i64>(0)
            })? as u64;
        let latest: Option<(i64, Vec<u8>, String)> = conn
            .query_row(
                "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let edge = RightEdge::load(size, &mut TileReader::new(&conn, None))?;
        let root = edge.root();
        let checkpoint = match latest {
            None if size == 0 => None,
            Some((cp_size, cp_root, note)) if cp_size as u64 == size && cp_root == root => {
                Some(note)
            }
            other => {
                return Err(StorageError::Corrupt(format!(
                    "{size} entries but latest checkpoint is {:?}",
                    other.map(|(s, _, _)| s)
                )))
            }
        };
        let cosigned: Option<(i64, String)> = conn
            .query_row(
                "SELECT size, note FROM cosigned ORDER BY size DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let cosigned = cosigned.map(|(s, n)| (s as u64, n));
        tracing::info!(size, path = %path.display(), "opened log store");
        Ok(LogStore {
            writer: Mutex::new(conn),
            readers: sqlite::ReaderPool::new(path.to_path_buf(), READERS),
            state: RwLock::new(State {
                edge,
                root,
                checkpoint,
                cosigned,
            }),
            upper_tiles: UpperTileCache::default(),
        })
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Current tree size (entries committed).
    pub fn tree_size(&self) -> u64 {
        self.state().edge.size()
    }

    /// Current root hash; SHA-256("") for the empty log.
    pub fn root_hash(&self) -> Hash {
        self.state().root
    }

    /// The latest signed checkpoint (for [`Self::tree_size`]); `None` while empty.
    pub fn latest_checkpoint(&self) -> Result<Option<String>, StorageError> {
        Ok(self.state().checkpoint.clone())
    }

    /// The latest witnessed checkpoint stored with [`Self::store_cosigned`]:
    /// its size and the note with the cosignature lines; `None` if none yet.
    pub fn latest_cosigned(&self) -> Result<Option<(u64, String)>, StorageError> {
        Ok(self.state().cosigned.clone())
    }

    /// Stores `note`, the checkpoint signed for `size` with cosignatures
    /// appended, and makes it the latest cosigned checkpoint unless a larger
    /// one is already stored. `size` must be a checkpointed size.
    pub fn store_cosigned(&self, size: u64, note: &str) -> Result<(), StorageError> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.execute(
            "INSERT OR REPLACE INTO cosigned (size, note) VALUES (?1, ?2)",
            params![size as i64, note],
        )?;
        drop(writer);
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if st.cosigned.as_ref().is_none_or(|(s, _)| *s <= size) {
            st.cosigned = Some((size, note.to_string()));
        }
        Ok(())
    }

    /// The checkpoint signed for exactly `size`, if one was.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>, StorageError> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(None);
        };
        self.readers.with(|c| {
            let mut st = c.prepare_cached("SELECT note FROM checkpoints WHERE size = ?1")?;
            Ok(st.query_row([size], |r| r.get(0)).optional()?)
        })
    }

    /// Index of the entry with this leaf hash.
    pub fn find_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, StorageError> {
        self.readers.with(|c| dedup::lookup_leaf(c, leaf_hash))
    }

    /// Index of the first entry with this claim id
    /// (`attestlog::claim::entry_claim_id`).
    pub fn find_claim(&self, claim_id: &Hash) -> Result<Option<u64>, StorageError> {
        self.readers.with(|c| dedup::lookup_claim(c, claim_id))
    }

    /// Appends the entries not already present (same bytes or same claim id,
    /// within the batch and against the log), computes the new tree, calls `sign(size, root)` for
    /// the checkpoint note and commits it all in one transaction. If nothing
    /// new remains, nothing is written or signed and the latest checkpoint
    /// is returned. Any error (including from `sign`) rolls back everything.
    pub fn append_batch(
        &self,
        batch: &[NewEntry],
        sign: SignFn<'_>,
    ) -> Result<BatchOutcome, StorageError> {
        for (position, e) in batch.iter().enumerate() {
            if e.bytes.len() > MAX_ENTRY_LEN {
                return Err(StorageError::EntryTooLarge {
                    position,
                    len: e.bytes.len(),
                });
            }
            if tree::leaf_hash(&e.bytes) != e.leaf_hash {
                return Err(StorageError::LeafHashMismatch { position });
            }
        }
        // Before taking the writer lock: decoding the envelopes needs no database.
        let claims: Vec<Option<Hash>> =
            batch.iter().map(|e| dedup::claim_id_of(&e.bytes)).collect();
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // Only this method changes the state, and it holds the writer lock.
        let mut edge = self.state().edge.clone();
        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;

        let mut out = Vec::with_capacity(batch.len());
        let mut in_batch = dedup::BatchDedup::default();
        let mut levels: Vec<LevelAppend> = Vec::new();
        {
            let mut ins_entry =
                tx.prepare_cached("INSERT INTO entries (idx, data) VALUES (?1, ?2)")?;
            let mut ins_search = tx.prepare_cached(
                "INSERT OR IGNORE INTO search (kind, key, idx) VALUES (?1, ?2, ?3)",
            )?;
            for (e, claim) in batch.iter().zip(&claims) {
                if let Some((index, leaf_hash)) =
                    in_batch.existing(&tx, &e.leaf_hash, claim.as_ref())?
                {
                    out.push(Appended {
                        index,
                        duplicate: true,
                        leaf_hash,
                    });
                    continue;
                }
                let index = edge.size();
                let idx = index as i64;
                ins_entry.execute(params![idx, e.bytes])?;
                in_batch.record(&tx, index, &e.leaf_hash, claim.as_ref())?;
                for (kind, key) in &e.search_keys {
                    ins_search.execute(params![kind.code(), key, idx])?;
                }
                edge.push(e.leaf_hash, |level, index, hash| {
                    if level % tiles::TILE_HEIGHT as u8 == 0 {
                        let l = (level / tiles::TILE_HEIGHT as u8) as usize;
                        if levels.len() <= l {
                            levels.resize_with(l + 1, Default::default);
                        }
                        if levels[l].hashes.is_empty() {
                            levels[l].start = index;
                        }
                        levels[l].hashes.push(*hash);
                    }
                });
                out.push(Appended {
                    index,
                    duplicate: false,
                    leaf_hash: e.leaf_hash,
                });
            }
        }
        if in_batch.is_empty() {
            drop(tx); // rolls back the (empty) transaction
            let st = self.state();
            return Ok(BatchOutcome {
                entries: out,
                tree_size: st.edge.size(),
                root: st.root,
                checkpoint: st.checkpoint.clone(),
            });
        }
        for (level, add) in levels.iter().enumerate() {
            tiles::write_level(&tx, level as u8, add)?;
        }
        let (size, root) = (edge.size(), edge.root());
        let note = sign(size, root).map_err(StorageError::Sign)?;
        tx.execute(
            "INSERT INTO checkpoints (size, root, note) VALUES (?1, ?2, ?3)",
            params![size as i64, &root[..], note],
        )?;
        tx.commit()?;
        {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            st.edge = edge;
            st.root = root;
            st.checkpoint = Some(note.clone());
        }
        drop(writer);
        Ok(BatchOutcome {
            entries: out,
            tree_size: size,
            root,
            checkpoint: Some(note),
        })
    }

    /// Signs and stores a checkpoint for the empty tree when the log has
    /// none yet, so a new log has a checkpoint to serve before its first
    /// entry. Does nothing once any checkpoint exists.
    pub fn ensure_checkpoint(&self, sign: SignFn<'_>) -> Result<(), StorageError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if self.state().checkpoint.is_some() {
            return Ok(());
        }
        let (size, root) = (self.tree_size(), self.root_hash());
        let note = sign(size, root).map_err(StorageError::Sign)?;
        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO checkpoints (size, root, note) VALUES (?1, ?2, ?3)",
            params![size as i64, &root[..], note],
        )?;
        tx.commit()?;
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .checkpoint = Some(note);
        Ok(())
    }

    /// Entry bytes at `index`; `None` beyond the tree.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        if index >= self.tree_size() {
            return Ok(None);
        }
        self.readers.with(|c| {
            let mut st = c.prepare_cached("SELECT data FROM entries WHERE idx = ?1")?;
            let data = st.query_row([index as i64], |r| r.get(0)).optional()?;
            data.map(Some)
                .ok_or_else(|| StorageError::Corrupt(format!("entry {index} missing")))
        })
    }

    /// RFC 9162 inclusion proof (deepest first) of leaf `index` in the tree
    /// of `tree_size`, for any past size. Needs `index < tree_size <= size`.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, StorageError> {
        self.check_size(tree_size)?;
        if index >= tree_size {
            return Err(StorageError::IndexOutOfRange {
                index,
                size: tree_size,
            });
        }
        let edge = self.edge_if(tree_size);
        self.readers
            .with(|c| tree::inclusion_proof(&mut self.tiles(c, edge.as_ref()), index, tree_size))
    }

    /// RFC 9162 consistency proof (deepest first) from `first` to `second`,
    /// both any sizes with `first <= second <= size`. Empty when
    /// `first == second` or `first == 0` (everything extends the empty tree).
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, StorageError> {
        self.check_size(second)?;
        if first > second {
            return Err(StorageError::SizesOutOfOrder { first, second });
        }
        if first == 0 || first == second {
            return Ok(Vec::new());
        }
        let edge = self.edge_if(second);
        self.readers
            .with(|c| tree::consistency_proof(&mut self.tiles(c, edge.as_ref()), first, second))
    }

    /// Root hash of the tree at any past `size` (recomputed from tiles).
    pub fn root_at(&self, size: u64) -> Result<Hash, StorageError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(tree::empty_root());
        }
        self.readers
            .with(|c| tree::range_hash(&mut self.tiles(c, None), 0, size))
    }

    /// A copy of the in-memory right edge if the tree has exactly `size`
    /// leaves now. Proofs at the current size (the usual request) then take
    /// its nodes from memory instead of re-reading the partial tiles.
    fn edge_if(&self, size: u64) -> Option<RightEdge> {
        let st = self.state();
        (st.edge.size() == size).then(|| st.edge.clone())
    }

    fn tiles<'c>(
        &'c self,
        conn: &'c Connection,
        edge: Option<&'c RightEdge>,
    ) -> tree::WithEdge<'c, TileReader<'c>> {
        tree::WithEdge {
            edge,
            inner: TileReader::new(conn, Some(&self.upper_tiles)),
        }
    }

    fn check_size(&self, requested: u64) -> Result<(), StorageError> {
        let current = self.tree_size();
        if requested > current {
            return Err(StorageError::SizeOutOfRange { requested, current });
        }
        Ok(())
    }

    /// C2SP hash tile `tile/<level>/<index>[.p/<width>]` relative to the
    /// current tree: `width = None` is the full tile (`None` unless it holds
    /// 256 hashes); `Some(w)`, `w` in 1..=255, is the first `w` hashes (also
    /// from a tile that has grown since). `None` when beyond the tree.
    pub fn hash_tile(
        &self,
        level: u8,
        index: u64,
        width: Option<u16>,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(end) = tile_end(hashes_at_level(self.tree_size(), level), index, width)? else {
            return Ok(None);
        };
        self.readers.with(|c| {
            let tile = tiles::read_tile(c, level, index)?.unwrap_or_default();
            if tile.len() < 32 * end {
                return Err(StorageError::Corrupt(format!(
                    "tile level {level} index {index} has {} hashes, tree needs {end}",
                    tile.len() / 32
                )));
            }
            let mut tile = tile;
            tile.truncate(32 * end);
            Ok(Some(tile))
        })
    }

    /// C2SP entry bundle `tile/entries/<index>[.p/<width>]`: each entry as a
    /// 2-byte big-endian length and its bytes. Same width rules as
    /// [`Self::hash_tile`].
    pub fn entry_bundle(
        &self,
        index: u64,
        width: Option<u16>,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(end) = tile_end(self.tree_size(), index, width)? else {
            return Ok(None);
        };
        let lo = index * TILE_WIDTH;
        self.readers.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT data FROM entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )?;
            let mut rows = st.query(params![lo as i64, (lo + end as u64) as i64])?;
            let mut out = Vec::new();
            let mut n = 0usize;
            while let Some(row) = rows.next()? {
                let data = row.get_ref(0)?.as_blob().map_err(|e| {
                    StorageError::Corrupt(format!("entry in bundle {index} is not a blob: {e}"))
                })?;
                out.extend_from_slice(&(data.len() as u16).to_be_bytes());
                out.extend_from_slice(data);
                n += 1;
            }
            if n != end {
                return Err(StorageError::Corrupt(format!(
                    "bundle {index}: {n} of {end} entries"
                )));
            }
            Ok(Some(out))
        })
    }

    /// Indices stored under `(kind, key)`, ascending, at most `limit`.
    pub fn search(
        &self,
        kind: SearchKind,
        key: &[u8],
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.readers.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT idx FROM search WHERE kind = ?1 AND key = ?2 ORDER BY idx LIMIT ?3",
            )?;
            let rows = st.query_map(params![kind.code(), key, limit], |r| r.get::<_, i64>(0))?;
            Ok(rows
                .map(|r| r.map(|i| i as u64))
                .collect::<Result<_, _>>()?)
        })
    }
}

/// Number of items (hashes or entries) a tile or bundle request returns, given
/// `count` items at its level in the current tree; `None` if it does not exist.
fn tile_end(count: u64, index: u64, width: Option<u16>) -> Result<Option<usize>, StorageError> {
    let want = match width {
        None => TILE_WIDTH,
        Some(w) if (1..TILE_WIDTH as u16).contains(&w) => u64::from(w),
        Some(w) => return Err(StorageError::BadTileWidth(w)),
    };
    let Some(start) = index.checked_mul(TILE_WIDTH) else {
        return Ok(None);
    };
    Ok((count.saturating_sub(start) >= want).then_some(want as usize))
}
