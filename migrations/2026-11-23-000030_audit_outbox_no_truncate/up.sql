-- Issue 8: vacuum never shortens the audit outbox. Every audited action inserts a row and deletes
-- it as it commits (migration 000027), so autovacuum visits the table every 1,000 dead rows
-- (migration 000014): every few seconds under the tab's load. A vacuum that finds empty pages at
-- the table's end truncates them, and for that takes the table's ACCESS EXCLUSIVE lock, which
-- every audited action's outbox insert then waits for. Profiled during the tab's benchmark
-- (scripts/bench-profile tab), 7 of 40 sampled backend states were waiting on a relation lock
-- while a vacuum truncated the outbox (IO:DataFileTruncate). Its empty pages are reused by the
-- next rows instead. Its TOAST table likewise: an outbox row's arrays (an upload's row holds
-- 60,000 entries) are stored there when they do not fit in the row, under the same kind of lock.
ALTER TABLE audit_outbox SET (vacuum_truncate = false, toast.vacuum_truncate = false);
