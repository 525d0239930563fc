-- attestlog log storage, schema version 6: dedup keys cut to 16 bytes.
-- Applied after 0005 in the same transaction scheme; sets user_version 6.

-- `leaf_index` and `claim_index` keep the first 16 bytes of the leaf hash
-- (SHA-256(0x00 || data)) or claim id instead of all 32, beside the index.
-- The key is no longer unique by itself: a lookup reads every row with the
-- prefix, recomputes the full leaf hash or claim id from the entry it names
-- and answers with the lowest index that matches exactly
-- (storage::sqlite::dedup::lookup), so a prefix collision can cost a read
-- but never a wrong answer. Two SHA-256 values share 16 bytes by chance
-- with probability 2^-128, and finding such a pair takes about 2^64 hashes.
-- It saves 16 bytes per entry in each index (spec/storage.md, "SQLite
-- backend"). The dedup decisions are made above the backend; the old
-- primary keys were a second guard against a duplicate row, and
-- (prefix, idx) keeps only the guard against a row written twice.
-- Copied in key order, so the new B-trees are written densely.
CREATE TABLE leaf_index_v6 (
    leaf_prefix BLOB    NOT NULL,        -- first 16 bytes of the leaf hash
    idx         INTEGER NOT NULL,
    PRIMARY KEY (leaf_prefix, idx)
) WITHOUT ROWID;
INSERT INTO leaf_index_v6 (leaf_prefix, idx)
    SELECT substr(leaf_hash, 1, 16), idx FROM leaf_index ORDER BY leaf_hash, idx;
DROP TABLE leaf_index;
ALTER TABLE leaf_index_v6 RENAME TO leaf_index;

CREATE TABLE claim_index_v6 (
    claim_prefix BLOB    NOT NULL,       -- first 16 bytes of the claim id
    idx          INTEGER NOT NULL,
    PRIMARY KEY (claim_prefix, idx)
) WITHOUT ROWID;
INSERT INTO claim_index_v6 (claim_prefix, idx)
    SELECT substr(claim_id, 1, 16), idx FROM claim_index ORDER BY claim_id, idx;
DROP TABLE claim_index;
ALTER TABLE claim_index_v6 RENAME TO claim_index;
