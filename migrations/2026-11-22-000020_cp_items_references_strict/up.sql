-- Two gaps of migration 000017's triggers against the foreign keys they replaced (found in review):
--
-- * A parent's refusal reads cp_items with its statement's snapshot. Under READ COMMITTED that
--   snapshot is taken after the parent row's lock was granted, so it sees the items of any insert
--   it waited for. Under REPEATABLE READ or SERIALIZABLE it is the transaction's first snapshot,
--   which can miss them (a foreign key raises a serialization failure there). The service deletes
--   and re-keys no parent at all; a transaction that tries outside READ COMMITTED is now refused
--   as a serialization failure, whatever cp_items holds, rather than trusted.
-- * TRUNCATE fires no row trigger, and TRUNCATE ... CASCADE follows foreign keys only, so it would
--   empty a parent under cp_items' feet. Truncating a parent is refused while cp_items has rows.

CREATE FUNCTION cp_items_parent_isolation_check() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'deleting or re-keying a row cp_items may refer to needs READ COMMITTED (this transaction is %)',
            current_setting('transaction_isolation')
            USING ERRCODE = 'serialization_failure';
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION patients_refuse_if_cp_items_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.nhs_number = OLD.nhs_number THEN
        RETURN NEW;
    END IF;
    PERFORM cp_items_parent_isolation_check();
    IF EXISTS (SELECT 1 FROM cp_items WHERE nhs_number = OLD.nhs_number) THEN
        RAISE EXCEPTION '% on table "patients" violates the reference from "cp_items"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE OR REPLACE FUNCTION local_authorities_refuse_if_cp_items_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.code = OLD.code THEN
        RETURN NEW;
    END IF;
    PERFORM cp_items_parent_isolation_check();
    IF EXISTS (SELECT 1 FROM cp_items WHERE la_code = OLD.code) THEN
        RAISE EXCEPTION '% on table "local_authorities" violates the reference from "cp_items"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE OR REPLACE FUNCTION uploads_refuse_if_cp_items_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
        RETURN NEW;
    END IF;
    PERFORM cp_items_parent_isolation_check();
    IF EXISTS (SELECT 1 FROM cp_items WHERE upload_id = OLD.id) THEN
        RAISE EXCEPTION '% on table "uploads" violates the reference from "cp_items"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE FUNCTION refuse_truncate_while_cp_items_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM cp_items) THEN
        RAISE EXCEPTION 'TRUNCATE on table "%" violates the reference from "cp_items"', TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER patients_cp_items_truncate BEFORE TRUNCATE ON patients
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate_while_cp_items_refer();
CREATE TRIGGER local_authorities_cp_items_truncate BEFORE TRUNCATE ON local_authorities
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate_while_cp_items_refer();
CREATE TRIGGER uploads_cp_items_truncate BEFORE TRUNCATE ON uploads
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate_while_cp_items_refer();
