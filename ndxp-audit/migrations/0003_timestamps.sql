-- NDXP message log schema, version 3: batch RFC 3161 timestamps.
-- One row per time-stamp token. The token's message imprint is the SHA-256
-- `hash` of record `last_seq` of `writer`: through the hash chain it proves
-- that records first_seq..=last_seq (and every earlier one) existed at the
-- token's genTime. `first_seq` is the first record the token newly covers.
-- `token` is the DER ContentInfo, base64. Rows are only ever inserted.

CREATE TABLE message_log_timestamps (
    writer      TEXT NOT NULL,
    first_seq   BIGINT NOT NULL,
    last_seq    BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    gen_time    TEXT NOT NULL,
    token       TEXT NOT NULL,
    PRIMARY KEY (writer, last_seq)
);
