-- Issue 8: every audit entry wrote audit_log_action_time_idx (action, occurred_at), added with the
-- reports (migration 000010), and nothing reads it: the reports read the changes through the
-- partial indexes on `action LIKE 'cp.%'` (000010, 000011), a child's entries through
-- audit_log_nhs_number_idx, and the newest retention checkpoint from the end of the primary key.
-- On the national benchmark's database it had been scanned 0 times (pg_stat_user_indexes), at
-- 706 MB, against one insert for every tab opening, FHIR query, sign-in and uploaded record.
DROP INDEX audit_log_action_time_idx;
