-- NDXP registry schema, version 4: client certificates as consumer
-- credentials at the central gateway (docs/gateway.md). Depends on
-- version 2 (gateway_apps).
-- Portable SQL: the same text runs on SQLite and PostgreSQL; times are
-- fixed-width RFC 3339 text in UTC.

-- A row of gateway_apps is either OAuth2 client credentials (secret_hash
-- set, cert_sha256 NULL) or a client certificate (cert_sha256 set, the
-- SHA-256 of the certificate's DER as 64 lowercase hex digits;
-- secret_hash empty, so no secret ever matches). Subject and expiry are
-- kept for display. The certificate itself is not stored.
ALTER TABLE gateway_apps ADD COLUMN cert_sha256 TEXT;
ALTER TABLE gateway_apps ADD COLUMN cert_subject TEXT;
ALTER TABLE gateway_apps ADD COLUMN cert_not_after TEXT;

-- One unrevoked credential per certificate; a revoked one may be
-- registered again as a new credential.
CREATE UNIQUE INDEX gateway_apps_cert ON gateway_apps (cert_sha256)
    WHERE cert_sha256 IS NOT NULL AND revoked_at IS NULL;
