-- CREATE OR REPLACE sets every property but owner and permissions, so the SET clause goes too.
CREATE OR REPLACE FUNCTION audit_outbox_append() RETURNS trigger LANGUAGE plpgsql AS $$
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
