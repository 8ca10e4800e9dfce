CREATE INDEX access_events_viewer_idx ON access_events (nhs_number, viewer_id, accessed_at DESC) WHERE shown;
