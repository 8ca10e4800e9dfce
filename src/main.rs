//! `cpis`: the service's one binary. Its subcommands are a contract (messages.md, operator commands).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cpis::config::Config;
use cpis::{app, db, memory, seed, telemetry};

/// mimalloc rather than the system's malloc: a tab opening allocates and frees a few hundred small
/// strings (its history's rows, the page), and glibc's malloc and free, with its fastbin
/// consolidation, were about a seventh of the service's CPU in `bench-profile tab`. The benchmark's
/// baseline and load generator use it too (benches/national.rs), so ratios compare like with like.
/// Without transparent huge pages (`main`, src/memory.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "cpis", version, about = "NHS Child Protection Information Sharing service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web service (pages, the APIs and, unless CPIS_SCHEDULER=false, the job scheduler).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: String,
    },
    /// Apply pending migrations (safe from several processes at once).
    Migrate,
    /// Load reference data (local authorities, NHS organisations, job roles); with --demo, the demo data set.
    Seed {
        #[arg(long)]
        demo: bool,
    },
    /// Issue endpoint tokens; each is printed once, alone on stdout, and only its hash is kept.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The PDS stand-in.
    Pds {
        #[command(subcommand)]
        command: PdsCommand,
    },
    /// Scheduled work.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the whole hash chain and check the signed checkpoints with the key from
    /// CPIS_AUDIT_KEY or CPIS_AUDIT_KEY_FILE (CP-IS074); the run is recorded. Exit 0 when intact,
    /// 1 naming the first bad entry or checkpoint.
    Verify,
    /// Sign the chain's head now with the configured key (a checkpoint, as the hourly job does).
    Checkpoint,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Run, once, every scheduled job due at that moment, as the scheduler would, then exit.
    /// Running it twice for the same moment changes nothing.
    RunDue {
        /// The moment, as RFC 3339 (e.g. 2026-11-22T01:00:00Z); default: now.
        #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
        now: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// An instant as RFC 3339 (a bad one is a usage error: exit code 2).
fn parse_instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{e}: give an RFC 3339 instant such as 2026-11-22T01:00:00Z"))
}

#[derive(Subcommand)]
enum TokenCommand {
    /// A mailbox token for the local authority with this code (e.g. E10000016).
    La { code: String },
    /// A FHIR API token for an NHS system at the organisation with this ODS code.
    Nhs { ods: String },
}

#[derive(Subcommand)]
enum PdsCommand {
    /// Load or update patients from a CSV file.
    Import { file: PathBuf },
}

