//! The access recorder: openings of the Child Care Alert tab are recorded in batches (issue 8).
//!
//! Every opening records an access and an audit entry (CP-IS058, CP-IS067), and every audit entry
//! joins the chain under one lock at its transaction's commit. One transaction per opening made
//! that lock, the commit and the WAL flush the limit of the whole service (about 1,200 openings a
//! second at most, measured). So a request hands the opening to this recorder and waits.
//! A tab's opening goes to the tab thread ([`AccessRecorder::open_tab`]), which takes the tabs
//! queued (up to [`MAX_BATCH`]) and, on one connection, reads what each shows, the record and the
//! items its numbers hold, in one statement for them all (issue 8: one statement per request
//! before), then records those with anything to show. The same statement reads ahead what
//! recording each opening reads (who saw the child last, its history, the access's id:
//! [`ReadAheadAt`], `items::lookup_held_reading_ahead`); a tab with nothing to show records
//! nothing. The FHIR API's CareTeam searches are opened alike, with the tabs, when the search's
//! token is remembered. Other openings (searches that read their record on their own connection:
//! a superseded number's, or one whose token had to be read, and nothing ahead) go to the
//! recording threads, which take whatever openings are queued (up to [`MAX_BATCH`]) and record
//! them.
//! Either records a batch with [`alert::record_openings_alone`]: one statement that takes the
//! children's locks, checks under them that what the decisions rest on still holds, and stores the
//! accesses, their audit entries' outbox row and any FHIR exchanges they answer. When every
//! opening of the batch was read ahead, that is the one round trip, the batches this instance
//! recorded since those reads added to them ([`Recent`]); otherwise it follows a read of its own.
//! A batch whose read no longer holds (another instance's opening) is recorded again, locked
//! before it reads. Each request is answered with its child's history as it stands after the
//! batch.
//! The recorder's connections commit without waiting for the disk, so that neither its threads
//! nor the chain's lock wait through each flush; the answers of a batch wait instead, in the
//! flusher (src/db/flusher.rs), until one flush has covered it and the batches before it. Nothing
//! is answered as recorded before it is on disk; an opening whose flush cannot be confirmed is
//! answered 503.
//! When nothing else is queued a batch is a single opening, recorded at once: no request waits
//! for others to arrive.
//! FHIR CareTeam searches store their transmission log entry (CP-IS061) in the batch's statement,
//! and read no history (CareTeam shows none).
//!
//! A batch that fails as a whole (a database error that is not the connection's) is recorded
//! again opening by opening, so one opening's fault is not another's. Openings of one child are
//! still decided one after another (CP-IS047): within a batch in the order queued, across batches,
//! threads and instances by the child's advisory lock, which an opening waits for at most
//! [`alert::CHILD_LOCK_TIMEOUT`], so that one child held elsewhere cannot hold up every opening.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use diesel::PgConnection;

use super::access::{self, BeforeRecording, Channel, HistoryEntry, NewAccess, RecentAccess, Recorded, Viewer};
use super::alert::{self, AccessOpening, AuthorityBlock};
use super::items;
use super::recent::Recent;
use super::reference_names::ReferenceNames;
use crate::audit::Actor;
use crate::auth::session_cache::SessionCache;
use crate::config::Config;
use crate::db::flusher::Flusher;
use crate::db::{self, DbPool};
use crate::error::AppError;
use crate::mailbox::transmissions;
use crate::pds::patient::{Lookup, Patient};

/// The most openings one transaction records.
pub const MAX_BATCH: usize = 32;

/// How many openings may wait; beyond that a request is answered 503 at once rather than queued.
const QUEUE: usize = 4_096;

/// An opening to record.
#[derive(Debug, Clone)]
pub struct Opening {
    pub nhs_number: String,
    /// The numbers whose accesses the answer's history lists (the child's current and superseded
    /// ones), or none when the answer shows no history: a FHIR CareTeam search does not, and its
    /// opening then reads none (issue 8: the history was the largest statement of its batch).
    pub history_of: Vec<String>,
    pub viewer: Viewer,
    pub actor: Actor,
    pub at: DateTime<Utc>,
    /// The FHIR search whose answer this opening is, logged with it (CP-IS061): a search and
    /// its access are stored together or not at all.
    pub exchange: Option<FhirExchange>,
    /// What recording it reads, read ahead with its record, if it was: then it is not read again
    /// (unless another opening of its batch lacks it).
    pub read_ahead: Option<ReadAheadAt>,
}

