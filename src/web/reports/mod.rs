//! The reporting area for Privacy Officers, Caldicott Guardians and CPX02 holders (issue 6):
//! the index of reports, one file per report, and the audit trail's verification page. The
//! figures come from src/reports/; these handlers read the filters, call it, and render the page
//! or the CSV.

pub mod activity;
pub mod audit;
pub mod open_plans;
pub mod performance;
pub mod subject_access;
pub mod summary;

use actix_session::Session;
use actix_web::HttpResponse;
use askama::Template;

use super::layout::Layout;
use super::render;
use crate::auth::{Permission, SignedIn};
use crate::error::AppError;

/// A report on the index: its id, title, what it answers and where it is.
pub struct ReportLink {
    pub id: &'static str,
    pub title: &'static str,
    pub summary: &'static str,
    pub href: &'static str,
}

/// Every report, in the standard's order, with the audit trail's verification last.
pub const REPORTS: &[ReportLink] = &[
    ReportLink {
        id: "CP-IS077",
        title: "Service information",
        summary: "Current NHS numbers, local authorities, plans and looked-after statuses; the same over a period; NHS queries and the organisations sending them.",
        href: "/reports/cp-is077",
    },
    ReportLink {
        id: "CP-IS078",
        title: "Service performance and incidents",
        summary: "Availability from the minute-by-minute health probe, requests and response times per area, error rates, job failures, and the incident log.",
        href: "/reports/cp-is078",
    },
    ReportLink {
        id: "CP-IS079",
        title: "Subject access (data protection)",
        summary: "Everything held against one NHS number and its history, and whether it was held on a given date (CP-IS075).",
        href: "/reports/cp-is079",
    },
    ReportLink {
        id: "CP-IS080",
        title: "Child protection plans open over two years",
        summary: "Plans that started more than two years ago with neither an end date nor a delete date.",
        href: "/reports/cp-is080",
    },
    ReportLink {
        id: "CP-IS081",
        title: "Who viewed or changed which records",
        summary: "Every view and change, by whom, from which organisation, when, which child, and which local authority updated what.",
        href: "/reports/cp-is081",
    },
    ReportLink {
        id: "CP-IS074",
        title: "Audit trail verification",
        summary: "Recompute the hash chain and check the signed checkpoints; see the last verification.",
        href: "/reports/audit",
    },
];

#[derive(Template)]
#[template(path = "reports/index.html")]
struct IndexPage {
    layout: Layout,
    reports: &'static [ReportLink],
}

pub async fn index(session: Session, SignedIn(principal): SignedIn) -> Result<HttpResponse, AppError> {
    principal.require(Permission::Reports)?;
    render(&IndexPage { layout: Layout::new("Reports", Some(&principal), &session), reports: REPORTS })
}
