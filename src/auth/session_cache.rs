//! Sessions this instance remembers between requests (issue 8): a signed-in page then costs no
//! round trip to PostgreSQL before its handler, where it cost one (the session and its principal,
//! src/auth/session_store.rs). The benchmark put that round trip at half of an NHS-number search.
//!
//! Remembering is safe only while the instance hears of every change, so:
//! - Triggers (migration 000025) announce on the channel `cpis_sessions`, as each change commits,
//!   any session whose state, user or expiry changed or whose row went, any account whose
//!   principal changed or which went, and any table emptied. Whoever makes the change (another
//!   instance, an administrator, a job, a statement typed by hand), the announcement follows.
//! - One connection per instance listens. Every request that would use a remembered session first
//!   reads what has arrived on it (a non-blocking read of the socket, no round trip) and forgets
//!   what it names; so does the listener's own thread every [`POLL`].
//! - When that connection is lost (the database stopped, the backend terminated, the server
//!   silent to TCP keepalives), everything is forgotten and nothing is remembered until a new connection
//!   listens again: meanwhile every load goes to the database, as it did before this cache.
//! - A load remembers what it read only if nothing was forgotten between its start and its end
//!   ([`Ticket`]): an announcement handled meanwhile may be about what it read.
//! - A remembered session is used only while its idle expiry would not be extended by a load
//!   (the store extends it when it lags by more than a minute), and never past its absolute
//!   expiry: once a load would write, the load goes to the database, which writes as before.
//!
//! What stays: a change made elsewhere reaches this instance when PostgreSQL has delivered its
//! announcement to the listening connection, a fraction of a millisecond after the commit on one
//! host. A listening backend that is terminated sends its last message and stops listening before
//! its socket closes; until the close is read (the backend's exit, under a millisecond on one
//! host) a change committed meanwhile is not announced to this instance. A connection whose network path died without closing it (not on one host) is found out
//! by TCP keepalives, within about 10 s; meanwhile a remembered session is still used no longer
//! than its freshness (a minute at most). The changes this instance makes itself (sign-out, a changed session, an administrator's
//! change to an account) are forgotten here at once, before their answer is sent.
//!
//! The same announcements keep the accounts' contact details it remembers for the tab's access
//! history ([`AccountContact`]; CP-IS059): an account's e-mail, telephone or disabling announces the
//! account (migration 000029), and the contact is forgotten with its sessions.
//!
//! And the endpoint tokens it has found live (CP-NHS018, CP-SC025), so that a FHIR search or a
//! mailbox call costs no statement to know its caller: a token revoked, changed or deleted is
//! announced by its id (migration 000031), and forgotten. A token not found is never remembered,
//! so a token just issued works at once.
//!
//! Written here because no crate keeps a cache coherent with PostgreSQL's LISTEN/NOTIFY on a
//! diesel connection; diesel reads the notifications (`PgConnection::notifications_iter`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::mailbox::tokens::Endpoint;

/// The channel migration 000025's triggers announce on.
pub const CHANNEL: &str = "cpis_sessions";

/// How often the listener's thread reads the connection when no request has.
const POLL: Duration = Duration::from_millis(100);
/// How long the thread waits before trying to listen again after failing to.
const RETRY: Duration = Duration::from_secs(1);
/// The most sessions remembered; beyond it, loads are not remembered until some expire.
const CAPACITY: usize = 20_000;
/// A full cache looks for sessions no longer fresh at most this often (a look visits them all).
const SWEEP: chrono::TimeDelta = chrono::TimeDelta::seconds(1);
/// The most accounts' contact details remembered; a read that would go beyond it forgets them all
/// first (they are read again as they are needed).
const CONTACTS_CAPACITY: usize = 100_000;
/// The most endpoint tokens remembered; one more forgets them all first.
const TOKENS_CAPACITY: usize = 10_000;
/// More announcements than this at once (a reference table renamed: every account's principal
/// rebuilt) forget everything rather than look for each.
const MANY: usize = 1_000;

/// What one announcement names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// One session, by the hash of its key.
    Session(Vec<u8>),
    /// Every session of one account.
    User(i64),
    /// One endpoint token, by its id.
    Token(i64),
    /// Everything.
    All,
}

