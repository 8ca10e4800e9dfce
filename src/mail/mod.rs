//! Sending e-mail with lettre: SMTP when configured, otherwise `.eml` files in a folder.
//!
//! E-mails are queued as rows of `outbound_emails` by the job that composes them (in the job's
//! transaction, under a unique key, so each exists once) and sent here: claimed one at a time with
//! `FOR UPDATE SKIP LOCKED`, so any number of instances may call [`send_due`] at once and each
//! e-mail is handed to one of them. A transient failure (no connection, a timeout, a 4xx reply) is
//! retried with backoff (1, 2, 4 ... minutes, at most 60) up to [`MAX_ATTEMPTS`] times; a permanent
//! one (a 5xx reply, an address that cannot be used) marks the e-mail failed at once, with the
//! error kept for CP-IS owners to see on the jobs page. Addresses and bodies are never logged.
//!
//! Exactly once, as far as e-mail allows: the row is marked sent in the transaction that holds its
//! lock, after the server has accepted the message. A crash between the two leaves the row
//! pending, and it is sent again with the same Message-ID; receivers deduplicate on it. That is
//! the at-least-once edge of "exactly one e-mail per LA per day".

pub mod access_notification;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::{FileTransport, Message, SmtpTransport, Transport};

use crate::config::Config;
use crate::db::DbPool;
use crate::error::AppError;
use crate::schema::outbound_emails;

/// After this many transient failures an e-mail is marked failed.
pub const MAX_ATTEMPTS: i32 = 10;
/// The longest wait between two attempts.
pub const MAX_BACKOFF_MINUTES: i64 = 60;
/// How long one SMTP conversation may stall before it counts as a transient failure.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// After this many failures in a row without any reply from the server (it is down or
/// unreachable), the rest of the due e-mails wait for the next call instead of each waiting for
/// its own timeout.
const UNREACHABLE_AFTER: usize = 3;
/// The most of an error's text kept on the row.
const ERROR_LIMIT: usize = 1000;

/// The wait after the `attempts`-th failed attempt: 1, 2, 4 ... minutes, capped at 60.
pub fn backoff(attempts: i32) -> TimeDelta {
    let exponent = attempts.clamp(1, 7) - 1;
    TimeDelta::minutes((1i64 << exponent).min(MAX_BACKOFF_MINUTES))
}

/// What becomes of an e-mail after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time.
    Retry(DateTime<Utc>),
    /// Give up: the error is shown to CP-IS owners.
    Fail,
}

/// `attempts` counts this attempt too.
pub fn after_failure(attempts: i32, permanent: bool, now: DateTime<Utc>) -> AfterFailure {
    if permanent || attempts >= MAX_ATTEMPTS {
        AfterFailure::Fail
    } else {
        AfterFailure::Retry(now + backoff(attempts))
    }
}

