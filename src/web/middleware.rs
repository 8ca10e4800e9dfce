//! Middleware: security headers, request ids and logs without personal data, the same-origin
//! check on unsafe methods, and authorisation against the route table's permissions.

use std::time::Instant;

use actix_session::SessionExt;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};

use crate::app::AppState;
use crate::auth::permission::{Decision, Permission};
use crate::auth::principal::{session_ids, Principal};
use crate::auth::session_store::UNAVAILABLE_KEY;
use crate::error::AppError;

/// Content-Security-Policy: scripts and styles from this service only, no inline script.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
     form-action 'self'";

/// Outermost: gives every request an id, logs it once (route pattern, never the path, which may
/// hold an NHS number), refuses cross-site unsafe requests and sets the security headers.
pub async fn security_and_logging(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let answered = |headers: &mut header::HeaderMap, route: &str, status: u16| {
        let elapsed = started.elapsed();
        // CP-IS078: counted per area with its status and latency (src/monitoring/metrics.rs).
        if let Some(state) = &state {
            state.metrics.record(route, status, elapsed);
        }
        // A random (version 4) UUID from the thread's generator, which the operating system seeds:
        // no system call per request, as `Uuid::new_v4` makes.
        let request_id = uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string();
        secure(headers, state.as_ref().is_some_and(|s| s.config.secure_cookies), &request_id);
        tracing::info!(
            request_id = %request_id,
            method = %method,
            route = %route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    };
    let mut res = match cross_site_refusal(&req) {
        Some(err) => req.into_response(err.error_response()),
        None => match next.call(req).await {
            Ok(res) => res.map_into_boxed_body(),
            // Only the session layer answers with an error: its store failed to save a changed
            // session (a failed load is answered inside, by `authorize`). The request is gone with
            // it, so the answer is the error's own response: the 503 page instead of actix-session's
            // bare 500, given the same headers, log line and CP-IS078 count as any other.
            Err(e) => {
                let e = crate::error::escaped_error(e);
                let mut res = e.error_response();
                let status = res.status().as_u16();
                answered(res.headers_mut(), SESSION_STORE_ROUTE, status);
                return Err(actix_web::error::InternalError::from_response(e, res).into());
            }
        },
    };
    let route = res.request().match_pattern().unwrap_or_else(|| "(unmatched)".into());
    let status = res.status().as_u16();
    answered(res.headers_mut(), &route, status);
    Ok(res)
}

/// The route named for an answer whose request the session layer consumed with its error.
const SESSION_STORE_ROUTE: &str = "(session store)";

/// The security headers every answer carries, and its request id.
fn secure(h: &mut header::HeaderMap, hsts: bool, request_id: &str) {
    h.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    h.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        header::HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::HeaderName::from_static("permissions-policy"),
        header::HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    if hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if let Ok(v) = header::HeaderValue::from_str(request_id) {
        h.insert(header::HeaderName::from_static("x-request-id"), v);
    }
}

/// Unsafe methods from a browser must come from this service's own pages (OWASP ASVS 4.2.2,
/// alongside the synchronizer token): Fetch Metadata first, then Origin against Host.
fn cross_site_refusal(req: &ServiceRequest) -> Option<AppError> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let refuse = || Some(AppError::Forbidden("This request came from another site and was refused.".into()));
    // Fetch Metadata decides when the browser sends it. (With Referrer-Policy: no-referrer,
    // browsers send `Origin: null` even on same-origin form posts, so Origin cannot come first.)
    if let Some(site) = req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return if site == "same-origin" || site == "none" { None } else { refuse() };
    }
    // Older browsers: an Origin naming another host is refused.
    if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, rest)| rest);
        if origin_host.is_some_and(|h| h != host) {
            return refuse();
        }
    }
    None
}

/// What a user who must change their password may still reach.
const PASSWORD_CHANGE_PATHS: [&str; 2] = ["/change-password", "/sign-out"];

/// Inside the session middleware: loads the principal and checks the route's declared permission.
pub async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.into_response(AppError::Internal("no application state".into()).error_response()));
    };
    let session = req.get_session();
    if session.entries().contains_key(UNAVAILABLE_KEY) {
        // The session store could not reach the database (src/auth/session_store.rs).
        return Ok(req.into_response(AppError::Unavailable.error_response()));
    }
    let permission = state.routes.permission_for(req.method(), req.match_pattern().as_deref(), req.path());
    let principal = match session_ids(&session) {
        (Some(uid), rid) => {
            // Read with the session itself (src/auth/session_store.rs); loaded here only when not.
            let loaded = match Principal::from_session(&session, uid, rid) {
                Some(read) => Ok(read),
                None => crate::db::run(&state.pool, move |conn| Ok(Principal::load(conn, uid, rid)?)).await,
            };
            match loaded {
                Ok(Some(p)) => Some(p),
                // Unknown or disabled account: the session ends at once (CP-IS059).
                Ok(None) => {
                    session.purge();
                    None
                }
                Err(e) => return Ok(req.into_response(e.error_response())),
            }
        }
        (None, _) => None,
    };
    let decision = match permission {
        Some(p) => p.decide(principal.as_ref()),
        // A route without a declared permission is refused (deny by default).
        None => Decision::Deny,
    };
    // After an administrator's reset, a user must choose a new password before anything else.
    let must_change = principal.as_ref().is_some_and(|p| p.account.must_change_password)
        && !PASSWORD_CHANGE_PATHS.contains(&req.path())
        && permission != Some(Permission::Public);
    if let Some(p) = principal {
        req.extensions_mut().insert(p);
    }
    match decision {
        _ if must_change && decision != Decision::SignIn => Ok(req.into_response(
            actix_web::HttpResponse::SeeOther().insert_header((header::LOCATION, "/change-password")).finish(),
        )),
        Decision::Allow => Ok(next.call(req).await?.map_into_boxed_body()),
        Decision::SignIn => Ok(req.into_response(AppError::SignInRequired.error_response())),
        Decision::ChooseRole => Ok(req.into_response(
            actix_web::HttpResponse::SeeOther().insert_header((header::LOCATION, "/select-role")).finish(),
        )),
        Decision::Deny => Ok(req.into_response(
            AppError::Forbidden(
                "Your selected role does not allow this. Change role if you have another one that does.".into(),
            )
            .error_response(),
        )),
    }
}
