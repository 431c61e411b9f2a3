-- Revocations that may come before what they revoke is stored: `family:<id>` (a code
-- reused while its first redemption is still issuing) and `session:<sid>` (a logout
-- racing a redemption). A family stored later under a tombstone is stored revoked.
-- `seen_at` is set by the first purge that sees the row; the row goes an hour later.
CREATE TABLE oidc_tombstones (
    key     text PRIMARY KEY,
    seen_at bigint
);
