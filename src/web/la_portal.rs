//! The LA portal for local authority staff (a role profile at the LA with CPX03): upload a file,
//! read its acknowledgement as a table, read the inbox (02, 05, 06) and download the XML.

use actix_multipart::Multipart;
use actix_session::Session;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::Utc;
use diesel::prelude::*;
use futures_util::StreamExt;
use uuid::Uuid;

use super::layout::Layout;
use super::{render, see_other};
use crate::app::AppState;
use crate::audit::Actor;
use crate::auth::csrf;
use crate::auth::{Permission, Principal, SignedIn};
use crate::cpis::local_authority;
use crate::cpis::upload::{self, Channel};
use crate::db;
use crate::domain::codes::{FileCode, RecordCode};
use crate::domain::dates::format_uk_datetime;
use crate::error::AppError;
use crate::mailbox::inbox;
use crate::messages::{access_notification, ack, inactive};
use crate::schema::{mailbox_messages, uploads};

/// The LA the signed-in person works for.
fn la_of(p: &Principal) -> Result<String, AppError> {
    let role = p.require(Permission::LaPortal)?;
    role.la_code.clone().ok_or_else(|| AppError::Forbidden("Your role is not at a local authority.".into()))
}

pub struct UploadRow {
    pub href: String,
    pub received: String,
    pub message_id: String,
    pub code: String,
    pub counts: String,
}

pub struct MessageRow {
    pub href: String,
    pub kind: String,
    pub created: String,
    pub read: bool,
}

fn message_kind(t: &str) -> &'static str {
    match t {
        "02" => "Acknowledgement (02)",
        "05" => "Access to Service Notification (05)",
        "06" => "Inactive NHS Number Notification (06)",
        _ => "Message",
    }
}

#[derive(Template)]
#[template(path = "la/home.html")]
struct PortalPage {
    layout: Layout,
    la_name: String,
    la_code: String,
    uploads: Vec<UploadRow>,
    messages: Vec<MessageRow>,
    error: Option<String>,
}

type UploadListRow = (i64, chrono::DateTime<Utc>, Option<Uuid>, String, i32, i32, i32);

async fn portal_page(
    state: &AppState,
    session: &Session,
    p: &Principal,
    error: Option<String>,
) -> Result<PortalPage, AppError> {
    let la = la_of(p)?;
    let code = la.clone();
    let (authority, ups, msgs) = db::run(&state.pool, move |conn| {
        let authority = local_authority::find(conn, &code)?
            .ok_or_else(|| AppError::NotFound("Your local authority is not in the reference data.".into()))?;
        let ups: Vec<UploadListRow> = uploads::table
            .filter(uploads::la_code.eq(&code))
            .order(uploads::id.desc())
            .limit(50)
            .select((
                uploads::id,
                uploads::received_at,
                uploads::message_id,
                uploads::file_code,
                uploads::received,
                uploads::accepted,
                uploads::rejected,
            ))
            .load(conn)?;
        let msgs = inbox::recent(conn, &code, 100)?;
        Ok((authority, ups, msgs))
    })
    .await?;
    Ok(PortalPage {
        layout: Layout::new(
            if error.is_some() { "Error: Local authority portal" } else { "Local authority portal" },
            Some(p),
            session,
        ),
        la_name: authority.name().to_owned(),
        la_code: la,
        uploads: ups
            .into_iter()
            .map(|(id, at, mid, code, received, accepted, rejected)| UploadRow {
                href: format!("/la/uploads/{id}"),
                received: format_uk_datetime(at),
                message_id: mid.map(|m| m.to_string()).unwrap_or_else(|| "(unreadable)".into()),
                code,
                counts: format!("{accepted} of {received} accepted, {rejected} rejected"),
            })
            .collect(),
        messages: msgs
            .into_iter()
            .map(|m| MessageRow {
                href: format!("/la/messages/{}", m.id),
                kind: message_kind(&m.message_type).into(),
                created: format_uk_datetime(m.created),
                read: m.acknowledged_at.is_some(),
            })
            .collect(),
        error,
    })
}

pub async fn show_portal(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
) -> Result<HttpResponse, AppError> {
    render(&portal_page(&state, &session, &principal, None).await?)
}

