//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL` (`footprint.db`), one writer connection
//! (group commit) and short-lived reader connections for queries; the stats derived from it in `stats.db` beside
//! it, kept by the stats thread (`stats_thread.rs`).

use super::identity::{self, IdentityCache};
use super::{EventStore, Field, QuarantinedEvent, StoreError, StoredEvent};
use super::static_statement::{Param, StaticStatement};
use crate::identity::Limits;
use rusqlite::{params, Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

/// `profile_events.bucket` is `event_id >> link_bucket_bits!()`: 65,536 event ids a bucket. Small enough that a
/// batch of links touches few pages, large enough that a person's events take few searches (1,500 for 100 M events).
macro_rules! link_bucket_bits {
    () => {
        "16"
    };
}
pub(super) use link_bucket_bits;
/// [`link_bucket_bits!`] as a number, for sorting links in the table's key order.
pub(super) const LINK_BUCKET_BITS: u32 = number(link_bucket_bits!()) as u32;

/// An event stored more than `late_event_ms!()` (an hour) after it happened is late: filed in `late_events` by its
/// time, where retention finds it (`privacy::delete_older_than`).
macro_rules! late_event_ms {
    () => {
        "3600000"
    };
}
/// [`late_event_ms!`] as a number.
pub(super) const LATE_EVENT_MS: i64 = number(late_event_ms!());

/// Files an event in `late_events` (site, event time, id): at commit, and by retention for an event it met below
/// its receive-order boundary that has not expired.
pub(super) const FILE_LATE_EVENT: &str = "INSERT OR IGNORE INTO late_events (site, timestamp, event_id) VALUES (?1, ?2, ?3)";

/// The value of a decimal literal, at compile time: the macros above give SQL texts their numbers, this gives them
/// to Rust.
const fn number(digits: &str) -> i64 {
    let digits = digits.as_bytes();
    let (mut value, mut i) = (0, 0);
    while i < digits.len() {
        value = value * 10 + (digits[i] - b'0') as i64;
        i += 1;
    }
    value
}

/// `bucket(n)`: every bucket number up to the links watermark's, for a search of `profile_events` or
/// `unfiled_events` in each.
macro_rules! link_buckets {
    () => {
        concat!(
            "WITH RECURSIVE bucket(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM bucket WHERE n < (SELECT last_event_id >> ",
            $crate::store::sqlite::link_bucket_bits!(),
            " FROM links_state WHERE id = 1)) "
        )
    };
}
pub(super) use link_buckets;

/// The `profile_events` keys (bucket, profile) of the person whose profiles share root `?1`, for every bucket up to
/// the links watermark: a search for each.
macro_rules! person_link_keys {
    () => {
        concat!($crate::store::sqlite::link_buckets!(), "SELECT n, id FROM bucket, profiles WHERE root = ?1")
    };
}
pub(super) use person_link_keys;

/// Schema migrations, applied in order at start; each runs once, in a transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
    "CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        message_id TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT,
        category TEXT,
        anonymous_id TEXT,
        user_id TEXT,
        previous_id TEXT,
        group_id TEXT,
        timestamp INTEGER NOT NULL,
        original_timestamp INTEGER,
        sent_at INTEGER,
        received_at INTEGER NOT NULL,
        flags INTEGER NOT NULL DEFAULT 0,
        url TEXT,
        path TEXT,
        title TEXT,
        referrer TEXT,
        referrer_host TEXT,
        utm_source TEXT,
        utm_medium TEXT,
        utm_campaign TEXT,
        utm_term TEXT,
        utm_content TEXT,
        ip TEXT,
        browser TEXT,
        os TEXT,
        device TEXT,
        properties TEXT,
        traits TEXT,
        context TEXT,
        integrations TEXT
    );
    -- Append-only key: cheap to maintain. Used to rebuild the dedupe window at start and for retention.
    -- No index on message_id: a random-key B-tree costs 9x on inserts (research/perf-baselines.md §4.2);
    -- the writer deduplicates in memory instead.
    CREATE INDEX events_received_at ON events(received_at);
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        message_id TEXT,
        code TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX quarantine_received_at ON quarantine(received_at);",
    ),
    (
        2,
        "-- Who the event counts as: 'a:<anonymousId>', 'u:<userId>' (no anonymousId) or 'c:<cookieless daily hash>'.
    ALTER TABLE events ADD COLUMN visitor TEXT;
    -- context.sessionId as the SDK sends it (only with analytics consent); NULL otherwise.
    ALTER TABLE events ADD COLUMN session_id TEXT;
    -- Consent in force for the event: 1 analytics, 2 marketing, 4 personalization.
    ALTER TABLE events ADD COLUMN consent INTEGER NOT NULL DEFAULT 0;
    -- The profile of the identifier the event was resolved through (see profiles.root for the person).
    ALTER TABLE events ADD COLUMN profile_id INTEGER;
    CREATE INDEX events_site_time ON events(site, timestamp);
    CREATE INDEX events_profile ON events(profile_id) WHERE profile_id IS NOT NULL;
    -- A profile is a connected component of identifiers; merged profiles share a root.
    CREATE TABLE profiles (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        root INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        merge_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX profiles_root ON profiles(root);
    -- kind: anonymous_id, user_id, email, phone (HMAC of the normalised value), external:NAME.
    CREATE TABLE identities (
        site TEXT NOT NULL,
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        profile_id INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (site, kind, value)
    ) WITHOUT ROWID;
    CREATE INDEX identities_profile ON identities(profile_id);
    -- Traits, last write wins by event time.
    CREATE TABLE profile_traits (
        profile_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        ts INTEGER NOT NULL,
        PRIMARY KEY (profile_id, key)
    ) WITHOUT ROWID;
    -- Every merge, refusal and unmerge, with the event that caused it.
    CREATE TABLE identity_log (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        at INTEGER NOT NULL,
        action TEXT NOT NULL,
        code TEXT,
        profile_id INTEGER,
        other_profile_id INTEGER,
        identifier_kind TEXT,
        message_id TEXT,
        detail TEXT
    );
    CREATE INDEX identity_log_profile ON identity_log(profile_id);
    CREATE TABLE merges (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        at INTEGER NOT NULL,
        winner INTEGER NOT NULL,
        loser INTEGER NOT NULL,
        moved TEXT NOT NULL,
        message_id TEXT,
        undone_at INTEGER
    );
    -- Append-only proof of consent (GDPR Art. 7): every change, per profile or cookieless visitor.
    CREATE TABLE consent_ledger (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        at INTEGER NOT NULL,
        profile_id INTEGER,
        visitor TEXT,
        categories INTEGER NOT NULL,
        source TEXT NOT NULL,
        policy_version TEXT,
        message_id TEXT
    );
    CREATE INDEX consent_ledger_profile ON consent_ledger(profile_id);
    -- Erased identifiers, as keyed hashes: new events carrying them are refused.
    CREATE TABLE suppressions (
        site TEXT NOT NULL,
        kind TEXT NOT NULL,
        hash TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (site, kind, hash)
    ) WITHOUT ROWID;",
    ),
    (3, super::stats::SCHEMA),
    (4, super::stats::WATERMARK_SCHEMA),
    (
        5,
        "-- Retention finds old events by day: within a day the index key grows with the row id, so inserts append to
    -- its end instead of landing all over the last seconds' pages (an index on the raw timestamp rewrote about one
    -- page per event in every commit: half of all WAL writes).
    DROP INDEX events_site_time;
    CREATE INDEX events_site_day ON events(site, timestamp / 86400000);",
    ),
    (
        6,
        "-- A person's events, by profile: filed with the stats (behind the same watermark) in key-ordered batches,
    -- instead of an index on events.profile_id that took a random page write per event. Events after the
    -- watermark are found by their profile_id column (a short scan of the newest rows).
    CREATE TABLE profile_events (
        profile_id INTEGER NOT NULL,
        event_id INTEGER NOT NULL,
        PRIMARY KEY (profile_id, event_id)
    ) WITHOUT ROWID;
    INSERT INTO profile_events (profile_id, event_id)
        SELECT profile_id, id FROM events WHERE profile_id IS NOT NULL AND id <= (SELECT last_event_id FROM stats_state WHERE id = 1);
    DROP INDEX events_profile;",
    ),
    (
        7,
        "-- Erasure finds a person's visits, and events filed under no profile (identity resolution off) by their raw
    -- IDs, without reading every row. Unfiled events are indexed like profile_events: filed with the stats, in
    -- key order, behind the same watermark.
    CREATE TABLE unfiled_events (
        site TEXT NOT NULL,
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        PRIMARY KEY (site, kind, value, event_id)
    ) WITHOUT ROWID;
    INSERT INTO unfiled_events (site, kind, value, event_id)
        SELECT site, 'anonymous_id', anonymous_id, id FROM events WHERE profile_id IS NULL AND anonymous_id IS NOT NULL
            AND id <= (SELECT last_event_id FROM stats_state WHERE id = 1)
        UNION ALL SELECT site, 'user_id', user_id, id FROM events WHERE profile_id IS NULL AND user_id IS NOT NULL
            AND id <= (SELECT last_event_id FROM stats_state WHERE id = 1);
    CREATE INDEX stats_visits_visitor ON stats_visits(site, visitor);
    -- The other side of a refused merge, for erasure (identity_log_profile covers the first side).
    CREATE INDEX identity_log_other ON identity_log(other_profile_id) WHERE other_profile_id IS NOT NULL;",
    ),
    (
        8,
        "-- A replica of a shared PostgreSQL store (store/shared.rs): the rows' ids there, so erasure can delete them
    -- there too, and how far the replica has applied the shared log. NULL / absent for a standalone store.
    ALTER TABLE events ADD COLUMN shared_id INTEGER;
    ALTER TABLE quarantine ADD COLUMN shared_id INTEGER;
    CREATE TABLE replica_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        -- Which database this replicates (PostgreSQL's system identifier and database name).
        source TEXT NOT NULL,
        -- Every shared-log transaction below this one is applied.
        next_tx INTEGER NOT NULL
    );",
    ),
    (
        9,
        "-- The dedupe window is rebuilt by event id instead (`first_id_received_since`): this index cost an insert
    -- and about a tenth of the WAL's page writes per event, for one query at start.
    DROP INDEX events_received_at;",
    ),
    (
        10,
        "-- Names this database, so a stats.db beside it can tell whether it derives from it (stats_thread.rs).
    CREATE TABLE store_info (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        token TEXT NOT NULL
    );
    INSERT INTO store_info (id, token) VALUES (1, lower(hex(randomblob(16))));",
    ),
    (
        STATS_MOVED,
        "-- The stats tables moved to stats.db (copied there just before this migration, `open_stats_db`): their
    -- transactions no longer hold the write lock that acknowledgements wait for. What stays is the watermark of
    -- the person-index links (profile_events, unfiled_events), which are still filed here in batches.
    DROP TABLE stats_visits;
    DROP TABLE stats_open;
    DROP TABLE stats_rollup;
    DROP TABLE stats_sketch;
    ALTER TABLE stats_state RENAME TO links_state;",
    ),
    (
        12,
        concat!(
            "-- A person's events, by bucket of event ids first: a batch of links now lands in the newest bucket's few
    -- pages instead of one page per profile across the whole table (which grows with every event, so the WAL
    -- bytes per link grew with it). A person's events take one search per bucket (`PERSON_EVENT_IDS`).
    CREATE TABLE profile_events_by_bucket (
        bucket INTEGER NOT NULL,
        profile_id INTEGER NOT NULL,
        event_id INTEGER NOT NULL,
        PRIMARY KEY (bucket, profile_id, event_id)
    ) WITHOUT ROWID;
    INSERT INTO profile_events_by_bucket (bucket, profile_id, event_id)
        SELECT event_id >> ", link_bucket_bits!(), ", profile_id, event_id FROM profile_events ORDER BY 1, 2, 3;
    DROP TABLE profile_events;
    ALTER TABLE profile_events_by_bucket RENAME TO profile_events;"
        ),
    ),
    (
        13,
        concat!(
            "-- Retention without an index on every event (it cost each insert ~7 % of batched ingest CPU): events in
    -- receive order, from where each site's last pass stopped, and late events by their time (privacy.rs).
    DROP INDEX events_site_day;
    CREATE TABLE late_events (
        site TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        event_id INTEGER NOT NULL,
        PRIMARY KEY (site, timestamp, event_id)
    ) WITHOUT ROWID;
    INSERT INTO late_events (site, timestamp, event_id) SELECT site, timestamp, id FROM events WHERE timestamp < received_at - ",
            late_event_ms!(),
            ";
    CREATE TABLE retention_state (
        site TEXT PRIMARY KEY,
        -- Every event of the site below this id has been read by retention.
        next_id INTEGER NOT NULL
    ) WITHOUT ROWID;"
        ),
    ),
    (
        14,
        concat!(
            "-- Events filed under no profile by raw ID, bucket first, like profile_events (migration 12).
    CREATE TABLE unfiled_events_by_bucket (
        bucket INTEGER NOT NULL,
        site TEXT NOT NULL,
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        PRIMARY KEY (bucket, site, kind, value, event_id)
    ) WITHOUT ROWID;
    INSERT INTO unfiled_events_by_bucket (bucket, site, kind, value, event_id)
        SELECT event_id >> ", link_bucket_bits!(), ", site, kind, value, event_id FROM unfiled_events ORDER BY 1, 2, 3, 4, 5;
    DROP TABLE unfiled_events;
    ALTER TABLE unfiled_events_by_bucket RENAME TO unfiled_events;"
        ),
    ),
];

