//! Pure domain rules of the CP-IS service: no I/O, no database.
//!
//! Every function here is a plain function of its arguments, so the rules the standard sets
//! (retrieval windows, the first access rule, NHS number validation, role checks) can be tested
//! at their edges without a running service.

pub mod access_history;
pub mod codes;
pub mod dates;
pub mod names;
pub mod nhs_number;
pub mod notifications;
pub mod record_checks;
pub mod retention;
pub mod retrieval;
pub mod roles;
pub mod verification;
