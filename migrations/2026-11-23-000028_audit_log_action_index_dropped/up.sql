-- Issue 8: every audit entry wrote audit_log_action_time_idx (action, occurred_at), added with the
-- reports (migration 000010), and nothing reads it: the reports read the changes through the
-- partial indexes on `action LIKE 'cp.%'` (000010, 000011), a child's entries through
-- audit_log_nhs_number_idx, and the retention purge its own checkpoint from the end of the primary
-- key. On the national benchmark's database it had been scanned 0 times (pg_stat_user_indexes),
-- at 706 MB, against one insert for every tab opening, FHIR query, sign-in and uploaded record.
--
-- Dropping it takes audit_log's strongest lock, so it waits for every reader in flight (a chain
-- verification, a report) and, while it waits, every audited commit waits behind it. It gives up
-- after 10 s instead, and the migration (and the instance's start) fails saying so: start again
-- when the long reader has finished.
SET LOCAL lock_timeout = '10s';
DROP INDEX audit_log_action_time_idx;
