//! The in-run baseline: the least a page on this stack can do. A minimal actix-web server whose one
//! handler reads a patient by NHS number (one indexed query through diesel and an r2d2 pool with
//! its defaults) and renders a small askama template; the same worker and pool counts as the
//! service. It runs in its own process (this bench binary, re-executed), like `cpis serve`.

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use askama::Template;
use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};

use cpis::schema::patients;

/// The environment variable that makes this binary the baseline server.
pub const ROLE_ENV: &str = "CPIS_BENCH_BASELINE_BIND";

type DbPool = Pool<ConnectionManager<PgConnection>>;

#[derive(Template)]
#[template(
    source = "<!DOCTYPE html><html lang=\"en\"><head><title>{{ name }}</title></head><body><main>\
              <h1>{{ name }}</h1><dl><dt>NHS number</dt><dd>{{ nhs }}</dd><dt>Born</dt><dd>{{ born }}</dd>\
              </dl></main></body></html>",
    ext = "html"
)]
struct PatientPage {
    name: String,
    nhs: String,
    born: String,
}

async fn patient(pool: web::Data<DbPool>, path: web::Path<String>) -> HttpResponse {
    let nhs = path.into_inner();
    let pool = pool.get_ref().clone();
    let found = web::block(move || {
        let mut conn = pool.get().map_err(|e| e.to_string())?;
        patients::table
            .find(&nhs)
            .select((patients::nhs_number, patients::given_name, patients::family_name, patients::birth_date))
            .first::<(String, String, String, NaiveDate)>(&mut conn)
            .optional()
            .map_err(|e| e.to_string())
    })
    .await;
    match found {
        Ok(Ok(Some((nhs, given, family, born)))) => {
            let page = PatientPage { name: format!("{given} {}", family.to_uppercase()), nhs, born: born.to_string() };
            match page.render() {
                Ok(html) => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html),
                Err(_) => HttpResponse::InternalServerError().finish(),
            }
        }
        Ok(Ok(None)) => HttpResponse::NotFound().finish(),
        _ => HttpResponse::ServiceUnavailable().finish(),
    }
}

/// Runs the baseline server until killed.
pub fn serve(bind: &str) -> ! {
    assert!(bind.starts_with("127.0.0.1:"), "the baseline listens on 127.0.0.1 only");
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let workers: usize = std::env::var("CPIS_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let pool_size: u32 = std::env::var("CPIS_DB_POOL_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let pool = Pool::builder()
        .max_size(pool_size)
        .connection_timeout(Duration::from_secs(3))
        .build_unchecked(ConnectionManager::<PgConnection>::new(url));
    let listener = std::net::TcpListener::bind(bind).expect("bind the baseline");
    actix_web::rt::System::new().block_on(async move {
        let data = web::Data::new(pool);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/health", web::get().to(|| async { HttpResponse::Ok().body("ok") }))
                .route("/patients/{nhs}", web::get().to(patient))
        });
        let server = if workers > 0 { server.workers(workers) } else { server };
        server.listen(listener).expect("listen").run().await.expect("the baseline server");
    });
    std::process::exit(0)
}
