CREATE INDEX access_events_history_idx ON access_events (nhs_number, accessed_at DESC, id DESC)
    INCLUDE (user_id, viewer_name, job_role_code, organisation_code, viewer_id) WHERE shown;
CREATE INDEX access_events_child_time_idx ON access_events (nhs_number, accessed_at DESC, id DESC);
DROP INDEX access_events_child_idx;
