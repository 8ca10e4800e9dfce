-- Issue 8: every recorded access wrote seven indexes, two of them on the same key (nhs_number,
-- accessed_at DESC, id DESC): access_events_history_idx, partial (WHERE shown) and covering what
-- the tab's history shows (migrations 000015, 000019), and access_events_child_time_idx, whole,
-- for the reads of one child's accesses, shown or not (CP-IS081's pages by child and by LA,
-- migration 000011; the retention purge by NHS number). One whole index with `shown` among its
-- included columns serves both: the history is still an index-only read, which passes over the
-- child's accesses that were not shown (repeat views within the day, CP-IS047) without a heap
-- visit, and the by-child reads keep their key. Measured on the benchmark's national year with
-- pgbench, one client, alternating (2026-11-24): five accesses stored and five histories read
-- per transaction, 1,290 to 1,340 a second with the two indexes, 1,450 to 1,600 with this one;
-- 693 MB against 834 MB for the two. The tab at 16 users end to end did not move beyond its
-- spread (ratios 0.225 to 0.277 with this index, 0.234 to 0.273 without, six alternating rounds
-- each): on the benchmark the machine's other work hides it, but each access writes one index
-- fewer.
-- The build holds off access inserts (tab openings) while it runs: about ten seconds on a
-- national year (5 million accesses); plan the deployment so.
CREATE INDEX access_events_child_idx ON access_events (nhs_number, accessed_at DESC, id DESC)
    INCLUDE (user_id, viewer_name, job_role_code, organisation_code, viewer_id, shown);
DROP INDEX access_events_history_idx;
DROP INDEX access_events_child_time_idx;
