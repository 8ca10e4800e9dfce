//! Processing a Local Authority Upload (message 01) into its acknowledgement (message 02), in one
//! transaction: a file-level rejection stores nothing, and the accepted records of a file are all
//! stored or none (CP-IS002, CP-IS017 to CP-IS020, CP-IS024, CP-SC014, CP-SC016, CP-SC017).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;
use uuid::Uuid;

use crate::audit::chainer::Chainer;
use crate::audit::{self, Actor, Event};
use crate::domain::codes::{FileCode, RecordCode};
use crate::domain::dates::uk_date;
use crate::domain::record_checks::{self, PdsView, Verdict};
use crate::domain::verification::PdsName;
use crate::error::AppError;
use crate::mailbox::inbox::{self, NewMessage};
use crate::mailbox::transmissions;
use crate::messages::ack::{Acknowledgement, RecordResponse};
use crate::messages::upload::{self, Limits, Upload};
use crate::schema::{local_authorities, patient_names, patients, uploads};

/// How the file arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Mailbox,
    Portal,
}

impl Channel {
    pub fn code(self) -> &'static str {
        match self {
            Channel::Mailbox => "mailbox",
            Channel::Portal => "portal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub upload_id: i64,
    pub ack_message_id: Uuid,
    pub file_code: FileCode,
    /// The file's messageId had been seen: the earlier acknowledgement was given again.
    pub resubmission: bool,
    /// The file's audit entries written as pending (`audit::pend`), to be chained after the commit.
    pub pended: Option<audit::Pended>,
    /// Some of them were still pending when [`process`] returned: a large file's remainder, or
    /// chaining failed. The background chainer is to be woken ([`process_then_wake`]).
    pub chaining_left: bool,
}

/// Processes one file sent to `la_code`'s mailbox (or portal) and puts the acknowledgement in
/// its inbox before returning (CP-IS065, CP-IS066: synchronously). The service calls it through
/// [`process_then_wake`], which wakes the background chainer for a large file's audit entries.
pub fn process(
    conn: &mut PgConnection,
    la_code: &str,
    bytes: &[u8],
    channel: Channel,
    actor: Actor,
    now: DateTime<Utc>,
) -> Result<Processed, AppError> {
    // Parsing needs no database: do it before the transaction.
    let parsed = upload::parse(bytes, &Limits::default());
    let processed = conn.transaction(|conn| {
        // Uploads from one LA are processed one at a time, so the sequence rule holds. `FOR NO KEY
        // UPDATE` (the upload changes none of the LA's key): whatever only refers to the LA meanwhile
        // (its inbox getting a message 05, a role profile at it) need not wait for the file.
        let (sending_enabled, last_sequence): (bool, Option<i64>) = local_authorities::table
            .find(la_code)
            .select((local_authorities::sending_enabled, local_authorities::last_sequence))
            .for_no_key_update()
            .first(conn)
            .optional()?
            .ok_or_else(|| AppError::NotFound(format!("There is no local authority with code {la_code}.")))?;
        if parsed.as_ref().is_ok_and(|u| u.records.len() > LARGE_FILE_RECORDS) {
            diesel::sql_query(LARGE_FILE_SETTINGS).execute(conn)?;
        }
        let message_id = match &parsed {
            Ok(u) => Some(u.message_id),
            Err(r) => r.message_id,
        };
        if let Some(mid) = message_id {
            if let Some(done) = resubmission(conn, la_code, mid, channel, &actor, now)? {
                return Ok(done);
            }
        }
        let ctx = Context { la_code, size: bytes.len(), channel, now };
        let upload = match parsed {
            Err(rejection) => {
                let text = format!("Rejected: {}", rejection.reason);
                return finish(conn, &ctx, &actor, message_id, None, FileCode::Cpf03, text, vec![], None);
            }
            Ok(u) => u,
        };
        // A Sender value the service cannot hold is a malformed Sender attribute (CPF03).
        if let Some(reason) = sender_fault(&upload.sender) {
            return finish(
                conn,
                &ctx,
                &actor,
                message_id,
                None,
                FileCode::Cpf03,
                format!("Rejected: {reason}"),
                vec![],
                None,
            );
        }
        let sequence = upload.sequence as i64;
        // CP-SC014, CP-SC025: only the mailbox's own LA, and only while its sending is on.
        if upload.sender.ods_code != la_code {
            let text = format!(
                "Rejected: the Sender odsCode {} is not this mailbox's local authority {la_code}",
                upload.sender.ods_code
            );
            return finish(conn, &ctx, &actor, message_id, Some(sequence), FileCode::Cpf04, text, vec![], None);
        }
        if !sending_enabled {
            let text =
                "Rejected: sending is switched off for this local authority; ask the CP-IS service desk".to_owned();
            return finish(conn, &ctx, &actor, message_id, Some(sequence), FileCode::Cpf04, text, vec![], None);
        }
        // CP-SC016: files are sequential.
        if let Some(last) = last_sequence.filter(|last| sequence <= *last) {
            let text = format!("Rejected: sequence {sequence} is not greater than the last accepted sequence {last}");
            return finish(conn, &ctx, &actor, message_id, Some(sequence), FileCode::Cpf05, text, vec![], None);
        }
        let t0 = std::time::Instant::now();
        let verdicts = check_records(conn, &upload, uk_date(now))?;
        tracing::debug!(ms = t0.elapsed().as_millis() as u64, "upload phase: checks");
        let accepted = verdicts.iter().filter(|(_, v)| matches!(v, Verdict::Accepted { .. })).count();
        let received = verdicts.len();
        let mut text = if accepted == received {
            format!("All {received} records accepted")
        } else if accepted == 0 {
            format!("Rejected: none of the {received} records was accepted")
        } else {
            format!("{accepted} of {received} records accepted")
        };
        if let Some(last) = last_sequence.filter(|last| sequence > last + 1) {
            text.push_str(&format!(" (note: sequence {sequence} follows {last}; files in between were not received)"));
        }
        let code = if accepted == received {
            FileCode::Cpf01
        } else if accepted == 0 {
            FileCode::Cpf06
        } else {
            FileCode::Cpf02
        };
        finish(conn, &ctx, &actor, message_id, Some(sequence), code, text, verdicts, Some(&upload))
    })?;
    // An ordinary file's audit entries (up to 2,000) join the chain before the LA is answered; a
    // larger file's are linked by the background chainer (src/audit/chainer.rs): the answer
    // waits for the file's storage, not for the chain. If chaining fails now, the file is stored
    // all the same and its entries wait for the chainer. Should the connection be lost here, the
    // LA is answered 503 for a file that is stored: sending it again is answered with the same
    // acknowledgement (its messageId is known), so nothing is stored twice.
    let mut processed = processed;
    if let Some(pended) = processed.pended {
        let t0 = std::time::Instant::now();
        processed.chaining_left = match audit::chain_pended(conn, pended) {
            Ok(all) => !all,
            Err(e) => {
                tracing::error!(error = %e, "an upload's audit entries stay pending until the next chaining");
                true
            }
        };
        tracing::debug!(ms = t0.elapsed().as_millis() as u64, "upload phase: chain audit entries");
    }
    Ok(processed)
}

/// [`process`], then the background chainer woken when some of the file's audit entries are
/// still pending, or when processing failed (a file stored before the connection was lost has
/// entries pending too). Called on the blocking thread, so the wake is sent even when the
/// request that brought the file has gone meanwhile.
pub fn process_then_wake(
    chainer: &Chainer,
    conn: &mut PgConnection,
    la_code: &str,
    bytes: &[u8],
    channel: Channel,
    actor: Actor,
) -> Result<Processed, AppError> {
    let processed = process(conn, la_code, bytes, channel, actor, Utc::now());
    if !matches!(&processed, Ok(p) if !p.chaining_left) {
        chainer.wake();
    }
    processed
}

/// For a large file's transaction only:
/// - `work_mem`: the items' insert reads 120,000 rows from arrays through a function scan, which
///   holds them whole and spills to a temporary file past PostgreSQL's default of 4 MB. Smaller
///   files stay within the default. (The audit entries are copied in, `audit::pend`.)
/// - `plan_cache_mode`: every statement of the file is planned without its arrays' values. A
///   custom plan (PostgreSQL's choice for a statement's first runs, and always for an unprepared
///   one) copies each bound array into the plan as a constant, several times over: for a national
///   file, tens of megabytes copied for a plan that is the same whatever the values.
const LARGE_FILE_SETTINGS: &str =
    "SELECT set_config('work_mem', '128MB', true), set_config('plan_cache_mode', 'force_generic_plan', true)";
const LARGE_FILE_RECORDS: usize = 5_000;

/// The longest LA name and telephone number the service stores (as the database's CHECKs say).
const MAX_SENDER_NAME: usize = 200;
const MAX_PHONE: usize = 40;

fn sender_fault(sender: &upload::Sender) -> Option<String> {
    if sender.name.chars().count() > MAX_SENDER_NAME {
        return Some(format!("the Sender name is longer than {MAX_SENDER_NAME} characters"));
    }
    let phones =
        [("emergencyPhone", Some(&sender.emergency_phone)), ("officeHoursPhone", sender.office_hours_phone.as_ref())];
    for (name, value) in phones {
        if value.is_some_and(|v| v.chars().count() > MAX_PHONE) {
            return Some(format!("the Sender {name} is longer than {MAX_PHONE} characters"));
        }
    }
    None
}

struct Context<'a> {
    la_code: &'a str,
    size: usize,
    channel: Channel,
    now: DateTime<Utc>,
}