impl Note {
    /// Reads a payload of migration 000025's triggers; anything else forgets everything.
    pub fn parse(payload: &str) -> Note {
        if let Some(hex) = payload.strip_prefix('k') {
            if let Ok(hash) = hex::decode(hex) {
                return Note::Session(hash);
            }
        } else if let Some(id) = payload.strip_prefix('u') {
            if let Ok(id) = id.parse() {
                return Note::User(id);
            }
        } else if let Some(id) = payload.strip_prefix('t') {
            if let Ok(id) = id.parse() {
                return Note::Token(id);
            }
        }
        Note::All
    }
}

/// An account's contact details as the tab's access history shows them: shown to nobody once the
/// account is disabled (CP-IS059, [`crate::cpis::access::HistoryEntry::contact`]).
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub struct AccountContact {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub email: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub telephone: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    pub disabled_at: Option<DateTime<Utc>>,
}

/// A remembered session (only signed-in ones are: see [`Remembered::put`]).
#[derive(Debug, Clone)]
struct Entry {
    state: HashMap<String, String>,
    user_id: i64,
    /// Used before this instant only (see [`fresh_until`]).
    fresh_until: DateTime<Utc>,
}

/// Until when a session just read may be used without reading it again: while a load would not
/// extend its idle expiry (it lags by less than `slack`), and before its absolute expiry.
pub fn fresh_until(
    expires_at: DateTime<Utc>,
    absolute_expires_at: DateTime<Utc>,
    idle_secs: i64,
    slack: chrono::TimeDelta,
) -> DateTime<Utc> {
    (expires_at - chrono::TimeDelta::seconds(idle_secs) + slack).min(absolute_expires_at).min(expires_at)
}

/// Handed out before a load reads the database; its result is remembered only if nothing was
/// forgotten meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// The remembered sessions and how many times anything was forgotten. Plain and without I/O, so
/// its rules are unit-tested; [`SessionCache`] adds the listening connection.
#[derive(Debug, Default)]
pub struct Remembered {
    entries: HashMap<Vec<u8>, Entry>,
    /// Accounts' contact details, by account id.
    contacts: HashMap<i64, Arc<AccountContact>>,
    /// Live endpoint tokens, by the hash of the token.
    tokens: HashMap<Vec<u8>, Endpoint>,
    /// Moves on every forgetting, so a load that began before it does not remember.
    generation: u64,
    /// When a full cache last looked for sessions no longer fresh.
    swept: Option<DateTime<Utc>>,
}