/// Sends the e-mails that are due (pending, next attempt reached); returns how many were sent.
pub fn send_due(pool: &DbPool, config: &Config, now: DateTime<Utc>) -> Result<usize, AppError> {
    let from: Mailbox = config
        .mail_from
        .parse()
        .map_err(|_| AppError::Internal("CPIS_MAIL_FROM is not a usable e-mail address".into()))?;
    let sender = Sender::new(config)?;
    let (mut sent, mut retrying, mut failed, mut unreachable) = (0usize, 0usize, 0usize, 0usize);
    loop {
        let mut conn = crate::db::checked(pool)?;
        let outcome = conn.transaction::<_, AppError, _>(|conn| {
            let Some(due) = claim(conn, now)? else {
                return Ok(None);
            };
            let result = build(&due, &from).and_then(|message| sender.send(&message));
            match result {
                Ok(()) => {
                    // The server has the message; marking it sent commits with this transaction. A
                    // crash in between leaves the row pending and it is sent again, with the same
                    // Message-ID, which receivers deduplicate on: the at-least-once edge of
                    // "exactly one e-mail per LA per day".
                    diesel::update(outbound_emails::table.find(due.id))
                        .set((
                            outbound_emails::status.eq("sent"),
                            outbound_emails::sent_at.eq(Some(now)),
                            outbound_emails::attempts.eq(due.attempts + 1),
                            outbound_emails::last_error.eq(None::<String>),
                        ))
                        .execute(conn)?;
                    Ok(Some(Ok(())))
                }
                Err(failure) => {
                    let attempts = due.attempts + 1;
                    let error: String = failure.message.chars().take(ERROR_LIMIT).collect();
                    let fail = after_failure(attempts, failure.permanent, now);
                    let update = diesel::update(outbound_emails::table.find(due.id));
                    match fail {
                        AfterFailure::Retry(at) => update
                            .set((
                                outbound_emails::attempts.eq(attempts),
                                outbound_emails::next_attempt_at.eq(at),
                                outbound_emails::last_error.eq(Some(&error)),
                            ))
                            .execute(conn)?,
                        AfterFailure::Fail => update
                            .set((
                                outbound_emails::status.eq("failed"),
                                outbound_emails::attempts.eq(attempts),
                                outbound_emails::last_error.eq(Some(&error)),
                            ))
                            .execute(conn)?,
                    };
                    tracing::warn!(
                        email = due.id,
                        attempts,
                        permanent = failure.permanent,
                        gave_up = fail == AfterFailure::Fail,
                        "an e-mail was not accepted"
                    );
                    Ok(Some(Err((fail, failure.unreachable))))
                }
            }
        })?;
        match outcome {
            None => break,
            Some(Ok(())) => {
                sent += 1;
                unreachable = 0;
            }
            Some(Err((fail, no_reply))) => {
                match fail {
                    AfterFailure::Retry(_) => retrying += 1,
                    AfterFailure::Fail => failed += 1,
                }
                unreachable = if no_reply { unreachable + 1 } else { 0 };
                if unreachable >= UNREACHABLE_AFTER {
                    tracing::warn!("the mail server is unreachable; the other due e-mails wait for the next round");
                    break;
                }
            }
        }
    }
    if sent + retrying + failed > 0 {
        tracing::info!(sent, retrying, failed, "outbound e-mails processed");
    }
    Ok(sent)
}

#[derive(Debug, Queryable)]
struct Due {
    id: i64,
    message_id: String,
    to_address: String,
    subject: String,
    body_text: String,
    body_html: String,
    attachment_name: Option<String>,
    attachment: Option<String>,
    attempts: i32,
}

/// The next due e-mail, locked for this transaction; others skip it.
fn claim(conn: &mut PgConnection, now: DateTime<Utc>) -> QueryResult<Option<Due>> {
    outbound_emails::table
        .filter(outbound_emails::status.eq("pending"))
        .filter(outbound_emails::next_attempt_at.le(now))
        .order((outbound_emails::next_attempt_at, outbound_emails::id))
        .limit(1)
        .for_update()
        .skip_locked()
        .select((
            outbound_emails::id,
            outbound_emails::message_id,
            outbound_emails::to_address,
            outbound_emails::subject,
            outbound_emails::body_text,
            outbound_emails::body_html,
            outbound_emails::attachment_name,
            outbound_emails::attachment,
            outbound_emails::attempts,
        ))
        .first(conn)
        .optional()
}

/// Why an attempt failed.
#[derive(Debug)]
struct Failure {
    /// A 5xx reply, or a message that can never be sent as it stands.
    permanent: bool,
    /// No reply from the server at all (refused, unreachable, timed out).
    unreachable: bool,
    message: String,
}

