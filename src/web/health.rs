//! `GET /health`: whether the service can reach its database.

use actix_web::{web, HttpResponse};
use diesel::RunQueryDsl;

use crate::app::AppState;

pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let ok = crate::db::run(&state.pool, |conn| {
        diesel::sql_query("SELECT 1").execute(conn)?;
        Ok(())
    })
    .await
    .is_ok();
    let body = serde_json::json!({ "status": if ok { "ok" } else { "unavailable" }, "database": ok });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().insert_header(("Retry-After", "30")).json(body)
    }
}
