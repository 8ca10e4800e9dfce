CREATE INDEX access_events_nhs_number_idx ON access_events (nhs_number);
DROP INDEX access_events_history_idx;
CREATE INDEX access_events_history_idx ON access_events (nhs_number, accessed_at DESC, id DESC) WHERE shown;
