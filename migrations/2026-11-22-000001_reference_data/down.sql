DROP TABLE activity_codes;
DROP TABLE job_roles;
DROP TABLE nhs_organisations;
DROP TABLE local_authorities;
