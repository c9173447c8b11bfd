//! The shared store for several collectors: PostgreSQL (DESIGN.md §6, issue 7). This is its first part, the event
//! log: events, quarantined events and consent-ledger entries committed by group, with `messageId` deduplication
//! decided by the database, so two collectors sharing it never store one event twice. Identity resolution, the
//! stats and the admin reads are not on PostgreSQL yet; until they are, `footprint serve` refuses a
//! `database_url` (main.rs), and only the tests use this module.
#![cfg_attr(not(test), allow(dead_code))]

use super::{QuarantinedEvent, StoreError, StoredEvent};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};
use std::collections::HashSet;

/// Schema migrations, applied in order at start under an advisory lock (collectors starting together take turns).
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        site TEXT NOT NULL,
        message_id TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT,
        category TEXT,
        anonymous_id TEXT,
        user_id TEXT,
        previous_id TEXT,
        group_id TEXT,
        timestamp BIGINT NOT NULL,
        original_timestamp BIGINT,
        sent_at BIGINT,
        received_at BIGINT NOT NULL,
        flags BIGINT NOT NULL DEFAULT 0,
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
        integrations TEXT,
        visitor TEXT,
        session_id TEXT,
        consent BIGINT NOT NULL DEFAULT 0,
        profile_id BIGINT
    );
    CREATE INDEX events_received_at ON events (received_at);
    CREATE INDEX events_site_day ON events (site, (timestamp / 86400000));
    -- The deduplication authority shared by every collector: a messageId is stored once per site. Rows older than
    -- the dedupe window are deleted with retention.
    CREATE TABLE message_ids (
        site TEXT NOT NULL,
        message_id TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (site, message_id)
    );
    CREATE INDEX message_ids_received_at ON message_ids (received_at);
    CREATE TABLE quarantine (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        site TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        message_id TEXT,
        code TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX quarantine_received_at ON quarantine (received_at);
    CREATE TABLE consent_ledger (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        site TEXT NOT NULL,
        at BIGINT NOT NULL,
        profile_id BIGINT,
        visitor TEXT,
        categories BIGINT NOT NULL,
        source TEXT NOT NULL,
        policy_version TEXT,
        message_id TEXT
    );
    CREATE INDEX consent_ledger_site ON consent_ledger (site, id);",
)];

/// Any number that names our migration lock among a database's advisory locks.
const MIGRATION_LOCK: i64 = 0x466f_6f74_7072_696e;

const EVENT_COLUMNS: &str = "site, message_id, type, name, category, anonymous_id, user_id, previous_id, group_id, timestamp,
    original_timestamp, sent_at, received_at, flags, url, path, title, referrer, referrer_host, utm_source, utm_medium, utm_campaign,
    utm_term, utm_content, ip, browser, os, device, properties, traits, context, integrations, visitor, session_id, consent";

/// The event log on PostgreSQL (see the module's note).
pub struct PgEventLog {
    client: Client,
}

impl PgEventLog {
    /// Connects and applies pending migrations.
    pub fn connect(url: &str) -> Result<PgEventLog, StoreError> {
        let mut client = Client::connect(url, NoTls).map_err(unavailable)?;
        migrate(&mut client)?;
        Ok(PgEventLog { client })
    }

