-- store_seqs values now carry the frame hash (log index u64 BE | SHA-256 of the Sign1), which
-- tells a repetition from a replay on its own; the separate index by frame hash goes.
-- No release ever wrote the older 8-byte store_seqs values, so nothing is converted.
DROP TABLE store_frame_index;
