-- Issue 8: every audited action (each opening of the Child Care Alert tab, each FHIR query) appends
-- to the hash chain under one lock held until its commit. The UNIQUE indexes on prev_hash and hash
-- put every append on two random pages of two large B-trees (the keys are hashes), which at a
-- national year of audit (5 million entries) was most of the time the lock was held, and a large
-- part of a 60,000-record upload. They were a second line only: the verifier walks the chain in id
-- order and already finds a forked, repeated or moved entry by its predecessor hash (CP-IS074), and
-- the signed checkpoints find a rewritten chain.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_prev_hash_key;
ALTER TABLE audit_log DROP CONSTRAINT audit_log_hash_key;
