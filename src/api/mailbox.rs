//! `/mesh/v1/{la}/...`: the secure file transfer for local authorities (messages.md, "Mailbox
//! API"). Every call needs that LA's endpoint token (CP-SC025); answers are JSON, message bodies XML.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
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

fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message }))
}

/// Checks the bearer token names this LA; the error is the response to send.
#[allow(clippy::result_large_err)]
async fn authorise(req: &HttpRequest, state: &AppState, la: &str) -> Result<String, HttpResponse> {
    let Some(token) = bearer_token(req).map(str::to_owned) else {
        return Err(json_error(
            StatusCode::UNAUTHORIZED,
            "Send this LA's endpoint token as Authorization: Bearer <token>",
        ));
    };
    let endpoint =
        db::run(&state.pool, move |conn| Ok(tokens::authenticate(conn, &token)?)).await.map_err(|e| api_error(&e))?;
    match endpoint {
        Some(Endpoint::LocalAuthority { la_code, .. }) if la_code == la => Ok(la_code),
        Some(_) => Err(json_error(StatusCode::FORBIDDEN, "This token is not for this mailbox")),
        None => Err(json_error(StatusCode::UNAUTHORIZED, "The endpoint token is not valid or has been revoked")),
    }
}

fn api_error(e: &AppError) -> HttpResponse {
    use actix_web::ResponseError;
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
    json_error(status, &message)
}

/// `POST /mesh/v1/{la}/outbox`: one message 01. Any body gets an acknowledgement (CP-IS063): the
/// answer is 202 with the acknowledgement's messageId, and the acknowledgement is in the inbox.
pub async fn post_outbox(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    mut body: web::Payload,
) -> HttpResponse {
    let la = path.into_inner();
    let la_code = match authorise(&req, &state, &la).await {
        Ok(code) => code,
        Err(res) => return res,
    };
    let limit = state.config.upload_limit_bytes;
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return json_error(StatusCode::BAD_REQUEST, "The upload could not be read to its end; send it again");
        };
        if bytes.len() + chunk.len() > limit {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "The file is larger than the limit of {}; split it into smaller files",
                    crate::web::la_portal::human_size(limit)
                ),
            );
        }
        bytes.extend_from_slice(&chunk);
    }
    let actor = Actor::LocalAuthority(la_code.clone());
    let bytes = bytes.freeze();
    match db::run(&state.pool, move |conn| upload::process(conn, &la_code, &bytes, Channel::Mailbox, actor, Utc::now()))
        .await
    {
        Ok(done) => HttpResponse::Accepted().json(serde_json::json!({ "messageId": done.ack_message_id })),
        Err(e) => api_error(&e),
    }
}

/// `GET /mesh/v1/{la}/inbox`: undelivered messages (id, type, created).
pub async fn list_inbox(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let la_code = match authorise(&req, &state, &path).await {
        Ok(code) => code,
        Err(res) => return res,
    };
    match db::run(&state.pool, move |conn| Ok(inbox::undelivered(conn, &la_code)?)).await {
        Ok(list) => HttpResponse::Ok().json(list),
        Err(e) => api_error(&e),
    }
}

#[allow(clippy::result_large_err)]
fn message_id(s: &str) -> Result<Uuid, HttpResponse> {
    Uuid::parse_str(s).map_err(|_| json_error(StatusCode::NOT_FOUND, "There is no message with that id in this inbox"))
}

/// `GET /mesh/v1/{la}/inbox/{id}`: the message's XML.
pub async fn get_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (la, id) = path.into_inner();
    let la_code = match authorise(&req, &state, &la).await {
        Ok(code) => code,
        Err(res) => return res,
    };
    let id = match message_id(&id) {
        Ok(id) => id,
        Err(res) => return res,
    };
    match db::run(&state.pool, move |conn| Ok(inbox::body(conn, &la_code, id)?)).await {
        Ok(Some((_, xml))) => HttpResponse::Ok().content_type("application/xml; charset=utf-8").body(xml),
        Ok(None) => json_error(StatusCode::NOT_FOUND, "There is no message with that id in this inbox"),
        Err(e) => api_error(&e),
    }
}

/// `PUT /mesh/v1/{la}/inbox/{id}/status/acknowledged`: the read receipt (CP-IS062).
pub async fn acknowledge_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (la, id) = path.into_inner();
    let la_code = match authorise(&req, &state, &la).await {
        Ok(code) => code,
        Err(res) => return res,
    };
    let id = match message_id(&id) {
        Ok(id) => id,
        Err(res) => return res,
    };
    match db::run(&state.pool, move |conn| Ok(inbox::acknowledge(conn, &la_code, id, Utc::now())?)).await {
        Ok(true) => HttpResponse::Ok().json(serde_json::json!({ "messageId": id, "status": "acknowledged" })),
        Ok(false) => json_error(StatusCode::NOT_FOUND, "There is no message with that id in this inbox"),
        Err(e) => api_error(&e),
    }
}
