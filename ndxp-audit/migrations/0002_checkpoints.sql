-- NDXP message log schema, version 2: chain checkpoints.
-- Before records are purged, the (seq, hash) of the last purged record is
-- kept here, so what remains still hangs from a known point of the chain.
-- Rows are only ever inserted.

CREATE TABLE message_log_checkpoints (
    writer     TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    purged_at  TEXT NOT NULL,
    PRIMARY KEY (writer, seq)
);
