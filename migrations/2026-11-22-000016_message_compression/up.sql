-- Issue 8: the daily notification run writes every LA's message 05 and e-mail (with its attachment)
-- in one transaction: on a national day about a hundred thousand accesses, tens of megabytes of XML
-- and text, which PostgreSQL compresses as it stores them. lz4 compresses several times faster than
-- PostgreSQL's default pglz for about the same size on such text. (PostgreSQL 14 or later, built
-- with lz4, as the Debian and Ubuntu packages are.) Values already stored keep their compression.
ALTER TABLE mailbox_messages ALTER COLUMN body SET COMPRESSION lz4;
ALTER TABLE outbound_emails ALTER COLUMN body_text SET COMPRESSION lz4;
ALTER TABLE outbound_emails ALTER COLUMN body_html SET COMPRESSION lz4;
ALTER TABLE outbound_emails ALTER COLUMN attachment SET COMPRESSION lz4;
