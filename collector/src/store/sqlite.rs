//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, one writer connection (group commit)
//! and short-lived reader connections for queries.

use super::identity::{self, IdentityCache};
use super::{EventStore, QuarantinedEvent, StoreError, StoredEvent};
use crate::identity::Limits;
use rusqlite::{params, Connection, OpenFlags};
use std::path::{Path, PathBuf};

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
];

const INSERT_EVENT: &str = "INSERT INTO events (site, message_id, type, name, category, anonymous_id, user_id, previous_id,
    group_id, timestamp, original_timestamp, sent_at, received_at, flags, url, path, title, referrer, referrer_host,
    utm_source, utm_medium, utm_campaign, utm_term, utm_content, ip, browser, os, device, properties, traits, context,
    integrations, visitor, session_id, consent, profile_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
    ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36)";

const INSERT_LEDGER: &str = "INSERT INTO consent_ledger (site, at, profile_id, visitor, categories, source, policy_version, message_id)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

const INSERT_QUARANTINE: &str =
    "INSERT INTO quarantine (site, received_at, message_id, code, reason, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Past this size the writer restarts the WAL itself (see [`SqliteStore::bound_wal`]).
const WAL_RESTART_BYTES: u64 = 128 * 1024 * 1024;
/// How many commits pass between two looks at the WAL's size.
const WAL_CHECK_EVERY: u32 = 16;

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    commits_since_wal_check: u32,
    wal_restart_bytes: u64,
    identities: IdentityCache,
    stats: super::stats::StatsCache,
    limits: Limits,
    checkpointer: Option<Checkpointer>,
}

/// Copies the WAL back into the database from its own thread and connection, so checkpoints happen off the
/// writer's acknowledgement path and coalesce many commits' pages (instead of SQLite's inline autocheckpoint).
struct Checkpointer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    const INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "busy_timeout", 5_000)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("footprint-checkpoint".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::park_timeout(Self::INTERVAL);
                    if flag.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(%error, "WAL checkpoint failed; retrying");
                    }
                }
            })
            .expect("spawn checkpoint thread");
        Ok(Checkpointer { stop, thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
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
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before we acknowledge (kill -9 and power loss keep every 2xx'd event).
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "busy_timeout", 5_000)?;
        conn.pragma_update(None, "cache_size", -32_768)?;
        // Deleted rows (erasure, retention) are overwritten, not left readable in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        migrate(&mut conn)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // After a checkpoint the WAL file is cut back to this size instead of staying at its largest.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        let checkpointer = Some(Checkpointer::start(&path)?);
        Ok(SqliteStore { conn, path, commits_since_wal_check: 0, wal_restart_bytes: WAL_RESTART_BYTES, identities: IdentityCache::default(), stats: Default::default(), limits: Limits::default(), checkpointer })
    }

    /// Keeps the WAL file from growing without bound under sustained load. The checkpoint thread's PASSIVE
    /// checkpoints copy pages back but can never reset the WAL while commits keep arriving (a reset needs every frame
    /// copied at the moment a write starts), so the file would grow by every page written. When it is past
    /// [`WAL_RESTART_BYTES`], the writer runs a RESTART checkpoint between two commits: it copies only what the last
    /// passive checkpoint left (a fraction of a second of writes) and makes the next commit start the WAL over, which
    /// `journal_size_limit` then cuts back. Ingest waits meanwhile (the bounded queue answers 503 if it fills).
    fn bound_wal(&mut self) {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        if size <= self.wal_restart_bytes {
            return;
        }
        let started = std::time::Instant::now();
        match self.conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))) {
            // busy = 1: a reader still used old frames; the next check tries again.
            Ok((busy, frames, copied)) => tracing::info!(wal_bytes = size, busy, frames, copied, ms = started.elapsed().as_millis() as u64, "WAL restarted"),
            Err(error) => tracing::warn!(%error, wal_bytes = size, "WAL restart checkpoint failed; retrying later"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Stop the checkpointer first: the writer's connection is then the last one and checkpoints on close.
        self.checkpointer.take();
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")?;
    let current: i64 = conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, unixepoch())", [version])?;
        tx.commit()?;
    }
    Ok(())
}

impl EventStore for SqliteStore {
    fn commit(&mut self, events: &[StoredEvent], quarantine: &[QuarantinedEvent]) -> Result<(), StoreError> {
        let result = commit_in_transaction(&mut self.conn, &mut self.identities, &mut self.stats, &self.limits, events, quarantine);
        if result.is_err() {
            // The transaction rolled back: what the caches learnt in it is not true.
            self.identities.clear();
            self.stats.clear();
        }
        self.commits_since_wal_check += 1;
        if self.commits_since_wal_check >= WAL_CHECK_EVERY {
            self.commits_since_wal_check = 0;
            self.bound_wal();
        }
        result
    }

    fn unmerge(&mut self, merge_id: i64, now: i64) -> Result<Result<(i64, i64), super::UnmergeError>, StoreError> {
        let tx = self.conn.transaction()?;
        let result = identity::unmerge(&tx, &mut self.identities, merge_id, now)?;
        tx.commit()?;
        Ok(result)
    }