/// A known messageId: answer with the acknowledgement already given, unread again; change nothing.
fn resubmission(
    conn: &mut PgConnection,
    la_code: &str,
    message_id: Uuid,
    channel: Channel,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Option<Processed>, AppError> {
    let found: Option<(i64, Uuid, String)> = uploads::table
        .filter(uploads::la_code.eq(la_code))
        .filter(uploads::message_id.eq(message_id))
        .select((uploads::id, uploads::ack_message_id, uploads::file_code))
        .first(conn)
        .optional()?;
    let Some((upload_id, ack_id, file_code)) = found else { return Ok(None) };
    inbox::mark_unread(conn, ack_id)?;
    log_file_and_acknowledgement(conn, la_code, Some(message_id), ack_id, channel, now)?;
    audit::record(
        conn,
        Event::new(actor.clone(), "upload.resubmitted")
            .details(json!({"upload_id": upload_id, "message_id": message_id, "la_code": la_code})),
    )?;
    Ok(Some(Processed {
        upload_id,
        ack_message_id: ack_id,
        file_code: FileCode::from_code(&file_code).unwrap_or(FileCode::Cpf03),
        resubmission: true,
        pended: None,
        chaining_left: false,
    }))
}

fn log_file_and_acknowledgement(
    conn: &mut PgConnection,
    la_code: &str,
    upload_id: Option<Uuid>,
    ack_id: Uuid,
    channel: Channel,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let file = upload_id.map(|u| u.to_string());
    transmissions::log_exchange(conn, la_code, ("01", file), ("02", Some(ack_id.to_string())), channel.code(), now)
}

/// Looks up PDS for every record at once and checks each in file order.
fn check_records(
    conn: &mut PgConnection,
    upload: &Upload,
    today: chrono::NaiveDate,
) -> QueryResult<Vec<(usize, Verdict)>> {
    let numbers: Vec<String> = {
        let mut set: Vec<String> = upload.records.iter().filter_map(record_checks::nhs_number_of).collect();
        set.sort();
        set.dedup();
        set
    };
    let mut views: HashMap<String, PdsView> = HashMap::with_capacity(numbers.len());
    type PdsRow = (String, String, String, chrono::NaiveDate, bool, Option<String>, bool);
    for chunk in numbers.chunks(20_000) {
        let rows: Vec<PdsRow> = patients::table
            .filter(patients::nhs_number.eq_any(chunk))
            .select((
                patients::nhs_number,
                patients::given_name,
                patients::family_name,
                patients::birth_date,
                patients::restricted,
                patients::superseded_by,
                patients::invalidated,
            ))
            .load(conn)?;
        for (nhs, given, family, birth_date, restricted, superseded_by, invalidated) in rows {
            views.insert(
                nhs,
                PdsView { birth_date, names: vec![PdsName { given, family }], restricted, superseded_by, invalidated },
            );
        }
        let others: Vec<(String, String, String)> = patient_names::table
            .filter(patient_names::nhs_number.eq_any(chunk))
            .select((patient_names::nhs_number, patient_names::given_name, patient_names::family_name))
            .load(conn)?;
        for (nhs, given, family) in others {
            if let Some(v) = views.get_mut(&nhs) {
                v.names.push(PdsName { given, family });
            }
        }
    }
    let mut seen: HashSet<String> = HashSet::with_capacity(upload.records.len());
    Ok(upload
        .records
        .iter()
        .map(|r| {
            let nhs = record_checks::nhs_number_of(r);
            let seen_earlier = nhs.as_ref().is_some_and(|n| !seen.insert(n.clone()));
            let pds = nhs.as_ref().and_then(|n| views.get(n));
            (r.index, record_checks::check(r, pds, seen_earlier, today))
        })
        .collect())
}

/// Stores the outcome: accepted records replace what this LA held (CP-IS020), the LA's details
/// follow its latest file that passed the file checks, and the acknowledgement goes to the inbox.
#[allow(clippy::too_many_arguments)]
fn finish(
    conn: &mut PgConnection,
    ctx: &Context<'_>,
    actor: &Actor,
    message_id: Option<Uuid>,
    sequence: Option<i64>,
    file_code: FileCode,
    file_text: String,
    verdicts: Vec<(usize, Verdict)>,
    upload: Option<&Upload>,
) -> Result<Processed, AppError> {
    let now = ctx.now;
    let la_code = ctx.la_code;
    let received = verdicts.len();
    let accepted = verdicts.iter().filter(|(_, v)| matches!(v, Verdict::Accepted { .. })).count();
    let ack_id = Uuid::new_v4();
    let upload_id: i64 = diesel::insert_into(uploads::table)
        .values((
            uploads::la_code.eq(la_code),
            uploads::message_id.eq(message_id),
            uploads::sequence.eq(sequence),
            uploads::received_at.eq(now),
            uploads::size_bytes.eq(ctx.size.min(i32::MAX as usize) as i32),
            uploads::channel.eq(ctx.channel.code()),
            uploads::file_code.eq(file_code.code()),
            uploads::received.eq(received as i32),
            uploads::accepted.eq(accepted as i32),
            uploads::rejected.eq((received - accepted) as i32),
            uploads::ack_message_id.eq(ack_id),
        ))
        .returning(uploads::id)
        .get_result(conn)?;

    let mut changes = Vec::new();
    let t0 = std::time::Instant::now();
    if accepted > 0 {
        changes = replace_items(conn, la_code, upload_id, &verdicts, actor, now)?;
    }
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "upload phase: replace items");
    if let (Some(upload), Some(seq), true) = (upload, sequence, file_code.passed_file_checks()) {
        if let Some(change) = update_authority(conn, la_code, upload, seq, now)? {
            changes.push(Event::new(actor.clone(), "la.contacts_changed").details(change));
        }
    }

    let records = upload
        .map(|u| {
            u.records
                .iter()
                .zip(&verdicts)
                .map(|(r, (index, v))| response(*index, r.la_child_id.clone(), r.nhs_number.clone(), v))
                .collect()
        })
        .unwrap_or_default();
    let ack = Acknowledgement {
        message_id: ack_id,
        in_response_to: message_id,
        created: now,
        file_code,
        file_text,
        received,
        accepted,
        rejected: received - accepted,
        records,
    };
    let t0 = std::time::Instant::now();
    let xml = ack.to_xml();
    inbox::put(
        conn,
        &NewMessage {
            id: ack_id,
            la_code,
            message_type: "02",
            created_at: now,
            body: &xml,
            upload_id: Some(upload_id),
        },
    )?;
    log_file_and_acknowledgement(conn, la_code, message_id, ack_id, ctx.channel, now)?;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "upload phase: acknowledgement");
    changes.push(Event::new(actor.clone(), "upload.processed").details(json!({
        "upload_id": upload_id, "la_code": la_code, "message_id": message_id, "sequence": sequence,
        "file_code": file_code.code(), "received": received, "accepted": accepted, "rejected": received - accepted,
        "ack_message_id": ack_id, "channel": ctx.channel.code(),
    })));
    let t0 = std::time::Instant::now();
    // Written without the chain's lock and chained once this transaction has committed, a chunk
    // at a time (`process`, then the background chainer): appended here, under the lock held
    // until COMMIT, a national file's 60,000 entries held up every other audited request for
    // seconds.
    let pended = audit::pend(conn, changes)?;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "upload phase: audit");
    Ok(Processed { upload_id, ack_message_id: ack_id, file_code, resubmission: false, pended, chaining_left: false })
}