/// A read ahead ([`access::ReadAhead`]) with the [`Recent::mark`] taken before it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadAheadAt {
    pub mark: u64,
    pub read: access::ReadAhead,
}

/// A FHIR query (03) in from an organisation and the response (04) out to it, for the
/// transmission log (CP-IS061): time, origin, destination and the caller's TraceID as the message
/// id; never the content.
#[derive(Debug, Clone)]
pub struct FhirExchange {
    pub ods_code: String,
    pub trace_id: Option<String>,
}

impl FhirExchange {
    /// Logs the exchange at `at` (CP-IS061); the TraceID is kept to its first 100 characters.
    pub fn log(&self, conn: &mut PgConnection, at: DateTime<Utc>) -> diesel::QueryResult<()> {
        transmissions::log_each_at(conn, &Self::transmissions(&[(self, at)]))
    }

    /// Each exchange's query in and response out, at its time, for the log.
    fn transmissions<'a>(
        exchanges: &'a [(&'a FhirExchange, DateTime<Utc>)],
    ) -> Vec<(transmissions::Transmission<'a>, DateTime<Utc>)> {
        let mut all = Vec::with_capacity(exchanges.len() * 2);
        for (e, at) in exchanges {
            let id = e.trace_id.as_ref().map(|t| t.chars().take(100).collect::<String>());
            for t in transmissions::exchange(&e.ods_code, ("03", id.clone()), ("04", id), "fhir") {
                all.push((t, *at));
            }
        }
        all
    }
}

/// A recorded opening: whether it is shown, and the child's history as it stands after it.
#[derive(Debug, Clone)]
pub struct Opened {
    pub recorded: Recorded,
    pub history: Vec<HistoryEntry>,
}

impl Opened {
    /// The tab as opened: what was read for it ([`alert::authorities`]) and what recording decided.
    pub fn into_tab(self, authorities: Vec<alert::AuthorityBlock>) -> alert::AlertTab {
        alert::AlertTab { authorities, history: self.history, access_shown: self.recorded.shown }
    }
}