    fn erase(&mut self, request: &super::ErasureRequest, suppression_hash: &dyn Fn(&crate::identity::Identifier) -> String, now: i64) -> Result<super::ErasureReport, StoreError> {
        let result = super::privacy::erase(&mut self.conn, &mut self.identities, request, suppression_hash, now);
        // Erasure deletes visits and `stats_open` rows: the writer's copy of them starts over.
        self.stats.clear();
        if result.is_err() {
            self.identities.clear();
        }
        Ok(result?)
    }

    fn delete_older_than(&mut self, site: &str, cutoff_ms: i64, limit: usize) -> Result<usize, StoreError> {
        Ok(super::privacy::delete_older_than(&self.conn, site, cutoff_ms, limit)?)
    }

    fn for_each_recent_message_id(&mut self, since_ms: i64, each: &mut dyn FnMut(&str, &str, i64)) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare("SELECT site, message_id, received_at FROM events WHERE received_at >= ?1")?;
        let mut rows = stmt.query([since_ms])?;
        while let Some(row) = rows.next()? {
            let site: &str = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            let message_id: &str = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            each(site, message_id, row.get(2)?);
        }
        Ok(())
    }
}

fn commit_in_transaction(conn: &mut Connection, identities: &mut IdentityCache, stats: &mut super::stats::StatsCache, limits: &Limits, events: &[StoredEvent], quarantine: &[QuarantinedEvent]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        for e in events {
            let profile_id = match &e.identity {
                Some(input) => identity::resolve(&tx, identities, limits, &e.site, input, e.timestamp, &e.message_id)?,
                None => None,
            };
            tx.prepare_cached(INSERT_EVENT)?.execute(params![
                &*e.site,
                e.message_id,
                e.kind.map(|k| k.as_str()),
                e.name,
                e.category,
                e.anonymous_id,
                e.user_id,
                e.previous_id,
                e.group_id,
                e.timestamp,
                e.original_timestamp,
                e.sent_at,
                e.received_at,
                e.flags,
                e.url,
                e.path,
                e.title,
                e.referrer,
                e.referrer_host,
                e.utm_source,
                e.utm_medium,
                e.utm_campaign,
                e.utm_term,
                e.utm_content,
                e.ip,
                e.browser,
                e.os,
                e.device,
                e.properties,
                e.traits,
                e.context,
                e.integrations,
                e.visitor,
                e.session_id,
                e.consent,
                profile_id,
            ])?;
            if let Some(change) = &e.consent_change {
                tx.prepare_cached(INSERT_LEDGER)?.execute(params![&*e.site, e.timestamp, profile_id, e.visitor, change.categories, change.source, change.policy_version, e.message_id])?;
            }
        }
        let mut insert = tx.prepare_cached(INSERT_QUARANTINE)?;
        for q in quarantine {
            insert.execute(params![&*q.site, q.received_at, q.message_id, q.code, q.reason, q.payload])?;
        }
    }
    super::stats::record(&tx, stats, events)?;
    tx.commit()?;
    Ok(())
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
                .map(|i| StoredEvent { site: site.clone(), message_id: format!("m{i}"), kind: Some(footprint_core::CallKind::Track), received_at: 1_000 * i, ..Default::default() })
                .collect();
            let q = QuarantinedEvent::new(site.clone(), 5, None, footprint_core::RejectCode::MissingType, "no type".into(), "{}".into());
            store.commit(&events, &[q]).unwrap();
        }
        let mut store = SqliteStore::open(&dir).unwrap();
        let mut seen = Vec::new();
        store.for_each_recent_message_id(1_000, &mut |s, m, t| seen.push((s.to_owned(), m.to_owned(), t))).unwrap();
        assert_eq!(seen, vec![("shop".into(), "m1".into(), 1_000), ("shop".into(), "m2".into(), 2_000)]);
        let reader = SqliteReader::open(store.path()).unwrap();
        reader.ping().unwrap();
        let quarantined: i64 = reader.conn.query_row("SELECT COUNT(*) FROM quarantine WHERE code = 'missing_type'", [], |r| r.get(0)).unwrap();
        assert_eq!(quarantined, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_wal_stays_bounded_under_continuous_commits() {
        let dir = temp_dir("wal");
        let mut store = SqliteStore::open(&dir).unwrap();
        store.wal_restart_bytes = 1 << 20;
        let site: Arc<str> = "shop".into();
        let properties = format!("{{\"blob\":\"{}\"}}", "x".repeat(2_000));
        let wal = dir.join("footprint.db-wal");
        let mut largest = 0;
        // 30 MB in commits back to back: passive checkpoints alone would never let the WAL start over.
        for commit in 0..150 {
            let events: Vec<StoredEvent> = (0..100)
                .map(|i| StoredEvent { site: site.clone(), message_id: format!("m{commit}-{i}"), kind: Some(footprint_core::CallKind::Track), properties: Some(properties.clone()), ..Default::default() })
                .collect();
            store.commit(&events, &[]).unwrap();
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        assert!(largest < 8 << 20, "the WAL grew to {largest} bytes");
        let reader = SqliteReader::open(store.path()).unwrap();
        let stored: i64 = reader.conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, 15_000);
        drop((reader, store));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