    /// Stores a group in one transaction (durable when it returns: `synchronous_commit` is on). Returns the
    /// positions of the events not stored because their messageId was already stored for their site, by this
    /// collector or another one, or earlier in the same group (what `EventStore::commit` returns). Quarantined
    /// events are always stored.
    pub fn commit(&mut self, events: &[StoredEvent], quarantine: &[QuarantinedEvent]) -> Result<Vec<usize>, StoreError> {
        let mut tx = self.client.transaction().map_err(database)?;
        // The group's messageIds claimed in one statement; what comes back is new. Concurrent transactions
        // claiming the same id wait for each other on the primary key, so exactly one of them gets it. Claimed in
        // key order, so two groups sharing ids lock them in the same order and never deadlock.
        let mut claims: Vec<(&str, &str, i64)> = events.iter().map(|e| (&*e.site, e.message_id.as_str(), e.received_at)).collect();
        claims.sort_unstable();
        claims.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
        let (sites, ids, times): (Vec<&str>, Vec<&str>, Vec<i64>) = claims.into_iter().fold((vec![], vec![], vec![]), |(mut s, mut m, mut t), (site, id, at)| {
            s.push(site);
            m.push(id);
            t.push(at);
            (s, m, t)
        });
        let claimed: HashSet<(String, String)> = tx
            .query(
                "INSERT INTO message_ids (site, message_id, received_at) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
                 ON CONFLICT DO NOTHING RETURNING site, message_id",
                &[&sites, &ids, &times],
            )
            .map_err(database)?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let mut taken: HashSet<(&str, &str)> = HashSet::new();
        let stored: Vec<bool> = events
            .iter()
            .map(|e| claimed.contains(&(e.site.to_string(), e.message_id.clone())) && taken.insert((&*e.site, e.message_id.as_str())))
            .collect();
        copy_events(&mut tx, events.iter().zip(&stored).filter(|(_, s)| **s).map(|(e, _)| e))?;
        for e in events.iter().zip(&stored).filter(|(_, s)| **s).map(|(e, _)| e) {
            if let Some(change) = &e.consent_change {
                tx.execute(
                    "INSERT INTO consent_ledger (site, at, profile_id, visitor, categories, source, policy_version, message_id)
                     VALUES ($1, $2, NULL, $3, $4, $5, $6, $7)",
                    &[&&*e.site, &e.timestamp, &e.visitor, &change.categories, &change.source, &change.policy_version, &e.message_id],
                )
                .map_err(database)?;
            }
        }
        if !quarantine.is_empty() {
            let sink = tx.copy_in("COPY quarantine (site, received_at, message_id, code, reason, payload) FROM STDIN BINARY").map_err(database)?;
            let mut writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT]);
            for q in quarantine {
                writer.write(&[&&*q.site, &q.received_at, &q.message_id, &q.code, &q.reason, &q.payload]).map_err(database)?;
            }
            writer.finish().map_err(database)?;
        }
        tx.commit().map_err(database)?;
        Ok(stored.iter().enumerate().filter(|(_, stored)| !**stored).map(|(i, _)| i).collect())
    }

    /// Calls `each(site, message_id, received_at)` for every messageId claimed at or after `since_ms`.
    pub fn for_each_recent_message_id(&mut self, since_ms: i64, each: &mut dyn FnMut(&str, &str, i64)) -> Result<(), StoreError> {
        for row in self.client.query("SELECT site, message_id, received_at FROM message_ids WHERE received_at >= $1", &[&since_ms]).map_err(database)? {
            each(row.get(0), row.get(1), row.get(2));
        }
        Ok(())
    }
}

/// Appends events with one binary COPY (the fastest bulk path; research/perf-baselines.md §4.3).
fn copy_events<'a>(tx: &mut postgres::Transaction<'_>, events: impl Iterator<Item = &'a StoredEvent>) -> Result<(), StoreError> {
    let sink = tx.copy_in(&format!("COPY events ({EVENT_COLUMNS}) FROM STDIN BINARY")).map_err(database)?;
    let (text, int) = (Type::TEXT, Type::INT8);
    let types = [
        &text, &text, &text, &text, &text, &text, &text, &text, &text, &int, &int, &int, &int, &int, &text, &text, &text, &text, &text, &text, &text, &text,
        &text, &text, &text, &text, &text, &text, &text, &text, &text, &text, &text, &text, &int,
    ]
    .map(Clone::clone);
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    for e in events {
        let kind = e.kind.map(|k| k.as_str()).unwrap_or("");
        let row: [&(dyn ToSql + Sync); 35] = [
            &&*e.site, &e.message_id, &kind, &e.name, &e.category, &e.anonymous_id, &e.user_id, &e.previous_id, &e.group_id, &e.timestamp,
            &e.original_timestamp, &e.sent_at, &e.received_at, &e.flags, &e.url, &e.path, &e.title, &e.referrer, &e.referrer_host,
            &e.utm_source, &e.utm_medium, &e.utm_campaign, &e.utm_term, &e.utm_content, &e.ip, &e.browser, &e.os, &e.device,
            &e.properties, &e.traits, &e.context, &e.integrations, &e.visitor, &e.session_id, &e.consent,
        ];
        writer.write(&row).map_err(database)?;
    }
    writer.finish().map_err(database)?;
    Ok(())
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(database)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(database)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())").map_err(database)?;
    let current: i64 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).map_err(database)?.get(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).map_err(database)?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version]).map_err(database)?;
    }
    tx.commit().map_err(database)
}