/// The answer to [`AccessRecorder::open_tab`].
#[derive(Debug)]
pub enum TabAnswer {
    /// The tab as opened, with the record it is for (the current one) and the access recorded.
    Opened { patient: Box<Patient>, tab: alert::AlertTab },
    /// The number asked was superseded: the tab is the current record's, under this number.
    Moved { current: String },
    /// No record has the number asked.
    NotFound,
    /// The record holds nothing this viewer may see today (CP-IS055): nothing was recorded.
    NothingToShow,
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, AppError>>;

/// An opening queued for the recording threads, its record read by the request.
struct Job {
    opening: Opening,
    reply: Reply<Opened>,
}

/// A tab queued for the tab thread: its record is read, then its opening recorded.
struct TabJob {
    opening: Opening,
    may_see_unborn: bool,
    reply: Reply<TabAnswer>,
}

/// A queued request, answered with an error when its batch fails.
trait Queued {
    fn fail(self, e: AppError);
}

impl<T> Queued for Reply<T> {
    fn fail(self, e: AppError) {
        // A request that gave up waiting has dropped its receiver: nothing to tell.
        drop(self.send(Err(e)));
    }
}

impl Queued for Job {
    fn fail(self, e: AppError) {
        self.reply.fail(e);
    }
}

impl Queued for TabJob {
    fn fail(self, e: AppError) {
        self.reply.fail(e);
    }
}

/// The handle requests use; its threads stop once every handle is dropped.
#[derive(Clone)]
pub struct AccessRecorder {
    queue: SyncSender<Job>,
    /// The tab thread's queue ([`AccessRecorder::open_tab`]).
    tabs: SyncSender<TabJob>,
}

impl AccessRecorder {
    /// Starts the tab thread, which reads and records the tabs opened a batch at a time
    /// ([`open_tab_batches`]), and `threads` recording threads, each recording one batch of other
    /// openings (the FHIR API's) at a time. Each has a connection of a pool of its own, so that
    /// requests holding every connection of the service's pool never keep an opening waiting;
    /// those connections commit without waiting for the disk, and the flusher, with a connection
    /// of its own, answers each batch once a flush has covered it (src/db/flusher.rs). The
    /// histories' names come from `names`, the tab's contact details from `contacts` when the
    /// instance remembers them (src/cpis/contacts.rs).
    pub fn start(
        config: &Config,
        threads: usize,
        names: Arc<ReferenceNames>,
        contacts: Option<Arc<SessionCache>>,
    ) -> AccessRecorder {
        let threads = threads.max(1);
        let pool = db::pool_committing_without_waiting(config, threads as u32 + 1);
        let flusher = Flusher::start(db::pool_of(config, 1));
        let recent = Arc::new(Recent::default());
        let (queue, jobs) = mpsc::sync_channel(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..threads {
            let (pool, jobs, names, contacts) = (pool.clone(), jobs.clone(), names.clone(), contacts.clone());
            let (recent, flusher) = (recent.clone(), flusher.clone());
            std::thread::Builder::new()
                .name(format!("cpis-recorder-{n}"))
                .spawn(move || work(&pool, &jobs, &names, contacts.as_deref(), &recent, &flusher))
                .expect("start an access recorder thread");
        }
        let (tabs, to_open) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("cpis-tabs".into())
            .spawn(move || {
                open_tab_batches(&pool, &Mutex::new(to_open), &names, contacts.as_deref(), &recent, &flusher)
            })
            .expect("start the tab thread");
        AccessRecorder { queue, tabs }
    }

    /// Records the opening and answers with what it decided, once it is durable.
    pub async fn open(&self, opening: Opening) -> Result<Opened, AppError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        send(&self.queue, Job { opening, reply }).map_err(|refused| refused.1)?;
        answer.await.map_err(|_| AppError::Internal("the access recorder dropped an opening".into()))?
    }

    /// Opens the Child Care Alert tab of the number `opening` names: the tab thread reads what the
    /// tab shows (with the other tabs asked meanwhile, in one statement), and records the opening
    /// when there is anything to show, under the current record's number, its history being that
    /// record's numbers'. `opening.history_of` is not read. Answers once the access is durable.
    /// A FHIR CareTeam search ([`Channel::Fhir`], with its exchange) is opened alike, with no
    /// history: what it answers is the tab's items.
    pub async fn open_tab(&self, opening: Opening, may_see_unborn: bool) -> Result<TabAnswer, AppError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        send(&self.tabs, TabJob { opening, may_see_unborn, reply }).map_err(|refused| refused.1)?;
        answer.await.map_err(|_| AppError::Internal("the access recorder dropped an opening".into()))?
    }
}

/// Queues a job, or refuses it at once when the queue is full (503) or its threads have stopped;
/// a job refused is handed back with the error.
fn send<T>(queue: &SyncSender<T>, job: T) -> Result<(), Box<(T, AppError)>> {
    match queue.try_send(job) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(job)) => {
            tracing::warn!("the access recorder's queue is full; an opening was refused");
            Err(Box::new((job, AppError::Unavailable)))
        }
        Err(TrySendError::Disconnected(job)) => {
            Err(Box::new((job, AppError::Internal("the access recorder has stopped".into()))))
        }
    }
}

