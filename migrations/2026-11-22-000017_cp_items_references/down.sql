DROP TRIGGER uploads_cp_items_refer ON uploads;
DROP FUNCTION uploads_refuse_if_cp_items_refer();
DROP TRIGGER local_authorities_cp_items_refer ON local_authorities;
DROP FUNCTION local_authorities_refuse_if_cp_items_refer();
DROP TRIGGER patients_cp_items_refer ON patients;
DROP FUNCTION patients_refuse_if_cp_items_refer();
DROP TRIGGER cp_items_references_fixed ON cp_items;
DROP FUNCTION cp_items_refuse_repointing();
DROP TRIGGER cp_items_references_exist ON cp_items;
DROP FUNCTION cp_items_check_references();
ALTER TABLE cp_items
    ADD CONSTRAINT cp_items_nhs_number_fkey FOREIGN KEY (nhs_number) REFERENCES patients (nhs_number),
    ADD CONSTRAINT cp_items_la_code_fkey FOREIGN KEY (la_code) REFERENCES local_authorities (code),
    ADD CONSTRAINT cp_items_upload_id_fkey FOREIGN KEY (upload_id) REFERENCES uploads (id);
