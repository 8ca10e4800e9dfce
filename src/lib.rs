//! CP-IS: the NHS Child Protection Information Sharing service, with an SCRa-style clinician
//! front end. See ARCHITECTURE.md for the map of this crate.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod cpis;
pub mod db;
pub mod domain;
pub mod error;
pub mod jobs;
pub mod mail;
pub mod mailbox;
pub mod memory;
pub mod messages;
pub mod monitoring;
pub mod pds;
pub mod reports;
pub mod routes;
pub mod schema;
mod schema_links;
pub mod seed;
pub mod telemetry;
pub mod validation;
pub mod web;