/// Waits for a job, then takes whatever else is queued, up to [`MAX_BATCH`]; `None` once every
/// handle is dropped.
fn next_batch<T>(jobs: &Mutex<Receiver<T>>) -> Option<Vec<T>> {
    // The lock guards only the receiver, which a panic cannot leave half-changed.
    let jobs = jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let first = jobs.recv().ok()?;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// The tab thread's loop: waits for a tab, takes whatever else is queued, and reads and records
/// them on one connection ([`open_tabs_in`]: two round trips for the batch, the read of what the
/// tabs show and the store). The answers of the openings recorded wait for the flusher; a tab with
/// nothing recorded is answered at once. A panic fails that batch's tabs (500), not the thread.
///
/// (Issue 8: the read and the store were two stages on two threads, one batch read while the one
/// before was stored; with the batch's flush on the store's path, that pipeline gave 0.24 to 0.30
/// of the baseline at 16 users, one thread for both with the flush handed on 0.29 to 0.33.)
fn open_tab_batches(
    pool: &DbPool,
    jobs: &Mutex<Receiver<TabJob>>,
    names: &ReferenceNames,
    contacts: Option<&SessionCache>,
    recent: &Recent,
    flusher: &Flusher,
) {
    while let Some(batch) = next_batch(jobs) {
        let (tabs, replies): (Vec<(Opening, bool)>, Vec<Reply<TabAnswer>>) =
            batch.into_iter().map(|j| ((j.opening, j.may_see_unborn), j.reply)).unzip();
        let answered = run_caught(pool, "the tab thread failed while opening tabs", |conn| {
            open_tabs_in(conn, names, contacts, recent, &tabs)
        });
        match answered {
            Ok(answers) => answer_when_durable(flusher, replies, answers, |a| matches!(a, TabAnswer::Opened { .. })),
            Err(e) => fail_batch(pool, jobs, replies, e, "tabs could not be opened"),
        }
    }
}

/// What a tab opening shows: its record and what the viewer may see of the items it holds.
type Shown = (Box<Patient>, Vec<AuthorityBlock>);

/// A tab's opening as it is to be recorded, under the current record's number with its history
/// over that record's numbers when its channel shows one ([`Channel::shows_history`]; a CareTeam
/// search's does not), and what recording it reads, if that was read ahead with its record (only
/// when the number asked is the current one), with what it shows; or the answer when nothing is to
/// be recorded.
fn resolve_tab(opening: Opening, held: items::Held, may_see_unborn: bool) -> Result<(Opening, Shown), TabAnswer> {
    match held {
        (Lookup::Found(patient), linked, held) => {
            let authorities = alert::authorities(held, &patient, may_see_unborn, opening.at);
            if authorities.is_empty() {
                return Err(TabAnswer::NothingToShow);
            }
            let history_of = if opening.viewer.channel.shows_history() { linked } else { Vec::new() };
            let opening = Opening { nhs_number: patient.nhs_number.clone(), history_of, ..opening };
            Ok((opening, (Box::new(patient), authorities)))
        }
        (Lookup::Superseded { current, .. }, ..) => Err(TabAnswer::Moved { current: current.nhs_number }),
        (Lookup::NotFound, ..) => Err(TabAnswer::NotFound),
    }
}

/// Opens tabs together as the tab thread does a batch of them ([`AccessRecorder::open_tab`]), on
/// a connection the caller holds: each `(opening, may_see_unborn)` answered in order. An `Err` is
/// for every tab.
pub fn open_tabs(
    conn: &mut PgConnection,
    names: &ReferenceNames,
    contacts: Option<&SessionCache>,
    tabs: &[(Opening, bool)],
) -> Result<Vec<Result<TabAnswer, AppError>>, AppError> {
    open_tabs_in(conn, names, contacts, &Recent::default(), tabs)
}

/// [`open_tabs`], the openings recorded since being those `recent` remembers (the instance's).
/// The tabs' records are read with what recording their openings reads
/// (`items::lookup_held_reading_ahead`); those with anything to show are recorded ([`record_all`],
/// then in one round trip); the others record nothing, and are answered as read even when the
/// openings fail together. An `Err` is for every tab: the read failed, or every tab was to be
/// recorded and the openings failed together.
fn open_tabs_in(
    conn: &mut PgConnection,
    names: &ReferenceNames,
    contacts: Option<&SessionCache>,
    recent: &Recent,
    tabs: &[(Opening, bool)],
) -> Result<Vec<Result<TabAnswer, AppError>>, AppError> {
    let mark = recent.mark();
    let looked = items::lookup_held_reading_ahead(conn, &tabs.iter().map(|(o, _)| new_access(o)).collect::<Vec<_>>())?;
    let mut answers: Vec<Option<Result<TabAnswer, AppError>>> = Vec::with_capacity(tabs.len());
    let (mut openings, mut shown) = (Vec::new(), Vec::new());
    for (place, ((opening, may_see_unborn), (held, read))) in tabs.iter().zip(looked).enumerate() {
        let read_ahead = read.map(|read| ReadAheadAt { mark, read });
        match resolve_tab(Opening { read_ahead, ..opening.clone() }, held, *may_see_unborn) {
            Ok((opening, tab)) => {
                openings.push(opening);
                shown.push((place, tab));
                answers.push(None);
            }
            Err(answer) => answers.push(Some(Ok(answer))),
        }
    }
    // Tabs with nothing to record keep their answers when the openings fail together.
    let recorded = if openings.is_empty() {
        Vec::new()
    } else {
        match record_all(conn, names, contacts, Some(recent), &openings) {
            Ok(recorded) => recorded,
            Err(e) if answers.iter().all(Option::is_none) => return Err(e),
            Err(e) => openings.iter().map(|_| Err(each_of(&e))).collect(),
        }
    };
    for ((place, (patient, authorities)), result) in shown.into_iter().zip(recorded) {
        answers[place] = Some(result.map(|opened| TabAnswer::Opened { patient, tab: opened.into_tab(authorities) }));
    }
    Ok(answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(AppError::Internal("a tab was not answered".into()))))
        .collect())
}

