//! The one integration-test binary: a real PostgreSQL database per test, the service on
//! 127.0.0.1, and headless Chromium for what a person sees.

mod support;

mod alert_tab;
mod audit_trail;
mod browser;
mod cli;
mod logs;
mod schema;
mod search;
mod sessions;
mod sign_in;
mod user_admin;
