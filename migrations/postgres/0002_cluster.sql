-- attestlog log storage on PostgreSQL, schema version 2: cluster mode.
-- Several frontends sequence into PostgreSQL, one integrator at a time (the
-- lease below) grows the tree; tiles, entry bundles and the published
-- checkpoint live in the object store (--objects), not here. See
-- spec/storage.md, "Cluster mode".

-- A schema-1 log kept its tiles in this database; they are not moved by a
-- migration (that is `attestlog-server migrate`'s job), so only an empty
-- schema-1 log is upgraded in place.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM entries) THEN
        RAISE EXCEPTION 'schema_upgrade_refused: this schema-1 log holds entries and its tiles are in PostgreSQL; move it with attestlog-server migrate';
    END IF;
END $$;
DROP TABLE tiles;

-- The next index to assign. Every sequencing transaction starts with
--   SELECT next_idx FROM seq_head FOR UPDATE
-- so sequencing transactions of all frontends serialize on this row and
-- commit dense index ranges in index order. `entries` then holds
-- [0, next_idx): integrated below log_head.size, sequenced above it.
CREATE TABLE seq_head (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    next_idx bigint  NOT NULL CHECK (next_idx >= 0)
);
INSERT INTO seq_head (one, next_idx) VALUES (true, 0);

-- The integrator lease: at most one holder whose lease has not expired.
-- Acquire or renew:
--   UPDATE lease SET holder = me, epoch = CASE WHEN holder = me THEN epoch
--        ELSE epoch + 1 END, expires_at = now() + ttl
--    WHERE expires_at < now() OR holder = me RETURNING epoch
-- The integrator's log_head update runs in a transaction that first locks
-- this row FOR SHARE with holder = me AND epoch = my epoch, so an
-- integrator that lost the lease (paused, partitioned) can never move the
-- head: fencing by epoch.
CREATE TABLE lease (
    one        boolean     PRIMARY KEY DEFAULT true CHECK (one),
    holder     text,
    epoch      bigint      NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO lease (one) VALUES (true);
