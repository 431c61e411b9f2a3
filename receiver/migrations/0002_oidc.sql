-- The OpenID provider's state, shared by every receiver of the cluster. Secrets are
-- stored only as SHA-256 hashes (see oidc::store). Records are JSON text; the columns
-- beside them exist for lookups, atomic flips and purging.
CREATE TABLE oidc_sessions (
    sid         text PRIMARY KEY,
    secret_hash text NOT NULL UNIQUE,
    sub         text NOT NULL,
    expires_at  bigint NOT NULL,
    data        text NOT NULL
);
CREATE INDEX oidc_sessions_sub ON oidc_sessions (sub);

CREATE TABLE oidc_pending (
    id         text PRIMARY KEY,
    expires_at bigint NOT NULL,
    data       text NOT NULL
);

CREATE TABLE oidc_codes (
    code_hash  text PRIMARY KEY,
    expires_at bigint NOT NULL,
    data       text NOT NULL
);

CREATE TABLE oidc_families (
    id         text PRIMARY KEY,
    sid        text NOT NULL,
    sub        text NOT NULL,
    expires_at bigint NOT NULL,
    data       text NOT NULL
);
CREATE INDEX oidc_families_sid ON oidc_families (sid);
CREATE INDEX oidc_families_sub ON oidc_families (sub);

CREATE TABLE oidc_refresh (
    token_hash text PRIMARY KEY,
    family     text NOT NULL,
    expires_at bigint NOT NULL,
    used       boolean NOT NULL
);

-- Signing keys and their schedule (sign_from, retire_after inside the record): one
-- rotation for the whole cluster.
CREATE TABLE oidc_keys (
    kid  text PRIMARY KEY,
    data text NOT NULL
);

-- Transfer-code attempt counters, per locator and per client address, shared so that
-- a brute force spread over several receivers is still counted once.
CREATE TABLE oidc_attempts (
    key          text PRIMARY KEY,
    failures     integer NOT NULL,
    window_start bigint NOT NULL,
    locked_until bigint NOT NULL
);