fn response(index: usize, la_child_id: Option<String>, nhs_number: Option<String>, v: &Verdict) -> RecordResponse {
    match v {
        Verdict::Accepted { .. } => RecordResponse {
            index,
            la_child_id,
            nhs_number,
            code: RecordCode::Cpr06,
            text: RecordCode::Cpr06.text().into(),
            new_nhs_number: None,
        },
        Verdict::Rejected { code, text, new_nhs_number } => RecordResponse {
            index,
            la_child_id,
            nhs_number,
            code: *code,
            text: text.clone(),
            new_nhs_number: new_nhs_number.clone(),
        },
    }
}

#[derive(QueryableByName)]
struct Removed {
    #[diesel(sql_type = diesel::sql_types::Text)]
    nhs_number: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    item_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    la_child_id: String,
    #[diesel(sql_type = diesel::sql_types::Date)]
    start_date: chrono::NaiveDate,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Date>)]
    end_date: Option<chrono::NaiveDate>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Date>)]
    delete_date: Option<chrono::NaiveDate>,
}

/// The details of a `cp.record_replaced` entry: what the LA held for the child before the record
/// and what it holds after (CP-IS075 replays them: src/reports/held_on.rs). Written straight to
/// text, one per record (`audit::Event::details_from`), so its fields are in sorted key order.
#[derive(serde::Serialize)]
struct Replaced<'a> {
    after: Vec<ItemState<'a>>,
    before: Vec<ItemState<'a>>,
    la_code: &'a str,
    upload_id: i64,
}

