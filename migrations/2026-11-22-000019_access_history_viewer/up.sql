-- Issue 8: the first-access rule (CP-IS047) reads the child's shown accesses of the last day from
-- access_events_history_idx and keeps the viewer's (migration 000018). With the viewer in the
-- index, that read is answered from the index alone, like the history itself, instead of visiting
-- the heap for every shown access of the day. The rebuild holds off access inserts (tab openings)
-- while it runs: about a minute on a national year (5 million accesses); plan the deployment so.
DROP INDEX access_events_history_idx;
CREATE INDEX access_events_history_idx ON access_events (nhs_number, accessed_at DESC, id DESC)
    INCLUDE (user_id, viewer_name, job_role_code, organisation_code, viewer_id) WHERE shown;
