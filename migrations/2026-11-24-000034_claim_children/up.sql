-- Issue 8: the access recorder's batch in two round trips instead of four.
--
-- A batch of tab openings was recorded in one transaction: BEGIN with the children's locks, the
-- read of who saw each child last (CP-IS047), the insert, and COMMIT: four round trips one after
-- another on the recorder's serial path, each paid by every opening waiting behind it. Now the
-- read is a statement of its own, outside any transaction, and the store is one statement whose
-- WHERE calls this function before anything is inserted. It takes each child's lock (key order,
-- waiting at most `timeout_ms` for each) and then, with the fresh snapshot each statement of a
-- volatile function gets, asks again what the read asked: the latest shown access by each
-- (NHS number, viewer) after the window's start. If any answer changed, another opening of that
-- child by that viewer was recorded in between (by another instance, or another recorder thread)
-- and the batch's first-access decisions may be wrong: it raises a serialization failure, nothing
-- is stored, and the recorder records the batch the old way, locked before it reads. If none
-- changed, the decisions are those the locked path would have made, and the locks are held until
-- the statement's own commit, so no other opening of these children is decided meanwhile.
--
-- `own` are the batch's own ids: rows the same statement inserts are visible to a volatile
-- function it calls, should the planner ever insert before it asks.
--
-- The decisions themselves stay in Rust (src/domain/access_history.rs); this only checks that
-- their inputs still hold.
CREATE FUNCTION cpis_claim_children(
    keys bigint[],
    timeout_ms integer,
    numbers text[],
    viewers text[],
    since timestamptz[],
    latest timestamptz[],
    own bigint[]
) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    previous text := current_setting('lock_timeout');
BEGIN
    PERFORM set_config('lock_timeout', timeout_ms || 'ms', true);
    -- In array order: the sub-select is not flattened, so each row's lock is taken as it is read.
    PERFORM pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest(keys) AS u(k) OFFSET 0) AS s;
    -- For these locks alone: the chain's lock at COMMIT waits as long as it must.
    PERFORM set_config('lock_timeout', previous, true);
    IF EXISTS (
        SELECT FROM unnest(numbers, viewers, since, latest) AS q(n, v, w, l)
        WHERE (SELECT max(e.accessed_at) FROM access_events AS e
               WHERE e.nhs_number = q.n AND e.viewer_id = q.v AND e.shown AND e.accessed_at > q.w
                 AND e.id <> ALL (own)) IS DISTINCT FROM q.l
    ) THEN
        RAISE EXCEPTION 'an opening''s child was viewed by the same viewer after the batch was read'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN true;
END
$$;
