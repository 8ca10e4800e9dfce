-- Issue 8: an audited action appends to the hash chain in one statement. Before, the append took
-- the chain's lock, read the head and inserted in three statements, so the lock was held across
-- three round trips to the service; on a busy machine each round trip waits for the service's
-- thread to be scheduled, and tab openings queued on the lock. Now the service sends each entry's
-- canonical text (src/audit/chain.rs) and this function takes the lock, reads the head with a
-- snapshot taken after the lock (a PL/pgSQL statement in READ COMMITTED takes a new snapshot), and
-- chains and inserts the entries: hash = SHA-256(predecessor's hash || canonical text), exactly
-- what src/audit/chain.rs computes and the verifier recomputes.
CREATE FUNCTION audit_append(
    lock_key bigint,
    at timestamptz,
    actors text[],
    actions text[],
    numbers text[],
    details jsonb[],
    canonicals text[]
) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head bytea;
    prevs bytea[] := '{}';
    hashes bytea[] := '{}';
    c text;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT hash INTO head FROM audit_log ORDER BY id DESC LIMIT 1;
    head := coalesce(head, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    FOREACH c IN ARRAY canonicals LOOP
        prevs := prevs || head;
        head := sha256(head || convert_to(c, 'UTF8'));
        hashes := hashes || head;
    END LOOP;
    INSERT INTO audit_log (occurred_at, actor, action, nhs_number, details, prev_hash, hash)
    SELECT at, a, x, n, d, p, h
    FROM unnest(actors, actions, numbers, details, prevs, hashes) WITH ORDINALITY AS u(a, x, n, d, p, h, i)
    ORDER BY i;
END;
$$;
