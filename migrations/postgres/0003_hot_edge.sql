-- attestlog log storage on PostgreSQL, schema version 3: the hot edge.
-- The partial hash tiles of the published tree (at most one per tile level)
-- live here, written in the same transaction that moves log_head, instead
-- of one object per width in the object store: an integration then writes
-- to the bucket only the tiles and bundles it completes. The bucket's
-- partial tiles, partial bundle and `checkpoint` are written by a flush at
-- most once per second, in that order (spec/storage.md, "The hot edge").
-- A row is deleted in the transaction that completes its tile, whose full
-- object was written before that transaction.
CREATE TABLE hot_tiles (
    level  smallint NOT NULL,
    idx    bigint   NOT NULL,
    hashes bytea    NOT NULL,          -- 32 * width bytes, 0 < width < 256
    mid    bytea    NOT NULL,          -- its level-8L+4 hashes (tiles.rs)
    PRIMARY KEY (level, idx)
);

-- Entries are stored compressed out of line (TOAST) from 2 KB on; lz4
-- compresses a Nitro entry about as well as the default pglz (5.2 KB to
-- about 2.9 KB) at a fraction of the CPU, which a busy log spends on every
-- insert. Rows written before keep their pglz (both are read alike).
ALTER TABLE entries ALTER COLUMN data SET COMPRESSION lz4;
