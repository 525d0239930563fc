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
