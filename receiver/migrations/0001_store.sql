-- The identity store: one key-value table per store::Table. Keys and values are bytes,
-- encoded as documented on store::Table; bytea orders like sled (memcmp), so scans agree.
-- The frame log is store_log (index u64 BE -> entry); an auditor can read it with psql.
CREATE TABLE store_log         (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE store_frame_index (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE store_seqs        (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE store_users       (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE store_tickets     (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE store_revocations (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE store_mirrors     (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE store_meta        (k bytea PRIMARY KEY, v bytea NOT NULL);
