-- attestlog log storage, schema version 1.
-- Applied by attestlog_server::storage at open, inside one transaction,
-- after which PRAGMA user_version is set to 1.

-- Log entries, dense indices 0..tree_size. An entry bundle (tile/entries/N)
-- is the range scan idx in [256N, 256N+W).
CREATE TABLE entries (
    idx  INTEGER PRIMARY KEY,            -- leaf index (rowid: no extra index)
    data BLOB    NOT NULL                -- entry bytes, at most 65,535
);

-- Dedup: leaf hash -> index. The primary key is the unique index.
CREATE TABLE leaf_index (
    leaf_hash BLOB    PRIMARY KEY,       -- SHA-256(0x00 || data)
    idx       INTEGER NOT NULL
) WITHOUT ROWID;

-- C2SP tlog-tiles hash tiles, height 8. Tile (level L, idx N) holds the
-- Merkle hashes at tree level 8L with indices [256N, 256N + W), W = length/32.
-- Partial tiles (W < 256) are rewritten in place as they grow; full tiles
-- never change.
CREATE TABLE tiles (
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hashes BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Every checkpoint ever signed, by tree size.
CREATE TABLE checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB    NOT NULL,               -- 32-byte RFC 6962 root
    note TEXT    NOT NULL                -- signed note, verbatim
);

-- Search keys given by the caller at append: (kind, key) -> entry index.
-- kind: 1 = artifact sha256, 2 = commit, 3 = pcr0.
CREATE TABLE search (
    kind INTEGER NOT NULL,
    key  BLOB    NOT NULL,
    idx  INTEGER NOT NULL,
    PRIMARY KEY (kind, key, idx)
) WITHOUT ROWID;
