-- NDXP message log schema, version 5: certificates stored once.
-- A record's signer and intermediate certificates repeat in almost every
-- record; the `record` column holds each as its SHA-256 (hex) and the DER
-- (base64) is kept here once. The record's hash is still computed over its
-- canonical encoding with the certificates in full (ndxp_audit::log), so
-- hashes, chains and archives are unchanged. Rows are only ever inserted.

CREATE TABLE message_log_certificates (
    sha256  TEXT NOT NULL PRIMARY KEY,
    der     TEXT NOT NULL
);
