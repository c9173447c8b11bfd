//! Data-subject erasure and retention in SQL. Both run on the writer thread (`Writer::exclusive`), so they never
//! race ingest; deleted content is overwritten (`secure_delete`) and the WAL is truncated afterwards, so a byte
//! search of the database files finds nothing of what was removed.

use super::identity::IdentityCache;
use crate::identity::{IdKind, Identifier};
use super::RetentionPass;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

/// Tables outside the event log that hold visitor keys (`a:<anonymousId>`, `u:<userId>`): the stats visits.
const VISITOR_KEYED_TABLES: &[&str] = &["stats_visits", "stats_open"];

/// Who to erase.
pub struct ErasureRequest {
    /// The sites to erase the person from (one, or every configured site).
    pub sites: Vec<String>,
    /// The identifier as stored (email and phone already hashed).
    pub identifier: Identifier,
    /// Raw strings to look for in quarantined payloads (the value as given, the person's raw IDs).
    pub raw_values: Vec<String>,
}

/// What an erasure removed: counts only, so it can be logged without personal data.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ErasureReport {
    pub sites: usize,
    pub profiles: usize,
    pub identifiers: usize,
    pub events: usize,
    pub quarantined: usize,
    pub ledger_entries: usize,
    /// (site, kind, hash) suppression entries added; refused from now on.
    #[serde(skip)]
    pub suppressions: Vec<(String, String, String)>,
    /// The shared-store ids of the events and quarantined events deleted (a replica of PostgreSQL deletes them
    /// there too; store/shared.rs).
    #[serde(skip)]
    pub shared_events: Vec<i64>,
    #[serde(skip)]
    pub shared_quarantine: Vec<i64>,
}

impl ErasureReport {
    /// Adds another pass's counts (erasure under several keys).
    pub fn add(&mut self, other: ErasureReport) {
        self.sites = self.sites.max(other.sites);
        self.profiles += other.profiles;
        self.identifiers += other.identifiers;
        self.events += other.events;
        self.quarantined += other.quarantined;
        self.ledger_entries += other.ledger_entries;
        self.suppressions.extend(other.suppressions);
        self.shared_events.extend(other.shared_events);
        self.shared_quarantine.extend(other.shared_quarantine);
    }
}

