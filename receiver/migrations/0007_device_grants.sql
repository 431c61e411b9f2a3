-- Device authorization grants (RFC 8628): keyed by the SHA-256 of the device code; the
-- hash of the user code is unique, so a code typed on one receiver finds the grant a
-- device started on another. Redemption is a row-locked read-modify-write of `data`.
CREATE TABLE oidc_device_grants (
    device_hash    text PRIMARY KEY,
    user_code_hash text NOT NULL UNIQUE,
    expires_at     bigint NOT NULL,
    data           text NOT NULL
);
CREATE INDEX oidc_device_grants_expires_at ON oidc_device_grants (expires_at);
