DROP TRIGGER users_truncate_accesses ON users;
DROP TRIGGER patients_truncate_accesses ON patients;
DROP FUNCTION refuse_truncate_while_accesses_refer();
DROP TRIGGER users_accesses_refer ON users;
DROP FUNCTION users_refuse_if_accesses_refer();
DROP TRIGGER patients_accesses_refer ON patients;
DROP FUNCTION patients_refuse_if_accesses_refer();
CREATE OR REPLACE FUNCTION cp_items_parent_isolation_check() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'deleting or re-keying a row cp_items may refer to needs READ COMMITTED (this transaction is %)',
            current_setting('transaction_isolation')
            USING ERRCODE = 'serialization_failure';
    END IF;
END;
$$;
DROP FUNCTION reference_parent_isolation_check(text);
DROP TRIGGER access_events_references_fixed ON access_events;
DROP FUNCTION access_events_refuse_repointing();
DROP TRIGGER access_events_references_exist ON access_events;
DROP FUNCTION access_events_check_references();
ALTER TABLE access_events
    ADD CONSTRAINT access_events_nhs_number_fkey FOREIGN KEY (nhs_number) REFERENCES patients (nhs_number),
    ADD CONSTRAINT access_events_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);