/// "100 MB", "64 KB": a size as a person reads it.
pub fn human_size(bytes: usize) -> String {
    if bytes >= 1_048_576 {
        format!("{} MB", bytes / 1_048_576)
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}

/// Reads the multipart form: the CSRF token, and the file within the upload limit (or why not).
async fn read_upload(mut form: Multipart, limit: usize) -> (String, Result<Vec<u8>, String>) {
    let mut token = String::new();
    let file = read_fields(&mut form, limit, &mut token).await;
    (token, file)
}

async fn read_fields(form: &mut Multipart, limit: usize, token: &mut String) -> Result<Vec<u8>, String> {
    let mut file: Option<Vec<u8>> = None;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|_| "The upload could not be read; try again".to_owned())?;
        let name = field.name().unwrap_or_default().to_owned();
        let mut data = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|_| "The upload could not be read to its end; try again".to_owned())?;
            if data.len() + chunk.len() > limit {
                return Err(format!(
                    "The file is larger than the limit of {}; split it into smaller files",
                    human_size(limit)
                ));
            }
            data.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "csrf_token" => *token = String::from_utf8_lossy(&data).into_owned(),
            "file" => file = Some(data),
            _ => {}
        }
    }
    match file {
        Some(f) if !f.is_empty() => Ok(f),
        _ => Err("Choose a file to upload".into()),
    }
}

pub async fn upload_file(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    form: Multipart,
) -> Result<HttpResponse, AppError> {
    let la = la_of(&principal)?;
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !multipart {
        return Err(AppError::BadRequest(
            "Send the file with the upload form on the portal page (multipart/form-data).".into(),
        ));
    }
    // The form's token comes before the file, so it is checked first whatever the file's fault.
    let (token, file) = read_upload(form, state.config.upload_limit_bytes).await;
    csrf::verify(&session, &token)?;
    let bytes = match file {
        Ok(v) => v,
        Err(message) => {
            let page = portal_page(&state, &session, &principal, Some(message)).await?;
            return super::render_status(actix_web::http::StatusCode::BAD_REQUEST, &page);
        }
    };
    let actor = Actor::User(principal.account.id);
    let chainer = state.chainer.clone();
    let done = db::run(&state.pool, move |conn| {
        upload::process_then_wake(&chainer, conn, &la, &bytes, Channel::Portal, actor.clone())
    })
    .await?;
    Ok(see_other(&format!("/la/uploads/{}", done.upload_id)))
}

pub struct ResponseRow {
    pub index: usize,
    pub la_child_id: String,
    pub nhs_number: String,
    pub code: String,
    pub text: String,
    pub explanation: String,
    pub new_nhs_number: String,
    pub accepted: bool,
}

#[derive(Template)]
#[template(path = "la/upload.html")]
struct UploadPage {
    layout: Layout,
    message_id: String,
    received: String,
    file_code: String,
    file_text: String,
    file_meaning: String,
    counts: String,
    rows: Vec<ResponseRow>,
    xml_href: String,
    read_action: String,
    read: bool,
}

pub async fn show_upload(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let la = la_of(&principal)?;
    let id = path.into_inner();
    let (received_at, ack_id, xml, read) = db::run(&state.pool, move |conn| {
        let found: Option<(chrono::DateTime<Utc>, Uuid)> = uploads::table
            .filter(uploads::id.eq(id))
            .filter(uploads::la_code.eq(&la))
            .select((uploads::received_at, uploads::ack_message_id))
            .first(conn)
            .optional()?;
        let (at, ack_id) = found.ok_or_else(|| AppError::NotFound("There is no upload with that number.".into()))?;
        let (xml, read): (String, bool) = mailbox_messages::table
            .find(ack_id)
            .select((mailbox_messages::body, mailbox_messages::acknowledged_at.is_not_null()))
            .first(conn)?;
        Ok((at, ack_id, xml, read))
    })
    .await?;
    let ack = ack::parse_ack(&xml).map_err(AppError::internal)?;
    let rows = ack
        .records
        .iter()
        .map(|r| ResponseRow {
            index: r.index,
            la_child_id: r.la_child_id.clone().unwrap_or_default(),
            nhs_number: r.nhs_number.clone().unwrap_or_default(),
            code: r.code.code().into(),
            text: r.text.clone(),
            explanation: r.code.explanation().into(),
            new_nhs_number: r.new_nhs_number.clone().unwrap_or_default(),
            accepted: r.code == RecordCode::Cpr06,
        })
        .collect();
    render(&UploadPage {
        layout: Layout::new("Acknowledgement", Some(&principal), &session),
        message_id: ack.in_response_to.map(|m| m.to_string()).unwrap_or_else(|| "(unreadable)".into()),
        received: format_uk_datetime(received_at),
        file_code: ack.file_code.code().into(),
        file_text: ack.file_text.clone(),
        file_meaning: FileCode::meaning(ack.file_code).into(),
        counts: format!("{} received, {} accepted, {} rejected", ack.received, ack.accepted, ack.rejected),
        rows,
        xml_href: format!("/la/messages/{ack_id}/xml"),
        read_action: format!("/la/messages/{ack_id}/read"),
        read,
    })
}

pub struct NoticeRow {
    pub cells: Vec<String>,
}