/// One thread's loop: waits for an opening, takes whatever else is queued, records them. A panic
/// while recording fails that batch's openings (500), not the thread: the next batch is recorded
/// as usual.
fn work(
    pool: &DbPool,
    jobs: &Mutex<Receiver<Job>>,
    names: &ReferenceNames,
    contacts: Option<&SessionCache>,
    recent: &Recent,
    flusher: &Flusher,
) {
    while let Some(batch) = next_batch(jobs) {
        let (openings, replies): (Vec<Opening>, Vec<Reply<Opened>>) =
            batch.into_iter().map(|j| (j.opening, j.reply)).unzip();
        let recorded = run_caught(pool, "the access recorder failed while recording", |conn| {
            record_all(conn, names, contacts, Some(recent), &openings)
        });
        match recorded {
            Ok(results) => answer_when_durable(flusher, replies, results, |_| true),
            Err(e) => fail_batch(pool, jobs, replies, e, "openings could not be recorded"),
        }
    }
}

/// Answers a batch's requests, each with its result, once the flusher has confirmed that what the
/// batch committed is on disk (src/db/flusher.rs); at once when no result `recorded` anything.
fn answer_when_durable<T: Send + 'static>(
    flusher: &Flusher,
    replies: Vec<Reply<T>>,
    results: Vec<Result<T, AppError>>,
    recorded: fn(&T) -> bool,
) {
    let waits = results_record_anything(&results, recorded);
    let deliver = move |flushed: bool| {
        for (reply, result) in replies.into_iter().zip(results) {
            drop(reply.send(as_flushed(result, flushed, recorded)));
        }
    };
    if waits {
        flusher.after_flush(deliver);
    } else {
        deliver(true);
    }
}

fn results_record_anything<T>(results: &[Result<T, AppError>], recorded: fn(&T) -> bool) -> bool {
    results.iter().any(|r| r.as_ref().is_ok_and(recorded))
}

/// A result as answered once the flush is known: what `recorded` something, when the flush could
/// not be confirmed, was perhaps not recorded, and is answered as the outage (503), never shown as
/// recorded (CP-IS067); anything else stands.
fn as_flushed<T>(result: Result<T, AppError>, flushed: bool, recorded: fn(&T) -> bool) -> Result<T, AppError> {
    match result {
        Ok(r) if !flushed && recorded(&r) => Err(AppError::Unavailable),
        other => other,
    }
}

/// [`db::run_blocking`], a panic in `f` being that batch's 500 (`what`), not the thread's end.
fn run_caught<T>(
    pool: &DbPool,
    what: &str,
    f: impl FnMut(&mut PgConnection) -> Result<T, AppError>,
) -> Result<T, AppError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db::run_blocking(pool, f)))
        .unwrap_or_else(|_| Err(AppError::Internal(what.into())))
}

