//! The audit trail's verification page (CP-IS074), for the reporting roles: whether a key signs
//! checkpoints, the last checkpoint, the last verification and the 20 before it, and a button that
//! verifies the whole trail now (the chain and the signed checkpoints), records the run in
//! `audit_verifications`, audits it and comes back here.

use actix_session::Session;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::app::AppState;
use crate::audit::checkpoint::{self, Checkpoint};
use crate::audit::verify::{self, Verification};
use crate::audit::Actor;
use crate::auth::csrf::{ButtonForm, CsrfForm};
use crate::auth::{Permission, SignedIn};
use crate::db;
use crate::domain::dates::format_uk_datetime;
use crate::error::AppError;
use crate::schema::audit_checkpoints;
use crate::web::layout::Layout;
use crate::web::{render, see_other};

/// Verifications listed.
const RECENT: i64 = 20;

pub struct CheckpointView {
    pub id: i64,
    pub when: String,
    pub entry_id: i64,
    pub key_id: String,
    /// Signed under the key configured now.
    pub same_key: bool,
}

pub struct VerificationView {
    pub when: String,
    pub run_by: String,
    pub intact: bool,
    pub outcome: &'static str,
    pub entries: i64,
    pub purged: i64,
    pub checkpoints: i64,
    /// The first bad entry, empty when intact.
    pub broken_entry: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "reports/audit.html")]
struct AuditPage {
    layout: Layout,
    key_configured: bool,
    key_id: String,
    checkpoint_count: i64,
    last_checkpoint: Option<CheckpointView>,
    last: Option<VerificationView>,
    recent: Vec<VerificationView>,
}

fn verification_view(v: &Verification) -> VerificationView {
    VerificationView {
        when: format_uk_datetime(v.finished_at),
        run_by: v.run_by_name.clone(),
        intact: v.intact,
        outcome: if v.intact { "Intact" } else { "Broken" },
        entries: v.entries,
        purged: v.purged,
        checkpoints: v.checkpoints,
        broken_entry: v.broken_entry_id.map(|id| id.to_string()).unwrap_or_default(),
        reason: v.reason.clone().unwrap_or_default(),
    }
}

fn checkpoint_view(c: &Checkpoint, key_id: &str) -> CheckpointView {
    CheckpointView {
        id: c.id,
        when: format_uk_datetime(c.created_at),
        entry_id: c.entry_id,
        key_id: c.key_id.clone(),
        same_key: c.key_id == key_id,
    }
}

struct Loaded {
    checkpoint_count: i64,
    last_checkpoint: Option<Checkpoint>,
    recent: Vec<Verification>,
}

fn load(conn: &mut PgConnection) -> Result<Loaded, AppError> {
    Ok(Loaded {
        checkpoint_count: audit_checkpoints::table.count().get_result(conn)?,
        last_checkpoint: checkpoint::last(conn)?,
        recent: verify::recent(conn, RECENT)?,
    })
}

pub async fn show(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::Reports)?;
    let loaded = db::run(&state.pool, load).await?;
    let key_id = state.config.audit_key.as_ref().map(checkpoint::key_id).unwrap_or_default();
    let views: Vec<VerificationView> = loaded.recent.iter().map(verification_view).collect();
    let last = loaded.recent.first().map(verification_view);
    render(&AuditPage {
        layout: Layout::new("Audit trail verification", Some(&principal), &session),
        key_configured: state.config.audit_key.is_some(),
        checkpoint_count: loaded.checkpoint_count,
        last_checkpoint: loaded.last_checkpoint.as_ref().map(|c| checkpoint_view(c, &key_id)),
        key_id,
        last,
        recent: views,
    })
}

/// "Verify the audit trail now": the whole walk runs on the blocking pool (db::run), then the page.
pub async fn verify_now(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    CsrfForm(_): CsrfForm<ButtonForm>,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::Reports)?;
    let actor = Actor::User(principal.account.id);
    let key = state.config.audit_key.clone();
    let started: DateTime<Utc> = Utc::now();
    let (id, report) =
        db::run(&state.pool, move |conn| verify::verify_and_record(conn, key.as_ref(), actor.clone())).await?;
    tracing::info!(
        verification_id = id,
        intact = report.intact(),
        entries = report.entries,
        purged = report.purged,
        checkpoints = report.checkpoints_checked(),
        broken_entry_id = report.broken.as_ref().map(|b| b.entry_id),
        took_ms = (Utc::now() - started).num_milliseconds(),
        "audit trail verified"
    );
    Ok(see_other("/reports/audit"))
}
