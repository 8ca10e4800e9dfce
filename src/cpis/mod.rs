//! Child protection information: items per (NHS number, LA, type), local authorities, access
//! events, and the Child Care Alert tab built from them.

pub mod access;
pub mod alert;
pub mod contacts;
pub mod inactive;
pub mod items;
pub mod local_authority;
pub mod recent;
pub mod recorder;
pub mod reference_names;
pub mod upload;
