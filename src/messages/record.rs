//! A record of message 01 as it arrived: every field as raw text, so that the record checks
//! (`domain::record_checks`) decide, in the contract's order, what a bad value means.

use crate::domain::retrieval::ItemKind;

/// One `<Record>`, numbered from 1 in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRecord {
    pub index: usize,
    /// The `laChildId` attribute.
    pub la_child_id: Option<String>,
    pub nhs_number: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub birth_date: Option<String>,
    pub items: Vec<RawItem>,
    /// Structural faults found while reading the record (an unknown element, a field given twice,
    /// a value over the length limit), as sentences for CPR07's text.
    pub faults: Vec<String>,
}

/// One item element (`ChildProtectionPlan`, `LookedAfterChild`, `UnbornChildProtectionPlan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawItem {
    pub kind: ItemKind,
    pub start: Option<String>,
    pub end: Option<String>,
    pub delete: Option<String>,
}
