//! C2SP tlog-tiles resource paths and entry bundles.
//!
//! Written here because `tlog_tiles::Tile::path` / `from_path` use Go sumdb's
//! paths (`tile/<H>/<L>/<N>`, "data" for entries), not the C2SP ones:
//!
//! - `tile/<L>/<N>[.p/<W>]`: L in 0..=63 without leading zeroes;
//! - `tile/entries/<N>[.p/<W>]`: entry bundles;
//! - N in zero-padded 3-digit groups, all but the last prefixed with "x"
//!   (1234067 -> x001/x234/067); W in 1..=255 without leading zeroes, present
//!   only for partial tiles.
//!
//! Parsing is strict: every path has exactly one encoding, and a parsed path
//! must re-encode to the input byte for byte (so "x000/005", "0005", "05.p/3",
//! ".p/0", ".p/256" and "/tile/..." are all rejected).

use super::parse_canonical_u64;
pub use super::TileError;

/// Tree levels per tile.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile (2^TILE_HEIGHT).
pub const TILE_WIDTH: u64 = 256;
/// Highest tile level.
pub const MAX_LEVEL: u8 = 63;
/// Largest entry a bundle can hold: each is prefixed with a big-endian u16
/// length. Every entry limit in the workspace (a log entry, a Nitro
/// document inside one, a submission's body) is this one.
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;
/// Largest entry bundle: [`TILE_WIDTH`] entries of [`MAX_ENTRY_LEN`] bytes,
/// each with its 2-byte length (16 MiB).
pub const MAX_BUNDLE_BYTES: usize = TILE_WIDTH as usize * (2 + MAX_ENTRY_LEN);

/// What a tile resource holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// Merkle tree hashes at tile level `level` (tree level 8 * level).
    Hashes { level: u8 },
    /// An entry bundle (same index space as level-0 hash tiles).
    Entries,
}

/// One tile resource. `width: None` is a full tile (256 hashes or entries);
/// `Some(w)` is a partial tile of `w` in 1..=255.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TilePath {
    pub kind: TileKind,
    pub index: u64,
    pub width: Option<u16>,
}

impl TilePath {
    /// Parses a path such as "tile/0/x001/234.p/5" (no leading slash).
    pub fn parse(path: &str) -> Result<Self, TileError> {
        let rest = path
            .strip_prefix("tile/")
            .ok_or(TileError::MalformedPath("does not start with \"tile/\""))?;
        let (first, rest) = rest
            .split_once('/')
            .ok_or(TileError::MalformedPath("missing tile index"))?;
        let kind = if first == "entries" {
            TileKind::Entries
        } else {
            let level = parse_canonical_u64(first)
                .ok_or(TileError::MalformedPath("level is not a canonical decimal"))?;
            let level = u8::try_from(level)
                .ok()
                .filter(|l| *l <= MAX_LEVEL)
                .ok_or(TileError::LevelOutOfRange(level))?;
            TileKind::Hashes { level }
        };
        let mut groups: Vec<&str> = rest.split('/').collect();
        let mut width = None;
        if let Some(p) = groups.len().checked_sub(2) {
            if let Some(last_index) = groups.get(p).and_then(|g| g.strip_suffix(".p")) {
                let w = groups.get(p + 1).copied().unwrap_or_default();
                let w = parse_canonical_u64(w)
                    .ok_or(TileError::MalformedPath("width is not a canonical decimal"))?;
                if !(1..TILE_WIDTH).contains(&w) {
                    return Err(TileError::WidthOutOfRange(w));
                }
                width = u16::try_from(w).ok();
                groups.truncate(p);
                groups.push(last_index);
            }
        }
        let index = decode_index(&groups)?;
        let tile = Self { kind, index, width };
        let expected = tile.to_path();
        if expected != path {
            return Err(TileError::NonCanonicalPath { expected });
        }
        Ok(tile)
    }

    /// The path, e.g. "tile/1/001.p/17". Meaningful for valid tiles (see
    /// [`TilePath::validate`]); fields are public, so this does not check.
    pub fn to_path(&self) -> String {
        let kind = match self.kind {
            TileKind::Hashes { level } => level.to_string(),
            TileKind::Entries => "entries".to_owned(),
        };
        let mut out = format!("tile/{kind}/{}", encode_index(self.index));
        if let Some(w) = self.width {
            out.push_str(&format!(".p/{w}"));
        }
        out
    }

    /// Checks the level (<= 63) and width (1..=255 for partial tiles).
    pub fn validate(&self) -> Result<(), TileError> {
        if let TileKind::Hashes { level } = self.kind {
            if level > MAX_LEVEL {
                return Err(TileError::LevelOutOfRange(level.into()));
            }
        }
        match self.width {
            Some(w) if w == 0 || u64::from(w) >= TILE_WIDTH => {
                Err(TileError::WidthOutOfRange(w.into()))
            }
            _ => Ok(()),
        }
    }

