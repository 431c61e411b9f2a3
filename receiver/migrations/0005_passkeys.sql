-- Passkeys (WebAuthn credentials bound to an outside approval), ceremonies between their
-- options and their response (single use), and the security event log.
CREATE TABLE oidc_passkeys (
    cred_id  text PRIMARY KEY,
    sub      text NOT NULL,
    username text NOT NULL,
    data     text NOT NULL
);
CREATE INDEX oidc_passkeys_sub ON oidc_passkeys (sub);
CREATE INDEX oidc_passkeys_username ON oidc_passkeys (username);

CREATE TABLE oidc_ceremonies (
    id         text PRIMARY KEY,
    expires_at bigint NOT NULL,
    data       text NOT NULL
);

CREATE TABLE oidc_security_events (
    id   bigserial PRIMARY KEY,
    data text NOT NULL
);