/// The migration that drops the stats tables from the main database, once `open_stats_db` copied them to stats.db.
const STATS_MOVED: i64 = 11;

/// Migrations of stats.db (its own `schema_migrations`).
const STATS_DB_MIGRATIONS: &[(i64, &str)] = &[(1, super::stats::STATS_DB_SCHEMA)];

/// How far `received_at` may run backwards against the event ids (a request that waited for its body, a clock set
/// back): the dedupe window is rebuilt from this much earlier.
const RECEIVED_AT_SLACK_MS: i64 = 86_400_000;

/// The ids of every event of the person whose profiles share root `?1`: the links filed up to the watermark, and
/// the newest events after it by their own `profile_id`.
pub(super) const PERSON_EVENT_IDS: &str = concat!(
    "SELECT event_id FROM profile_events WHERE (bucket, profile_id) IN (",
    person_link_keys!(),
    ") UNION ALL SELECT id FROM events WHERE id > (SELECT last_event_id FROM links_state WHERE id = 1) AND profile_id IN (SELECT id FROM profiles WHERE root = ?1)"
);

const INSERT_EVENT: &str = "INSERT INTO events (site, message_id, type, name, category, anonymous_id, user_id, previous_id,
    group_id, timestamp, original_timestamp, sent_at, received_at, flags, url, path, title, referrer, referrer_host,
    utm_source, utm_medium, utm_campaign, utm_term, utm_content, ip, browser, os, device, properties, traits, context,
    integrations, visitor, session_id, consent, profile_id, shared_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
    ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35,
    ?36, ?37)";

const INSERT_LEDGER: &str = "INSERT INTO consent_ledger (site, at, profile_id, visitor, categories, source, policy_version, message_id)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

const INSERT_QUARANTINE: &str =
    "INSERT INTO quarantine (site, received_at, message_id, code, reason, payload, shared_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Committed events wait for the stats tables until this many have gathered or the oldest is this old (or a stats
/// query, an exclusive job or shutdown asks): one stats transaction then writes each touched visit and rollup row
/// once for all of them, instead of once per group commit.
const STATS_FLUSH_EVENTS: usize = 5_000;
const STATS_FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(250);
/// Events per links transaction when catching up from the database.
const LINKS_CATCH_UP_BATCH: usize = 20_000;

/// Past this size the checkpoint thread restarts the WAL (see [`checkpoint_round`]).
const WAL_RESTART_BYTES: u64 = 128 * 1024 * 1024;

