//! Roles and activity codes: who may do what (CP-IS041, CP-IS042, CP-IS054, CP-IS056).
//!
//! Permissions come from the activity codes of the user's selected role profile, checked on the
//! server for every request (domain.md, "The people and what they do"). Codes beginning `CPX` and
//! the job role `R9000` are the project's own, standing in for what national RBAC does not cover.

/// Access SCR Application (Perform Patient Trace): find patients and see Patient Details.
pub const B0264: &str = "B0264";
/// View Child Protection Plan information ("View CP-IS Flag"): viewing sends an Access to Service
/// Notification.
pub const B0107: &str = "B0107";
/// View CP-IS Flag without sending a notification (scheduled care).
pub const B0170: &str = "B0170";
/// Administer users (the project's own code).
pub const CPX01: &str = "CPX01";
/// Run CP-IS reports and verify the audit trail (the project's own code).
pub const CPX02: &str = "CPX02";
/// Local authority portal: upload and read messages (the project's own code).
pub const CPX03: &str = "CPX03";
/// Administer the PDS stand-in and endpoints (the project's own code).
pub const CPX04: &str = "CPX04";

/// Every activity code the service knows, with its name: (code, name).
pub const ACTIVITY_CODES: &[(&str, &str)] = &[
    (B0264, "Access SCR Application (Perform Patient Trace)"),
    (B0107, "View Child Protection Plan information"),
    (B0170, "View CP-IS Flag without notification"),
    (CPX01, "Administer users"),
    (CPX02, "Run CP-IS reports and verify the audit trail"),
    (CPX03, "Local authority portal: upload and read messages"),
    (CPX04, "Administer PDS stand-in and endpoints"),
];

/// The project's own job role for local authority portal users.
pub const R9000: &str = "R9000";

/// SDS job roles the service knows, with their names: (code, name).
pub const JOB_ROLES: &[(&str, &str)] = &[
    ("R8000", "Clinical Practitioner Access Role"),
    ("R8001", "Nurse Access Role"),
    ("R8003", "Health Professional Access Role"),
    ("R8008", "Admin/Clinical Support Access Role"),
    ("R8009", "Receptionist Access Role"),
    ("R1070", "Paramedic"),
    ("R0260", "General Medical Practitioner"),
    ("R0640", "Midwife Consultant"),
    ("R0650", "Midwife Specialist Practitioner"),
    ("R0660", "Midwife Manager"),
    ("R0670", "Midwife Sister/Charge Nurse"),
    ("R0680", "Midwife"),
    ("R0001", "Privacy Officer"),
    ("R5105", "Caldicott Guardian"),
    ("R5080", "Registration Authority Manager"),
    ("R5090", "Registration Authority Agent"),
    (R9000, "Local Authority Children's Social Care Practitioner"),
];

/// The midwife job roles, the only ones that see unborn child protection plans (CP-IS041).
pub const MIDWIFE_ROLES: [&str; 5] = ["R0640", "R0650", "R0660", "R0670", "R0680"];

/// The name of an activity code, if the service knows it.
pub fn activity_name(code: &str) -> Option<&'static str> {
    lookup(ACTIVITY_CODES, code)
}

/// The name of a job role code, if the service knows it (screens show names, never bare codes).
pub fn job_role_name(code: &str) -> Option<&'static str> {
    lookup(JOB_ROLES, job_role_code(code))
}

