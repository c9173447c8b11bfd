//! `footprint copy-to-postgres`: moves a standalone SQLite store into a shared PostgreSQL database, so a growing
//! site keeps its history when it starts running several collectors. The log is what moves: events (with the
//! identity input each one carried, rebuilt from its stored columns), quarantined events, and the erased
//! identifiers (as a shared operation, so no replica accepts them again). Everything derived — profiles, stats,
//! the consent ledger — is rebuilt by each collector's replica from the log, with the same rules as at ingest.

use super::postgres::PgEventLog;
use super::{ConsentChange, Field, IdentityInput, QuarantinedEvent, StoreError, StoredEvent};
use crate::identity::{IdKind, Identifier};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashMap;
use std::path::Path;

/// Events per COPY (one transaction each; the same size as the writer's largest group).
const CHUNK: usize = 4_000;

/// How far a copy is.
pub struct Progress {
    pub events_done: u64,
    pub events_total: u64,
}

/// What a copy moved.
#[derive(Debug, Default)]
pub struct CopyReport {
    pub events: u64,
    pub quarantined: u64,
    pub suppressions: u64,
    /// Events found already in PostgreSQL (by site and messageId) and not copied again.
    pub already_there: u64,
}

/// Copies the store in `data_dir` (the collector stopped) into the database at `url`. The database must hold no
/// events yet. Afterwards the SQLite file is left as it was; the caller moves it aside, so the collector builds its
/// replica from the log.
pub fn copy_to_postgres(data_dir: &Path, url: &str, progress: &mut dyn FnMut(&Progress)) -> Result<CopyReport, StoreError> {
    let path = data_dir.join("footprint.db");
    if !path.exists() {
        return Err(StoreError::Unavailable(format!("no store in {} (expected footprint.db)", data_dir.display())));
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let is_replica: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'replica_state') AND EXISTS (SELECT 1 FROM replica_state)", [], |r| r.get(0))?;
    if is_replica {
        return Err(StoreError::Unavailable(format!("{} is already the replica of a shared database; nothing to copy", path.display())));
    }
    let mut log = PgEventLog::connect(url)?;
    if log.has_events()? {
        return Err(StoreError::Unavailable("the PostgreSQL database already holds events: copy into an empty database (the collectors sharing it add to it from then on)".into()));
    }
    let events_total: u64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))? as u64;
    let ledger = consent_changes(&conn)?;
    let mut report = CopyReport::default();
    let mut after = 0i64;
    loop {
        let chunk = read_events(&conn, after, &ledger)?;
        let Some((last, _)) = chunk.last() else { break };
        after = *last;
        let events: Vec<StoredEvent> = chunk.into_iter().map(|(_, e)| e).collect();
        let duplicates = log.commit(&events, &[])?;
        report.already_there += duplicates.len() as u64;
        report.events += (events.len() - duplicates.len()) as u64;
        progress(&Progress { events_done: report.events + report.already_there, events_total });
    }
    let mut after = 0i64;
    loop {
        let chunk = read_quarantine(&conn, after)?;
        let Some((last, _)) = chunk.last() else { break };
        after = *last;
        let rows: Vec<QuarantinedEvent> = chunk.into_iter().map(|(_, q)| q).collect();
        log.commit(&[], &rows)?;
        report.quarantined += rows.len() as u64;
    }
    let suppressions: Vec<(String, String, String)> =
        conn.prepare("SELECT site, kind, hash FROM suppressions")?.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    if !suppressions.is_empty() {
        log.append_op(crate::now_ms(), &super::shared::suppress_payload(&suppressions))?;
        report.suppressions = suppressions.len() as u64;
    }
    Ok(report)
}

/// The consent change each event recorded, by (site, messageId), from the ledger.
fn consent_changes(conn: &Connection) -> Result<HashMap<(String, String), ConsentChange>, StoreError> {
    let mut stmt = conn.prepare("SELECT site, message_id, categories, source, policy_version FROM consent_ledger WHERE message_id IS NOT NULL")?;
    let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), ConsentChange { categories: r.get(2)?, source: r.get(3)?, policy_version: r.get(4)? })))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `id`, the stored row, `profile_id`; a chunk after an id.
fn event_select() -> String {
    format!("SELECT id, {}, profile_id FROM events WHERE id > ?1 ORDER BY id LIMIT ?2", super::EVENT_ROW_COLUMNS)
}

fn read_events(conn: &Connection, after: i64, ledger: &HashMap<(String, String), ConsentChange>) -> Result<Vec<(i64, StoredEvent)>, StoreError> {
    let mut stmt = conn.prepare_cached(&event_select())?;
    let mut rows = stmt.query(rusqlite::params![after, CHUNK as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut e = StoredEvent::from_columns(r, 1)?;
        e.consent_change = ledger.get(&(e.site.to_string(), e.message_id().to_owned())).cloned();
        let profile_id: Option<i64> = r.get(36)?;
        // Identity was resolved for the event when it was filed under a profile.
        if profile_id.is_some() {
            e.identity = Some(identity_from_stored(&e));
        }
        out.push((r.get(0)?, e));
    }
    Ok(out)
}

/// The identity input of a stored event, as ingest made it: anonymous ID, user ID, alias's previous ID, and the
/// e-mail and phone hashes among its traits (already keyed hashes in the stored traits). External IDs from
/// `context.externalIds` are not kept on the event and are not rebuilt.
fn identity_from_stored(e: &StoredEvent) -> IdentityInput {
    let mut identifiers = Vec::new();
    let (anonymous_id, user_id, traits) = (e.text(Field::AnonymousId), e.text(Field::UserId), e.text(Field::Traits));
    identifiers.extend(anonymous_id.map(|a| Identifier::new(IdKind::AnonymousId, a)));
    identifiers.extend(user_id.map(|u| Identifier::new(IdKind::UserId, u)));
    identifiers.extend(e.text(Field::PreviousId).map(|p| Identifier::new(IdKind::AnonymousId, p)));
    identifiers.extend(traits.map(crate::ingest::hashed_trait_identifiers).unwrap_or_default());
    let primary = user_id.map(|u| Identifier::new(IdKind::UserId, u)).or_else(|| anonymous_id.map(|a| Identifier::new(IdKind::AnonymousId, a)));
    IdentityInput { identifiers, primary, traits: traits.map(str::to_owned) }
}

fn read_quarantine(conn: &Connection, after: i64) -> Result<Vec<(i64, QuarantinedEvent)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, site, received_at, message_id, code, reason, payload FROM quarantine WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let rows = stmt.query_map(rusqlite::params![after, CHUNK as i64], |r| {
        let code: String = r.get(4)?;
        Ok((
            r.get(0)?,
            QuarantinedEvent {
                site: r.get::<_, String>(1)?.into(),
                received_at: r.get(2)?,
                message_id: r.get(3)?,
                code: super::postgres::intern_code(code),
                reason: r.get(5)?,
                payload: r.get(6)?,
                shared_id: None,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
