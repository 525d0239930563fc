-- attestlog log storage, schema version 2: witnessed checkpoints.
-- Applied after 0001 in the same transaction scheme; sets user_version 2.

-- Checkpoints that carried at least the witness quorum of cosignatures when
-- published, by tree size. `note` is the log-signed note from `checkpoints`
-- with the witnesses' cosignature/v1 lines appended, verbatim. Only a server
-- started with --witness writes here; it publishes the largest one.
CREATE TABLE cosigned (
    size INTEGER PRIMARY KEY REFERENCES checkpoints(size),
    note TEXT    NOT NULL
);