pub struct SqliteStore {
    /// Declared before `conn`, so it is finalized before the connection closes.
    insert_event: StaticStatement,
    conn: Connection,
    path: PathBuf,
    /// Committed events not yet handed to the stats thread, as the stats read them, oldest first.
    stats_pending: Vec<super::stats::StatsEvent>,
    /// Their (profile, event id) links, for `profile_events`.
    links_pending: Vec<(i64, i64)>,
    /// The raw IDs of those filed under no profile, for `unfiled_events`.
    unfiled_pending: Vec<super::stats::UnfiledLink>,
    stats_pending_since: Option<std::time::Instant>,
    /// `links_state.last_event_id`: every event up to it has its links filed and was handed to the stats thread.
    links_mark: i64,
    /// The events after the links watermark must be read back from the database (after a crash or a failed links
    /// transaction): the pending lists are then incomplete and ignored.
    links_from_database: bool,
    identities: IdentityCache,
    limits: Limits,
    /// Declared before `checkpointer`: stopped (its queue applied) first.
    stats_thread: Option<super::stats_thread::StatsThread>,
    checkpointer: Option<Checkpointer>,
}

/// Copies the WAL back into the database from its own thread and connection, so checkpoints happen off the
/// writer's acknowledgement path and coalesce many commits' pages (instead of SQLite's inline autocheckpoint).
struct Checkpointer {
    stop: Arc<AtomicBool>,
    /// Set by the thread when the WAL has grown past its limit; the writer then restarts it (see [`checkpoint_round`]).
    restart_due: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Not more often: each round's fsync of the database file holds up the writer's next WAL fsync (ext4), and at
    /// 250 ms those stalls reached 1 % of single-event answers (p99 at half the maximum rate 23 → 19 ms).
    const INTERVAL: std::time::Duration = std::time::Duration::from_millis(2000);

    fn start(path: &Path, interval: std::time::Duration, restart_above: u64) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        let wal = wal_path(path);
        conn.pragma_update(None, "busy_timeout", 5_000)?;
        let stop = Arc::new(AtomicBool::new(false));
        let restart_due = Arc::new(AtomicBool::new(false));
        let (flag, due) = (stop.clone(), restart_due.clone());
        let thread = std::thread::Builder::new()
            .name("footprint-checkpoint".into())
            .spawn(move || {
                while !flag.load(Relaxed) {
                    std::thread::park_timeout(interval);
                    if flag.load(Relaxed) {
                        break;
                    }
                    // While the writer has a restart to do, stay out of its way (one checkpoint at a time).
                    if !due.load(Relaxed) && checkpoint_round(&conn, &wal, restart_above) {
                        due.store(true, Relaxed);
                    }
                }
            })
            .expect("spawn checkpoint thread");
        Ok(Checkpointer { stop, restart_due, thread: Some(thread) })
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.to_owned().into_os_string();
    wal.push("-wal");
    wal.into()
}

/// One round of the checkpoint thread: a PASSIVE checkpoint, which copies committed pages back without blocking
/// anyone. Returns whether the WAL is past `restart_above` bytes and needs a restart: passive checkpoints can never
/// let the WAL start over while commits keep arriving (that needs every frame copied at the moment a write
/// transaction begins), so under sustained load the file would grow by every page ever written.
fn checkpoint_round(conn: &Connection, wal: &Path, restart_above: u64) -> bool {
    if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(%error, "WAL checkpoint failed; retrying");
        return false;
    }
    std::fs::metadata(wal).is_ok_and(|m| m.len() > restart_above)
}