fn lookup(table: &'static [(&'static str, &'static str)], code: &str) -> Option<&'static str> {
    table.iter().find(|(c, _)| *c == code).map(|(_, name)| *name)
}

/// The job role code alone: SDS writes a full role as "S8000:G8000:R8001"; the job role is the
/// last part. A bare code is returned as it is (trimmed).
fn job_role_code(job_role: &str) -> &str {
    job_role.rsplit(':').next().unwrap_or(job_role).trim()
}

/// True when the job role may see unborn child protection plans: R0640, R0650, R0660, R0670 or
/// R0680 (CP-IS041, CP-IS087). Accepts a bare code ("R0680") or an SDS triple
/// ("S8000:G8000:R0680").
pub fn may_see_unborn_plans(job_role: &str) -> bool {
    MIDWIFE_ROLES.contains(&job_role_code(job_role))
}

fn holds(activity_codes: &[impl AsRef<str>], code: &str) -> bool {
    activity_codes.iter().any(|c| c.as_ref() == code)
}

/// True when the role profile may open the Child Care Alert tab and see CP-IS information: it
/// holds both B0264 and B0107 (CP-IS042, CP-IS054). Without B0107 the user never sees the tab,
/// nor learns that one would exist (CP-IS056).
pub fn may_view_alerts(activity_codes: &[impl AsRef<str>]) -> bool {
    holds(activity_codes, B0264) && holds(activity_codes, B0107)
}

/// True when the role profile may search for patients and see Patient Details: it holds B0264.
pub fn may_trace_patients(activity_codes: &[impl AsRef<str>]) -> bool {
    holds(activity_codes, B0264)
}

/// Registration Authority job roles: RA Manager and RA Agent.
pub const RA_ROLES: [&str; 2] = ["R5080", "R5090"];

/// True when the role profile may administer user accounts: an RA job role, or the project's
/// CPX01 activity code.
pub fn may_administer_users(job_role: &str, activity_codes: &[impl AsRef<str>]) -> bool {
    RA_ROLES.contains(&job_role) || holds(activity_codes, CPX01)
}

/// True when the role profile may use its local authority's portal: CPX03.
pub fn may_use_la_portal(activity_codes: &[impl AsRef<str>]) -> bool {
    holds(activity_codes, CPX03)
}

/// Job roles that run the CP-IS reports and verify the audit trail: Privacy Officer and
/// Caldicott Guardian (domain.md, "CP-IS owner / privacy officer").
pub const REPORTING_ROLES: [&str; 2] = ["R0001", "R5105"];

/// True when the role profile may run reports CP-IS077 to CP-IS081 and verify the audit trail:
/// a reporting job role (R0001, R5105) or the project's CPX02 activity code.
pub fn may_run_reports(job_role: &str, activity_codes: &[impl AsRef<str>]) -> bool {
    REPORTING_ROLES.contains(&job_role) || holds(activity_codes, CPX02)
}

/// True for CP-IS owners: CPX02 (reports and audit) or CPX04 (PDS and endpoints).
pub fn is_service_owner(activity_codes: &[impl AsRef<str>]) -> bool {
    holds(activity_codes, CPX02) || holds(activity_codes, CPX04)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_for_privacy_officers_caldicott_guardians_and_cpx02() {
        let none: [&str; 0] = [];
        assert!(may_run_reports("R0001", &none));
        assert!(may_run_reports("R5105", &none));
        assert!(may_run_reports("R8000", &[CPX02]));
        assert!(!may_run_reports("R8000", &[B0264, B0107, CPX04]));
        assert!(!may_run_reports("R5080", &[CPX01]));
    }

    #[test]
    fn la_portal_and_service_owner_codes() {
        assert!(may_use_la_portal(&[CPX03]));
        assert!(!may_use_la_portal(&[B0264, B0107]));
        assert!(is_service_owner(&[CPX02]) && is_service_owner(&[CPX04]));
        assert!(!is_service_owner(&[CPX01, CPX03]));
    }

    #[test]
    fn registration_authority_roles_or_cpx01_administer_users() {
        assert!(may_administer_users("R5080", &[] as &[&str]));
        assert!(may_administer_users("R5090", &[] as &[&str]));
        assert!(may_administer_users("R8000", &[CPX01]));
        assert!(!may_administer_users("R8000", &[B0264, B0107]));
    }
    use std::collections::HashSet;

    #[test]
    fn activity_codes_table() {
        assert_eq!(ACTIVITY_CODES.len(), 7);
        let codes: HashSet<_> = ACTIVITY_CODES.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes.len(), 7, "codes are unique");
        for code in [B0264, B0107, B0170, CPX01, CPX02, CPX03, CPX04] {
            assert!(codes.contains(code), "{code}");
        }
        assert_eq!(activity_name(B0264), Some("Access SCR Application (Perform Patient Trace)"));
        assert_eq!(activity_name("B0107"), Some("View Child Protection Plan information"));
        assert_eq!(activity_name("B9999"), None);
        assert_eq!(activity_name(""), None);
    }

    #[test]
    fn job_roles_table() {
        assert_eq!(JOB_ROLES.len(), 17);
        let codes: HashSet<_> = JOB_ROLES.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes.len(), 17, "codes are unique");
        for m in MIDWIFE_ROLES {
            assert!(codes.contains(m), "{m}");
        }
        assert_eq!(job_role_name("R8000"), Some("Clinical Practitioner Access Role"));
        assert_eq!(job_role_name("R0680"), Some("Midwife"));
        assert_eq!(job_role_name("S8000:G8000:R8001"), Some("Nurse Access Role"));
        assert_eq!(job_role_name(R9000), Some("Local Authority Children's Social Care Practitioner"));
        assert_eq!(job_role_name("R1234"), None);
    }

    #[test]
    fn only_midwives_see_unborn_plans() {
        for m in ["R0640", "R0650", "R0660", "R0670", "R0680"] {
            assert!(may_see_unborn_plans(m), "{m}");
        }
        for (code, _) in JOB_ROLES {
            assert_eq!(may_see_unborn_plans(code), MIDWIFE_ROLES.contains(code), "{code}");
        }
        assert!(!may_see_unborn_plans(""));
        assert!(!may_see_unborn_plans("r0680"));
        assert!(!may_see_unborn_plans("R068"));
        assert!(!may_see_unborn_plans("R06800"));
        assert!(!may_see_unborn_plans("Midwife"));
    }

    #[test]
    fn sds_triples_and_spacing() {
        assert!(may_see_unborn_plans("S8000:G8000:R0680"));
        assert!(may_see_unborn_plans(" R0640 "));
        assert!(!may_see_unborn_plans("S8000:G8000:R8001"));
        // The midwife code in an earlier position is not the job role.
        assert!(!may_see_unborn_plans("R0680:G8000:R8001"));
    }

    #[test]
    fn viewing_alerts_needs_both_codes() {
        assert!(may_view_alerts(&[B0264, B0107]));
        assert!(may_view_alerts(&["B0107", "B0264", "B0170"]));
        // Owned codes, as loaded from the database.
        let owned: Vec<String> = ["B0264", "B0107"].iter().map(|c| c.to_string()).collect();
        assert!(may_view_alerts(&owned));
        assert!(!may_view_alerts(&[B0264]));
        assert!(!may_view_alerts(&[B0107]));
        assert!(!may_view_alerts(&[B0264, B0170]));
        assert!(!may_view_alerts(&[CPX01, CPX02, CPX03, CPX04]));
        assert!(!may_view_alerts(&[] as &[&str]));
        assert!(!may_view_alerts(&["b0264", "b0107"]));
    }

    #[test]
    fn tracing_needs_b0264() {
        assert!(may_trace_patients(&[B0264]));
        assert!(may_trace_patients(&[B0107, B0264]));
        assert!(may_trace_patients(&["B0264".to_string()]));
        assert!(!may_trace_patients(&[B0107]));
        assert!(!may_trace_patients(&[B0170]));
        assert!(!may_trace_patients(&[] as &[String]));
        assert!(!may_trace_patients(&[" B0264"]));
    }
}
