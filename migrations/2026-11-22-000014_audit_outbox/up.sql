-- Issue 8: an audited action's entries join the hash chain as its transaction commits, not before.
-- The chain has one order, so appending takes a lock held until the appending transaction ends.
-- Appended mid-transaction, the lock was held across the round trip to the service that sends
-- COMMIT; on a busy machine that wait for the service's thread to be scheduled made every tab
-- opening queue on the lock. Now an action writes its entries to this outbox (in its own
-- transaction, so they commit with it or not at all), and a deferred constraint trigger, run by
-- PostgreSQL inside COMMIT, moves them into audit_log through audit_append (migration 000013):
-- the lock is then held for the move and the commit record alone.
--
-- A row holds one call's entries as arrays (one row for an upload's 60,000 changes). Rows are
-- never visible to another transaction: the trigger deletes them before their transaction commits.
CREATE TABLE audit_outbox (
    id          bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    actors      text[] NOT NULL,
    actions     text[] NOT NULL,
    numbers     text[] NOT NULL,
    details     jsonb[] NOT NULL,
    -- Each entry's canonical text (src/audit/chain.rs), which the chain hashes.
    canonicals  text[] NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

-- Fires once per outbox row at commit, in insertion order: the first firing moves every row of
-- its transaction (the ids from its own up: older ones belong to transactions already ended), so
-- the later firings find theirs gone. The lock key is src/audit/mod.rs's AUDIT_APPEND_LOCK.
CREATE FUNCTION audit_outbox_append() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH moved AS (DELETE FROM audit_outbox WHERE id >= NEW.id RETURNING *)
        SELECT * FROM moved ORDER BY id
    LOOP
        PERFORM audit_append(4850457420605244500, r.occurred_at, r.actors, r.actions, r.numbers, r.details,
                             r.canonicals);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER audit_outbox_append
    AFTER INSERT ON audit_outbox
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION audit_outbox_append();
