-- attestlog log storage, schema version 5: a log that was moved elsewhere.
-- Applied after 0004 in the same transaction scheme; sets user_version 5.

-- Written by `attestlog-server migrate` into the SOURCE log once the moved
-- log is proved consistent with it (spec/storage.md, "Moving a log"). A
-- server refuses to open a log with a row here (`log_moved`): the moved log
-- carries on under the same origin and key, so appending here too would fork
-- it. At most one row. `migrate --undo` deletes it, only while the moved log
-- is still exactly at `size` and `root` (it has signed nothing new).
CREATE TABLE IF NOT EXISTS moved (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    destination TEXT    NOT NULL,        -- postgres host:port/db and the object store URL, no password
    size        INTEGER NOT NULL,        -- the source's size when it was moved
    root        BLOB    NOT NULL,        -- and its root (32 bytes)
    moved_at    TEXT    NOT NULL         -- UTC, RFC 3339
);
