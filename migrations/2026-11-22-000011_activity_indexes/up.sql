-- CP-IS081: the keyset pages of "who viewed or changed which records" (src/reports/activity.rs),
-- beside the indexes of 2026-11-22-000010_reports. Indexes only.

-- Views filtered by local authority: "children that LA holds or held information about" is an
-- EXISTS over every cp_items row (current and expired), probed per access by NHS number, or read
-- per LA to find its children.
CREATE INDEX cp_items_child_la_idx ON cp_items (nhs_number, la_code);
CREATE INDEX cp_items_la_child_idx ON cp_items (la_code, nhs_number);

-- Changes filtered by who made them (an LA 'la:<code>' or a user 'user:<id>') or by the LA whose
-- information changed, newest first with the keyset's tie-breaker.
CREATE INDEX audit_log_cp_actor_idx ON audit_log (actor, occurred_at DESC, id DESC) WHERE action LIKE 'cp.%';
CREATE INDEX audit_log_cp_la_idx ON audit_log ((details->>'la_code'), occurred_at DESC, id DESC) WHERE action LIKE 'cp.%';


-- Views of one child in the list's order: the NHS number filter, and the LA filter, which reads
-- the newest views of each of the LA's children (its cost follows the LA's size, not the month's).
CREATE INDEX access_events_child_time_idx ON access_events (nhs_number, accessed_at DESC, id DESC);
