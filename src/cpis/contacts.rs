//! The viewers' contact details on the tab's access history (CP-IS059: the history names who
//! viewed the child, with the e-mail and telephone of their account; a disabled account's are shown
//! to nobody).
//!
//! Each instance remembers them ([`SessionCache`], src/auth/session_cache.rs), forgetting an
//! account's as PostgreSQL announces a change to its e-mail, telephone or disabling (migration
//! 000029), so the history's statement reads the accesses alone (issue 8: joining the viewers'
//! accounts to each of its rows was half of that statement's time on the national dataset). Only
//! the accounts not remembered are read, in one statement; without a listening connection every
//! one is read.

use std::sync::Arc;

use diesel::prelude::*;

use super::access::HistoryEntry;
use crate::auth::session_cache::{AccountContact, SessionCache};

/// Sets each entry's `contact` to its viewer's account contact details, from those `remembered`
/// and, for the others, one read of the accounts (remembered in turn when the cache allows).
/// Entries of a viewer without an account here keep none.
pub fn fill<'a>(
    conn: &mut PgConnection,
    remembered: Option<&SessionCache>,
    entries: impl IntoIterator<Item = &'a mut HistoryEntry>,
) -> QueryResult<()> {
    let mut entries: Vec<&mut HistoryEntry> = entries.into_iter().collect();
    let mut ids: Vec<i64> = entries.iter().filter_map(|e| e.user_id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    // Each id's contact at its place in `ids` (sorted): found again by a binary search.
    let (mut known, ticket) = match remembered.and_then(|cache| cache.contacts(&ids)) {
        Some((known, ticket)) => (known, Some(ticket)),
        None => (vec![None; ids.len()], None),
    };
    debug_assert_eq!(known.len(), ids.len(), "one contact, or none, for each id");
    let missing: Vec<i64> = ids.iter().zip(&known).filter(|(_, c)| c.is_none()).map(|(id, _)| *id).collect();
    if !missing.is_empty() {
        let read = read(conn, &missing)?;
        for (id, contact) in &read {
            if let Ok(place) = ids.binary_search(id) {
                known[place] = Some(contact.clone());
            }
        }
        if let (Some(cache), Some(ticket)) = (remembered, ticket) {
            cache.put_contacts(ticket, read);
        }
    }
    for entry in &mut entries {
        entry.contact = entry.user_id.and_then(|id| ids.binary_search(&id).ok()).and_then(|place| known[place].clone());
    }
    Ok(())
}

/// The accounts' contact details, in one statement.
fn read(conn: &mut PgConnection, ids: &[i64]) -> QueryResult<Vec<(i64, Arc<AccountContact>)>> {
    use diesel::sql_types::{Array, BigInt};
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(embed)]
        contact: AccountContact,
    }
    let rows: Vec<Row> =
        crate::db::prepared::sql!("SELECT id, email, telephone, disabled_at FROM users WHERE id = ANY($1::bigint[])")
            .bind::<Array<BigInt>, _>(ids.to_vec())
            .load(conn)?;
    Ok(rows.into_iter().map(|r| (r.id, Arc::new(r.contact))).collect())
}
