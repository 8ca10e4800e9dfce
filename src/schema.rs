// @generated automatically by Diesel CLI.

diesel::table! {
    access_events (id) {
        id -> Int8,
        nhs_number -> Text,
        accessed_at -> Timestamptz,
        viewer_id -> Text,
        user_id -> Nullable<Int8>,
        viewer_name -> Text,
        job_role_code -> Text,
        organisation_code -> Text,
        channel -> Text,
        shown -> Bool,
    }
}

diesel::table! {
    activity_codes (code) {
        code -> Text,
        name -> Text,
    }
}

diesel::table! {
    audit_pending (id) {
        id -> Int8,
        occurred_at -> Timestamptz,
        actor -> Text,
        action -> Text,
        nhs_number -> Nullable<Text>,
        canonical -> Text,
        details -> Nullable<Jsonb>,
    }
}

diesel::table! {
    audit_checkpoints (id) {
        id -> Int8,
        created_at -> Timestamptz,
        entry_id -> Int8,
        entry_hash -> Bytea,
        key_id -> Text,
        prev_signature -> Bytea,
        signature -> Bytea,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        occurred_at -> Timestamptz,
        actor -> Text,
        action -> Text,
        nhs_number -> Nullable<Text>,
        details -> Jsonb,
        prev_hash -> Bytea,
        hash -> Bytea,
    }
}

diesel::table! {
    audit_purged (entry_id) {
        entry_id -> Int8,
        prev_hash -> Bytea,
        hash -> Bytea,
        checkpoint_id -> Int8,
        purged_at -> Timestamptz,
        reason -> Text,
    }
}

diesel::table! {
    audit_verifications (id) {
        id -> Int8,
        started_at -> Timestamptz,
        finished_at -> Timestamptz,
        run_by -> Text,
        intact -> Bool,
        entries -> Int8,
        purged -> Int8,
        checkpoints -> Int8,
        broken_entry_id -> Nullable<Int8>,
        reason -> Nullable<Text>,
    }
}

diesel::table! {
    cp_items (id) {
        id -> Int8,
        nhs_number -> Text,
        la_code -> Text,
        item_type -> Text,
        la_child_id -> Text,
        start_date -> Date,
        end_date -> Nullable<Date>,
        delete_date -> Nullable<Date>,
        deleted_at -> Nullable<Timestamptz>,
        deleted_reason -> Nullable<Text>,
        created_at -> Timestamptz,
        upload_id -> Nullable<Int8>,
    }
}

