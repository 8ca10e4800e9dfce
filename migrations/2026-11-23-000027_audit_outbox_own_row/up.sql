-- Issue 8: the outbox's move read the table with a sequential scan. Its statement,
-- `DELETE FROM audit_outbox WHERE id >= NEW.id`, was planned once for any id, and for a table that
-- vacuum keeps near empty the planner chose to read it whole. Between vacuums (every 1,000 dead
-- rows) that is every row moved since, dead, each page pruned again: profiled during the tab's
-- benchmark, the scan was a tenth of PostgreSQL's work.
--
-- Now each firing moves its own row, deleted by its key through the primary key's index, and
-- appends what the row holds as it is deleted (as before: not the row as first inserted). A row
-- already gone is an error, never an entry chained twice or one chained that was taken back.
-- Firings run in insertion order, so a transaction's rows still join the chain in the order they
-- were written; the chain's lock is taken by the first and held until the transaction ends, as
-- before.
CREATE OR REPLACE FUNCTION audit_outbox_append() RETURNS trigger LANGUAGE plpgsql
-- An index scan whatever the statistics say: one row is wanted, among many dead ones. (The
-- setting holds inside this function only.)
SET enable_seqscan = off
AS $$
DECLARE
    r audit_outbox%ROWTYPE;
BEGIN
    DELETE FROM audit_outbox WHERE id = NEW.id RETURNING * INTO r;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit outbox row % is gone before its transaction committed', NEW.id;
    END IF;
    PERFORM audit_append(4850457420605244500, r.occurred_at, r.actors, r.actions, r.numbers, r.details, r.canonicals);
    RETURN NULL;
END;
$$;