/// One item, as a [`Replaced`] entry records it (fields in sorted key order).
#[derive(serde::Serialize)]
struct ItemState<'a> {
    delete: Option<chrono::NaiveDate>,
    end: Option<chrono::NaiveDate>,
    la_child_id: &'a str,
    start: chrono::NaiveDate,
    #[serde(rename = "type")]
    item_type: &'a str,
}

/// New items as column arrays, for one INSERT ... SELECT FROM unnest(...).
#[derive(Default)]
struct ItemColumns<'a>(
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<chrono::NaiveDate>,
    Vec<Option<chrono::NaiveDate>>,
    Vec<Option<chrono::NaiveDate>>,
);

/// CP-IS020: each accepted record replaces everything this LA held for that NHS number; another
/// LA's information is untouched (CP-IS021, CP-IS034). The replaced rows are removed (the audit
/// entry returned for each record keeps what was held before and after: CP-IS075 reads it there).
/// Set-based: one DELETE ... RETURNING and one INSERT from arrays, whatever the file's size.
fn replace_items(
    conn: &mut PgConnection,
    la_code: &str,
    upload_id: i64,
    verdicts: &[(usize, Verdict)],
    actor: &Actor,
    _now: DateTime<Utc>,
) -> Result<Vec<Event>, AppError> {
    use diesel::sql_types::{Array, BigInt, Date, Nullable, Text};
    let accepted: Vec<(&String, &String, &Vec<record_checks::CheckedItem>)> = verdicts
        .iter()
        .filter_map(|(_, v)| match v {
            Verdict::Accepted { nhs_number, la_child_id, items } => Some((nhs_number, la_child_id, items)),
            Verdict::Rejected { .. } => None,
        })
        .collect();
    let numbers: Vec<&str> = accepted.iter().map(|(n, _, _)| n.as_str()).collect();
    let t0 = std::time::Instant::now();
    let removed: Vec<Removed> = diesel::sql_query(
        "DELETE FROM cp_items WHERE la_code = $1 AND nhs_number = ANY($2) AND deleted_at IS NULL \
         RETURNING nhs_number, item_type, la_child_id, start_date, end_date, delete_date",
    )
    .bind::<Text, _>(la_code)
    .bind::<Array<Text>, _>(&numbers)
    .load(conn)?;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, rows = removed.len(), "upload phase: delete replaced");
    let mut before: HashMap<&str, Vec<ItemState<'_>>> = HashMap::new();
    for r in &removed {
        before.entry(r.nhs_number.as_str()).or_default().push(ItemState {
            delete: r.delete_date,
            end: r.end_date,
            la_child_id: &r.la_child_id,
            start: r.start_date,
            item_type: &r.item_type,
        });
    }
    let mut cols = ItemColumns::default();
    let mut events = Vec::with_capacity(accepted.len());
    for (nhs, child, items) in &accepted {
        let mut after = Vec::with_capacity(items.len());
        for item in items.iter() {
            cols.0.push(nhs.as_str());
            cols.1.push(item.kind.code());
            cols.2.push(child.as_str());
            cols.3.push(item.dates.start);
            cols.4.push(item.dates.end);
            cols.5.push(item.dates.delete);
            after.push(ItemState {
                delete: item.dates.delete,
                end: item.dates.end,
                la_child_id: child,
                start: item.dates.start,
                item_type: item.kind.code(),
            });
        }
        let before = before.remove(nhs.as_str()).unwrap_or_default();
        events.push(Event::new(actor.clone(), "cp.record_replaced").about(nhs).details_from(&Replaced {
            after,
            before,
            la_code,
            upload_id,
        })?);
    }
    let t0 = std::time::Instant::now();
    diesel::sql_query(
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date, end_date, delete_date, upload_id) \
         SELECT n, $1, t, c, s, e, d, $2 FROM unnest($3::text[], $4::text[], $5::text[], $6::date[], $7::date[], $8::date[]) \
         AS u(n, t, c, s, e, d)",
    )
    .bind::<Text, _>(la_code)
    .bind::<BigInt, _>(upload_id)
    .bind::<Array<Text>, _>(&cols.0)
    .bind::<Array<Text>, _>(&cols.1)
    .bind::<Array<Text>, _>(&cols.2)
    .bind::<Array<Date>, _>(&cols.3)
    .bind::<Array<Nullable<Date>>, _>(&cols.4)
    .bind::<Array<Nullable<Date>>, _>(&cols.5)
    .execute(conn)?;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "upload phase: insert items");
    Ok(events)
}