pub(super) fn erase(conn: &mut Connection, cache: &mut IdentityCache, request: &ErasureRequest, suppression_hash: &dyn Fn(&Identifier) -> String, now: i64) -> rusqlite::Result<ErasureReport> {
    let tx = conn.transaction()?;
    let mut report = ErasureReport::default();
    let kind = request.identifier.kind.as_string();
    for site in &request.sites {
        let profile: Option<i64> = tx
            .query_row("SELECT profile_id FROM identities WHERE site = ?1 AND kind = ?2 AND value = ?3", params![site, kind, request.identifier.value], |r| r.get(0))
            .optional()?;
        let mut identifiers = vec![request.identifier.clone()];
        // People whose events may carry one of this person's raw IDs although they are filed elsewhere: the other
        // side of a refused merge (the shared computer: the next person's login came with this one's anonymous ID).
        let mut neighbours: Vec<i64> = Vec::new();
        if let Some(pid) = profile {
            let root: i64 = tx.query_row("SELECT root FROM profiles WHERE id = ?1", [pid], |r| r.get(0))?;
            let profiles: Vec<i64> = tx.prepare("SELECT id FROM profiles WHERE root = ?1")?.query_map([root], |r| r.get(0))?.collect::<Result<_, _>>()?;
            let in_list = vec!["?"; profiles.len()].join(",");
            let mut stmt = tx.prepare(&format!("SELECT kind, value FROM identities WHERE profile_id IN ({in_list})"))?;
            let found: Vec<(String, String)> = stmt.query_map(params_from_iter(&profiles), |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            for (k, v) in found {
                if let Some(kind) = IdKind::parse(&k) {
                    let id = Identifier::new(kind, v);
                    if !identifiers.contains(&id) {
                        identifiers.push(id);
                    }
                }
            }
            // (`+site` and two indexed halves keep the planner on row-id and index lookups.)
            let mut stmt = tx.prepare(&format!(
                "SELECT DISTINCT p.root FROM profiles p WHERE p.id IN (
                     SELECT other_profile_id FROM identity_log WHERE profile_id IN ({in_list}) AND action = 'refuse'
                     UNION SELECT profile_id FROM identity_log WHERE other_profile_id IN ({in_list}) AND action = 'refuse')"
            ))?;
            neighbours = stmt.query_map(params_from_iter(profiles.iter().chain(&profiles)), |r| r.get(0))?.collect::<Result<_, _>>()?;
            neighbours.retain(|r| *r != root);
            drop(stmt);
            let each = |sql: &str| -> rusqlite::Result<usize> { tx.execute(&sql.replace("{in}", &in_list), params_from_iter(&profiles)) };
            // Every event of the person: the links filed up to the watermark (erasure runs after a flush, so that
            // is all of them) and, to be sure, any newer row by its own profile column.
            report.events += delete_returning(&tx, &format!("DELETE FROM events WHERE id IN ({}) RETURNING shared_id", super::sqlite::PERSON_EVENT_IDS), params![root], &mut report.shared_events)?;
            tx.execute(concat!("DELETE FROM profile_events WHERE (bucket, profile_id) IN (", super::sqlite::person_link_keys!(), ")"), [root])?;
            report.ledger_entries += each("DELETE FROM consent_ledger WHERE profile_id IN ({in})")?;
            tx.execute(
                &format!("DELETE FROM identity_log WHERE profile_id IN ({in_list}) OR other_profile_id IN ({in_list})"),
                params_from_iter(profiles.iter().chain(profiles.iter())),
            )?;
            tx.execute(&format!("DELETE FROM merges WHERE winner IN ({in_list}) OR loser IN ({in_list})"), params_from_iter(profiles.iter().chain(profiles.iter())))?;
            each("DELETE FROM profile_traits WHERE profile_id IN ({in})")?;
            report.identifiers += each("DELETE FROM identities WHERE profile_id IN ({in})")?;
            report.profiles += each("DELETE FROM profiles WHERE id IN ({in})")?;
        }
        // Events filed under no profile (junk-only identities) that still carry one of the person's raw IDs, and
        // everything keyed by the person's visitor key (visits of the stats rollups, ledger entries).
        for id in identifiers.iter().filter(|i| matches!(i.kind, IdKind::AnonymousId | IdKind::UserId)) {
            let (column, prefix) = if id.kind == IdKind::UserId { ("user_id", "u:") } else { ("anonymous_id", "a:") };
            // Unfiled events through `unfiled_events` (and the newest by their own columns); events filed under a
            // neighbour through its own events.
            let unfiled: Vec<(i64, Option<String>, Option<String>)> = tx
                .prepare(&format!(
                    "SELECT id, anonymous_id, user_id FROM events WHERE id IN ({buckets}SELECT u.event_id FROM bucket, unfiled_events u
                         WHERE u.bucket = bucket.n AND u.site = ?1 AND u.kind = ?3 AND u.value = ?2
                     UNION ALL SELECT id FROM events WHERE id > (SELECT last_event_id FROM links_state WHERE id = 1) AND profile_id IS NULL AND +site = ?1 AND {column} = ?2)",
                    buckets = super::sqlite::link_buckets!()
                ))?
                .query_map(params![site, id.value, column], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            for (event, anonymous_id, user_id) in &unfiled {
                // Every entry of the event goes with it: its other raw ID too.
                report.events += delete_event(&tx, site, *event, None, anonymous_id.as_deref(), user_id.as_deref(), &mut report.shared_events)?;
            }
            for neighbour in &neighbours {
                report.events += delete_returning(
                    &tx,
                    &format!("DELETE FROM events WHERE id IN ({}) AND {column} = ?2 RETURNING shared_id", super::sqlite::PERSON_EVENT_IDS),
                    params![neighbour, id.value],
                    &mut report.shared_events,
                )?;
            }
            let visitor = format!("{prefix}{}", id.value);
            report.ledger_entries += tx.execute("DELETE FROM consent_ledger WHERE site = ?1 AND visitor = ?2", params![site, visitor])?;
            for table in VISITOR_KEYED_TABLES {
                tx.execute(&format!("DELETE FROM {table} WHERE site = ?1 AND visitor = ?2"), params![site, visitor])?;
            }
        }
        let needles: Vec<&str> = identifiers.iter().filter(|i| !i.kind.is_hashed()).map(|i| i.value.as_str()).chain(request.raw_values.iter().map(String::as_str)).filter(|v| v.len() >= 3).collect();
        for needle in needles {
            report.quarantined += delete_returning(&tx, "DELETE FROM quarantine WHERE site = ?1 AND instr(payload, ?2) > 0 RETURNING shared_id", params![site, needle], &mut report.shared_quarantine)?;
        }
        for id in &identifiers {
            let entry = (site.clone(), id.kind.as_string(), suppression_hash(id));
            tx.execute("INSERT OR IGNORE INTO suppressions (site, kind, hash, at) VALUES (?1, ?2, ?3, ?4)", params![entry.0, entry.1, entry.2, now])?;
            report.suppressions.push(entry);
        }
        report.sites += 1;
    }
    tx.commit()?;
    cache.clear();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(report)
}

