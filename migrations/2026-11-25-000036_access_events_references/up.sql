-- Issue 8: access_events' two references (to patients and users) checked once per statement, as
-- cp_items' are (migrations 000017, 000020 and 000023), instead of by two foreign keys per row.
--
-- Why (measured on the national dataset): every recorded access ran two foreign-key checks, each a
-- query of its own that locks the parent row FOR KEY SHARE, which writes to the patient's and the
-- account's tuple and adds a WAL record each. A profile of the tab thread's PostgreSQL backend at
-- 16 users put those checks at 6.6% of its time; the tab is one serial path, so that is the
-- tab's throughput. `--only tab` at 16 users, each round of the build before followed by one of
-- this (2026-11-25, four pairs): 4,013 -> 4,282, 3,840 -> 4,389, 4,298 -> 4,591 and 4,331 -> 4,636
-- tabs a second; PostgreSQL's CPU an opening 208 -> 189, 203 -> 185, 190 -> 178 and 186 -> 172 µs.
-- (With no check at all, in one round beside the first pair: 174 µs. The statement's check costs
-- less than half of what the two keys did.)
--
-- The guarantee stays a foreign key's, in both directions, by the same means as cp_items':
-- * access_events -> parent: after every INSERT, every NHS number the statement wrote must be a
--   PDS patient and every user id an account. Under READ COMMITTED the check first takes the
--   references' advisory lock shared ("CPISREFS", cp_items_reference_lock()), which a parent's
--   delete or key change takes exclusive, so the two meet there and whichever goes second sees
--   what the first did; outside READ COMMITTED it locks the parent rows FOR KEY SHARE as a
--   foreign key does.
-- * an access's references never change (nothing updates an access): refused.
-- * parent: deleting or re-keying a patient or an account that accesses name is refused, outside
--   READ COMMITTED always (reference_parent_isolation_check), and so is TRUNCATE while accesses
--   exist. (The account's side reads access_events without an index on user_id, as the foreign
--   key's own check did: the service deletes no account that has viewed a child.)
-- tests/app/schema.rs proves each, the two races included.

ALTER TABLE access_events
    DROP CONSTRAINT access_events_nhs_number_fkey,
    DROP CONSTRAINT access_events_user_id_fkey;

CREATE FUNCTION access_events_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') = 'read committed' THEN
        PERFORM pg_advisory_xact_lock_shared(cp_items_reference_lock());
    ELSE
        -- As cp_items_check_references: the rows locked as a foreign key locks them, not the
        -- advisory lock as well.
        PERFORM 1 FROM patients p WHERE p.nhs_number IN (SELECT nhs_number FROM new_accesses) FOR KEY SHARE OF p;
        PERFORM 1 FROM users u WHERE u.id IN (SELECT user_id FROM new_accesses) FOR KEY SHARE OF u;
    END IF;
    IF EXISTS (SELECT 1 FROM new_accesses n WHERE NOT EXISTS (SELECT 1 FROM patients p WHERE p.nhs_number = n.nhs_number)) THEN
        RAISE EXCEPTION 'insert or update on table "access_events" violates its reference to "patients"'
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = 'An access names an NHS number that is not a PDS patient.';
    END IF;
    IF EXISTS (SELECT 1 FROM new_accesses n
               WHERE n.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = n.user_id)) THEN
        RAISE EXCEPTION 'insert or update on table "access_events" violates its reference to "users"'
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = 'An access names a user id that is not an account.';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER access_events_references_exist
    AFTER INSERT ON access_events
    REFERENCING NEW TABLE AS new_accesses
    FOR EACH STATEMENT EXECUTE FUNCTION access_events_check_references();

CREATE FUNCTION access_events_refuse_repointing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'update on table "access_events" refused: an access''s NHS number and account never change'
        USING ERRCODE = 'foreign_key_violation';
END;
$$;

CREATE TRIGGER access_events_references_fixed
    BEFORE UPDATE OF nhs_number, user_id ON access_events
    FOR EACH ROW
    WHEN (OLD.nhs_number IS DISTINCT FROM NEW.nhs_number OR OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION access_events_refuse_repointing();

-- Migration 000020's refusal of a parent's delete or key change outside READ COMMITTED (whose
-- check reads with the transaction's first snapshot, which can miss a concurrent child), for any
-- child table: cp_items' own check now names its table through it.
CREATE FUNCTION reference_parent_isolation_check(child text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'deleting or re-keying a row % may refer to needs READ COMMITTED (this transaction is %)',
            child, current_setting('transaction_isolation')
            USING ERRCODE = 'serialization_failure';
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION cp_items_parent_isolation_check() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM reference_parent_isolation_check('cp_items');
END;
$$;

-- The parents' side: a patient's accesses are found through access_events_child_idx; an account's
-- through a read of the table (no index has user_id first).
CREATE FUNCTION patients_refuse_if_accesses_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.nhs_number = OLD.nhs_number THEN
        RETURN NEW;
    END IF;
    PERFORM reference_parent_isolation_check('access_events');
    PERFORM pg_advisory_xact_lock(cp_items_reference_lock());
    IF EXISTS (SELECT 1 FROM access_events WHERE nhs_number = OLD.nhs_number) THEN
        RAISE EXCEPTION '% on table "patients" violates the reference from "access_events"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE TRIGGER patients_accesses_refer
    BEFORE DELETE OR UPDATE OF nhs_number ON patients
    FOR EACH ROW EXECUTE FUNCTION patients_refuse_if_accesses_refer();

CREATE FUNCTION users_refuse_if_accesses_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
        RETURN NEW;
    END IF;
    PERFORM reference_parent_isolation_check('access_events');
    PERFORM pg_advisory_xact_lock(cp_items_reference_lock());
    IF EXISTS (SELECT 1 FROM access_events WHERE user_id = OLD.id) THEN
        RAISE EXCEPTION '% on table "users" violates the reference from "access_events"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE TRIGGER users_accesses_refer
    BEFORE DELETE OR UPDATE OF id ON users
    FOR EACH ROW EXECUTE FUNCTION users_refuse_if_accesses_refer();

CREATE FUNCTION refuse_truncate_while_accesses_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM access_events) THEN
        RAISE EXCEPTION 'TRUNCATE on table "%" violates the reference from "access_events"', TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER patients_truncate_accesses BEFORE TRUNCATE ON patients
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate_while_accesses_refer();
CREATE TRIGGER users_truncate_accesses BEFORE TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate_while_accesses_refer();
