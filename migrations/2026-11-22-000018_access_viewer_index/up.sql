-- Issue 8: every recorded access wrote seven indexes. access_events_viewer_idx served one read
-- alone: the first-access rule's "latest shown access by this viewer to this child" (CP-IS047).
-- Only the last day's shown accesses can change that decision (src/domain/access_history.rs,
-- window_start), and those are a short range of access_events_history_idx (nhs_number,
-- accessed_at DESC) WHERE shown, at most one per viewer, which the tab reads next anyway. So the
-- read uses that range and the index goes: one index write fewer on every shown access.
DROP INDEX access_events_viewer_idx;
