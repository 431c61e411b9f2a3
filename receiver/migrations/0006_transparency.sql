-- Signed checkpoints (tree heads) of the frame log's Merkle tree: tree size u64 BE -> the
-- C2SP signed note. The tree itself needs no table: its frontier is one row of store_meta
-- (key tree_frontier), written in the same transaction as the log entries it covers.
CREATE TABLE store_checkpoints (k bytea PRIMARY KEY, v bytea NOT NULL);