#[derive(Template)]
#[template(path = "la/message.html")]
struct MessagePage {
    layout: Layout,
    kind: String,
    created: String,
    summary: String,
    headings: Vec<String>,
    rows: Vec<NoticeRow>,
    xml_href: String,
    read_action: String,
    read: bool,
}

fn parse_message_id(s: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(s).map_err(|_| AppError::NotFound("There is no message with that id.".into()))
}

pub async fn show_message(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let la = la_of(&principal)?;
    let id = parse_message_id(&path)?;
    let (message_type, xml, created, read, upload_id) = db::run(&state.pool, move |conn| {
        mailbox_messages::table
            .filter(mailbox_messages::id.eq(id))
            .filter(mailbox_messages::la_code.eq(&la))
            .select((
                mailbox_messages::message_type,
                mailbox_messages::body,
                mailbox_messages::created_at,
                mailbox_messages::acknowledged_at.is_not_null(),
                mailbox_messages::upload_id,
            ))
            .first::<(String, String, chrono::DateTime<Utc>, bool, Option<i64>)>(conn)
            .optional()?
            .ok_or_else(|| AppError::NotFound("There is no message with that id.".into()))
    })
    .await?;
    if let (Some(upload_id), "02") = (upload_id, message_type.as_str()) {
        return Ok(see_other(&format!("/la/uploads/{upload_id}")));
    }
    let (summary, headings, rows) = match message_type.as_str() {
        "06" => {
            let n = inactive::parse_inactive(&xml).map_err(AppError::internal)?;
            (
                "These NHS numbers, for which your authority holds information, are no longer in use. Where there is a new number, send the records again under it (CP-SC022).".to_owned(),
                vec!["NHS number".into(), "Your child id".into(), "Reason".into(), "New NHS number".into()],
                n.records
                    .iter()
                    .map(|r| NoticeRow {
                        cells: vec![
                            r.nhs_number.clone(),
                            r.la_child_id.clone(),
                            match r.reason {
                                inactive::InactiveReason::Superseded => "Superseded".into(),
                                inactive::InactiveReason::Invalidated => "Invalidated".into(),
                            },
                            r.new_nhs_number.clone().unwrap_or_default(),
                        ],
                    })
                    .collect(),
            )
        }
        "05" => {
            let n = access_notification::parse_access_notification(&xml).map_err(AppError::internal)?;
            let summary = if n.accesses.is_empty() {
                "No child of your authority's was accessed in this period.".to_owned()
            } else {
                let n_acc = n.accesses.len();
                format!(
                    "{n_acc} {} to your authority's children in this period.",
                    if n_acc == 1 { "access" } else { "accesses" }
                )
            };
            (
                summary,
                vec![
                    "Child id".into(),
                    "NHS number".into(),
                    "When".into(),
                    "Who".into(),
                    "Role".into(),
                    "Where".into(),
                ],
                n.accesses
                    .iter()
                    .map(|a| NoticeRow {
                        cells: vec![
                            a.la_child_id.clone(),
                            a.nhs_number.clone(),
                            format_uk_datetime(a.accessed_at),
                            a.user_name.clone(),
                            a.job_role_name.clone(),
                            a.organisation_name.clone(),
                        ],
                    })
                    .collect(),
            )
        }
        _ => (String::new(), vec![], vec![]),
    };
    render(&MessagePage {
        layout: Layout::new(message_kind(&message_type), Some(&principal), &session),
        kind: message_kind(&message_type).into(),
        created: format_uk_datetime(created),
        summary,
        headings,
        rows,
        xml_href: format!("/la/messages/{id}/xml"),
        read_action: format!("/la/messages/{id}/read"),
        read,
    })
}

pub async fn download_message(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let la = la_of(&principal)?;
    let id = parse_message_id(&path)?;
    let (message_type, xml) = db::run(&state.pool, move |conn| Ok(inbox::body(conn, &la, id)?))
        .await?
        .ok_or_else(|| AppError::NotFound("There is no message with that id.".into()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/xml; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"cpis-{message_type}-{id}.xml\"")))
        .body(xml))
}

/// Marks a message read from the portal (the same as the mailbox API's read receipt).
pub async fn mark_read(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    path: web::Path<String>,
    crate::auth::csrf::CsrfForm(_): crate::auth::csrf::CsrfForm<crate::auth::csrf::ButtonForm>,
) -> Result<HttpResponse, AppError> {
    let la = la_of(&principal)?;
    let id = parse_message_id(&path)?;
    let found = db::run(&state.pool, move |conn| Ok(inbox::acknowledge(conn, &la, id, Utc::now())?)).await?;
    if !found {
        return Err(AppError::NotFound("There is no message with that id.".into()));
    }
    Ok(see_other("/la"))
}
