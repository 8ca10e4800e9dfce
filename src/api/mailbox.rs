//! `/mesh/v1/{la}/...`: the secure file transfer for local authorities (messages.md, "Mailbox
//! API"). Every call needs that LA's endpoint token (CP-SC025); answers are JSON, message bodies XML.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use chrono::Utc;
use futures_util::StreamExt;
use uuid::Uuid;

use super::bearer_token;
use crate::app::AppState;
use crate::audit::Actor;
use crate::cpis::upload::{self, Channel};
use crate::db;
use crate::error::AppError;
use crate::mailbox::inbox;
use crate::mailbox::tokens::{self, Endpoint};

/// A mailbox API error: its status and a sentence an LA developer can act on, sent as
/// `{"error": "..."}`.
#[derive(Debug)]
pub struct MailboxError {
    status: StatusCode,
    message: String,
}

impl MailboxError {
    fn new(status: StatusCode, message: impl Into<String>) -> MailboxError {
        MailboxError { status, message: message.into() }
    }

    fn no_such_message() -> MailboxError {
        MailboxError::new(StatusCode::NOT_FOUND, "There is no message with that id in this inbox")
    }
}

impl std::fmt::Display for MailboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for MailboxError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(serde_json::json!({ "error": self.message }))
    }
}

impl From<AppError> for MailboxError {
    fn from(e: AppError) -> MailboxError {
        let status = e.status_code();
        if status.is_server_error() {
            // Logged once, at the boundary, without content.
            let _ = e.error_response();
        }
        let message = match e {
            AppError::Unavailable => "The service cannot reach its database just now; try again shortly".to_owned(),
            AppError::Internal(_) => "The service could not process this request".to_owned(),
            other => other.to_string(),
        };
        MailboxError::new(status, message)
    }
}

/// Checks the bearer token names this LA, and returns the LA's code.
async fn authorise(req: &HttpRequest, state: &AppState, la: &str) -> Result<String, MailboxError> {
    let Some(token) = bearer_token(req).map(str::to_owned) else {
        return Err(MailboxError::new(
            StatusCode::UNAUTHORIZED,
            "Send this LA's endpoint token as Authorization: Bearer <token>",
        ));
    };
    // A token this instance remembers costs no statement (issue 8, src/auth/session_cache.rs).
    let hashed = tokens::hash(&token);
    let sessions = state.sessions.clone();
    let endpoint = match tokens::recall(sessions.as_deref(), &hashed) {
        tokens::Recalled::Live(endpoint) => Some(endpoint),
        tokens::Recalled::Unknown(ticket) => {
            db::run(&state.pool, move |conn| Ok(tokens::read_remembering(conn, sessions.as_deref(), ticket, &hashed)?))
                .await?
        }
    };
    match endpoint {
        Some(Endpoint::LocalAuthority { la_code, .. }) if la_code == la => Ok(la_code),
        Some(_) => Err(MailboxError::new(StatusCode::FORBIDDEN, "This token is not for this mailbox")),
        None => Err(MailboxError::new(StatusCode::UNAUTHORIZED, "The endpoint token is not valid or has been revoked")),
    }
}

fn message_id(s: &str) -> Result<Uuid, MailboxError> {
    Uuid::parse_str(s).map_err(|_| MailboxError::no_such_message())
}

/// `POST /mesh/v1/{la}/outbox`: one message 01. Any body gets an acknowledgement (CP-IS063): the
/// answer is 202 with the acknowledgement's messageId, and the acknowledgement is in the inbox.
pub async fn post_outbox(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    mut body: web::Payload,
) -> Result<HttpResponse, MailboxError> {
    let la_code = authorise(&req, &state, &path).await?;
    let limit = state.config.upload_limit_bytes;
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| {
            MailboxError::new(StatusCode::BAD_REQUEST, "The upload could not be read to its end; send it again")
        })?;
        if bytes.len() + chunk.len() > limit {
            return Err(MailboxError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The file is larger than the limit of {}; split it into smaller files",
                    crate::web::la_portal::human_size(limit)
                ),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let actor = Actor::LocalAuthority(la_code.clone());
    let bytes = bytes.freeze();
    let chainer = state.chainer.clone();
    let done = db::run(&state.pool, move |conn| {
        upload::process_then_wake(&chainer, conn, &la_code, &bytes, Channel::Mailbox, actor.clone())
    })
    .await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "messageId": done.ack_message_id })))
}

/// `GET /mesh/v1/{la}/inbox`: undelivered messages (id, type, created).
pub async fn list_inbox(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MailboxError> {
    let la_code = authorise(&req, &state, &path).await?;
    let list = db::run(&state.pool, move |conn| Ok(inbox::undelivered(conn, &la_code)?)).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// `GET /mesh/v1/{la}/inbox/{id}`: the message's XML.
pub async fn get_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, MailboxError> {
    let (la, id) = path.into_inner();
    let la_code = authorise(&req, &state, &la).await?;
    let id = message_id(&id)?;
    let (_, xml) = db::run(&state.pool, move |conn| Ok(inbox::body(conn, &la_code, id)?))
        .await?
        .ok_or_else(MailboxError::no_such_message)?;
    Ok(HttpResponse::Ok().content_type("application/xml; charset=utf-8").body(xml))
}

/// `PUT /mesh/v1/{la}/inbox/{id}/status/acknowledged`: the read receipt (CP-IS062).
pub async fn acknowledge_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, MailboxError> {
    let (la, id) = path.into_inner();
    let la_code = authorise(&req, &state, &la).await?;
    let id = message_id(&id)?;
    if !db::run(&state.pool, move |conn| Ok(inbox::acknowledge(conn, &la_code, id, Utc::now())?)).await? {
        return Err(MailboxError::no_such_message());
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "messageId": id, "status": "acknowledged" })))
}