/// A batch that failed as a whole: each of its requests is answered with the failure and, when
/// no connection can be had at all, so is every request queued behind it ([`refuse_queued`]).
fn fail_batch<A: Queued, Q: Queued>(pool: &DbPool, jobs: &Mutex<Receiver<Q>>, batch: Vec<A>, e: AppError, what: &str) {
    tracing::error!(error = %e, requests = batch.len(), "{what}");
    batch.into_iter().for_each(|j| j.fail(each_of(&e)));
    // One connection lost mid-batch is this batch's; no connection at all is everyone's.
    if matches!(e, AppError::Unavailable) && db::checked(pool).is_err() {
        refuse_queued(jobs);
    }
}

/// One failure, as the answer to each of the openings it failed (`AppError` is not `Clone`): the
/// outage's 503 stays a 503, anything else is that opening's 500 with the same message.
fn each_of(e: &AppError) -> AppError {
    match e {
        AppError::Unavailable => AppError::Unavailable,
        other => AppError::Internal(other.to_string()),
    }
}

/// The database cannot be reached (no connection could be had): the openings queued meanwhile are
/// answered 503 at once, as their requests would be had they come a moment later, rather than
/// each batch waiting the pool's timeout in turn to find the same outage.
fn refuse_queued<T: Queued>(jobs: &Mutex<Receiver<T>>) {
    let jobs = jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    while let Ok(job) = jobs.try_recv() {
        job.fail(AppError::Unavailable);
    }
}

/// Records the openings in one transaction, with each child's history as it stands after them,
/// and answers once that transaction is on disk: one result per opening, in order. When that
/// transaction fails, and the connection still answers, each opening is recorded in a transaction
/// of its own instead. An `Err` is for every opening: the transaction failed, and either the
/// connection no longer answers or there was but one opening; nothing was recorded. The tab's
/// (SCRa) histories get their viewers' contact details ([`super::contacts::fill`], remembered in
/// `contacts`); if that read fails, it fails those openings (their accesses are recorded).
///
/// With `recent`, the batch is first stored without reading when every opening's reads were read
/// ahead ([`ReadAheadAt`]) and the batches recorded since are remembered there; its shown accesses
/// are remembered there in turn. (Recorded one by one, each opening reads afresh.)
pub fn record_all(
    conn: &mut PgConnection,
    names: &ReferenceNames,
    contacts: Option<&SessionCache>,
    recent: Option<&Recent>,
    openings: &[Opening],
) -> Result<Vec<Result<Opened, AppError>>, AppError> {
    let read = recent.and_then(|recent| read_ahead(recent, openings));
    let mut recorded: Vec<Result<(Recorded, Vec<HistoryEntry>), AppError>> = match store(conn, names, openings, read) {
        Ok(stored) => stored.into_iter().map(Ok).collect(),
        Err(e) if openings.len() > 1 && db::answers(conn) => {
            tracing::warn!(error = %e, openings = openings.len(), "a batch of openings failed; recording them one by one");
            // A child whose lock could not be had is not waited for again by its other openings.
            let mut held_elsewhere: Vec<&str> = Vec::new();
            openings
                .iter()
                .map(|opening| {
                    if held_elsewhere.contains(&opening.nhs_number.as_str()) {
                        return Err(AppError::Unavailable);
                    }
                    let stored = store(conn, names, std::slice::from_ref(opening), None).map(|mut r| r.remove(0));
                    if matches!(stored, Err(AppError::Unavailable)) {
                        held_elsewhere.push(&opening.nhs_number);
                    }
                    stored
                })
                .collect()
        }
        Err(e) => return Err(e),
    };
    if let Some(recent) = recent {
        let shown = recorded.iter().zip(openings).filter_map(|(r, o)| match r {
            Ok((r, _)) if r.shown => Some(RecentAccess::of(&new_access(o), r.id)),
            _ => None,
        });
        recent.remember(shown.collect());
    }
    // The FHIR API shows no contact details (CP-IS059 is the tab's): only the tab's are read. A
    // failed read fails each of those openings alike.
    let tabs = recorded
        .iter_mut()
        .zip(openings)
        .filter(|(_, o)| o.viewer.channel == Channel::Scra)
        .filter_map(|(r, _)| r.as_mut().ok())
        .flat_map(|(_, history)| history.iter_mut());
    let filled = super::contacts::fill(conn, contacts, tabs).map_err(AppError::from);
    Ok(recorded
        .into_iter()
        .zip(openings)
        .map(|(stored, opening)| {
            let (recorded, history) = stored?;
            match &filled {
                Err(e) if opening.viewer.channel == Channel::Scra => Err(each_of(e)),
                _ => Ok(Opened { recorded, history }),
            }
        })
        .collect())
}

