-- Issue 8: the first-access rule (CP-IS047) asks whether this viewer has a shown access to this
-- child in the last 24 hours. Migration 000018 answered it from the child's shown accesses of the
-- day in access_events_history_idx, keeping the viewer's: a range as long as the number of people
-- who viewed the child that day. On a fresh national year that is one or two; a child viewed by
-- many people in a day (and the benchmark's children, after a day of runs: about 40) made every
-- opening read them all, and the tab slowed with each run. Keyed by the viewer too, the question
-- is one probe whoever else viewed the child. It costs one index write per shown access. The build
-- holds off access inserts (tab openings) while it runs: about 10 s on 10 million accesses here.
CREATE INDEX access_events_child_viewer_idx ON access_events (nhs_number, viewer_id, accessed_at DESC)
    WHERE shown;
