DROP INDEX access_events_child_time_idx;
DROP INDEX audit_log_cp_la_idx;
DROP INDEX audit_log_cp_actor_idx;
DROP INDEX cp_items_la_child_idx;
DROP INDEX cp_items_child_la_idx;