/// The access an opening records.
fn new_access(o: &Opening) -> NewAccess<'_> {
    NewAccess { nhs_number: &o.nhs_number, viewer: &o.viewer, at: o.at }
}

/// What recording the openings reads, put together from their reads ahead and the shown accesses
/// remembered since the earliest of them ([`BeforeRecording::from_read_aheads`]); `None` when an
/// opening has none, or those batches are no longer remembered.
fn read_ahead(recent: &Recent, openings: &[Opening]) -> Option<BeforeRecording> {
    let aheads: Vec<Option<&ReadAheadAt>> = openings.iter().map(|o| o.read_ahead.as_ref()).collect();
    let mark = aheads.iter().map(|a| a.map(|a| a.mark)).collect::<Option<Vec<u64>>>()?.into_iter().min()?;
    let since_read = recent.since(mark)?;
    let accesses: Vec<NewAccess<'_>> = openings.iter().map(new_access).collect();
    let lists: Vec<&[String]> = openings.iter().map(|o| o.history_of.as_slice()).collect();
    let reads: Vec<Option<&access::ReadAhead>> = aheads.iter().map(|a| a.map(|a| &a.read)).collect();
    BeforeRecording::from_read_aheads(&accesses, &lists, &reads, &since_read)
}

/// The openings and the exchanges they answer, in a transaction of their own, each with its
/// child's history after them; `read` is what recording them reads, when that was read ahead.
fn store(
    conn: &mut PgConnection,
    names: &ReferenceNames,
    openings: &[Opening],
    read: Option<BeforeRecording>,
) -> Result<Vec<(Recorded, Vec<HistoryEntry>)>, AppError> {
    let all: Vec<AccessOpening<'_>> = openings
        .iter()
        .map(|o| AccessOpening { nhs_number: &o.nhs_number, viewer: &o.viewer, actor: o.actor.clone(), at: o.at })
        .collect();
    let lists: Vec<&[String]> = openings.iter().map(|o| o.history_of.as_slice()).collect();
    let exchanges: Vec<(&FhirExchange, DateTime<Utc>)> =
        openings.iter().filter_map(|o| o.exchange.as_ref().map(|e| (e, o.at))).collect();
    let log = transmissions::Log::of(&FhirExchange::transmissions(&exchanges));
    let (recorded, histories) = alert::record_openings_alone(conn, names, &all, &lists, read, log)?;
    Ok(recorded.into_iter().zip(histories).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CP-IS067, issue 8: an answer that recorded something waits for the flush, and if the flush
    /// cannot be confirmed it is the outage's 503, never shown as recorded; what recorded nothing
    /// (a tab not found, an opening that failed) is answered as it is.
    #[test]
    fn what_was_recorded_is_answered_as_recorded_only_once_on_disk() {
        let recorded: fn(&&str) -> bool = |r| *r == "opened";
        let ok = |r: &'static str| Ok::<_, AppError>(r);
        assert_eq!(as_flushed(ok("opened"), true, recorded).unwrap(), "opened");
        assert!(matches!(as_flushed(ok("opened"), false, recorded), Err(AppError::Unavailable)));
        assert_eq!(as_flushed(ok("not found"), false, recorded).unwrap(), "not found");
        let failed = as_flushed(Err::<&str, _>(AppError::Internal("refused".into())), false, recorded);
        assert!(matches!(failed, Err(AppError::Internal(m)) if m == "refused"));

        assert!(results_record_anything(&[ok("not found"), ok("opened")], recorded));
        assert!(!results_record_anything(&[ok("not found"), Err(AppError::Unavailable)], recorded));
    }
}
