//! The demographic store standing in for PDS (CP-IS005): patients, their import, and search.

pub mod import;
pub mod patient;
pub mod search;

pub use patient::{Gender, Lookup, NewPatient, Patient};
