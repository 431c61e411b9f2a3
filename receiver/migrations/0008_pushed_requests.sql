-- Pushed authorization requests (RFC 9126): single use, bound to the client that pushed
-- them, short-lived. The id is the SHA-256 of the request_uri's secret part.
CREATE TABLE oidc_pushed_requests (
    id         text PRIMARY KEY,
    client_id  text NOT NULL,
    expires_at bigint NOT NULL,
    data       text NOT NULL
);
CREATE INDEX oidc_pushed_requests_expires ON oidc_pushed_requests (expires_at);
