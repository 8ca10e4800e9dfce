//! The one integration-test binary: a real PostgreSQL database per test, the service on
//! 127.0.0.1, and headless Chromium for what a person sees.

mod support;

mod access_claims;
mod admin_las;
mod alert_tab;
mod audit_checkpoints;
mod audit_trail;
mod browser;
mod browser_admin;
mod browser_la;
mod browser_reports;
mod cli;
mod fhir;
mod fuzz_corpus;
mod jobs;
mod la_portal;
mod logs;
mod mailbox;
mod messages_props;
mod nhs_systems;
mod notifications;
mod permissions;
mod reports_performance;
mod reports_subject;
mod reports_summary_activity;
mod resilience;
mod retention;
mod schema;
mod search;
mod sessions;
mod sign_in;
mod user_admin;