impl Remembered {
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation)
    }

    /// The session's state, if remembered and still fresh at `now`.
    pub fn get(&self, hash: &[u8], now: DateTime<Utc>) -> Option<HashMap<String, String>> {
        self.entries.get(hash).filter(|e| now < e.fresh_until).map(|e| e.state.clone())
    }

    /// Remembers a load's result, unless anything was forgotten since its ticket, it is not fresh,
    /// it is not a signed-in session, or the cache is full of fresh sessions. True when remembered.
    ///
    /// Sessions without a user are not remembered: they are the sign-in page's, cost little to
    /// read, and anyone can make as many as they like.
    pub fn put(
        &mut self,
        ticket: Ticket,
        hash: Vec<u8>,
        state: HashMap<String, String>,
        user_id: Option<i64>,
        fresh_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(user_id) = user_id else { return false };
        if ticket.0 != self.generation || fresh_until <= now {
            return false;
        }
        if self.entries.len() >= CAPACITY && !self.entries.contains_key(&hash) {
            if self.swept.is_none_or(|at| now - at >= SWEEP) {
                self.swept = Some(now);
                self.entries.retain(|_, e| now < e.fresh_until);
            }
            if self.entries.len() >= CAPACITY {
                return false;
            }
        }
        self.entries.insert(hash, Entry { state, user_id, fresh_until });
        true
    }

    /// An account's contact details, if remembered.
    pub fn contact(&self, user_id: i64) -> Option<&Arc<AccountContact>> {
        self.contacts.get(&user_id)
    }

    /// Remembers contact details read from the database, unless anything was forgotten since the
    /// read's ticket. Were they to go beyond [`CONTACTS_CAPACITY`], those remembered are forgotten
    /// first. True when remembered.
    pub fn put_contacts(&mut self, ticket: Ticket, read: Vec<(i64, Arc<AccountContact>)>) -> bool {
        if ticket.0 != self.generation {
            return false;
        }
        if self.contacts.len() + read.len() > CONTACTS_CAPACITY {
            self.contacts.clear();
        }
        self.contacts.extend(read.into_iter().take(CONTACTS_CAPACITY));
        true
    }

    /// The endpoint a token (by its hash) was found live for, if remembered.
    pub fn endpoint(&self, hash: &[u8]) -> Option<&Endpoint> {
        self.tokens.get(hash)
    }

    /// Remembers a token found live, unless anything was forgotten since the read's ticket. Were
    /// the tokens to go beyond [`TOKENS_CAPACITY`], those remembered are forgotten first. True
    /// when remembered.
    pub fn put_endpoint(&mut self, ticket: Ticket, hash: Vec<u8>, endpoint: Endpoint) -> bool {
        if ticket.0 != self.generation {
            return false;
        }
        if self.tokens.len() >= TOKENS_CAPACITY && !self.tokens.contains_key(&hash) {
            self.tokens.clear();
        }
        self.tokens.insert(hash, endpoint);
        true
    }

    pub fn forget(&mut self, note: &Note) {
        self.forget_all_of(std::slice::from_ref(note));
    }

    /// Forgets what the notes name, visiting the remembered sessions once at most.
    pub fn forget_all_of(&mut self, notes: &[Note]) {
        if notes.is_empty() {
            return;
        }
        self.generation += 1;
        if notes.len() > MANY || notes.contains(&Note::All) {
            self.entries.clear();
            self.contacts.clear();
            self.tokens.clear();
            return;
        }
        let mut users = std::collections::HashSet::new();
        let mut tokens = std::collections::HashSet::new();
        for note in notes {
            match note {
                Note::Session(hash) => {
                    self.entries.remove(hash);
                }
                Note::User(id) => {
                    users.insert(*id);
                }
                Note::Token(id) => {
                    tokens.insert(*id);
                }
                Note::All => {}
            }
        }
        if !users.is_empty() {
            self.entries.retain(|_, e| !users.contains(&e.user_id));
            for user in &users {
                self.contacts.remove(user);
            }
        }
        if !tokens.is_empty() {
            self.tokens.retain(|_, e| !tokens.contains(&e.token_id()));
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether any session of the account is remembered.
    pub fn holds_user(&self, user_id: i64) -> bool {
        self.entries.values().any(|e| e.user_id == user_id)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Counts of loads answered from memory and from the database (tests read them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub remembered: u64,
    pub read: u64,
}

/// One instance's remembered sessions and the connection that keeps them true.
pub struct SessionCache {
    remembered: Mutex<Remembered>,
    /// The listening connection; `None` while there is none (then nothing is remembered).
    listener: Mutex<Option<PgConnection>>,
    listening: AtomicBool,
    database_url: String,
    hits: AtomicU64,
    misses: AtomicU64,
    /// How many times a connection began to listen.
    connections: AtomicU64,
}

impl SessionCache {
    /// A cache and the thread that keeps its listening connection; the thread ends when the cache
    /// is dropped.
    pub fn start(database_url: &str) -> Arc<SessionCache> {
        SessionCache::start_polling(database_url, POLL)
    }

    /// [`start`](SessionCache::start), its thread reading the connection every `poll` (tests use
    /// a long one to show that requests read it themselves).
    pub fn start_polling(database_url: &str, poll: Duration) -> Arc<SessionCache> {
        let cache = Arc::new(SessionCache {
            remembered: Mutex::new(Remembered::default()),
            listener: Mutex::new(None),
            listening: AtomicBool::new(false),
            database_url: database_url.to_owned(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&cache);
        std::thread::Builder::new()
            .name("cpis-sessions".into())
            .spawn(move || listen(weak, poll))
            .expect("start the session listener's thread");
        cache
    }

    /// The session's state if remembered, after handling every announcement that has arrived.
    /// Never waits for I/O (the connection is only ever held for reads that do not wait); when it
    /// is gone, the answer is `None` and the caller reads the database.
    pub fn get(&self, hash: &[u8], now: DateTime<Utc>) -> Option<HashMap<String, String>> {
        if !self.listening.load(Ordering::Acquire) || !self.drain() {
            return None;
        }
        let found = self.remembered.lock().unwrap_or_else(|e| e.into_inner()).get(hash, now);
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Taken before a load reads the database; `None` while nothing may be remembered.
    pub fn ticket(&self) -> Option<Ticket> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        Some(self.remembered.lock().unwrap_or_else(|e| e.into_inner()).ticket())
    }

    /// Remembers what a load read, when its ticket allows.
    pub fn put(
        &self,
        ticket: Option<Ticket>,
        hash: Vec<u8>,
        state: HashMap<String, String>,
        user_id: Option<i64>,
        fresh_until: DateTime<Utc>,
    ) {
        let Some(ticket) = ticket else { return };
        let mut remembered = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        remembered.put(ticket, hash, state, user_id, fresh_until, Utc::now());
    }

    /// The contact details remembered of `user_ids`, one for each in their order (`None` for one
    /// not remembered), after handling every announcement that has arrived, and the ticket for
    /// reading the others from the database; `None` while nothing may be remembered (every one is
    /// read). Never waits for I/O, as [`get`](SessionCache::get).
    ///
    /// A list in the ids' order rather than a map: building a map of the ids found was half of
    /// this lookup's time, and the lookup was a seventh of the tab thread's (issue 8).
    pub fn contacts(&self, user_ids: &[i64]) -> Option<(Vec<Option<Arc<AccountContact>>>, Ticket)> {
        if !self.listening.load(Ordering::Acquire) || !self.drain() {
            return None;
        }
        let remembered = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        let found = user_ids.iter().map(|id| remembered.contact(*id).cloned()).collect();
        Some((found, remembered.ticket()))
    }

    /// Remembers contact details read after [`contacts`](SessionCache::contacts) gave `ticket`.
    pub fn put_contacts(&self, ticket: Ticket, read: Vec<(i64, Arc<AccountContact>)>) {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner()).put_contacts(ticket, read);
    }

    /// The endpoint a token (by its hash) was found live for, if remembered, after handling every
    /// announcement that has arrived, and the ticket for reading it from the database otherwise;
    /// `None` while nothing may be remembered. Never waits for I/O, as [`get`](SessionCache::get).
    pub fn endpoint(&self, hash: &[u8]) -> Option<(Option<Endpoint>, Ticket)> {
        if !self.listening.load(Ordering::Acquire) || !self.drain() {
            return None;
        }
        let remembered = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        Some((remembered.endpoint(hash).cloned(), remembered.ticket()))
    }

    /// Remembers a token found live after [`endpoint`](SessionCache::endpoint) gave `ticket`.
    pub fn put_endpoint(&self, ticket: Ticket, hash: Vec<u8>, endpoint: Endpoint) {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner()).put_endpoint(ticket, hash, endpoint);
    }

    /// Forgets a token this instance revoked, without waiting for its announcement.
    pub fn forget_token(&self, token_id: i64) {
        self.forget(&Note::Token(token_id));
    }

    /// Whether the token (by its hash) is remembered, after handling every announcement that has
    /// arrived (tests wait on it for a change made elsewhere to be heard).
    pub fn remembers_endpoint(&self, hash: &[u8]) -> bool {
        self.drain();
        self.remembered.lock().unwrap_or_else(|e| e.into_inner()).endpoint(hash).is_some()
    }

    /// Forgets a session this instance changed or ended.
    pub fn forget_session(&self, hash: &[u8]) {
        self.forget(&Note::Session(hash.to_vec()));
    }

    /// Forgets every session of an account this instance changed (CP-IS059: a disabled account's
    /// sessions end at once here, without waiting for the announcement).
    pub fn forget_user(&self, user_id: i64) {
        self.forget(&Note::User(user_id));
    }

    fn forget(&self, note: &Note) {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner()).forget(note);
    }

    /// Loads answered from memory and from the database so far.
    pub fn counts(&self) -> Counts {
        Counts { remembered: self.hits.load(Ordering::Relaxed), read: self.misses.load(Ordering::Relaxed) }
    }

    /// Whether a session of the account is remembered, after handling every announcement that has
    /// arrived (tests wait on it for a change made elsewhere to be heard).
    pub fn remembers_user(&self, user_id: i64) -> bool {
        self.drain();
        self.remembered.lock().unwrap_or_else(|e| e.into_inner()).holds_user(user_id)
    }

    /// Whether the account's contact details are remembered, after handling every announcement
    /// that has arrived (tests wait on it for a change made elsewhere to be heard).
    pub fn remembers_contact(&self, user_id: i64) -> bool {
        self.drain();
        self.remembered.lock().unwrap_or_else(|e| e.into_inner()).contact(user_id).is_some()
    }

    /// How many times a connection began to listen (once, unless one was lost).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }

    /// Whether a connection is listening (and so sessions may be remembered).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Handles every announcement that has arrived. False when the connection is gone.
    /// Announcements are handled while the connection is held, so once a caller holds it, every
    /// announcement read before has been handled. Nothing holds it across a wait: libpq's socket
    /// never blocks a read, and no statement is sent on it after `LISTEN`.
    fn drain(&self) -> bool {
        let mut guard = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        let Some(conn) = guard.as_mut() else { return false };
        let mut notes = Vec::new();
        // Each step reads the socket once. A terminated backend's last message (FATAL) is read as
        // a notice, not an error (diesel drops notices), and the connection's end only by a later
        // read: so the socket is read until two reads in a row find nothing new. The backend
        // stops listening as it exits, after that message and before its socket closes; a
        // request in between (the backend's exit, under a millisecond) is not told of a change
        // committed meanwhile. (More than `MANY` notes forget everything: the rest are read, not kept.)
        let mut quiet = 0;
        while quiet < 2 {
            let read = conn.notifications_iter().next();
            match read {
                None => quiet += 1,
                Some(Ok(n)) => {
                    quiet = 0;
                    if n.channel == CHANNEL && notes.len() <= MANY {
                        notes.push(Note::parse(&n.payload));
                    }
                }
                Some(Err(_)) => {
                    self.lost(&mut guard);
                    return false;
                }
            }
        }
        if !notes.is_empty() {
            self.remembered.lock().unwrap_or_else(|e| e.into_inner()).forget_all_of(&notes);
        }
        true
    }

    /// The connection is gone: forget everything and remember nothing until one listens again.
    fn lost(&self, guard: &mut Option<PgConnection>) {
        self.listening.store(false, Ordering::Release);
        *guard = None;
        self.forget(&Note::All);
        tracing::warn!("the session listener lost its connection: sessions are read from the database");
    }
}

/// The listener's thread: connects and listens, reads announcements every `poll` when no request
/// has, and connects again after a loss.
fn listen(cache: Weak<SessionCache>, poll: Duration) {
    // Failing to listen is logged once per outage, not on every try.
    let mut told = false;
    loop {
        let Some(c) = cache.upgrade() else { return };
        if c.is_listening() {
            c.drain();
            drop(c);
            std::thread::sleep(poll);
        } else {
            let url = c.database_url.clone();
            drop(c);
            // Connecting may take as long as the database makes it: without holding the cache.
            match connect(&url) {
                Ok(conn) => {
                    let Some(c) = cache.upgrade() else { return };
                    let mut guard = c.listener.lock().unwrap_or_else(|e| e.into_inner());
                    *guard = Some(conn);
                    // Whatever was remembered before may have changed unannounced.
                    c.forget(&Note::All);
                    c.listening.store(true, Ordering::Release);
                    c.connections.fetch_add(1, Ordering::AcqRel);
                    told = false;
                    tracing::info!("the session listener is listening");
                }
                Err(e) => {
                    if !told {
                        told = true;
                        tracing::warn!(error = %e, "the session listener cannot listen: sessions are read from the database");
                    }
                    std::thread::sleep(RETRY);
                }
            }
        }
    }
}

/// The triggers that announce (migrations 000025 and 000026). Without every one of them enabled (as
/// a trigger fires in a normal session), nothing is remembered: a change they would have announced
/// could go unheard. They are looked for when a connection begins to listen; one disabled later
/// goes unnoticed until the next connection.
const TRIGGERS: [&str; 6] = [
    "sessions_notify_update",
    "sessions_notify_delete",
    "sessions_notify_truncate",
    "users_sessions_notify_update",
    "users_sessions_notify_delete",
    "users_sessions_notify_truncate",
];

/// A listening connection, once the triggers are known to be there. The connection gives up on a
/// server that stops answering TCP keepalives (after about 10 s of silence), so a dead network
/// path is found out although nothing is ever sent on it after `LISTEN`.
fn connect(url: &str) -> anyhow::Result<PgConnection> {
    use diesel::sql_types::{Array, Text};
    #[derive(diesel::QueryableByName)]
    struct Enabled {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = PgConnection::establish(&listener_url(url)).map_err(|e| anyhow::anyhow!("cannot connect: {e}"))?;
    diesel::sql_query("SET application_name = 'cpis-session-listener'").execute(&mut conn)?;
    diesel::sql_query(format!("LISTEN {CHANNEL}")).execute(&mut conn)?;
    let enabled: Enabled = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_trigger WHERE tgname = ANY($1) \
             AND tgrelid IN ('sessions'::regclass, 'users'::regclass) AND tgenabled IN ('O', 'A')",
    )
    .bind::<Array<Text>, _>(TRIGGERS.to_vec())
    .get_result(&mut conn)?;
    if enabled.n != TRIGGERS.len() as i64 {
        anyhow::bail!("the triggers that announce session changes (migration 000025) are missing or disabled");
    }
    Ok(conn)
}

/// The database URL with the listener's connection settings added (those it names already stay).
fn listener_url(url: &str) -> String {
    const SETTINGS: [(&str, &str); 6] = [
        ("connect_timeout", "5"),
        ("keepalives", "1"),
        ("keepalives_idle", "5"),
        ("keepalives_interval", "2"),
        ("keepalives_count", "2"),
        ("tcp_user_timeout", "10000"),
    ];
    let uri = url.starts_with("postgres://") || url.starts_with("postgresql://");
    // The parameters the URL names itself: a URI's query, or a key=value string's words.
    let named: Vec<&str> = if uri {
        url.split_once('?').map_or("", |(_, query)| query).split('&').collect()
    } else {
        url.split_whitespace().collect()
    };
    let names = |key: &str| named.iter().any(|p| p.split_once('=').is_some_and(|(k, _)| k.trim() == key));
    let mut out = url.to_owned();
    for (key, value) in SETTINGS.iter().filter(|(key, _)| !names(key)) {
        if uri {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(&format!("{key}={value}"));
        } else {
            out.push_str(&format!(" {key}={value}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn state(v: &str) -> HashMap<String, String> {
        HashMap::from([("uid".to_owned(), v.to_owned())])
    }

    #[test]
    fn announcements_are_read_as_a_session_an_account_or_everything() {
        assert_eq!(Note::parse("k0aff"), Note::Session(vec![0x0a, 0xff]));
        assert_eq!(Note::parse("u42"), Note::User(42));
        assert_eq!(Note::parse("t5"), Note::Token(5));
        assert_eq!(Note::parse("*"), Note::All);
        // Anything unexpected forgets everything rather than nothing.
        for odd in ["", "kzz", "u", "ux", "x1", "k0", "t", "tx"] {
            assert_eq!(Note::parse(odd), Note::All, "{odd:?}");
        }
    }

    #[test]
    fn a_session_is_used_only_while_a_load_would_not_extend_it_and_before_its_absolute_expiry() {
        let slack = chrono::TimeDelta::seconds(60);
        // Idle limit 30 minutes, just extended: fresh for the minute of slack.
        assert_eq!(fresh_until(at(1800), at(40_000), 1800, slack), at(60));
        // The absolute expiry comes first.
        assert_eq!(fresh_until(at(1800), at(30), 1800, slack), at(30));
        // No slack (an idle limit of nothing): never fresh after its expiry.
        assert_eq!(fresh_until(at(0), at(100), 0, chrono::TimeDelta::zero()), at(0));
    }

    #[test]
    fn a_load_remembers_only_if_nothing_was_forgotten_since_it_began() {
        let mut r = Remembered::default();
        let ticket = r.ticket();
        r.forget(&Note::Session(vec![9]));
        assert!(!r.put(ticket, vec![1], state("1"), Some(1), at(60), at(0)), "something was forgotten meanwhile");
        assert!(r.get(&[1], at(0)).is_none());
        let ticket = r.ticket();
        assert!(r.put(ticket, vec![1], state("1"), Some(1), at(60), at(0)));
        assert_eq!(r.get(&[1], at(0)), Some(state("1")));
        assert!(r.get(&[1], at(60)).is_none(), "not once it would be extended");
        assert!(!r.put(r.ticket(), vec![2], state("2"), None, at(0), at(0)), "not fresh");
    }

    #[test]
    fn forgetting_names_one_session_one_account_or_everything() {
        let mut r = Remembered::default();
        for (hash, user) in [(1u8, 7), (2, 7), (3, 8), (4, 9), (5, 10)] {
            assert!(r.put(r.ticket(), vec![hash], state("x"), Some(user), at(60), at(0)));
        }
        r.forget(&Note::Session(vec![3]));
        assert!(r.get(&[3], at(0)).is_none());
        assert_eq!(r.len(), 4);
        assert!(r.holds_user(7));
        r.forget(&Note::User(7));
        assert!(r.get(&[1], at(0)).is_none() && r.get(&[2], at(0)).is_none());
        assert!(!r.holds_user(7) && r.holds_user(9));
        assert!(r.get(&[4], at(0)).is_some(), "another account's session stays");
        r.forget_all_of(&[Note::User(9), Note::Session(vec![5])]);
        assert!(r.is_empty(), "several at once");
        assert!(r.put(r.ticket(), vec![1], state("x"), Some(1), at(60), at(0)));
        r.forget(&Note::All);
        assert!(r.is_empty());
        assert!(r.put(r.ticket(), vec![1], state("x"), Some(1), at(60), at(0)));
        let many: Vec<Note> = (0..=MANY as i64).map(|i| Note::User(1_000 + i)).collect();
        r.forget_all_of(&many);
        assert!(r.is_empty(), "more than {MANY} at once forget everything");
        let ticket = r.ticket();
        r.forget_all_of(&[]);
        assert_eq!(r.ticket(), ticket, "nothing forgotten, nothing moves");
    }

    fn system(token_id: i64) -> Endpoint {
        Endpoint::NhsSystem { token_id, ods_code: "RX1".into() }
    }

    /// CP-NHS018: a token found live is remembered until it is announced (revoked, changed or
    /// deleted), by its id; a read that began before a forgetting is not remembered.
    #[test]
    fn a_token_is_forgotten_when_it_is_announced() {
        let mut r = Remembered::default();
        let ticket = r.ticket();
        r.forget(&Note::Token(99));
        assert!(!r.put_endpoint(ticket, vec![1], system(1)), "something was forgotten meanwhile");
        assert!(r.endpoint(&[1]).is_none());
        assert!(r.put_endpoint(r.ticket(), vec![1], system(1)));
        let la = Endpoint::LocalAuthority { token_id: 2, la_code: "E09000001".into() };
        assert!(r.put_endpoint(r.ticket(), vec![2], la.clone()));
        assert_eq!(r.endpoint(&[1]), Some(&system(1)));
        r.forget(&Note::User(1));
        r.forget(&Note::Session(vec![1]));
        assert!(r.endpoint(&[1]).is_some(), "an account's or a session's announcement is not the token's");
        r.forget(&Note::Token(1));
        assert!(r.endpoint(&[1]).is_none(), "the token was announced");
        assert_eq!(r.endpoint(&[2]), Some(&la), "another token stays");
        r.forget(&Note::All);
        assert!(r.endpoint(&[2]).is_none());
    }

    #[test]
    fn a_full_token_cache_starts_again() {
        let mut r = Remembered::default();
        for i in 0..TOKENS_CAPACITY as i64 {
            assert!(r.put_endpoint(r.ticket(), i.to_be_bytes().to_vec(), system(i)));
        }
        assert!(r.put_endpoint(r.ticket(), 0i64.to_be_bytes().to_vec(), system(0)), "one already held: room enough");
        assert!(r.endpoint(&1i64.to_be_bytes()).is_some());
        assert!(r.put_endpoint(r.ticket(), vec![0xff], system(-1)));
        assert!(r.endpoint(&1i64.to_be_bytes()).is_none(), "forgotten to make room");
        assert_eq!(r.tokens.len(), 1);
    }

    fn contact(telephone: &str) -> Arc<AccountContact> {
        Arc::new(AccountContact { email: None, telephone: Some(telephone.to_owned()), disabled_at: None })
    }

    /// CP-IS059: an account's contact details are remembered until the account is announced, as
    /// its sessions are, and a read that began before a forgetting is not remembered.
    #[test]
    fn contact_details_are_forgotten_with_their_account() {
        let mut r = Remembered::default();
        let ticket = r.ticket();
        r.forget(&Note::Session(vec![9]));
        assert!(!r.put_contacts(ticket, vec![(7, contact("1"))]), "something was forgotten meanwhile");
        assert!(r.contact(7).is_none());
        assert!(r.put_contacts(r.ticket(), vec![(7, contact("1")), (8, contact("2")), (9, contact("3"))]));
        assert_eq!(r.contact(7), Some(&contact("1")));
        r.forget(&Note::User(7));
        assert!(r.contact(7).is_none(), "the account was announced");
        assert_eq!(r.contact(8), Some(&contact("2")), "another account's stay");
        r.forget(&Note::Session(vec![1]));
        assert!(r.contact(8).is_some(), "a session's announcement is not the account's");
        r.forget(&Note::All);
        assert!(r.contact(8).is_none() && r.contact(9).is_none());
        assert!(r.put_contacts(r.ticket(), vec![(8, contact("2"))]));
        let many: Vec<Note> = (0..=MANY as i64).map(|i| Note::User(1_000 + i)).collect();
        r.forget_all_of(&many);
        assert!(r.contact(8).is_none(), "more than {MANY} at once forget everything");
    }

    #[test]
    fn a_full_contact_cache_starts_again() {
        let mut r = Remembered::default();
        let all: Vec<(i64, Arc<AccountContact>)> = (0..CONTACTS_CAPACITY as i64).map(|i| (i, contact("x"))).collect();
        assert!(r.put_contacts(r.ticket(), all));
        assert!(r.contact(0).is_some());
        assert!(r.put_contacts(r.ticket(), vec![(-1, contact("y"))]));
        assert!(r.contact(0).is_none(), "forgotten to make room");
        assert_eq!(r.contact(-1), Some(&contact("y")));
        let too_many: Vec<(i64, Arc<AccountContact>)> =
            (0..=CONTACTS_CAPACITY as i64).map(|i| (i, contact("x"))).collect();
        assert!(r.put_contacts(r.ticket(), too_many));
        assert_eq!(r.contacts.len(), CONTACTS_CAPACITY, "never beyond its capacity");
    }

    #[test]
    fn only_signed_in_sessions_are_remembered() {
        let mut r = Remembered::default();
        assert!(!r.put(r.ticket(), vec![1], state("x"), None, at(60), at(0)));
        assert!(r.is_empty());
    }

    #[test]
    fn a_full_cache_makes_room_from_stale_sessions_only() {
        let mut r = Remembered::default();
        for i in 0..CAPACITY {
            let fresh = if i % 2 == 0 { at(10) } else { at(100) };
            assert!(r.put(r.ticket(), (i as u64).to_be_bytes().to_vec(), state("x"), Some(1), fresh, at(0)));
        }
        assert!(!r.put(r.ticket(), vec![1], state("x"), Some(1), at(100), at(5)), "full of fresh sessions");
        assert!(
            !r.put(r.ticket(), vec![1], state("x"), Some(1), at(100), at(5) + chrono::TimeDelta::milliseconds(500)),
            "looked a moment ago: not again yet"
        );
        assert!(r.put(r.ticket(), vec![1], state("x"), Some(1), at(100), at(50)), "the stale half made room");
        assert_eq!(r.len(), CAPACITY / 2 + 1);
    }

    #[test]
    fn the_listener_asks_its_connection_to_give_up_on_a_silent_server() {
        let uri = listener_url("postgres://u@127.0.0.1:5432/db");
        assert!(uri.starts_with("postgres://u@127.0.0.1:5432/db?connect_timeout=5&keepalives=1&"), "{uri}");
        assert!(uri.ends_with("&tcp_user_timeout=10000"), "{uri}");
        let given = listener_url("postgres://u@h/db?sslmode=require&connect_timeout=2");
        assert!(given.contains("connect_timeout=2") && !given.contains("connect_timeout=5"), "{given}");
        assert!(given.contains("sslmode=require&connect_timeout=2&keepalives=1"), "{given}");
        // A server setting passed in `options` is not the client's keepalive.
        let server = listener_url("postgres://u@h/db?options=-c%20tcp_keepalives_idle%3D60");
        assert!(server.contains("&keepalives_idle=5"), "{server}");
        let server = listener_url("host=h options='-c tcp_keepalives_idle=60'");
        assert!(server.contains(" keepalives_idle=5"), "{server}");
        let words = listener_url("host=127.0.0.1 dbname=db");
        assert!(words.starts_with("host=127.0.0.1 dbname=db connect_timeout=5 keepalives=1"), "{words}");
    }
}