    /// Number of hashes or entries the tile holds.
    pub fn count(&self) -> u64 {
        self.width.map_or(TILE_WIDTH, u64::from)
    }
}

/// Decodes "xDDD/.../DDD" groups (already split) into the index.
fn decode_index(groups: &[&str]) -> Result<u64, TileError> {
    let Some((last, prefix)) = groups.split_last() else {
        return Err(TileError::MalformedPath("missing tile index"));
    };
    let mut n: u64 = 0;
    for (i, g) in prefix.iter().map(|g| (true, *g)).chain([(false, *last)]) {
        let digits = if i {
            g.strip_prefix('x').ok_or(TileError::MalformedPath(
                "index group lacks the \"x\" prefix",
            ))?
        } else {
            g
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TileError::MalformedPath("index group is not 3 digits"));
        }
        let d: u64 = digits
            .parse()
            .map_err(|_| TileError::MalformedPath("index group is not 3 digits"))?;
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(d))
            .ok_or(TileError::IndexOverflow)?;
    }
    Ok(n)
}

/// Encodes a tile index in 3-digit groups: 5 -> "005", 1000 -> "x001/000",
/// 1234067 -> "x001/x234/067".
pub fn encode_index(n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        groups.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

/// The rightmost partial hash tiles of a tree of `size` leaves, lowest level
/// first: at level L the width is floor(size / 256^L) mod 256, and levels
/// where that is 0 have no partial tile. These are exactly the tiles, besides
/// full ones, that a checkpoint of this size obliges the log to serve.
/// Example: 70,000 -> tile/0/273.p/112, tile/1/001.p/17, tile/2/000.p/1.
pub fn checkpoint_tiles(size: u64) -> Vec<TilePath> {
    let mut out = Vec::new();
    let mut q = size;
    let mut level: u8 = 0;
    while q > 0 {
        let w = q % TILE_WIDTH;
        q /= TILE_WIDTH;
        if let Ok(w) = u16::try_from(w) {
            if w > 0 {
                out.push(TilePath {
                    kind: TileKind::Hashes { level },
                    index: q,
                    width: Some(w),
                });
            }
        }
        level = level.saturating_add(1);
    }
    out
}

/// The tiles a client needs to recompute the root hash of a tree of `size`
/// leaves: the root is built from the complete subtrees given by the bits of
/// `size`, and bits 8L..8L+7 are covered by the partial tile at level L, so
/// these are the same tiles as [`checkpoint_tiles`].
pub fn tiles_for_size(size: u64) -> Vec<TilePath> {
    checkpoint_tiles(size)
}

/// The level-0 hash tile that holds leaf `index` in a tree of `size` leaves
/// (partial if the leaf lies in the rightmost, unfinished tile), and the
/// leaf's position within it. `None` if `index >= size`.
pub fn tile_for_leaf(index: u64, size: u64) -> Option<(TilePath, usize)> {
    if index >= size {
        return None;
    }
    let n = index / TILE_WIDTH;
    let full_tiles = size / TILE_WIDTH;
    let width = if n < full_tiles {
        None
    } else {
        u16::try_from(size % TILE_WIDTH).ok()
    };
    let offset = usize::try_from(index % TILE_WIDTH).ok()?;
    Some((
        TilePath {
            kind: TileKind::Hashes { level: 0 },
            index: n,
            width,
        },
        offset,
    ))
}

/// Like [`tile_for_leaf`], for the entry bundle holding entry `index`.
pub fn entry_bundle_for_leaf(index: u64, size: u64) -> Option<(TilePath, usize)> {
    tile_for_leaf(index, size).map(|(t, off)| {
        (
            TilePath {
                kind: TileKind::Entries,
                ..t
            },
            off,
        )
    })
}

/// Splits an entry bundle into entries (each a big-endian u16 length then
/// that many bytes). Empty input is zero entries; a bundle never holds more
/// than 256 entries.
pub fn parse_entry_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let len: [u8; 2] = bytes
            .get(offset..offset + 2)
            .and_then(|b| b.try_into().ok())
            .ok_or(TileError::TruncatedBundle { offset })?;
        let len = usize::from(u16::from_be_bytes(len));
        let start = offset + 2;
        let entry = bytes
            .get(start..start + len)
            .ok_or(TileError::TruncatedBundle { offset })?;
        if out.len() as u64 >= TILE_WIDTH {
            return Err(TileError::TooManyEntries);
        }
        out.push(entry);
        offset = start + len;
    }
    Ok(out)
}

/// Encodes entries as a bundle; each entry must be at most
/// [`MAX_ENTRY_LEN`] bytes and there may be at most 256 entries.
pub fn encode_entry_bundle(entries: &[&[u8]]) -> Result<Vec<u8>, TileError> {
    if entries.len() as u64 > TILE_WIDTH {
        return Err(TileError::TooManyEntries);
    }
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for e in entries {
        let len = u16::try_from(e.len()).map_err(|_| TileError::EntryTooLarge { len: e.len() })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}