/// A server that cannot be reached: the writer answers 503 and retries.
fn unavailable(error: postgres::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn database(error: postgres::Error) -> StoreError {
    if error.is_closed() {
        unavailable(error)
    } else {
        StoreError::Postgres(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use footprint_core::{CallKind, RejectCode};
    use std::sync::Arc;

    /// A fresh database on the test server (`FOOTPRINT_TEST_DATABASE_URL`, which `cargo xtask test` starts). Under
    /// CI a missing server fails the test; elsewhere the test says so and passes.
    fn fresh_database(name: &str) -> Option<String> {
        let Ok(url) = std::env::var("FOOTPRINT_TEST_DATABASE_URL") else {
            assert!(std::env::var_os("CI").is_none(), "CI runs the PostgreSQL tests: set FOOTPRINT_TEST_DATABASE_URL (cargo xtask test does)");
            eprintln!("skipped: no FOOTPRINT_TEST_DATABASE_URL (cargo xtask test starts a server)");
            return None;
        };
        let database = format!("fp_{name}_{}", std::process::id());
        let mut admin = Client::connect(&url, NoTls).expect("the test server answers");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {database}")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {database}")).unwrap();
        let (base, _) = url.rsplit_once('/').expect("a URL with a database name");
        Some(format!("{base}/{database}"))
    }

    fn event(site: &Arc<str>, id: &str) -> StoredEvent {
        StoredEvent {
            site: site.clone(),
            message_id: id.into(),
            kind: Some(CallKind::Track),
            name: Some("Signed Up".into()),
            timestamp: 1_770_000_000_000,
            received_at: 1_770_000_000_500,
            properties: Some(r#"{"plan":"pro"}"#.into()),
            device: Some("mobile"),
            ..Default::default()
        }
    }

    #[test]
    fn a_group_is_stored_with_every_column_and_duplicates_are_refused() {
        let Some(url) = fresh_database("log") else { return };
        let site: Arc<str> = "shop".into();
        let mut log = PgEventLog::connect(&url).unwrap();
        let q = QuarantinedEvent::new(site.clone(), 5, None, RejectCode::MissingType, "no type".into(), "{}".into());
        let group = [event(&site, "a"), event(&site, "b"), event(&site, "a")];
        assert_eq!(log.commit(&group, &[q]).unwrap(), vec![2], "the second `a` of the group is a duplicate");
        assert_eq!(log.commit(&[event(&site, "b"), event(&site, "c")], &[]).unwrap(), vec![0], "`b` was stored before");
        let other: Arc<str> = "blog".into();
        assert_eq!(log.commit(&[event(&other, "a")], &[]).unwrap(), Vec::<usize>::new(), "messageIds are per site");
        // Reconnecting (a restart) migrates nothing twice and keeps everything.
        let mut log = PgEventLog::connect(&url).unwrap();
        let rows = log.client.query("SELECT site, message_id, type, name, properties, device, timestamp FROM events ORDER BY id", &[]).unwrap();
        let got: Vec<(String, String, String, String, String, String, i64)> =
            rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))).collect();
        let row = |s: &str, m: &str| (s.into(), m.into(), "track".into(), "Signed Up".into(), r#"{"plan":"pro"}"#.into(), "mobile".into(), 1_770_000_000_000);
        assert_eq!(got, vec![row("shop", "a"), row("shop", "b"), row("shop", "c"), row("blog", "a")]);
        let quarantined: i64 = log.client.query_one("SELECT COUNT(*) FROM quarantine WHERE code = 'missing_type'", &[]).unwrap().get(0);
        assert_eq!(quarantined, 1);
        let mut recent = Vec::new();
        log.for_each_recent_message_id(0, &mut |s, m, _| recent.push(format!("{s}/{m}"))).unwrap();
        recent.sort();
        assert_eq!(recent, ["blog/a", "shop/a", "shop/b", "shop/c"]);
    }

    #[test]
    fn two_collectors_sending_the_same_events_store_each_once() {
        let Some(url) = fresh_database("two") else { return };
        let site: Arc<str> = "shop".into();
        PgEventLog::connect(&url).unwrap();
        // Two collectors, each committing groups of 50 from the same 2,000 events in its own order (retries that
        // reached both), at the same time.
        let all: Vec<StoredEvent> = (0..2_000).map(|i| event(&site, &format!("m{i}"))).collect();
        let results: Vec<Vec<(String, bool)>> = std::thread::scope(|scope| {
            let collectors: Vec<_> = [false, true]
                .into_iter()
                .map(|reversed| {
                    let (url, all) = (&url, &all);
                    scope.spawn(move || {
                        let mut log = PgEventLog::connect(url).unwrap();
                        let mut order: Vec<&StoredEvent> = all.iter().collect();
                        if reversed {
                            order.reverse();
                        }
                        let mut answers = Vec::new();
                        for group in order.chunks(50) {
                            let group: Vec<StoredEvent> = group.iter().map(|e| (*e).clone()).collect();
                            let duplicates = log.commit(&group, &[]).unwrap();
                            answers.extend(group.iter().enumerate().map(|(i, e)| (e.message_id.clone(), !duplicates.contains(&i))));
                        }
                        answers
                    })
                })
                .collect();
            collectors.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let accepted: Vec<&String> = results.iter().flatten().filter(|(_, stored)| *stored).map(|(id, _)| id).collect();
        assert_eq!(accepted.len(), 2_000, "each event accepted by exactly one collector");
        assert_eq!(accepted.iter().collect::<HashSet<_>>().len(), 2_000);
        let mut log = PgEventLog::connect(&url).unwrap();
        let (rows, distinct): (i64, i64) = log.client.query_one("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM events", &[]).map(|r| (r.get(0), r.get(1))).unwrap();
        assert_eq!((rows, distinct), (2_000, 2_000), "no duplicate, no loss");
    }
}