fn build(due: &Due, from: &Mailbox) -> Result<Message, Failure> {
    let permanent = |message: String| Failure { permanent: true, unreachable: false, message };
    let to: Mailbox = due.to_address.parse().map_err(|_| permanent("the recipient's address cannot be used".into()))?;
    let alternative = MultiPart::alternative_plain_html(due.body_text.clone(), due.body_html.clone());
    let body = match (&due.attachment_name, &due.attachment) {
        (Some(name), Some(content)) => MultiPart::mixed().multipart(alternative).singlepart(
            Attachment::new(name.clone()).body(content.clone(), ContentType::parse("application/xml").expect("a type")),
        ),
        _ => alternative,
    };
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(due.subject.clone())
        .message_id(Some(due.message_id.clone()))
        .multipart(body)
        .map_err(|e| permanent(format!("the message could not be built: {e}")))
}

enum Sender {
    Smtp(SmtpTransport),
    File(FileTransport),
}

impl Sender {
    fn new(config: &Config) -> Result<Sender, AppError> {
        match &config.smtp_url {
            Some(url) => {
                let transport = SmtpTransport::from_url(url)
                    .map_err(|e| AppError::Internal(format!("CPIS_SMTP_URL cannot be used: {e}")))?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build();
                Ok(Sender::Smtp(transport))
            }
            None => {
                std::fs::create_dir_all(&config.mail_dir)
                    .map_err(|e| AppError::Internal(format!("cannot create the mail folder: {e}")))?;
                Ok(Sender::File(FileTransport::new(&config.mail_dir)))
            }
        }
    }

    fn send(&self, message: &Message) -> Result<(), Failure> {
        match self {
            Sender::Smtp(t) => t.send(message).map(|_| ()).map_err(|e| Failure {
                permanent: e.is_permanent(),
                unreachable: !e.is_permanent() && !e.is_transient(),
                message: e.to_string(),
            }),
            Sender::File(t) => t.send(message).map(|_| ()).map_err(|e| Failure {
                permanent: false,
                unreachable: true,
                message: format!("cannot write the e-mail file: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T00:30:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let minutes: Vec<i64> = (1..=10).map(|a| backoff(a).num_minutes()).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(backoff(0).num_minutes(), 1);
        assert_eq!(backoff(1000).num_minutes(), 60);
    }

    #[test]
    fn transient_failures_retry_until_the_tenth() {
        assert_eq!(after_failure(1, false, t0()), AfterFailure::Retry(t0() + TimeDelta::minutes(1)));
        assert_eq!(after_failure(3, false, t0()), AfterFailure::Retry(t0() + TimeDelta::minutes(4)));
        assert_eq!(after_failure(9, false, t0()), AfterFailure::Retry(t0() + TimeDelta::minutes(60)));
        assert_eq!(after_failure(10, false, t0()), AfterFailure::Fail);
    }

    #[test]
    fn permanent_failures_fail_at_once() {
        assert_eq!(after_failure(1, true, t0()), AfterFailure::Fail);
    }

    #[test]
    fn builds_a_message_with_both_bodies_and_the_attachment() {
        let due = Due {
            id: 1,
            message_id: "<cpis-05-E10000016-2026-11-21@cpis.example.org>".into(),
            to_address: "cpis-alerts-e10000016@example.org".into(),
            subject: "CP-IS access notification for Kent County Council, 21/11/2026".into(),
            body_text: "No child of yours was accessed on 21/11/2026.".into(),
            body_html: "<p>No child of yours was accessed on 21/11/2026.</p>".into(),
            attachment_name: Some("cpis-05-E10000016-2026-11-21.xml".into()),
            attachment: Some("<AccessNotification/>".into()),
            attempts: 0,
        };
        let from: Mailbox = "cpis-notifications@example.org".parse().unwrap();
        let m = build(&due, &from).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("Message-ID: <cpis-05-E10000016-2026-11-21@cpis.example.org>"), "{raw}");
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/html"));
        assert!(raw.contains("application/xml"));
        assert!(raw.contains("cpis-05-E10000016-2026-11-21.xml"));
        let bad = Due { to_address: "not an address".into(), ..due };
        assert!(build(&bad, &from).unwrap_err().permanent);
    }
}
