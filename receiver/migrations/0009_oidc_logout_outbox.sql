-- Back-channel logouts waiting for delivery (the outbox), shared by the receivers of a
-- cluster so that a restart or a failover does not forget one. A receiver claims a due
-- row (`FOR UPDATE SKIP LOCKED`) by writing its own id and a lease end into it; another
-- receiver takes the row over only once that lease has run out (its holder died
-- mid-attempt). Times are Unix milliseconds. Each attempt signs a fresh logout token:
-- no token is stored.
CREATE TABLE oidc_logout_outbox (
    id              text PRIMARY KEY,
    client_id       text NOT NULL,
    uri             text NOT NULL,
    sub             text NOT NULL,
    sid             text NOT NULL,
    attempts        bigint NOT NULL,
    next_attempt_ms bigint NOT NULL,
    created_ms      bigint NOT NULL,
    lease_owner     text,
    lease_until_ms  bigint NOT NULL DEFAULT 0
);
CREATE INDEX oidc_logout_outbox_due ON oidc_logout_outbox (next_attempt_ms);