fn main() -> ExitCode {
    // Before any thread starts (src/memory.rs: the soak's resident set without it).
    let huge_pages_off = memory::no_transparent_huge_pages();
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cpis: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_json);
    if let Err(e) = huge_pages_off {
        tracing::warn!(error = %e, "transparent huge pages could not be turned off for this process");
    }
    match run(cli.command, config) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cpis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { bind } => {
            let mut conn = db::connect(&config.database_url)?;
            db::migrate(&mut conn)?;
            // Audit entries a crash left pending (an upload committed, its entries not yet
            // chained) join the chain before anything else is appended by this instance.
            let chunks = cpis::audit::chain_pending(&mut conn)?;
            if chunks > 0 {
                tracing::warn!(chunks, "audit entries left pending were chained at start");
            }
            drop(conn);
            let listener = std::net::TcpListener::bind(&bind)?;
            tracing::info!(address = %listener.local_addr()?, "serving on http://{}", listener.local_addr()?);
            let pool = db::pool(&config);
            // Every instance may run the scheduler; the queue runs each occurrence once.
            let scheduler = config
                .scheduler
                .then(|| cpis::jobs::runner::spawn_scheduler(pool.clone(), config.clone()))
                .transpose()?;
            let state = app::AppState::new(pool, config);
            let (pool, metrics, every) = (state.pool.clone(), state.metrics.clone(), state.config.monitor_interval);
            actix_web::rt::System::new().block_on(async move {
                app::server(state, listener)?.await?;
                // Stopped gracefully: the last minutes' request counts are written before exiting.
                cpis::monitoring::probe::flush_on_stop(pool, metrics, every).await;
                Ok::<_, std::io::Error>(())
            })?;
            drop(scheduler);
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let mut conn = db::connect(&config.database_url)?;
            let n = db::migrate(&mut conn)?;
            eprintln!("cpis: {n} migration(s) applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Seed { demo } => {
            let mut conn = db::connect(&config.database_url)?;
            db::migrate(&mut conn)?;
            let r = seed::reference::load(&mut conn)?;
            eprintln!("cpis: reference data: {r}");
            if demo {
                let d = seed::demo::load(&mut conn, chrono::Utc::now())?;
                eprintln!("cpis: demo data: {d}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { command } => {
            let mut conn = db::connect(&config.database_url)?;
            db::migrate(&mut conn)?;
            let actor = cpis::audit::Actor::Operator;
            let (token, what) = match command {
                TokenCommand::La { code } => (
                    cpis::mailbox::tokens::issue_la(&mut conn, actor, &code, "cpis token la")?,
                    format!("local authority {code}"),
                ),
                TokenCommand::Nhs { ods } => (
                    cpis::mailbox::tokens::issue_nhs(&mut conn, actor, &ods, "cpis token nhs")?,
                    format!("NHS organisation {ods}"),
                ),
            };
            eprintln!("cpis: a new token for {what}; it is shown only now and only its hash is stored");
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command: AuditCommand::Verify } => {
            let mut conn = db::connect(&config.database_url)?;
            let (_, report) = cpis::audit::verify::verify_and_record(
                &mut conn,
                config.audit_key.as_ref(),
                cpis::audit::Actor::Operator,
            )?;
            eprintln!("cpis: {}", report.summary());
            eprintln!(
                "cpis: {} entries, {} purged links, {} checkpoints checked{}",
                report.entries,
                report.purged,
                report.checkpoints_checked(),
                match report.checkpoints {
                    cpis::audit::verify::Checkpoints::NotChecked =>
                        " (no audit key: set CPIS_AUDIT_KEY or CPIS_AUDIT_KEY_FILE)",
                    cpis::audit::verify::Checkpoints::Checked(_) => "",
                }
            );
            Ok(if report.intact() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Audit { command: AuditCommand::Checkpoint } => {
            let Some(key) = config.audit_key.as_ref() else {
                eprintln!(
                    "cpis: no audit key is configured (CPIS_AUDIT_KEY or CPIS_AUDIT_KEY_FILE): nothing was signed"
                );
                return Ok(ExitCode::from(1));
            };
            let mut conn = db::connect(&config.database_url)?;
            let now = chrono::Utc::now();
            match diesel::Connection::transaction(&mut conn, |conn| cpis::audit::checkpoint::write(conn, key, now))? {
                Some(c) => eprintln!(
                    "cpis: checkpoint {} signed the chain up to entry {} (key id {}, signature {})",
                    c.id,
                    c.entry_id,
                    c.key_id,
                    hex::encode(&c.signature)
                ),
                None => eprintln!("cpis: the audit trail is empty: nothing to sign"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { command: JobsCommand::RunDue { now } } => {
            let mut conn = db::connect(&config.database_url)?;
            db::migrate(&mut conn)?;
            drop(conn);
            let now = now.unwrap_or_else(chrono::Utc::now);
            let pool = db::pool(&config);
            let report = cpis::jobs::runner::run_due(&pool, &config, now)?;
            for outcome in &report.outcomes {
                eprintln!("cpis: {outcome}");
            }
            eprintln!(
                "cpis: at {}: {} occurrence(s) newly scheduled, {} job(s) done, {} failed, {} e-mail(s) sent",
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                report.scheduled,
                report.done(),
                report.failed(),
                report.emails_sent
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Pds { command: PdsCommand::Import { file } } => {
            let mut conn = db::connect(&config.database_url)?;
            let f = std::fs::File::open(&file).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
            match cpis::pds::import::parse_csv(f) {
                Err(errors) => {
                    for e in &errors {
                        eprintln!("cpis: {}: {e}", file.display());
                    }
                    eprintln!("cpis: nothing was imported: correct the file and run the import again");
                    Ok(ExitCode::from(1))
                }
                Ok(rows) => {
                    let n = cpis::pds::import::store(&mut conn, &rows)?;
                    eprintln!("cpis: {n} patient(s) imported or updated");
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
    }
}