/// The name and numbers of the LA's latest file that passed the file checks are what clinicians
/// see; the time they last changed is kept for the LA's page. Returns the change (before and
/// after, for the audit) when they changed.
fn update_authority(
    conn: &mut PgConnection,
    la_code: &str,
    upload: &Upload,
    sequence: i64,
    now: DateTime<Utc>,
) -> QueryResult<Option<serde_json::Value>> {
    let s = &upload.sender;
    let current: (Option<String>, Option<String>, Option<String>) = local_authorities::table
        .find(la_code)
        .select((
            local_authorities::display_name,
            local_authorities::emergency_phone,
            local_authorities::office_hours_phone,
        ))
        .first(conn)?;
    let new = (Some(s.name.clone()), Some(s.emergency_phone.clone()), s.office_hours_phone.clone());
    diesel::update(local_authorities::table.find(la_code))
        .set(local_authorities::last_sequence.eq(Some(sequence)))
        .execute(conn)?;
    if current != new {
        diesel::update(local_authorities::table.find(la_code))
            .set((
                local_authorities::display_name.eq(&new.0),
                local_authorities::emergency_phone.eq(&new.1),
                local_authorities::office_hours_phone.eq(&new.2),
                local_authorities::contacts_updated_at.eq(Some(now)),
            ))
            .execute(conn)?;
        let contacts = |c: &(Option<String>, Option<String>, Option<String>)| json!({"name": c.0, "emergency_phone": c.1, "office_hours_phone": c.2});
        return Ok(Some(json!({"la_code": la_code, "before": contacts(&current), "after": contacts(&new)})));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_entrys_details_are_the_json_value_they_stand_for_with_sorted_keys() {
        let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let details = Replaced {
            after: vec![ItemState {
                delete: None,
                end: Some(day(20)),
                la_child_id: "K-\"1\"",
                start: day(1),
                item_type: "LAC",
            }],
            before: vec![
                ItemState { delete: Some(day(30)), end: None, la_child_id: "K-1", start: day(2), item_type: "CPP" },
                ItemState { delete: None, end: None, la_child_id: "K-é", start: day(3), item_type: "UCPP" },
            ],
            la_code: "E10000016",
            upload_id: 42,
        };
        let expected = json!({
            "la_code": "E10000016", "upload_id": 42,
            "before": [
                {"type": "CPP", "la_child_id": "K-1", "start": "2026-11-02", "end": null, "delete": "2026-11-30"},
                {"type": "UCPP", "la_child_id": "K-é", "start": "2026-11-03", "end": null, "delete": null},
            ],
            "after": [{"type": "LAC", "la_child_id": "K-\"1\"", "start": "2026-11-01", "end": "2026-11-20", "delete": null}],
        });
        let event = Event::new(Actor::Service, "cp.record_replaced").details_from(&details).unwrap();
        assert_eq!(event.details_value(), expected);
        assert_eq!(serde_json::to_string(&details).unwrap(), expected.to_string(), "the same text, keys sorted");
    }
}
