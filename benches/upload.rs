//! The upload benchmark (issue 4): a 60,000-record message 01 sent to the mailbox API on
//! 127.0.0.1, processed against 60,000 PDS patients and acknowledged, end to end. Run it with
//! `./scripts/bench` (which starts a private PostgreSQL cluster when DATABASE_URL is unset).
//!
//! Absolute times depend on the machine; the gate is the ratio to a baseline measured in the
//! same run: the same number of rows written by the simplest batched INSERT into a scratch
//! table. Prints a table and writes target/bench/upload.json.

#[path = "national/common.rs"]
mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use diesel::prelude::*;

use common::{admin_url, exec, median, url_for, wait_until_chained};
use cpis::pds::patient::{self, Gender, NewPatient};

const RECORDS: usize = 60_000;
const RUNS: usize = 3;
const TARGET: Duration = Duration::from_secs(5);

fn main() {
    cpis::telemetry::init(false);
    let db = "cpis_bench_upload";
    let mut admin = PgConnection::establish(&admin_url()).expect("connect");
    exec(&mut admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    exec(&mut admin, &format!("CREATE DATABASE {db}"));
    let url = url_for(db);
    let mut conn = PgConnection::establish(&url).unwrap();
    cpis::db::migrate(&mut conn).unwrap();
    cpis::seed::reference::load(&mut conn).unwrap();

    // 60,000 children in PDS, and a file naming each of them.
    let today = Utc::now().date_naive();
    let mut patients = Vec::with_capacity(RECORDS);
    for (i, nhs) in cpis::seed::demo::test_numbers().take(RECORDS).enumerate() {
        let birth = today - TimeDelta::days(200 + (i as i64 * 37) % 6000);
        patients.push(NewPatient::new(&nhs, "Child", &format!("Family{}", i % 997), Gender::Female, birth));
    }
    patient::insert_missing(&mut conn, &patients).unwrap();
    let file = |message: usize| -> String {
        let mut s = String::with_capacity(RECORDS * 330);
        s.push_str(&format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><LAUpload xmlns=\"urn:cpis:messages:1\" messageId=\"{}\" \
             sequence=\"{message}\" created=\"2026-11-22T09:15:00Z\"><Sender odsCode=\"E10000016\" name=\"Kent\" \
             emergencyPhone=\"01632 960001\" officeHoursPhone=\"01632 960002\"/>",
            uuid::Uuid::new_v4()
        ));
        for (i, p) in patients.iter().enumerate() {
            s.push_str(&format!(
                "<Record laChildId=\"KCC-{i:06}\"><NhsNumber>{}</NhsNumber><GivenName>{}</GivenName>\
                 <FamilyName>{}</FamilyName><BirthDate>{}</BirthDate><ChildProtectionPlan start=\"{}\"/>\
                 <LookedAfterChild start=\"{}\" end=\"{}\"/></Record>",
                p.nhs_number,
                p.given_name,
                p.family_name,
                p.birth_date,
                today - TimeDelta::days(30 + (message as i64)),
                p.birth_date,
                today - TimeDelta::days(10),
            ));
        }
        s.push_str("</LAUpload>");
        s
    };
    let token = cpis::mailbox::tokens::issue_la(&mut conn, cpis::audit::Actor::Operator, "E10000016", "bench").unwrap();

    // The baseline: the same number of rows, written by the simplest batched INSERT.
    exec(&mut conn, "CREATE TABLE bench_baseline (n text, la text, kind text, child text, start date, finish date)");
    let mut baseline = Vec::new();
    for _ in 0..RUNS {
        exec(&mut conn, "TRUNCATE bench_baseline");
        let started = Instant::now();
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            for chunk in patients.chunks(10_000) {
                let mut sql = String::from("INSERT INTO bench_baseline VALUES ");
                for (i, p) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("('{}','E10000016','CPP','K','{}',NULL)", p.nhs_number, p.birth_date));
                }
                diesel::sql_query(sql).execute(conn)?;
            }
            Ok(())
        })
        .unwrap();
        baseline.push(started.elapsed());
    }

    // Parsing alone, for the record.
    let sample = file(0);
    let size_mb = sample.len() as f64 / 1_048_576.0;
    let started = Instant::now();
    let parsed = cpis::messages::upload::parse(sample.as_bytes(), &Default::default()).unwrap();
    let parse_time = started.elapsed();
    assert_eq!(parsed.records.len(), RECORDS);

    // End to end over HTTP on loopback.
    let mut config = cpis::config::Config::for_database(&url);
    config.db_pool_size = 4;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback(), "benchmarks only ever target this machine");
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let state = cpis::app::AppState::new(cpis::db::pool(&config), config);
            cpis::app::server(state, listener).unwrap().await.unwrap();
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let mut end_to_end = Vec::new();
    // After each answer: how long until the background chainer had linked the file's audit entries.
    let mut chained = Vec::new();
    for run in 1..=RUNS {
        let body = file(run);
        let started = Instant::now();
        let res = rt.block_on(async {
            client.post(format!("http://{addr}/mesh/v1/E10000016/outbox")).bearer_auth(&token).body(body).send().await
        });
        let res = res.unwrap();
        let status = res.status();
        let json: serde_json::Value = rt.block_on(res.json()).unwrap();
        end_to_end.push(started.elapsed());
        chained.push(wait_until_chained(&mut conn));
        assert_eq!(status.as_u16(), 202, "{json}");
        let ack: String = diesel::sql_query(format!(
            "SELECT file_code AS code FROM uploads WHERE ack_message_id = '{}'",
            json["messageId"].as_str().unwrap()
        ))
        .get_result::<Code>(&mut conn)
        .unwrap()
        .code;
        assert_eq!(ack, "CPF01", "every record accepted");
    }
    let items: i64 = diesel::sql_query("SELECT count(*) AS n FROM cp_items WHERE deleted_at IS NULL")
        .get_result::<Count>(&mut conn)
        .unwrap()
        .n;
    assert_eq!(items, 2 * RECORDS as i64, "each record's CPP and LAC stored");

    let base = median(baseline);
    let e2e = median(end_to_end.clone());
    let ratio = e2e.as_secs_f64() / base.as_secs_f64();
    println!();
    println!("upload benchmark: {RECORDS} records ({size_mb:.1} MB), {RUNS} runs, medians");
    println!("{:<46} {:>10} {:>14}", "workload", "time", "ratio to base");
    println!("{:<46} {:>8.0}ms {:>14}", "baseline: batched INSERT of 60,000 rows", base.as_secs_f64() * 1e3, "1.00");
    println!(
        "{:<46} {:>8.0}ms {:>14.2}",
        "parse message 01 (in process)",
        parse_time.as_secs_f64() * 1e3,
        parse_time.as_secs_f64() / base.as_secs_f64()
    );
    println!(
        "{:<46} {:>8.0}ms {:>14.2}",
        "upload end to end (HTTP, verify, store, ack)",
        e2e.as_secs_f64() * 1e3,
        ratio
    );
    println!(
        "{:<46} {:>8.0}ms",
        "audit entries all chained, after the answer",
        median(chained.clone()).as_secs_f64() * 1e3
    );
    println!("target: end to end under {} s: {}", TARGET.as_secs(), if e2e < TARGET { "met" } else { "NOT MET" });
    let json = serde_json::json!({
        "records": RECORDS, "file_mb": size_mb, "runs": RUNS,
        "baseline_ms": base.as_secs_f64() * 1e3,
        "parse_ms": parse_time.as_secs_f64() * 1e3,
        "end_to_end_ms": e2e.as_secs_f64() * 1e3,
        "end_to_end_runs_ms": end_to_end.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>(),
        "chained_after_answer_ms": chained.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>(),
        "ratio_to_baseline": ratio,
        "target_met": e2e < TARGET,
    });
    std::fs::create_dir_all("target/bench").unwrap();
    std::fs::write("target/bench/upload.json", serde_json::to_string_pretty(&json).unwrap()).unwrap();
    drop(conn);
    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&mut admin);
}

#[derive(QueryableByName)]
struct Code {
    #[diesel(sql_type = diesel::sql_types::Text)]
    code: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}