diesel::table! {
    endpoint_tokens (id) {
        id -> Int8,
        kind -> Text,
        la_code -> Nullable<Text>,
        ods_code -> Nullable<Text>,
        label -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    health_probes (id) {
        id -> Int8,
        at -> Timestamptz,
        instance -> Text,
        ok -> Bool,
        latency_ms -> Float8,
    }
}

diesel::table! {
    incidents (id) {
        id -> Int8,
        severity -> Int2,
        title -> Text,
        description -> Text,
        started_at -> Timestamptz,
        resolved_at -> Nullable<Timestamptz>,
        recorded_by -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    job_roles (code) {
        code -> Text,
        name -> Text,
    }
}

diesel::table! {
    jobs (id) {
        id -> Int8,
        kind -> Text,
        key -> Text,
        scheduled_for -> Timestamptz,
        status -> Text,
        attempts -> Int4,
        run_after -> Timestamptz,
        last_error -> Nullable<Text>,
        summary -> Nullable<Jsonb>,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    local_authorities (code) {
        code -> Text,
        reference_name -> Text,
        display_name -> Nullable<Text>,
        emergency_phone -> Nullable<Text>,
        office_hours_phone -> Nullable<Text>,
        contacts_updated_at -> Nullable<Timestamptz>,
        notification_email -> Nullable<Text>,
        sending_enabled -> Bool,
        last_sequence -> Nullable<Int8>,
    }
}

diesel::table! {
    mailbox_messages (id) {
        id -> Uuid,
        la_code -> Text,
        message_type -> Text,
        created_at -> Timestamptz,
        body -> Text,
        upload_id -> Nullable<Int8>,
        acknowledged_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    nhs_organisations (ods_code) {
        ods_code -> Text,
        name -> Text,
        town -> Nullable<Text>,
        postcode -> Nullable<Text>,
    }
}

diesel::table! {
    outbound_emails (id) {
        id -> Int8,
        message_key -> Text,
        message_id -> Text,
        la_code -> Nullable<Text>,
        to_address -> Text,
        subject -> Text,
        body_text -> Text,
        body_html -> Text,
        attachment_name -> Nullable<Text>,
        attachment -> Nullable<Text>,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
        sent_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    patient_names (nhs_number, given_name, family_name) {
        nhs_number -> Text,
        given_name -> Text,
        family_name -> Text,
    }
}

diesel::table! {
    patients (nhs_number) {
        nhs_number -> Text,
        given_name -> Text,
        family_name -> Text,
        gender -> Text,
        birth_date -> Date,
        death_date -> Nullable<Date>,
        postcode -> Nullable<Text>,
        address -> Nullable<Text>,
        gp_ods -> Nullable<Text>,
        restricted -> Bool,
        superseded_by -> Nullable<Text>,
        invalidated -> Bool,
        family_key -> Text,
        given_key -> Text,
        family_soundex -> Text,
        given_soundex -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    request_minutes (minute, instance, area) {
        minute -> Timestamptz,
        instance -> Text,
        area -> Text,
        requests -> Int8,
        client_errors -> Int8,
        server_errors -> Int8,
        buckets -> Array<Nullable<Int8>>,
    }
}

diesel::table! {
    role_profile_activities (role_profile_id, activity_code) {
        role_profile_id -> Int8,
        activity_code -> Text,
    }
}

diesel::table! {
    role_profiles (id) {
        id -> Int8,
        user_id -> Int8,
        nhs_org_code -> Nullable<Text>,
        la_code -> Nullable<Text>,
        job_role_code -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sessions (key_hash) {
        key_hash -> Bytea,
        user_id -> Nullable<Int8>,
        state -> Jsonb,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        absolute_expires_at -> Timestamptz,
    }
}

diesel::table! {
    sign_in_throttle (address) {
        address -> Text,
        window_start -> Timestamptz,
        attempts -> Int4,
    }
}

diesel::table! {
    transmissions (id) {
        id -> Int8,
        at -> Timestamptz,
        direction -> Text,
        origin -> Text,
        destination -> Text,
        message_type -> Text,
        message_id -> Nullable<Text>,
        channel -> Text,
    }
}

diesel::table! {
    uploads (id) {
        id -> Int8,
        la_code -> Text,
        message_id -> Nullable<Uuid>,
        sequence -> Nullable<Int8>,
        received_at -> Timestamptz,
        size_bytes -> Int4,
        channel -> Text,
        file_code -> Text,
        received -> Int4,
        accepted -> Int4,
        rejected -> Int4,
        ack_message_id -> Uuid,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        username -> Text,
        sds_user_id -> Uuid,
        display_name -> Text,
        email -> Nullable<Text>,
        telephone -> Nullable<Text>,
        password_hash -> Text,
        must_change_password -> Bool,
        disabled_at -> Nullable<Timestamptz>,
        failed_sign_ins -> Int4,
        locked_until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        principal -> Nullable<Text>,
    }
}

diesel::joinable!(endpoint_tokens -> local_authorities (la_code));
diesel::joinable!(endpoint_tokens -> nhs_organisations (ods_code));
diesel::joinable!(incidents -> users (recorded_by));
diesel::joinable!(mailbox_messages -> local_authorities (la_code));
diesel::joinable!(mailbox_messages -> uploads (upload_id));
diesel::joinable!(outbound_emails -> local_authorities (la_code));
diesel::joinable!(patient_names -> patients (nhs_number));
diesel::joinable!(role_profile_activities -> activity_codes (activity_code));
diesel::joinable!(role_profile_activities -> role_profiles (role_profile_id));
diesel::joinable!(role_profiles -> job_roles (job_role_code));
diesel::joinable!(role_profiles -> local_authorities (la_code));
diesel::joinable!(role_profiles -> nhs_organisations (nhs_org_code));
diesel::joinable!(role_profiles -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(uploads -> local_authorities (la_code));

diesel::allow_tables_to_appear_in_same_query!(
    access_events,
    activity_codes,
    audit_checkpoints,
    audit_pending,
    audit_log,
    audit_purged,
    audit_verifications,
    cp_items,
    endpoint_tokens,
    health_probes,
    incidents,
    job_roles,
    jobs,
    local_authorities,
    mailbox_messages,
    nhs_organisations,
    outbound_emails,
    patient_names,
    patients,
    request_minutes,
    role_profile_activities,
    role_profiles,
    sessions,
    sign_in_throttle,
    transmissions,
    uploads,
    users,
);
