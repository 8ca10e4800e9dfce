//! The one route table. Every route declares the permission it needs beside its handler; the
//! authorisation middleware checks it for every request, and the permission-matrix test requests
//! every route as every persona against this table.

use actix_web::http::Method;
use actix_web::{web, Route};

use crate::api::mailbox;
use crate::auth::Permission;
use crate::web::{
    account, admin_las, admin_users, developers, health, home, jobs, la_portal, local_authorities, nhs_systems,
    patient, reports, search, sign_in, transmissions,
};

/// Static files (CSS, JS, images) are public; they hold no data.
pub const STATIC_PREFIX: &str = "/static/";

pub struct Entry {
    pub method: Method,
    pub path: &'static str,
    pub permission: Permission,
    route: Route,
}

fn entry(method: Method, path: &'static str, permission: Permission, route: Route) -> Entry {
    Entry { method, path, permission, route }
}

/// Every route: method, path, permission, handler.
pub fn entries() -> Vec<Entry> {
    use Permission::*;
    vec![
        entry(Method::GET, "/health", Public, web::get().to(health::health)),
        entry(Method::GET, "/sign-in", Public, web::get().to(sign_in::sign_in_form)),
        entry(Method::POST, "/sign-in", Public, web::post().to(sign_in::sign_in)),
        entry(Method::POST, "/sign-out", SignedIn, web::post().to(sign_in::sign_out)),
        entry(Method::GET, "/select-role", SignedIn, web::get().to(sign_in::select_role_form)),
        entry(Method::POST, "/select-role", SignedIn, web::post().to(sign_in::select_role)),
        entry(Method::GET, "/", SignedIn, web::get().to(home::home)),
        entry(Method::GET, "/change-password", SignedIn, web::get().to(account::change_password_form)),
        entry(Method::POST, "/change-password", SignedIn, web::post().to(account::change_password)),
        entry(Method::GET, "/search", PatientTrace, web::get().to(search::search_patients)),
        entry(Method::GET, "/patients/{nhs_number}", PatientTrace, web::get().to(patient::show_patient)),
        entry(
            Method::GET,
            "/patients/{nhs_number}/child-care-alert",
            ViewAlerts,
            web::get().to(patient::open_alert_tab),
        ),
        entry(
            Method::GET,
            "/local-authorities",
            PatientTrace,
            web::get().to(local_authorities::list_local_authorities),
        ),
        entry(
            Method::GET,
            "/local-authorities/{code}",
            PatientTrace,
            web::get().to(local_authorities::show_local_authority),
        ),
        entry(Method::POST, "/mesh/v1/{la}/outbox", EndpointToken, web::post().to(mailbox::post_outbox)),
        entry(Method::GET, "/mesh/v1/{la}/inbox", EndpointToken, web::get().to(mailbox::list_inbox)),
        entry(Method::GET, "/mesh/v1/{la}/inbox/{message_id}", EndpointToken, web::get().to(mailbox::get_message)),
        entry(
            Method::PUT,
            "/mesh/v1/{la}/inbox/{message_id}/status/acknowledged",
            EndpointToken,
            web::put().to(mailbox::acknowledge_message),
        ),
        // FHIR_ROUTES (begin)
        // The handlers authenticate the NHS system's bearer token; the CapabilityStatement is public.
        entry(Method::GET, "/cpis/FHIR/R4/CareTeam", EndpointToken, web::get().to(crate::api::fhir::search_care_team)),
        entry(
            Method::GET,
            "/cpis/FHIR/R4/AuditEvent",
            EndpointToken,
            web::get().to(crate::api::fhir::search_audit_event),
        ),
        entry(Method::GET, "/cpis/FHIR/R4/metadata", Public, web::get().to(crate::api::fhir::capability_statement)),
        // FHIR_ROUTES (end)
        // NHS_SYSTEMS_ROUTES (begin)
        entry(Method::GET, developers::OPENAPI_PATH, Public, web::get().to(developers::openapi)),
        entry(Method::GET, "/developers", Public, web::get().to(developers::developers)),
        entry(Method::GET, "/admin/nhs-systems", ServiceOwner, web::get().to(nhs_systems::list_nhs_systems)),
        entry(Method::GET, "/admin/nhs-systems/{ods}", ServiceOwner, web::get().to(nhs_systems::show_nhs_organisation)),
        entry(Method::POST, "/admin/nhs-systems/{ods}", ServiceOwner, web::post().to(nhs_systems::register_system)),
        entry(
            Method::POST,
            "/admin/nhs-systems/{ods}/tokens/{token_id}/revoke",
            ServiceOwner,
            web::post().to(nhs_systems::revoke_system_token),
        ),
        // NHS_SYSTEMS_ROUTES (end)
        // LA_ADMIN_ROUTES (begin)
        entry(Method::GET, "/admin/local-authorities", ServiceOwner, web::get().to(admin_las::list_local_authorities)),
        entry(
            Method::GET,
            "/admin/local-authorities/{code}",
            ServiceOwner,
            web::get().to(admin_las::show_local_authority),
        ),
        entry(
            Method::POST,
            "/admin/local-authorities/{code}/sending",
            ServiceOwner,
            web::post().to(admin_las::switch_sending),
        ),
        entry(
            Method::POST,
            "/admin/local-authorities/{code}/notification-email",
            ServiceOwner,
            web::post().to(admin_las::set_notification_email),
        ),
        entry(
            Method::POST,
            "/admin/local-authorities/{code}/tokens",
            ServiceOwner,
            web::post().to(admin_las::issue_token),
        ),
        entry(
            Method::POST,
            "/admin/local-authorities/{code}/tokens/{token_id}/revoke",
            ServiceOwner,
            web::post().to(admin_las::revoke_token),
        ),
        entry(Method::GET, "/admin/transmissions", ServiceOwner, web::get().to(transmissions::list_transmissions)),
        // LA_ADMIN_ROUTES (end)
        entry(Method::GET, "/admin/jobs", ServiceOwner, web::get().to(jobs::show_jobs)),
        entry(Method::GET, "/reports", Reports, web::get().to(reports::index)),
        // REPORTS_AUDIT_ROUTES (begin)
        // CP-IS074: the audit trail's verification page and "Verify now" (CSRF-protected).
        entry(Method::GET, "/reports/audit", Reports, web::get().to(reports::audit::show)),
        entry(Method::POST, "/reports/audit/verify", Reports, web::post().to(reports::audit::verify_now)),
        // REPORTS_AUDIT_ROUTES (end)
        // REPORTS_PERFORMANCE_ROUTES (begin)
        entry(Method::GET, "/reports/cp-is078", Reports, web::get().to(reports::performance::show)),
        entry(Method::GET, "/reports/cp-is078.csv", Reports, web::get().to(reports::performance::download_csv)),
        entry(
            Method::POST,
            "/reports/cp-is078/incidents",
            Reports,
            web::post().to(reports::performance::record_incident),
        ),
        entry(
            Method::POST,
            "/reports/cp-is078/incidents/{incident_id}/resolve",
            Reports,
            web::post().to(reports::performance::resolve_incident),
        ),
        // REPORTS_PERFORMANCE_ROUTES (end)
        // REPORTS_SUBJECT_ROUTES (begin)
        entry(Method::GET, "/reports/cp-is079", Reports, web::get().to(reports::subject_access::show_subject_access)),
        entry(
            Method::GET,
            "/reports/cp-is079.csv",
            Reports,
            web::get().to(reports::subject_access::download_subject_access),
        ),
        entry(Method::GET, "/reports/cp-is075", Reports, web::get().to(reports::subject_access::show_held_on)),
        entry(Method::GET, "/reports/cp-is080", Reports, web::get().to(reports::open_plans::show_open_plans)),
        entry(Method::GET, "/reports/cp-is080.csv", Reports, web::get().to(reports::open_plans::download_open_plans)),
        // REPORTS_SUBJECT_ROUTES (end)
        // REPORTS_SUMMARY_ACTIVITY_ROUTES (begin)
        entry(Method::GET, "/reports/cp-is077", Reports, web::get().to(reports::summary::summary_page)),
        entry(Method::GET, "/reports/cp-is077.csv", Reports, web::get().to(reports::summary::summary_csv)),
        entry(Method::GET, "/reports/cp-is081", Reports, web::get().to(reports::activity::activity_page)),
        entry(Method::GET, "/reports/cp-is081.csv", Reports, web::get().to(reports::activity::activity_csv)),
        // REPORTS_SUMMARY_ACTIVITY_ROUTES (end)
        entry(Method::GET, "/la", LaPortal, web::get().to(la_portal::show_portal)),
        entry(Method::POST, "/la/uploads", LaPortal, web::post().to(la_portal::upload_file)),
        entry(Method::GET, "/la/uploads/{id}", LaPortal, web::get().to(la_portal::show_upload)),
        entry(Method::GET, "/la/messages/{message_id}", LaPortal, web::get().to(la_portal::show_message)),
        entry(Method::GET, "/la/messages/{message_id}/xml", LaPortal, web::get().to(la_portal::download_message)),
        entry(Method::POST, "/la/messages/{message_id}/read", LaPortal, web::post().to(la_portal::mark_read)),
        entry(Method::GET, "/admin/users", UserAdmin, web::get().to(admin_users::list_users)),
        entry(Method::POST, "/admin/users", UserAdmin, web::post().to(admin_users::create_user)),
        entry(Method::GET, "/admin/users/new", UserAdmin, web::get().to(admin_users::new_user_form)),
        entry(Method::GET, "/admin/users/{id}", UserAdmin, web::get().to(admin_users::show_user)),
        entry(Method::GET, "/admin/users/{id}/edit", UserAdmin, web::get().to(admin_users::edit_user_form)),
        entry(Method::POST, "/admin/users/{id}/edit", UserAdmin, web::post().to(admin_users::update_user)),
        entry(Method::POST, "/admin/users/{id}/roles", UserAdmin, web::post().to(admin_users::add_role_profile)),
        entry(
            Method::POST,
            "/admin/users/{id}/roles/{profile_id}/remove",
            UserAdmin,
            web::post().to(admin_users::remove_role_profile),
        ),
        entry(Method::POST, "/admin/users/{id}/reset-password", UserAdmin, web::post().to(admin_users::reset_password)),
        entry(Method::POST, "/admin/users/{id}/disable", UserAdmin, web::post().to(admin_users::disable_user)),
        entry(Method::POST, "/admin/users/{id}/enable", UserAdmin, web::post().to(admin_users::enable_user)),
    ]
}

