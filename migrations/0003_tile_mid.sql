-- attestlog log storage, schema version 3: mid-level hashes in tiles.
-- Applied after 0002 in the same transaction scheme; sets user_version 3.

-- `mid` holds, for tile (L, N) with W hashes, the roots of its complete
-- 16-hash groups: the tree-level-(8L+4) hashes with indices
-- [16N, 16N + W/16), 32 bytes each (512 bytes for a full tile). It is
-- derived from `hashes`, written in the same statement (so in the same batch
-- transaction), and lets a proof hash 2^(r-4) stored hashes instead of 2^r
-- for a subtree at level 8L+r, r >= 4. NULL means not stored (tiles written
-- before this migration); readers then recompute from `hashes`. The C2SP
-- tile API serves `hashes` only.
ALTER TABLE tiles ADD COLUMN mid BLOB;
