//! An LA's inbox: messages 02, 05 and 06 held until the LA acknowledges them (CP-IS062).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::schema::mailbox_messages;

#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = mailbox_messages)]
pub struct NewMessage<'a> {
    pub id: Uuid,
    pub la_code: &'a str,
    pub message_type: &'a str,
    pub created_at: DateTime<Utc>,
    pub body: &'a str,
    pub upload_id: Option<i64>,
}

pub fn put(conn: &mut PgConnection, m: &NewMessage<'_>) -> QueryResult<()> {
    diesel::insert_into(mailbox_messages::table).values(m).execute(conn)?;
    Ok(())
}

/// Puts a message whose id is fixed in advance, unless it is there already (a rerun of a job
/// that must send it once). True when this call put it.
pub fn put_once(conn: &mut PgConnection, m: &NewMessage<'_>) -> QueryResult<bool> {
    Ok(diesel::insert_into(mailbox_messages::table).values(m).on_conflict_do_nothing().execute(conn)? == 1)
}

#[derive(Debug, Clone, Queryable, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub message_type: String,
    pub created: DateTime<Utc>,
    #[serde(skip)]
    pub acknowledged_at: Option<DateTime<Utc>>,
}

/// Undelivered (unacknowledged) messages, oldest first.
pub fn undelivered(conn: &mut PgConnection, la_code: &str) -> QueryResult<Vec<Listed>> {
    mailbox_messages::table
        .filter(mailbox_messages::la_code.eq(la_code))
        .filter(mailbox_messages::acknowledged_at.is_null())
        .order((mailbox_messages::created_at, mailbox_messages::id))
        .select((
            mailbox_messages::id,
            mailbox_messages::message_type,
            mailbox_messages::created_at,
            mailbox_messages::acknowledged_at,
        ))
        .load(conn)
}

/// Every message, newest first (the LA portal shows read ones too).
pub fn recent(conn: &mut PgConnection, la_code: &str, limit: i64) -> QueryResult<Vec<Listed>> {
    mailbox_messages::table
        .filter(mailbox_messages::la_code.eq(la_code))
        .order((mailbox_messages::created_at.desc(), mailbox_messages::id.desc()))
        .limit(limit)
        .select((
            mailbox_messages::id,
            mailbox_messages::message_type,
            mailbox_messages::created_at,
            mailbox_messages::acknowledged_at,
        ))
        .load(conn)
}

/// A message's XML, if it is in this LA's inbox.
pub fn body(conn: &mut PgConnection, la_code: &str, id: Uuid) -> QueryResult<Option<(String, String)>> {
    mailbox_messages::table
        .filter(mailbox_messages::la_code.eq(la_code))
        .filter(mailbox_messages::id.eq(id))
        .select((mailbox_messages::message_type, mailbox_messages::body))
        .first(conn)
        .optional()
}

/// The read receipt: the message leaves the undelivered list. False when it is not this LA's.
pub fn acknowledge(conn: &mut PgConnection, la_code: &str, id: Uuid, now: DateTime<Utc>) -> QueryResult<bool> {
    let exists: bool = diesel::select(diesel::dsl::exists(
        mailbox_messages::table.filter(mailbox_messages::la_code.eq(la_code)).filter(mailbox_messages::id.eq(id)),
    ))
    .get_result(conn)?;
    if exists {
        diesel::update(mailbox_messages::table.find(id))
            .filter(mailbox_messages::acknowledged_at.is_null())
            .set(mailbox_messages::acknowledged_at.eq(Some(now)))
            .execute(conn)?;
    }
    Ok(exists)
}

/// A resubmitted upload is answered with the acknowledgement already given, unread again.
pub fn mark_unread(conn: &mut PgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(mailbox_messages::table.find(id))
        .set(mailbox_messages::acknowledged_at.eq(None::<DateTime<Utc>>))
        .execute(conn)?;
    Ok(())
}