/// The permissions of the table, without the handlers.
#[derive(Debug, Clone)]
pub struct RouteTable {
    specs: Vec<(Method, &'static str, Permission)>,
}

impl RouteTable {
    pub fn new() -> RouteTable {
        RouteTable { specs: entries().into_iter().map(|e| (e.method, e.path, e.permission)).collect() }
    }

    pub fn specs(&self) -> &[(Method, &'static str, Permission)] {
        &self.specs
    }

    /// The permission a request needs; `None` for a declared path whose method is not declared.
    pub fn permission_for(&self, method: &Method, pattern: Option<&str>, path: &str) -> Option<Permission> {
        if path.starts_with(STATIC_PREFIX) {
            return Some(Permission::Public);
        }
        // No route matches: the not-found page, which shows nothing.
        let Some(pattern) = pattern else {
            return Some(Permission::Public);
        };
        let method = if method == Method::HEAD { &Method::GET } else { method };
        self.specs.iter().find(|(m, p, _)| m == method && *p == pattern).map(|(_, _, perm)| *perm)
    }
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable::new()
    }
}

/// Registers the table: one resource per path, holding that path's methods.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut by_path: Vec<(&'static str, Vec<Route>)> = Vec::new();
    for e in entries() {
        match by_path.iter_mut().find(|(p, _)| *p == e.path) {
            Some((_, routes)) => routes.push(e.route),
            None => by_path.push((e.path, vec![e.route])),
        }
    }
    for (path, routes) in by_path {
        let mut resource = web::resource(path);
        for r in routes {
            resource = resource.route(r);
        }
        cfg.service(resource);
    }
}
