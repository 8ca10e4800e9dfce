//! Joins diesel cannot read from the database: `schema.rs` is generated, and print-schema writes a
//! `joinable!` only for a declared foreign key. cp_items' references to patients, local authorities
//! and uploads are kept by statement-level triggers instead (one check per upload rather than one
//! per item; migration 000017 says why), and so are access_events' references to patients and
//! users (one check per batch of tab openings rather than a locking one per access; migration
//! 000036), so their joins are declared here.

use crate::schema::{access_events, cp_items, local_authorities, patients, uploads, users};

diesel::joinable!(access_events -> patients (nhs_number));
diesel::joinable!(access_events -> users (user_id));

diesel::joinable!(cp_items -> local_authorities (la_code));
diesel::joinable!(cp_items -> patients (nhs_number));
diesel::joinable!(cp_items -> uploads (upload_id));