/// The writer's side of bounding the WAL, between two commits: a RESTART checkpoint on the writer's own
/// connection (another connection would wait for the writer lock forever under load). It copies what the last
/// passive round left (a fraction of a second of writes) and makes the next commit start the WAL over, which
/// `journal_size_limit` then cuts back. Ingest queues meanwhile (and answers 503 when the queue fills).
fn restart_wal(conn: &Connection) {
    let started = std::time::Instant::now();
    // A long stats scan holds old frames; waiting for it would hold up every acknowledgement. Give up quickly
    // instead: the next round asks again.
    let _ = conn.busy_timeout(std::time::Duration::from_millis(20));
    match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(2)?))) {
        Ok((busy, copied)) => tracing::debug!(busy, copied, ms = started.elapsed().as_millis() as u64, "WAL restart checkpoint"),
        Err(error) => tracing::warn!(%error, "WAL restart checkpoint failed; retrying"),
    }
    let _ = conn.busy_timeout(std::time::Duration::from_millis(5_000));
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir` and applies pending migrations.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir { path: data_dir.display().to_string(), source })?;
        let path = data_dir.join("footprint.db");
        let mut conn = Connection::open(&path)?;
        // The default 4 KiB pages. 16 KiB pages take a third of the WAL frames (two write calls each), but a commit
        // rewrites each page it touches whole, and single events at half the maximum commit ~15 rows at a time: the
        // WAL reached its restart size within seconds, and the p99 from the scheduled send time was 100–164 ms in
        // every run of `cargo xtask bench` against ~9 ms (an earlier trial: 15–41 against 8–26 ms). CPU per event was
        // mixed: batched 10.9 against 12.6 µs in one alternating trial, 11.79 against 11.87 in `cargo xtask bench`,
        // whose single-event maximum cost 34.3 against 29.9 µs per request.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before we acknowledge (kill -9 and power loss keep every 2xx'd event).
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "busy_timeout", 5_000)?;
        conn.pragma_update(None, "cache_size", -32_768)?;
        // Deleted rows (erasure, retention) are overwritten, not left readable in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        // Room for every statement the writer runs (ingest, identity, stats: about 40): with rusqlite's default of
        // 16 they pushed each other out, and each stats update and many commits parsed SQL again.
        conn.set_prepared_statement_cache_capacity(128);
        migrate(&mut conn, MIGRATIONS, STATS_MOVED - 1)?;
        open_stats_db(&mut conn, &path)?;
        migrate(&mut conn, MIGRATIONS, i64::MAX)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // After a checkpoint the WAL file is cut back to this size instead of staying at its largest.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        let checkpointer = Some(Checkpointer::start(&path, Checkpointer::INTERVAL, WAL_RESTART_BYTES)?);
        let stats_thread = Some(super::stats_thread::StatsThread::start(&path)?);
        let mut store = SqliteStore {
            insert_event: StaticStatement::prepare(&conn, INSERT_EVENT)?,
            conn,
            path,
            stats_pending: Vec::new(),
            links_pending: Vec::new(),
            unfiled_pending: Vec::new(),
            stats_pending_since: None,
            links_mark: 0,
            links_from_database: true,
            identities: IdentityCache::default(),
            limits: Limits::default(),
            stats_thread,
            checkpointer,
        };
        // Events a crash left out of the links and the stats are added now, before the first query.
        store.flush_stats()?;
        Ok(store)
    }

    /// Brings the stats tables up to date with every committed event and waits until they are: files the links and
    /// hands the events to the stats thread ([`Self::flush_links`]), then waits for it.
    pub fn flush_stats(&mut self) -> Result<(), StoreError> {
        self.flush_links()?;
        self.stats_thread.as_ref().expect("until drop").sync(self.links_mark)
    }

    /// Files the waiting events' links in `profile_events` / `unfiled_events` in one transaction that also moves the
    /// links watermark, then hands the events to the stats thread (without waiting for it).
    fn flush_links(&mut self) -> Result<(), StoreError> {
        self.stats_pending_since = None;
        let result = if self.links_from_database {
            self.catch_up_links()
        } else if self.stats_pending.is_empty() && self.links_pending.is_empty() {
            Ok(())
        } else {
            let (conn, links, unfiled) = (&mut self.conn, &mut self.links_pending, &mut self.unfiled_pending);
            (|| {
                let tx = conn.transaction()?;
                let last: i64 = tx.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?.query_row([], |r| r.get(0))?;
                super::stats::link_profile_events(&tx, links)?;
                super::stats::link_unfiled_events(&tx, unfiled)?;
                super::stats::set_watermark(&tx, "links_state", last)?;
                tx.commit()?;
                Ok(last)
            })()
            .map(|last| {
                // A new list rather than the old one emptied: the old one goes to the stats thread. Sized for a full
                // flush, so it is not reallocated (and thousands of events moved) several times while it fills.
                let events = std::mem::replace(&mut self.stats_pending, Vec::with_capacity(STATS_FLUSH_EVENTS));
                self.stats_thread.as_ref().expect("until drop").record(self.links_mark, last, events);
                self.links_mark = last;
            })
        };
        if result.is_err() {
            // Rolled back: the events are read back next time, by this store and by the stats thread.
            self.links_from_database = true;
        }
        self.stats_pending.clear();
        self.links_pending.clear();
        self.unfiled_pending.clear();
        result
    }

    fn catch_up_links(&mut self) -> Result<(), StoreError> {
        loop {
            let after = super::stats::watermark(&self.conn, "links_state")?;
            let (events, mut links, mut unfiled, last) = super::stats::events_after(&self.conn, after, LINKS_CATCH_UP_BATCH)?;
            self.links_mark = last;
            if events.is_empty() {
                break;
            }
            let tx = self.conn.transaction()?;
            super::stats::link_profile_events(&tx, &mut links)?;
            super::stats::link_unfiled_events(&tx, &mut unfiled)?;
            super::stats::set_watermark(&tx, "links_state", last)?;
            tx.commit()?;
        }
        self.links_from_database = false;
        Ok(())
    }

    /// Keeps what a successful commit's events mean for the derived tables until the next flush.
    fn after_commit(&mut self, events: Vec<StoredEvent>, (links, unfiled): Links) {
        if !self.links_from_database {
            self.links_pending.extend(links);
            self.unfiled_pending.extend(unfiled);
            self.stats_pending.extend(events.into_iter().map(super::stats::StatsEvent::of));
        }
        self.stats_pending_since.get_or_insert_with(std::time::Instant::now);
    }

    /// Updates the stats if they are due ([`EventStore::flush_if_due`]). The events are durable whatever happens
    /// here; failed stats are caught up from the database, so a failure is logged, not returned.
    fn flush_stats_if_due(&mut self) {
        if self.stats_due() {
            if let Err(error) = self.flush_links() {
                tracing::warn!(%error, "filing the person index failed; retrying from the stored events");
            }
        }
    }

    fn stats_due(&self) -> bool {
        self.stats_pending.len() >= STATS_FLUSH_EVENTS || self.stats_pending_since.is_some_and(|t| t.elapsed() >= STATS_FLUSH_AFTER)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Stop the stats thread and the checkpointer first: the writer's connection is then the last one and
        // checkpoints on close.
        self.stats_thread.take();
        self.checkpointer.take();
    }
}

/// Applies `migrations` up to version `upto` that the connection's main database lacks.
fn migrate(conn: &mut Connection, migrations: &[(i64, &str)], upto: i64) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS main.schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")?;
    let current: i64 = conn.query_row("SELECT COALESCE(MAX(version), 0) FROM main.schema_migrations", [], |r| r.get(0))?;
    for (version, sql) in migrations.iter().filter(|(v, _)| *v > current && *v <= upto) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute("INSERT INTO main.schema_migrations (version, applied_at) VALUES (?1, unixepoch())", [version])?;
        tx.commit()?;
    }
    Ok(())
}

/// Prepares stats.db beside the main database `db` and attaches it to the writer's connection as `stats` (erasure
/// deletes visits through it). Before migration [`STATS_MOVED`], copies the stats tables there from the main
/// database (deleting first, so a copy a crash interrupted is done again whole). A stats.db that derives from
/// another main database starts over: the stats thread then rebuilds it from the events.
fn open_stats_db(conn: &mut Connection, db: &Path) -> Result<(), StoreError> {
    let stats_path = super::stats_thread::stats_path(db);
    {
        let mut stats = Connection::open(&stats_path)?;
        stats.pragma_update(None, "journal_mode", "WAL")?;
        stats.pragma_update(None, "busy_timeout", 5_000)?;
        migrate(&mut stats, STATS_DB_MIGRATIONS, i64::MAX)?;
    }
    conn.execute("ATTACH DATABASE ?1 AS stats", [stats_path.to_string_lossy()])?;
    conn.execute_batch("PRAGMA stats.synchronous = FULL; PRAGMA stats.secure_delete = ON;")?;
    let token: String = conn.query_row("SELECT token FROM main.store_info WHERE id = 1", [], |r| r.get(0))?;
    let moved: i64 = conn.query_row("SELECT COUNT(*) FROM main.schema_migrations WHERE version = ?1", [STATS_MOVED], |r| r.get(0))?;
    let copy = moved == 0;
    let tx = conn.transaction()?;
    let source: String = tx.query_row("SELECT source FROM stats.stats_state WHERE id = 1", [], |r| r.get(0))?;
    if copy || source != token {
        if !copy && !source.is_empty() {
            tracing::info!(path = %stats_path.display(), "the stats belong to another database; rebuilding them from the events");
        }
        for table in super::stats::STATS_TABLES {
            tx.execute_batch(&format!("DELETE FROM stats.{table}"))?;
            if copy {
                let columns: Vec<String> = tx.prepare(&format!("PRAGMA main.table_info({table})"))?.query_map([], |r| r.get(1))?.collect::<Result<_, _>>()?;
                let columns = columns.join(", ");
                tx.execute_batch(&format!("INSERT INTO stats.{table} ({columns}) SELECT {columns} FROM main.{table}"))?;
            }
        }
        let last = if copy { "(SELECT last_event_id FROM main.stats_state WHERE id = 1)" } else { "0" };
        tx.execute(&format!("UPDATE stats.stats_state SET source = ?1, last_event_id = {last}"), [&token])?;
    }
    tx.commit()?;
    Ok(())
}

impl SqliteStore {
    /// Commits like [`EventStore::commit`]; a replica also records its new position in the shared log.
    fn commit_at(&mut self, events: Vec<StoredEvent>, quarantine: &[QuarantinedEvent], replica_position: Option<i64>) -> Result<Vec<usize>, StoreError> {
        // After a clear (a failed commit, an erasure, an unmerge) or at start: outside the transaction, so it reads
        // what is committed. When it fails the cache is only incomplete, and misses are looked up as before.
        if let Err(error) = self.identities.fill_if_due(&self.conn) {
            tracing::warn!(%error, "reading the identities into the cache failed; unknown identifiers are looked up");
        }
        let result = match commit_in_transaction(&mut self.conn, &mut self.insert_event, &mut self.identities, &self.limits, &events, quarantine, replica_position) {
            Ok(links) => {
                if !events.is_empty() {
                    self.after_commit(events, links);
                }
                // One writer per database: the writer's messageId set is the authority (ARCHITECTURE.md).
                Ok(Vec::new())
            }
            Err(error) => {
                // The transaction rolled back: what the identity cache learnt in it is not true.
                self.identities.clear();
                Err(error)
            }
        };
        if let Some(checkpointer) = &self.checkpointer {
            if checkpointer.restart_due.load(Relaxed) {
                restart_wal(&self.conn);
                checkpointer.restart_due.store(false, Relaxed);
            }
        }
        result
    }

    /// Applies rows of the shared log (store/shared.rs): events and quarantined events as a commit would, with
    /// `next_tx` (every shared transaction below it applied) recorded in the same transaction.
    pub fn apply_replicated(&mut self, events: Vec<StoredEvent>, quarantine: &[QuarantinedEvent], next_tx: i64) -> Result<(), StoreError> {
        self.commit_at(events, quarantine, Some(next_tx))?;
        self.flush_stats_if_due();
        Ok(())
    }

    /// Where this store stands as a replica: (source database, next shared transaction), or `None` when it is not one.
    pub fn replica_position(&self) -> Result<Option<(String, i64)>, StoreError> {
        use rusqlite::OptionalExtension as _;
        Ok(self.conn.query_row("SELECT source, next_tx FROM replica_state WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?))).optional()?)
    }

    /// Makes this store a replica of `source` from shared transaction `next_tx` on (a replica's first start, or
    /// after `footprint copy-to-postgres`).
    pub fn start_replica(&mut self, source: &str, next_tx: i64) -> Result<(), StoreError> {
        self.conn.execute("INSERT OR REPLACE INTO replica_state (id, source, next_tx) VALUES (1, ?1, ?2)", params![source, next_tx])?;
        Ok(())
    }

    /// For a replica: commits no longer wait for the disk (`synchronous=NORMAL`). Everything here is derived from
    /// the shared log, and the position in it is written in the same transactions as the rows: a power loss that
    /// takes the last commits takes the position back with them, and the follower reads those rows again. It spares
    /// the follower an fsync per stretch of the log it applies.
    pub fn commit_without_waiting_for_disk(&self) -> Result<(), StoreError> {
        self.conn.execute_batch("PRAGMA main.synchronous = NORMAL; PRAGMA stats.synchronous = NORMAL;")?;
        Ok(())
    }

    /// Records the position alone (after a shared operation that wrote nothing here).
    pub fn set_replica_position(&mut self, next_tx: i64) -> Result<(), StoreError> {
        self.conn.execute("UPDATE replica_state SET next_tx = ?1 WHERE id = 1", [next_tx])?;
        Ok(())
    }

    /// Whether any event or quarantined event is stored.
    pub fn has_rows(&self) -> Result<bool, StoreError> {
        Ok(self.conn.query_row("SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM quarantine)", [], |r| r.get(0))?)
    }

    /// Records suppression entries (site, kind, hash) that came from elsewhere (a store copied into the shared log).
    pub fn add_suppressions(&mut self, entries: &[(String, String, String)], at: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for (site, kind, hash) in entries {
            tx.execute("INSERT OR IGNORE INTO suppressions (site, kind, hash, at) VALUES (?1, ?2, ?3, ?4)", params![site, kind, hash, at])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes quarantined events by their shared ids (a shared erasure found them by raw values).
    pub fn delete_shared_quarantine(&mut self, shared_ids: &[i64]) -> Result<usize, StoreError> {
        let mut stmt = self.conn.prepare_cached("DELETE FROM quarantine WHERE shared_id = ?1")?;
        let mut deleted = 0;
        for id in shared_ids {
            deleted += stmt.execute([id])?;
        }
        Ok(deleted)
    }
}

impl EventStore for SqliteStore {
    fn commit(&mut self, events: Vec<StoredEvent>, quarantine: &[QuarantinedEvent]) -> Result<Vec<usize>, StoreError> {
        self.commit_at(events, quarantine, None)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.flush_stats()
    }

    fn flush_if_due(&mut self) {
        self.flush_stats_if_due();
    }

    fn flush_in_background(&mut self) -> Result<(), StoreError> {
        self.flush_links()
    }

    fn stats_waiting(&self) -> bool {
        self.stats_pending_since.is_some()
    }

    fn stats_backlog(&self) -> usize {
        self.stats_pending.len()
    }

    fn unmerge(&mut self, merge_id: i64, now: i64) -> Result<Result<(i64, i64), super::UnmergeError>, StoreError> {
        self.flush_stats()?;
        let tx = self.conn.transaction()?;
        let result = identity::unmerge(&tx, &mut self.identities, merge_id, now)?;
        tx.commit()?;
        Ok(result)
    }

    fn erase(&mut self, request: &super::ErasureRequest, suppression_hash: &dyn Fn(&crate::identity::Identifier) -> String, now: i64) -> Result<super::ErasureReport, StoreError> {
        // Waiting events must reach the visits first, or a later stats update would bring the person's visits back.
        self.flush_stats()?;
        let result = super::privacy::erase(&mut self.conn, &mut self.identities, request, suppression_hash, now);
        // Erasure deletes visits and `stats_open` rows: the stats thread's copy of them starts over.
        self.stats_thread.as_ref().expect("until drop").clear_cache();
        if result.is_err() {
            self.identities.clear();
        }
        Ok(result?)
    }

    fn delete_older_than(&mut self, site: &str, cutoff_ms: i64, limit: usize) -> Result<super::RetentionPass, StoreError> {
        self.flush_stats()?;
        let tx = self.conn.transaction()?;
        let pass = super::privacy::delete_older_than(&tx, site, cutoff_ms, limit)?;
        tx.commit()?;
        Ok(pass)
    }

    fn for_each_recent_message_id(&mut self, since_ms: i64, each: &mut dyn FnMut(&str, &str, i64)) -> Result<(), StoreError> {
        let first = first_id_received_since(&self.conn, since_ms.saturating_sub(RECEIVED_AT_SLACK_MS))?;
        let mut stmt = self.conn.prepare("SELECT site, message_id, received_at FROM events WHERE id >= ?1 AND received_at >= ?2")?;
        let mut rows = stmt.query([first, since_ms])?;
        while let Some(row) = rows.next()? {
            let site: &str = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            let message_id: &str = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            each(site, message_id, row.get(2)?);
        }
        Ok(())
    }
}

/// The first event id received at or after `at`, by binary search over the ids: events are numbered in commit
/// order, so `received_at` grows with the id (up to [`RECEIVED_AT_SLACK_MS`]); there is no index on it.
pub(super) fn first_id_received_since(conn: &Connection, at: i64) -> rusqlite::Result<i64> {
    use rusqlite::OptionalExtension as _;
    let (mut low, mut high): (i64, i64) = conn.query_row("SELECT COALESCE(MIN(id), 0), COALESCE(MAX(id), 0) + 1 FROM events", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut probe = conn.prepare("SELECT id, received_at FROM events WHERE id >= ?1 ORDER BY id LIMIT 1")?;
    // Invariant: events below `low` were received before `at`, events from `high` on at or after it.
    while low < high {
        let middle = low + (high - low) / 2;
        match probe.query_row([middle], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).optional()? {
            Some((_, received_at)) if received_at >= at => high = middle,
            Some((id, _)) => low = id + 1,
            None => high = middle,
        }
    }
    Ok(low)
}

/// What a commit's events file in the person indexes: (profile, event id) links, and the raw IDs of events filed
/// under no profile.
type Links = (Vec<(i64, i64)>, Vec<super::stats::UnfiledLink>);

/// Inserts the events and quarantined events in one transaction; returns what they file in the person indexes.
/// A replica also moves its position in the shared log (`replica_position`) in the same transaction.
fn commit_in_transaction(
    conn: &mut Connection,
    insert_event: &mut StaticStatement,
    identities: &mut IdentityCache,
    limits: &Limits,
    events: &[StoredEvent],
    quarantine: &[QuarantinedEvent],
    replica_position: Option<i64>,
) -> Result<Links, StoreError> {
    let tx = conn.transaction()?;
    let mut links = Vec::new();
    let mut unfiled = Vec::new();
    {
        for e in events {
            let profile_id = match &e.identity {
                Some(input) => identity::resolve(&tx, identities, limits, &e.site, input, e.timestamp, e.message_id())?,
                None => None,
            };
            use Param::{Int, Text};
            insert_event.execute(&[
                Text(&e.site),
                Text(e.message_id()),
                e.kind.map(|k| k.as_str()).into(),
                e.text(Field::Name).into(),
                e.text(Field::Category).into(),
                e.text(Field::AnonymousId).into(),
                e.text(Field::UserId).into(),
                e.text(Field::PreviousId).into(),
                e.text(Field::GroupId).into(),
                Int(e.timestamp),
                e.original_timestamp.into(),
                e.sent_at.into(),
                Int(e.received_at),
                Int(e.flags),
                e.text(Field::Url).into(),
                e.text(Field::Path).into(),
                e.text(Field::Title).into(),
                e.text(Field::Referrer).into(),
                e.text(Field::ReferrerHost).into(),
                e.text(Field::UtmSource).into(),
                e.text(Field::UtmMedium).into(),
                e.text(Field::UtmCampaign).into(),
                e.text(Field::UtmTerm).into(),
                e.text(Field::UtmContent).into(),
                e.text(Field::Ip).into(),
                e.text(Field::Browser).into(),
                e.text(Field::Os).into(),
                e.device.into(),
                e.text(Field::Properties).into(),
                e.text(Field::Traits).into(),
                e.text(Field::Context).into(),
                e.text(Field::Integrations).into(),
                e.text(Field::Visitor).into(),
                e.text(Field::SessionId).into(),
                Int(e.consent),
                profile_id.into(),
                e.shared_id.into(),
            ])?;
            let id = tx.last_insert_rowid();
            if e.timestamp < e.received_at - LATE_EVENT_MS {
                tx.prepare_cached(FILE_LATE_EVENT)?.execute(params![&*e.site, e.timestamp, id])?;
            }
            match profile_id {
                Some(profile) => links.push((profile, id)),
                None => unfiled.extend(super::stats::unfiled_links(e, id)),
            }
            if let Some(change) = &e.consent_change {
                tx.prepare_cached(INSERT_LEDGER)?.execute(params![&*e.site, e.timestamp, profile_id, e.text(Field::Visitor), change.categories, change.source, change.policy_version, e.message_id()])?;
            }
        }
        let mut insert = tx.prepare_cached(INSERT_QUARANTINE)?;
        for q in quarantine {
            insert.execute(params![&*q.site, q.received_at, q.message_id, q.code, q.reason, q.payload, q.shared_id])?;
        }
        if let Some(next_tx) = replica_position {
            tx.prepare_cached("UPDATE replica_state SET next_tx = ?1 WHERE id = 1")?.execute([next_tx])?;
        }
    }
    tx.commit()?;
    Ok((links, unfiled))
}

/// Holds the store's write lock (an open `BEGIN IMMEDIATE`), so nothing writes to it meanwhile; taking it fails
/// at once when a writer is busy with it.
pub struct ExclusiveCheck {
    _conn: Connection,
}

impl ExclusiveCheck {
    pub fn take(path: &Path) -> Result<ExclusiveCheck, StoreError> {
        if !path.exists() {
            return Err(StoreError::Unavailable(format!("{} does not exist", path.display())));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.busy_timeout(std::time::Duration::from_millis(0))?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(ExclusiveCheck { _conn: conn })
    }
}

/// A read-only connection for health checks and queries; WAL lets it read while the writer writes.
pub struct SqliteReader {
    conn: Connection,
}

impl SqliteReader {
    pub fn open(path: &Path) -> Result<SqliteReader, StoreError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.pragma_update(None, "busy_timeout", 5_000)?;
        Ok(SqliteReader { conn })
    }

    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Every suppression entry, as (site, kind, hash).
    pub fn suppressions(&self) -> Result<std::collections::HashSet<(String, String, String)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT site, kind, hash FROM suppressions")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Succeeds when the database answers a query.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fp-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn commits_survive_reopen_and_feed_the_dedupe_window() {
        let dir = temp_dir("reopen");
        let site: Arc<str> = "shop".into();
        {
            let mut store = SqliteStore::open(&dir).unwrap();
            let events: Vec<StoredEvent> = (0..3)
                .map(|i| StoredEvent { site: site.clone(), kind: Some(footprint_core::CallKind::Track), received_at: 1_000 * i, ..Default::default() }.with(Field::MessageId, format!("m{i}")))
                .collect();
            let q = QuarantinedEvent::new(site.clone(), 5, None, footprint_core::RejectCode::MissingType, "no type".into(), "{}".into());
            store.commit(events, &[q]).unwrap();
        }
        let mut store = SqliteStore::open(&dir).unwrap();
        let mut seen = Vec::new();
        store.for_each_recent_message_id(1_000, &mut |s, m, t| seen.push((s.to_owned(), m.to_owned(), t))).unwrap();
        assert_eq!(seen, vec![("shop".into(), "m1".into(), 1_000), ("shop".into(), "m2".into(), 2_000)]);
        // Found by id: after events received earlier, with gaps in the ids, and one received out of order.
        let day = RECEIVED_AT_SLACK_MS;
        let at = |i: i64, received_at: i64| StoredEvent { site: site.clone(), kind: Some(footprint_core::CallKind::Track), received_at, ..Default::default() }.with(Field::MessageId, format!("n{i}"));
        store.commit((0..50).map(|i| at(i, 10 * day + i * 60_000)).collect(), &[]).unwrap();
        store.commit(vec![at(50, 20 * day), at(51, 20 * day - day / 2), at(52, 20 * day + 1)], &[]).unwrap();
        store.conn.execute("DELETE FROM events WHERE message_id IN ('n10', 'n11', 'n12', 'n49')", []).unwrap();
        for (since, expected) in [(20 * day - day / 2, vec!["n50", "n51", "n52"]), (20 * day, vec!["n50", "n52"]), (10 * day + 45 * 60_000, vec!["n45", "n46", "n47", "n48", "n50", "n51", "n52"]), (30 * day, vec![])] {
            let mut seen = Vec::new();
            store.for_each_recent_message_id(since, &mut |_, m, _| seen.push(m.to_owned())).unwrap();
            assert_eq!(seen, expected, "since {since}");
        }
        let reader = SqliteReader::open(store.path()).unwrap();
        reader.ping().unwrap();
        let quarantined: i64 = reader.conn.query_row("SELECT COUNT(*) FROM quarantine WHERE code = 'missing_type'", [], |r| r.get(0)).unwrap();
        assert_eq!(quarantined, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The stats tables as text, for comparing two databases.
    fn stats_dump(path: &Path) -> Vec<String> {
        let reader = SqliteReader::open(path).unwrap();
        let mut out = Vec::new();
        for sql in [
            "SELECT site || '|' || dim || '|' || hour || '|' || value || '|' || pageviews || '|' || sessions || '|' || bounces || '|' || duration_ms FROM stats_rollup ORDER BY 1",
            "SELECT site || '|' || visitor || '|' || start || '|' || last || '|' || pageviews || '|' || steps FROM stats_visits ORDER BY 1",
            "SELECT site || '|' || dim || '|' || hour || '|' || value || '|' || hex(sketch) FROM stats_sketch ORDER BY 1",
        ] {
            let mut stmt = reader.conn.prepare(sql).unwrap();
            out.extend(stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap));
        }
        out
    }

    #[test]
    fn stats_a_crash_left_behind_are_caught_up_at_the_next_start() {
        let site: Arc<str> = "shop".into();
        let events: Vec<StoredEvent> = (0..300)
            .map(|i| StoredEvent {
                site: site.clone(),
                kind: Some(footprint_core::CallKind::Page),
                timestamp: 1_770_000_000_000 + i * 60_000,
                device: Some("mobile"),
                ..Default::default()
            }.with(Field::MessageId, format!("m{i}")).with(Field::Visitor, format!("a:v{}", i % 7)).with(Field::Path, ["/", "/pricing", "/signup"][i as usize % 3].to_owned()))
            .collect();
        let (clean, crashed) = (temp_dir("stats-clean"), temp_dir("stats-crashed"));
        {
            let mut store = SqliteStore::open(&clean).unwrap();
            for chunk in events.chunks(40) {
                store.commit(chunk.to_vec(), &[]).unwrap();
            }
            store.flush_stats().unwrap();
        }
        {
            let mut store = SqliteStore::open(&crashed).unwrap();
            for chunk in events.chunks(40) {
                store.commit(chunk.to_vec(), &[]).unwrap();
            }
            assert!(store.stats_waiting(), "the events wait for the stats");
            // Dropped without a flush: what a crash leaves.
        }
        let want = stats_dump(&clean.join("stats.db"));
        assert!(want.len() > 20, "the fixture fills the stats ({} rows)", want.len());
        assert!(stats_dump(&crashed.join("stats.db")).is_empty(), "the crash left the stats behind");
        drop(SqliteStore::open(&crashed).unwrap());
        assert_eq!(stats_dump(&crashed.join("stats.db")), want);
        // Caught up once: opening again adds nothing.
        drop(SqliteStore::open(&crashed).unwrap());
        assert_eq!(stats_dump(&crashed.join("stats.db")), want);
        std::fs::remove_dir_all(&clean).unwrap();
        std::fs::remove_dir_all(&crashed).unwrap();
    }

    #[test]
    fn a_flush_brings_the_stats_up_to_date_when_a_batch_never_reached_the_stats_thread() {
        let dir = temp_dir("stats-gap");
        let mut store = SqliteStore::open(&dir).unwrap();
        let page = |n: usize| StoredEvent {
            site: "shop".into(),
            kind: Some(footprint_core::CallKind::Page),
            timestamp: 1_770_000_000_000,
            ..Default::default()
        }.with(Field::MessageId, format!("m{n}")).with(Field::Visitor, format!("a:v{n}")).with(Field::Path, "/");
        store.commit((0..10).map(page).collect(), &[]).unwrap();
        // What a failed links transaction leaves: the waiting events are dropped and read back from the database by
        // the writer, so no batch of them ever goes to the stats thread.
        store.links_from_database = true;
        store.flush_stats().unwrap();
        let pageviews: i64 = Connection::open(dir.join("stats.db")).unwrap().query_row("SELECT COALESCE(SUM(pageviews), 0) FROM stats_rollup WHERE dim = 0", [], |r| r.get(0)).unwrap();
        assert_eq!(pageviews, 10, "the stats thread read the events back");
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_stats_move_to_their_own_file_and_start_over_beside_another_database() {
        let dir = temp_dir("stats-move");
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("footprint.db");
        {
            // A store of the layout before migration 11: stats in the main database.
            let mut old = Connection::open(&db).unwrap();
            old.pragma_update(None, "journal_mode", "WAL").unwrap();
            migrate(&mut old, MIGRATIONS, STATS_MOVED - 2).unwrap();
            old.execute_batch(
                "INSERT INTO stats_rollup (site, dim, hour, value, pageviews) VALUES ('shop', 0, 1, '', 7);
                 INSERT INTO stats_visits (site, visitor, start, last, entry_page, exit_page, referrer, utm_source, utm_medium,
                     utm_campaign, device, browser, os, steps) VALUES ('shop', 'a:v', 1, 2, '/', '/', '', '', '', '', 'desktop', 'Firefox', 'Linux', 'x');
                 UPDATE stats_state SET last_event_id = 0;",
            )
            .unwrap();
        }
        let tables = |path: &Path| -> Vec<String> {
            let conn = Connection::open(path).unwrap();
            let names = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND (name = 'links_state' OR name LIKE 'stats_%') ORDER BY 1").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
            names
        };
        let pageviews = |dir: &Path| -> Vec<i64> {
            let conn = Connection::open(dir.join("stats.db")).unwrap();
            let n = conn.prepare("SELECT pageviews FROM stats_rollup").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
            n
        };
        drop(SqliteStore::open(&dir).unwrap());
        assert_eq!(tables(&db), ["links_state"], "the main database keeps the links watermark alone");
        assert_eq!(pageviews(&dir), [7], "the rollups moved");
        let visits: i64 = Connection::open(dir.join("stats.db")).unwrap().query_row("SELECT COUNT(*) FROM stats_visits WHERE steps = 'x'", [], |r| r.get(0)).unwrap();
        assert_eq!(visits, 1, "the visits moved");
        drop(SqliteStore::open(&dir).unwrap());
        assert_eq!(pageviews(&dir), [7], "opening again changes nothing");
        // Another main database beside the same stats.db (a restored backup, a rebuilt replica): its stats start over.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let mut store = SqliteStore::open(&dir).unwrap();
        assert!(pageviews(&dir).is_empty(), "the other database's stats are gone");
        store.commit(vec![StoredEvent { site: "shop".into(), kind: Some(footprint_core::CallKind::Page), timestamp: 1_770_000_000_000, ..Default::default() }.with(Field::MessageId, "m").with(Field::Visitor, "a:v").with(Field::Path, "/")], &[]).unwrap();
        store.flush_stats().unwrap();
        assert!(pageviews(&dir).contains(&1), "and follow this one");
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A track event of `site` whose only identifier is the anonymous ID `anon`, with messageId `m{n}`.
    fn anonymous_track(site: &Arc<str>, n: usize, anon: &str) -> StoredEvent {
        use crate::identity::{IdKind, Identifier};
        let id = Identifier::new(IdKind::AnonymousId, anon.to_owned());
        StoredEvent {
            site: site.clone(),
            kind: Some(footprint_core::CallKind::Track),
            identity: Some(super::super::IdentityInput { identifiers: vec![id.clone()], primary: Some(id), traits: None }),
            ..Default::default()
        }
        .with(Field::MessageId, format!("m{n}"))
    }

    #[test]
    fn identifiers_stored_before_a_restart_or_a_clear_are_known_after_it() {
        let dir = temp_dir("identity-fill");
        let site: Arc<str> = "shop".into();
        let event = |n: usize, anon: &str| anonymous_track(&site, n, anon);
        let profiles = |store: &SqliteStore| -> Vec<(String, i64, i64)> {
            let reader = SqliteReader::open(store.path()).unwrap();
            let mut statement = reader.conn.prepare("SELECT i.value, p.id, p.root FROM identities i JOIN profiles p ON p.id = i.profile_id ORDER BY 1").unwrap();
            statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
        };
        let mut store = SqliteStore::open(&dir).unwrap();
        store.commit(vec![event(0, "anon-1"), event(1, "anon-2"), event(2, "anon-1")], &[]).unwrap();
        assert_eq!(profiles(&store), [("anon-1".into(), 1, 1), ("anon-2".into(), 2, 2)], "a new profile is its own root");
        drop(store);
        // At start the cache is filled from the table: a known visitor is found in it, a new one gets the next id.
        let mut store = SqliteStore::open(&dir).unwrap();
        store.commit(vec![event(3, "anon-2"), event(4, "anon-3")], &[]).unwrap();
        assert_eq!(profiles(&store), [("anon-1".into(), 1, 1), ("anon-2".into(), 2, 2), ("anon-3".into(), 3, 3)]);
        // Rows the cache does not hold (written here by another connection) are read at the first group after a clear.
        let other = Connection::open(store.path()).unwrap();
        other.execute("INSERT INTO profiles (id, site, root, created_at, first_seen, last_seen) VALUES (7, 'shop', 7, 0, 0, 0)", []).unwrap();
        other.execute("INSERT INTO identities (site, kind, value, profile_id, first_seen, last_seen) VALUES ('shop', 'anonymous_id', 'anon-7', 7, 0, 0)", []).unwrap();
        store.identities.clear();
        store.commit(vec![event(5, "anon-7"), event(6, "anon-8")], &[]).unwrap();
        let found = profiles(&store);
        assert_eq!(found[3..], [("anon-7".into(), 7, 7), ("anon-8".into(), 8, 8)], "known from the table; the next id after the largest");
        let events: i64 = other.query_row("SELECT COUNT(*) FROM events WHERE profile_id = 7", [], |r| r.get(0)).unwrap();
        assert_eq!(events, 1);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_persons_events_are_found_before_and_after_their_links_are_filed() {
        let dir = temp_dir("person-events");
        let mut store = SqliteStore::open(&dir).unwrap();
        let site: Arc<str> = "shop".into();
        let event = |n: usize, anon: &str| anonymous_track(&site, n, anon);
        let count = |store: &SqliteStore| -> (i64, i64) {
            let reader = SqliteReader::open(store.path()).unwrap();
            let root: i64 = reader.conn.query_row("SELECT p.root FROM identities i JOIN profiles p ON p.id = i.profile_id WHERE i.value = 'anon-1'", [], |r| r.get(0)).unwrap();
            let found = reader.conn.query_row(&format!("SELECT COUNT(*) FROM events WHERE id IN ({PERSON_EVENT_IDS})"), [root], |r| r.get(0)).unwrap();
            let filed = reader.conn.query_row("SELECT COUNT(*) FROM profile_events", [], |r| r.get(0)).unwrap();
            (found, filed)
        };
        // 150 links: filed by statements of several links and one link each (stats::link_profile_events).
        store.commit((0..150).map(|n| event(n, if n % 3 == 0 { "anon-2" } else { "anon-1" })).collect(), &[]).unwrap();
        assert_eq!(count(&store), (100, 0), "before the flush, by the events' own profile column");
        store.flush_stats().unwrap();
        assert_eq!(count(&store), (100, 150), "after it, by the filed links");
        store.commit((150..153).map(|n| event(n, "anon-1")).collect(), &[]).unwrap();
        assert_eq!(count(&store), (103, 150), "both at once");
        // Later event ids fall in later buckets of profile_events: the person's events are found in each.
        let other = Connection::open(store.path()).unwrap();
        other.execute("INSERT INTO events (id, site, message_id, type, timestamp, received_at) VALUES (?1, 'shop', 'filler', 'track', 0, 0)", [3_i64 << LINK_BUCKET_BITS]).unwrap();
        store.commit((153..156).map(|n| event(n, "anon-1")).collect(), &[]).unwrap();
        store.flush_stats().unwrap();
        assert_eq!(count(&store), (106, 156), "links in two buckets");
        let buckets: Vec<i64> = other.prepare("SELECT DISTINCT bucket FROM profile_events ORDER BY 1").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(buckets, [0, 3]);
        // Erasure deletes a person's links by the same keys.
        let root: i64 = other.query_row("SELECT p.root FROM identities i JOIN profiles p ON p.id = i.profile_id WHERE i.value = 'anon-1'", [], |r| r.get(0)).unwrap();
        let deleted = other.execute(concat!("DELETE FROM profile_events WHERE (bucket, profile_id) IN (", person_link_keys!(), ")"), [root]).unwrap();
        assert_eq!(deleted, 106);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retention_finds_expired_events_in_receive_order_and_late_ones_by_time() {
        const DAY: i64 = 86_400_000;
        const HOUR: i64 = 3_600_000;
        let dir = temp_dir("retention");
        let mut store = SqliteStore::open(&dir).unwrap();
        let now = 1_800_000_000_000;
        let cutoff = now - 30 * DAY;
        // (site, messageId, received at, happened at)
        let rows = [
            ("shop", "old", cutoff - 2 * DAY, cutoff - 2 * DAY),
            ("blog", "other-site", cutoff - 2 * DAY, cutoff - 2 * DAY),
            ("shop", "old-2", cutoff - DAY, cutoff - DAY - HOUR),
            // Below the receive-order boundary but not expired (its receive time ran backwards): kept, filed late.
            ("shop", "not-yet", cutoff - 10 * HOUR, cutoff + HOUR),
            // Received within the skew before the cutoff: left for a later pass.
            ("shop", "edge", cutoff - HOUR, cutoff - 2 * HOUR),
            ("shop", "recent", now, now),
            // Late: arrived now, happened before the cutoff.
            ("shop", "backfill", now, cutoff - 100 * DAY),
        ];
        let events = rows.iter().map(|&(site, id, received, happened)| StoredEvent {
            site: site.into(),
            kind: Some(footprint_core::CallKind::Track),
            timestamp: happened,
            received_at: received,
            ..Default::default()
        }.with(Field::MessageId, id));
        for event in events {
            store.commit(vec![event], &[]).unwrap();
        }
        let stored = |store: &SqliteStore| -> Vec<String> {
            let reader = SqliteReader::open(store.path()).unwrap();
            let ids = reader.conn.prepare("SELECT message_id FROM events ORDER BY id").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
            ids
        };
        let run = |store: &mut SqliteStore, cutoff: i64, limit: usize| -> (usize, usize) {
            let (mut calls, mut deleted) = (0, 0);
            loop {
                let pass = store.delete_older_than("shop", cutoff, limit).unwrap();
                calls += 1;
                deleted += pass.deleted;
                if !pass.more {
                    return (calls, deleted);
                }
            }
        };
        assert_eq!(run(&mut store, cutoff, 1), (4, 3), "one at a time: the late one, two in receive order, then the rest read");
        assert_eq!(stored(&store), ["other-site", "not-yet", "edge", "recent"]);
        assert_eq!(run(&mut store, cutoff, 100), (1, 0), "the next pass starts where this one stopped");
        // Hours later: the edge event is behind the boundary, and the one filed late has expired too.
        assert_eq!(run(&mut store, cutoff + 7 * HOUR, 100), (1, 2));
        assert_eq!(stored(&store), ["other-site", "recent"]);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_filed_and_late_events_stored_before_the_migrations_are_kept_in_the_new_tables() {
        let dir = temp_dir("links-buckets");
        std::fs::create_dir_all(&dir).unwrap();
        {
            let mut old = Connection::open(dir.join("footprint.db")).unwrap();
            old.pragma_update(None, "journal_mode", "WAL").unwrap();
            migrate(&mut old, MIGRATIONS, 11).unwrap();
            old.execute_batch(
                "INSERT INTO profile_events (profile_id, event_id) VALUES (7, 1), (7, 70000), (2, 5);
                 INSERT INTO unfiled_events (site, kind, value, event_id) VALUES ('shop', 'anonymous_id', 'a', 70001);
                 INSERT INTO events (id, site, message_id, type, timestamp, received_at) VALUES
                     (1, 'shop', 'on-time', 'track', 5000000, 5000001), (2, 'shop', 'late', 'track', 1000000, 5000001);",
            )
            .unwrap();
        }
        drop(SqliteStore::open(&dir).unwrap());
        let conn = Connection::open(dir.join("footprint.db")).unwrap();
        let rows: Vec<(i64, i64, i64)> = conn.prepare("SELECT bucket, profile_id, event_id FROM profile_events").unwrap().query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
        assert_eq!(rows, [(0, 2, 5), (0, 7, 1), (1, 7, 70000)]);
        let late: Vec<i64> = conn.prepare("SELECT event_id FROM late_events").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(late, [2], "events stored late before migration 13 are filed as late");
        let unfiled: (i64, i64) = conn.query_row("SELECT bucket, event_id FROM unfiled_events", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!(unfiled, (1, 70001));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn events_filed_under_no_profile_are_erased_by_their_raw_ids() {
        use crate::identity::{IdKind, Identifier};
        let dir = temp_dir("unfiled");
        let mut store = SqliteStore::open(&dir).unwrap();
        let site: Arc<str> = "shop".into();
        // Identity resolution off: events keep their IDs but join no profile.
        let event = |n: usize, anon: &str, user: Option<&str>| StoredEvent {
            site: site.clone(),
            kind: Some(footprint_core::CallKind::Track),
            ..Default::default()
        }.with(Field::MessageId, format!("m{n}")).with(Field::AnonymousId, anon.to_owned()).with_opt(Field::UserId, user.map(str::to_owned));
        store.commit((0..6).map(|n| event(n, if n < 4 { "anon-x" } else { "anon-y" }, (n == 1).then_some("user-x"))).collect(), &[]).unwrap();
        store.flush_stats().unwrap();
        // One more after the flush: found by its own columns.
        store.commit(vec![event(6, "anon-x", None)], &[]).unwrap();
        let reader = SqliteReader::open(store.path()).unwrap();
        let filed: i64 = reader.conn.query_row("SELECT COUNT(*) FROM unfiled_events", [], |r| r.get(0)).unwrap();
        assert_eq!(filed, 7, "six anonymous IDs and one user ID filed by the flush");
        let request = super::super::ErasureRequest { sites: vec!["shop".into()], identifier: Identifier::new(IdKind::AnonymousId, "anon-x"), raw_values: vec![] };
        let report = store.erase(&request, &|_| "hash".into(), 0).unwrap();
        assert_eq!(report.events, 5);
        let left: Vec<String> = reader.conn.prepare("SELECT message_id FROM events ORDER BY id").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(left, ["m4", "m5"]);
        let filed: Vec<String> = reader.conn.prepare("SELECT value FROM unfiled_events").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(filed, ["anon-y", "anon-y"], "the erased events' entries are gone (user-x's went with its event)");
        drop((reader, store));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_wal_stays_bounded_under_continuous_commits() {
        let dir = temp_dir("wal");
        let mut store = SqliteStore::open(&dir).unwrap();
        // The checkpoint thread as in production, but often and with a 1 MB limit.
        store.checkpointer = Some(Checkpointer::start(store.path(), std::time::Duration::from_millis(5), 1 << 20).unwrap());
        let wal = wal_path(store.path());
        let site: Arc<str> = "shop".into();
        let properties = format!("{{\"blob\":\"{}\"}}", "x".repeat(2_000));
        let mut largest = 0;
        // 60 MB in commits back to back, while the thread checkpoints: passive checkpoints alone never let the WAL
        // start over then (it grew to twice what was written).
        for commit in 0..300 {
            let events: Vec<StoredEvent> = (0..100)
                .map(|i| StoredEvent { site: site.clone(), kind: Some(footprint_core::CallKind::Track), ..Default::default() }.with(Field::MessageId, format!("m{commit}-{i}")).with(Field::Properties, properties.clone()))
                .collect();
            store.commit(events, &[]).unwrap();
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        assert!(largest < 20 << 20, "the WAL grew to {largest} bytes");
        let reader = SqliteReader::open(store.path()).unwrap();
        let stored: i64 = reader.conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, 30_000);
        drop((reader, store));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
