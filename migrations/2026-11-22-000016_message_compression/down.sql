ALTER TABLE mailbox_messages ALTER COLUMN body SET COMPRESSION default;
ALTER TABLE outbound_emails ALTER COLUMN body_text SET COMPRESSION default;
ALTER TABLE outbound_emails ALTER COLUMN body_html SET COMPRESSION default;
ALTER TABLE outbound_emails ALTER COLUMN attachment SET COMPRESSION default;
