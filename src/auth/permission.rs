//! What a route requires. Every route declares one in the route table (src/routes.rs); the
//! authorisation middleware checks it on the server for every request, and refuses a route that
//! declares nothing (deny by default).

use super::principal::Principal;
use crate::domain::roles;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Anyone, signed in or not (sign-in page, static files, health).
    Public,
    /// A machine interface: the handler itself requires a valid endpoint token for the resource
    /// (mailbox API: that LA's token, CP-SC025). No session is involved.
    EndpointToken,
    /// Any signed-in user, whether or not a role is selected (role selection, sign-out).
    SignedIn,
    /// A selected role with B0264: find patients and see Patient Details.
    PatientTrace,
    /// A selected role with B0264 and B0107: the Child Care Alert tab (CP-IS042, CP-IS043).
    ViewAlerts,
    /// A Registration Authority role (R5080, R5090) or the project's CPX01: user administration.
    UserAdmin,
    /// A role profile at a local authority holding CPX03: that LA's portal (uploads, inbox).
    LaPortal,
    /// A CP-IS owner (CPX02 or CPX04): endpoint tokens, LA sending switches, the transmission log.
    ServiceOwner,
    /// A Privacy Officer (R0001), Caldicott Guardian (R5105) or the project's CPX02: reports
    /// CP-IS077 to CP-IS081, the incident log and the audit trail's verification.
    Reports,
}

/// The outcome of checking a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Not signed in: go and sign in.
    SignIn,
    /// Signed in, but a role must be chosen first.
    ChooseRole,
    Deny,
}

impl Permission {
    pub fn decide(self, principal: Option<&Principal>) -> Decision {
        // Machine interfaces authenticate their token in the handler, not with a session.
        if matches!(self, Permission::Public | Permission::EndpointToken) {
            return Decision::Allow;
        }
        let Some(p) = principal else {
            return Decision::SignIn;
        };
        if self == Permission::SignedIn {
            return Decision::Allow;
        }
        let Some(role) = &p.role else {
            return Decision::ChooseRole;
        };
        let allowed = match self {
            Permission::Public | Permission::EndpointToken | Permission::SignedIn => true,
            Permission::PatientTrace => roles::may_trace_patients(&role.activity_codes),
            Permission::ViewAlerts => roles::may_view_alerts(&role.activity_codes),
            Permission::UserAdmin => roles::may_administer_users(&role.job_role_code, &role.activity_codes),
            Permission::LaPortal => role.la_code.is_some() && roles::may_use_la_portal(&role.activity_codes),
            Permission::ServiceOwner => roles::is_service_owner(&role.activity_codes),
            Permission::Reports => roles::may_run_reports(&role.job_role_code, &role.activity_codes),
        };
        if allowed {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_session_only_public_and_token_routes_are_allowed() {
        assert_eq!(Permission::Public.decide(None), Decision::Allow);
        assert_eq!(Permission::EndpointToken.decide(None), Decision::Allow);
        for p in [
            Permission::SignedIn,
            Permission::PatientTrace,
            Permission::ViewAlerts,
            Permission::UserAdmin,
            Permission::LaPortal,
            Permission::ServiceOwner,
            Permission::Reports,
        ] {
            assert_eq!(p.decide(None), Decision::SignIn, "{p:?}");
        }
    }
}
