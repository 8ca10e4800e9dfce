//! What every page's base layout needs: the title, the CSRF token and the header.

use actix_session::Session;
use askama::Template;

use crate::auth::csrf;
use crate::auth::Principal;
use crate::domain::roles;

pub struct Layout {
    pub title: String,
    pub csrf_token: String,
    pub user: Option<HeaderUser>,
}

pub struct HeaderUser {
    pub name: String,
    pub role: Option<String>,
    pub can_change_role: bool,
    pub links: Vec<NavLink>,
}

pub struct NavLink {
    pub href: String,
    pub label: String,
}

impl Layout {
    pub fn new(title: &str, principal: Option<&Principal>, session: &Session) -> Layout {
        Layout { title: title.to_owned(), csrf_token: csrf::token(session), user: principal.map(header_user) }
    }

    /// For error pages rendered without a request at hand.
    pub fn bare(title: &str) -> Layout {
        Layout { title: title.to_owned(), csrf_token: String::new(), user: None }
    }
}

fn header_user(p: &Principal) -> HeaderUser {
    let mut links = Vec::new();
    let mut link = |href: &str, label: &str| links.push(NavLink { href: href.into(), label: label.into() });
    if let Some(role) = &p.role {
        if roles::may_trace_patients(&role.activity_codes) {
            link("/search", "Find a patient");
            link("/local-authorities", "Local authorities");
        }
        if role.la_code.is_some() && roles::may_use_la_portal(&role.activity_codes) {
            link("/la", "Portal");
        }
        if roles::may_administer_users(&role.job_role_code, &role.activity_codes) {
            link("/admin/users", "Users");
        }
        if roles::may_run_reports(&role.job_role_code, &role.activity_codes) {
            link("/reports", "Reports");
        }
        if roles::is_service_owner(&role.activity_codes) {
            link("/admin/local-authorities", "Local authorities (admin)");
            link("/admin/nhs-systems", "NHS systems");
            link("/admin/transmissions", "Transmissions");
            link("/admin/jobs", "Jobs");
        }
    }
    link("/change-password", "Change password");
    HeaderUser {
        name: p.account.display_name.clone(),
        role: p.role.as_ref().map(|r| r.label()),
        can_change_role: p.profile_count > 1,
        links,
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub heading: String,
    pub message: String,
    pub status: u16,
}
