-- Issue 8: a pending entry kept its details twice, as jsonb and inside its canonical text (the
-- array [time, actor, action, NHS number, details] the chain hashes, src/audit/chain.rs). Writing
-- a national file's 60,000 entries parsed every details text into jsonb in the upload's
-- transaction, and wrote each twice. Now only the canonical text is kept; the chaining, which runs
-- after the upload has been answered, takes the details from it into audit_log
-- ((canonical::jsonb)->4, the same value). Rows pending at this migration keep their canonical
-- text, which is all the chaining reads.
ALTER TABLE audit_pending DROP COLUMN details;
