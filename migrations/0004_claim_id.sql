-- attestlog log storage, schema version 4: deduplication by claim.
-- Applied after 0003 in the same transaction scheme; sets user_version 4.

-- Claim id -> index of the first entry logged with it. The claim id
-- (spec/entry.md, "Claim identity") is SHA-256 over everything an entry says
-- except the COSE signature, so a second signature of the same attestation
-- (ECDSA (r, n - s)) or another encoding of its envelope has the same id and
-- is answered with this index instead of being appended. Entries that are not
-- an attestlog entry with a decodable COSE_Sign1 have no row.
-- IF NOT EXISTS: a database whose user_version was lowered by hand still
-- migrates.
CREATE TABLE IF NOT EXISTS claim_index (
    claim_id BLOB    PRIMARY KEY,        -- 32-byte SHA-256
    idx      INTEGER NOT NULL
) WITHOUT ROWID;

-- The rows for entries logged before this migration cannot be computed in
-- SQL (the claim id needs the entry and its COSE envelope decoded): the
-- server fills them in, in index order, in this same transaction, right after
-- this script (storage::dedup::backfill_claim_index). A crash before the
-- commit leaves the database at version 3, and the next open does it again.
