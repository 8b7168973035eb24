-- NDXP registry schema, version 2: the central gateway (centralized model).
-- Portable SQL: the same text runs on SQLite and PostgreSQL. Booleans are
-- BIGINT 0/1; times are fixed-width RFC 3339 text in UTC, as in version 1.

-- How the gateway serves a registered service: its backend, limits, and the
-- DigiSign adapter switches. The service's deprecation and sunset times stay
-- in `services`.
CREATE TABLE gateway_services (
    service_id                TEXT PRIMARY KEY REFERENCES services (id) ON DELETE CASCADE,
    state                     TEXT NOT NULL CHECK (state IN ('registered', 'published', 'withdrawn')),
    backend_url               TEXT NOT NULL,
    timeout_ms                BIGINT NOT NULL CHECK (timeout_ms > 0),
    rate_per_sec              BIGINT NOT NULL CHECK (rate_per_sec >= 0),
    burst                     BIGINT NOT NULL CHECK (burst >= 0),
    quota_per_day             BIGINT NOT NULL CHECK (quota_per_day >= 0),
    sign_requests             BIGINT NOT NULL CHECK (sign_requests IN (0, 1)),
    verify_responses          BIGINT NOT NULL CHECK (verify_responses IN (0, 1)),
    backend_ca_file           TEXT,
    backend_client_cert_file  TEXT,
    backend_client_key_file   TEXT,
    created_at                TEXT NOT NULL,
    updated_at                TEXT NOT NULL
);

-- OAuth2 client credentials of a consumer application (one client
-- subsystem). The secret is kept only as a salted PBKDF2 hash; `generation`
-- grows with every rotation and is carried in tokens, so tokens issued
-- before a rotation stop working at once.
CREATE TABLE gateway_apps (
    client_id      TEXT PRIMARY KEY,
    subsystem_id   TEXT NOT NULL REFERENCES subsystems (id) ON DELETE CASCADE,
    secret_hash    TEXT NOT NULL,
    generation     BIGINT NOT NULL,
    allowed_cidrs  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    rotated_at     TEXT NOT NULL,
    revoked_at     TEXT
);
CREATE INDEX gateway_apps_subsystem ON gateway_apps (subsystem_id);

-- Per-subscription overrides of the service's default limits; NULL keeps
-- the service's value.
CREATE TABLE gateway_limits (
    subscription_id  TEXT PRIMARY KEY REFERENCES subscriptions (id) ON DELETE CASCADE,
    rate_per_sec     BIGINT CHECK (rate_per_sec >= 0),
    burst            BIGINT CHECK (burst >= 0),
    quota_per_day    BIGINT CHECK (quota_per_day >= 0)
);
