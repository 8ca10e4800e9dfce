DROP TABLE patient_names;
DROP TABLE transmissions;
DROP TABLE mailbox_messages;
ALTER TABLE cp_items DROP COLUMN upload_id;
DROP TABLE uploads;
DROP TABLE endpoint_tokens;
