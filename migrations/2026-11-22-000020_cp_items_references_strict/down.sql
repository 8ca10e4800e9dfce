DROP TRIGGER uploads_cp_items_truncate ON uploads;
DROP TRIGGER local_authorities_cp_items_truncate ON local_authorities;
DROP TRIGGER patients_cp_items_truncate ON patients;
DROP FUNCTION refuse_truncate_while_cp_items_refer();
CREATE OR REPLACE FUNCTION patients_refuse_if_cp_items_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.nhs_number = OLD.nhs_number THEN
        RETURN NEW;
    END IF;
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
    IF EXISTS (SELECT 1 FROM cp_items WHERE upload_id = OLD.id) THEN
        RAISE EXCEPTION '% on table "uploads" violates the reference from "cp_items"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

DROP FUNCTION cp_items_parent_isolation_check();
