-- attestlog log storage on PostgreSQL, schema version 1.
-- Applied by attestlog_server::storage::postgres at open, inside one
-- transaction holding an advisory lock, after which `schema_version` holds 1.
-- The same tables as the SQLite schema at its version 4 (migrations/*.sql),
-- plus `log_head`, the row the append compare-and-swap locks.

-- Log entries, dense indices 0..tree_size. An entry bundle is the range scan
-- idx in [256N, 256N+W).
CREATE TABLE entries (
    idx  bigint PRIMARY KEY,
    data bytea  NOT NULL                 -- entry bytes, at most 65,535
);

-- Dedup: leaf hash -> index; claim id -> index of the first entry with it.
CREATE TABLE leaf_index (
    leaf_hash bytea  PRIMARY KEY,        -- SHA-256(0x00 || data)
    idx       bigint NOT NULL
);
CREATE TABLE claim_index (
    claim_id bytea  PRIMARY KEY,         -- spec/entry.md, "Claim identity"
    idx      bigint NOT NULL
);

-- Search keys: (kind, key) -> entry index. kind: 1 = artifact sha256,
-- 2 = commit, 3 = pcr0.
CREATE TABLE search (
    kind smallint NOT NULL,
    key  bytea    NOT NULL,
    idx  bigint   NOT NULL,
    PRIMARY KEY (kind, key, idx)
);

-- C2SP tlog-tiles hash tiles, height 8, with their level-8L+4 hashes
-- (`mid`, see migrations/0003_tile_mid.sql). Partial tiles are rewritten as
-- they grow; full tiles never change. Written only by the append (the
-- integrator), so a later object-store backend can move them to a bucket.
CREATE TABLE tiles (
    level  smallint NOT NULL,
    idx    bigint   NOT NULL,
    hashes bytea    NOT NULL,
    mid    bytea    NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Every checkpoint ever signed, by tree size.
CREATE TABLE checkpoints (
    size bigint PRIMARY KEY,
    root bytea  NOT NULL,                -- 32-byte RFC 6962 root
    note text   NOT NULL                 -- signed note, verbatim
);

-- Checkpoints carrying the witness quorum's cosignatures, by tree size.
CREATE TABLE cosigned (
    size bigint PRIMARY KEY REFERENCES checkpoints(size),
    note text   NOT NULL
);

-- The head of the log: exactly one row, the size and root of the latest
-- checkpoint (NULL, NULL for a log that has none). Every append starts with
--   UPDATE log_head SET size = new, root = new
--    WHERE size IS NOT DISTINCT FROM prev AND root IS NOT DISTINCT FROM prev
-- and writes nothing else if no row matched (checkpoint_conflict): the row
-- lock serializes writers, and a writer that sequenced on a stale head finds
-- zero rows once the first one commits. This is what fences a second writer
-- (and, later, a second integrator).
CREATE TABLE log_head (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    size bigint,
    root bytea,
    CHECK ((size IS NULL) = (root IS NULL))
);
INSERT INTO log_head (one, size, root) VALUES (true, NULL, NULL);