/// Retention reads at most this many events per call, so one call holds ingest up briefly.
const RETENTION_SCAN_ROWS: i64 = 20_000;

/// Deletes up to `limit` events of `site` that happened before `cutoff_ms` (event time) and quarantine rows
/// received before it. No index orders the events by time (one cost every insert ~7 % of batched ingest CPU);
/// retention finds them two ways instead:
///
/// - **In receive order.** Event ids grow with `received_at`, and no event happened more than `MAX_FUTURE_SKEW_MS`
///   after it was received (later times are clamped), so every event received before `cutoff_ms` minus that skew
///   has expired. `retention_state.next_id` remembers how far this site has been read; each call reads on from
///   there to that receive time (at most [`RETENTION_SCAN_ROWS`] events, of any site). An event met there that has
///   not expired (its receive time ran backwards) is filed in `late_events`.
/// - **Late events** (`late_events`): those that arrived more than [`LATE_EVENT_MS`](super::sqlite::LATE_EVENT_MS) after they happened (a
///   backfill, an offline queue), filed by event time as they are stored, and found by it here.
///
/// So an event that arrived on time leaves within hours of its cutoff, a late one at its cutoff.
pub(super) fn delete_older_than(conn: &Connection, site: &str, cutoff_ms: i64, limit: usize) -> rusqlite::Result<RetentionPass> {
    // Not used: on a shared store, retention deletes from PostgreSQL by the same rule itself (store/shared.rs).
    let mut shared = Vec::new();
    let mut deleted = 0;
    // (event id, whether that event is still there to delete, its profile, anonymous ID and user ID)
    let late: Vec<(i64, bool, Option<i64>, Option<String>, Option<String>)> = conn
        .prepare_cached(
            "SELECT l.event_id, e.id IS NOT NULL, e.profile_id, e.anonymous_id, e.user_id FROM late_events l
             LEFT JOIN events e ON e.id = l.event_id AND e.site = l.site AND e.timestamp < ?2 WHERE l.site = ?1 AND l.timestamp < ?2 LIMIT ?3",
        )?
        .query_map(params![site, cutoff_ms, limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<Result<_, _>>()?;
    let mut forget = conn.prepare_cached("DELETE FROM late_events WHERE site = ?1 AND timestamp < ?2 AND event_id = ?3")?;
    for (id, stored, profile, anonymous_id, user_id) in &late {
        // An entry without its event (erased since) just goes.
        if *stored {
            deleted += delete_event(conn, site, *id, *profile, anonymous_id.as_deref(), user_id.as_deref(), &mut shared)?;
        }
        forget.execute(params![site, cutoff_ms, id])?;
    }
    let mut more = late.len() >= limit;

    if !more {
        let next_id: i64 = conn.query_row("SELECT COALESCE((SELECT next_id FROM retention_state WHERE site = ?1), 0)", [site], |r| r.get(0))?;
        let upto = super::sqlite::first_id_received_since(conn, cutoff_ms.saturating_sub(footprint_core::limits::MAX_FUTURE_SKEW_MS))?;
        let rows: Vec<(i64, String, i64, Option<i64>, Option<String>, Option<String>)> = conn
            .prepare_cached("SELECT id, site, timestamp, profile_id, anonymous_id, user_id FROM events WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3")?
            .query_map(params![next_id, upto, RETENTION_SCAN_ROWS], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
            .collect::<Result<_, _>>()?;
        // A full read stops after its last row; a shorter one reached `upto`.
        let mut read_upto = if rows.len() as i64 == RETENTION_SCAN_ROWS { rows.last().map_or(upto, |r| r.0 + 1) } else { upto };
        for (id, row_site, timestamp, profile, anonymous_id, user_id) in &rows {
            if row_site != site {
                continue;
            }
            if *timestamp < cutoff_ms {
                deleted += delete_event(conn, site, *id, *profile, anonymous_id.as_deref(), user_id.as_deref(), &mut shared)?;
                if deleted >= limit {
                    read_upto = id + 1;
                    break;
                }
            } else {
                conn.prepare_cached(super::sqlite::FILE_LATE_EVENT)?.execute(params![site, timestamp, id])?;
            }
        }
        more = read_upto < upto;
        conn.prepare_cached("INSERT INTO retention_state (site, next_id) VALUES (?1, ?2) ON CONFLICT (site) DO UPDATE SET next_id = excluded.next_id")?
            .execute(params![site, read_upto.max(next_id)])?;
    }

    let quarantined = conn.execute(
        "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine WHERE received_at < ?1 AND site = ?2 ORDER BY received_at LIMIT ?3)",
        params![cutoff_ms, site, limit as i64],
    )?;
    Ok(RetentionPass { deleted: deleted + quarantined, more: more || quarantined >= limit })
}

/// Deletes one event and its entry in the person indexes: its `profile_events` link, or (filed under no profile)
/// its `unfiled_events` entries by raw ID. Returns how many events it deleted; adds its shared id to `shared`.
fn delete_event(conn: &Connection, site: &str, id: i64, profile: Option<i64>, anonymous_id: Option<&str>, user_id: Option<&str>, shared: &mut Vec<i64>) -> rusqlite::Result<usize> {
    let deleted = delete_returning(conn, "DELETE FROM events WHERE id = ?1 RETURNING shared_id", params![id], shared)?;
    match profile {
        Some(profile) => {
            conn.prepare_cached(concat!("DELETE FROM profile_events WHERE bucket = ?2 >> ", super::sqlite::link_bucket_bits!(), " AND profile_id = ?1 AND event_id = ?2"))?.execute([profile, id])?;
        }
        None => {
            let mut forget = conn.prepare_cached(concat!(
                "DELETE FROM unfiled_events WHERE bucket = ?4 >> ",
                super::sqlite::link_bucket_bits!(),
                " AND site = ?1 AND kind = ?2 AND value = ?3 AND event_id = ?4"
            ))?;
            for (kind, value) in [("anonymous_id", anonymous_id), ("user_id", user_id)] {
                if let Some(value) = value {
                    forget.execute(params![site, kind, value, id])?;
                }
            }
        }
    }
    Ok(deleted)
}

/// Runs a `DELETE … RETURNING shared_id`; adds the shared ids (where set) to `shared`, returns how many rows went.
fn delete_returning(conn: &Connection, sql: &str, params: impl rusqlite::Params, shared: &mut Vec<i64>) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut deleted = 0;
    while let Some(row) = rows.next()? {
        deleted += 1;
        shared.extend(row.get::<_, Option<i64>>(0)?);
    }
    Ok(deleted)
}
