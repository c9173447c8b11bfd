//! The shared log on PostgreSQL (DESIGN.md §6, issue 7): events, quarantined events and shared operations
//! (erasure, unmerge), committed by group with `messageId` deduplication decided by the database, so collectors
//! sharing it never store one event twice; and reading that log back in one order every collector agrees on
//! (`pull`), which is what each collector's replica (store/shared.rs) applies.

use super::{Field, QuarantinedEvent, StoreError, StoredEvent};
use postgres::{Client, NoTls};
use std::collections::HashSet;

/// Schema migrations, applied in order at start under an advisory lock (collectors starting together take turns).
const MIGRATIONS: &[(i64, &str)] = &[
    (
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
    ),
    (
        2,
        "-- The log's order: the writing transaction's id. Every collector reads the log in (tx, id) order, and only
    -- below the oldest transaction still running (pg_snapshot_xmin), where it is final (see `pull`).
    ALTER TABLE events ADD COLUMN tx BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
    -- What identity resolution and the consent ledger need (the replicas derive both): the event's identifiers
    -- (e-mail and phone as keyed hashes), primary identifier and traits; its consent change. JSON text.
    ALTER TABLE events ADD COLUMN identity TEXT;
    ALTER TABLE events ADD COLUMN consent_change TEXT;
    CREATE INDEX events_tx ON events (tx, id);
    ALTER TABLE quarantine ADD COLUMN tx BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
    CREATE INDEX quarantine_tx ON quarantine (tx, id);
    -- Operations every replica applies at their place in the log: erasures, unmerges (JSON, see shared.rs).
    CREATE TABLE ops (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tx BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
        at BIGINT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX ops_tx ON ops (tx, id);
    -- The ledger is derived from the events by each replica.
    DROP TABLE consent_ledger;",
    ),
    (
        3,
        "-- Nothing reads events by receive time here (deduplication has message_ids): one index less per row.
    DROP INDEX events_received_at;",
    ),
    (
        4,
        "-- Keys compared byte by byte: under a locale collation (en_US.UTF-8 is common on managed servers) every
    -- B-tree comparison of a messageId or site is a locale-aware one. (No difference under C.UTF-8, measured.)
    ALTER TABLE message_ids ALTER COLUMN site TYPE TEXT COLLATE \"C\", ALTER COLUMN message_id TYPE TEXT COLLATE \"C\";
    ALTER TABLE events ALTER COLUMN site TYPE TEXT COLLATE \"C\";
    ALTER TABLE quarantine ALTER COLUMN site TYPE TEXT COLLATE \"C\";",
    ),
    (
        5,
        "-- Only retention reads message_ids by receive time, and ids arrive in receive-time order: a block-range index
    -- finds the old ones as well, at next to no cost per claim (a B-tree entry per claimed id: ~1–2 µs, pgbench here).
    DROP INDEX message_ids_received_at;
    CREATE INDEX message_ids_received_at ON message_ids USING brin (received_at);",
    ),
    (
        6,
        "-- Only retention reads events by time here (the replicas answer every query), and events arrive roughly in
    -- time order: a block-range index on timestamp serves it. The B-tree on (site, day) it replaces held one key
    -- for a whole day's events of a site, which cost every COPYed row an expression, a text comparison and
    -- deduplication passes.
    DROP INDEX events_site_day;
    CREATE INDEX events_timestamp ON events USING brin (timestamp);",
    ),
    (
        7,
        "-- The messageId first: with the site first, nearly every comparison of a claim's descent compared two equal
    -- sites before the messageIds (pgbench here: ~1 µs less per claimed id).
    ALTER TABLE message_ids DROP CONSTRAINT message_ids_pkey, ADD PRIMARY KEY (message_id, site);
    -- Event ids taken 1,000 at a time by each connection instead of one by one from the shared sequence (a lock
    -- and a WAL record every 32 rows). The log's order is (tx, id): ids only need to grow within a transaction.
    ALTER TABLE events ALTER COLUMN id SET CACHE 1000;",
    ),
    (
        8,
        "-- The log is read by transaction, and `pull` puts what it read in (tx, id) order itself: an index on tx alone
    -- holds each transaction's key once, with the list of its rows (B-tree deduplication), instead of a (tx, id)
    -- key per row. Ids are looked up only by an erasure's deletes, and they grow with the table: a block-range
    -- index finds those, and a COPYed row no longer descends a B-tree for its primary key (the writer lanes, each
    -- with an id range of its own, kept splitting pages near its right end). An ingest-only collector alone,
    -- alternating with the two B-trees 3 times: PostgreSQL CPU 9.2 against 11.1 µs per event, 108,184 against
    -- 99,344 events/s (medians). On an existing log both indexes are built here, once: collectors wait for it.
    DROP INDEX events_tx;
    CREATE INDEX events_tx ON events (tx);
    ALTER TABLE events DROP CONSTRAINT events_pkey;
    CREATE INDEX events_id ON events USING brin (id);",
    ),
];

/// Any number that names our migration lock among a database's advisory locks.
const MIGRATION_LOCK: i64 = 0x466f_6f74_7072_696e;

/// The log's event columns: the stored row, then the identity input and consent change.
fn event_columns() -> String {
    format!("{}, identity, consent_change", super::EVENT_ROW_COLUMNS)
}

// The statements of the hot paths (a group commit, a pull of the log), prepared once per connection.
// A group's messageIds claimed all at once: fails on the primary key if any was claimed before (see `commit`).
// It also returns the transaction's position in the log and $4 ids for its events (taken here, not by the column's
// default, so the collector knows each stored event's id: see `OwnEvents`). A COPY writes given identity values.
macro_rules! position_and_ids {
    ($count:literal) => {
        concat!("SELECT pg_current_xact_id()::text::bigint, ARRAY(SELECT nextval('events_id_seq') FROM generate_series(1, ", $count, "::int))")
    };
}
const CLAIM_ALL_IDS: &str = concat!(
    "WITH claimed AS (INSERT INTO message_ids (site, message_id, received_at) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])) ",
    position_and_ids!("$4")
);
// The same position and ids, after the claim that skips what was claimed before (`CLAIM_IDS`).
const TAKE_IDS: &str = position_and_ids!("$1");
// The same claim that skips what was claimed before, and returns those.
const CLAIM_IDS: &str = "WITH claimed AS (
         INSERT INTO message_ids (site, message_id, received_at) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
         ON CONFLICT DO NOTHING RETURNING site, message_id)
     SELECT site COLLATE \"C\", message_id COLLATE \"C\" FROM unnest($1::text[], $2::text[]) AS wanted (site, message_id)
     EXCEPT SELECT site, message_id FROM claimed";
static COPY_EVENTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| format!("COPY events (tx, id, {}) FROM STDIN BINARY", event_columns()));
const COPY_QUARANTINE: &str = "COPY quarantine (site, received_at, message_id, code, reason, payload) FROM STDIN BINARY";
const FINAL_BELOW: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint";
// The transaction of the row `$3` rows in (only its tx matters: a stretch ends before it).
const PULL_CUT: &str = "SELECT tx FROM events WHERE tx >= $1 AND tx < $2 ORDER BY tx OFFSET $3 LIMIT 1";
// Without `ORDER BY`: `pull` puts the rows in log order itself. With it, PostgreSQL sorted whole rows whenever it
// planned a bitmap scan (as it does on a table that grew since it was last analysed): ~5 % of its CPU under load.
// Less the transactions whose events the collector still holds (`OwnEvents`).
static PULL_EVENTS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT tx, id, {} FROM events WHERE tx >= $1 AND tx < $2 AND tx <> ALL($3::bigint[])", event_columns()));
const PULL_QUARANTINE: &str = "SELECT tx, id, site, received_at, message_id, code, reason, payload FROM quarantine WHERE tx >= $1 AND tx < $2";
const PULL_OPS: &str = "SELECT tx, id, at, payload FROM ops WHERE tx >= $1 AND tx < $2 ORDER BY tx, id";

/// The shared log on PostgreSQL (see the module's note).
pub struct PgEventLog {
    client: Client,
    url: String,
    /// Prepared on this connection, by SQL text: `query(&str)` prepared its statement again on every call (a round
    /// trip and a parse in PostgreSQL each time, twice per group commit). Emptied on reconnecting.
    statements: std::collections::HashMap<&'static str, postgres::Statement>,
}

/// A stretch of the log: every row with a position in `[from, next)`, in log order. `final_below` is where the
/// log was final when it was read (the reader has caught up when `next` reached it).
#[derive(Default)]
pub struct Pulled {
    pub events: Vec<(i64, StoredEvent)>,
    pub quarantine: Vec<(i64, QuarantinedEvent)>,
    /// (position, id, at, payload)
    pub ops: Vec<(i64, i64, i64, String)>,
    pub next: i64,
    pub final_below: i64,
}

/// Where a committed group went in the log.
pub struct Committed {
    /// The positions of the events not stored (what [`PgEventLog::commit`] returns).
    pub duplicates: Vec<usize>,
    /// The transaction's position in the log.
    pub tx: i64,
    /// The ids of the stored events, in their order.
    pub ids: Vec<i64>,
    /// Every event was stored as given (no NUL had to be replaced).
    pub verbatim: bool,
}

/// Events this collector committed to the log, held for its replica's follower so that it need not read them back
/// from PostgreSQL (reading a stretch of the log back was a fifth of PostgreSQL's CPU with one collector, and
/// decoding it a sixth of the follower's). Bounded in bytes: what does not fit is read back as any other
/// collector's events are. Only groups stored exactly as given are held, with the ids and position the log gave
/// them, so what the follower applies is what every other replica reads.
#[derive(Default)]
pub struct OwnEvents {
    held: std::sync::Mutex<OwnEventsHeld>,
}

#[derive(Default)]
struct OwnEventsHeld {
    by_tx: std::collections::BTreeMap<i64, (Vec<StoredEvent>, usize)>,
    bytes: usize,
}

impl OwnEvents {
    /// At most this much is held (by `StoredEvent::approx_bytes`, the writer queue's measure): some tenths of a
    /// second of the log at its fastest here. A replica that falls further behind reads the rest back.
    const CAPACITY_BYTES: usize = 32 * 1024 * 1024;

    /// Holds the events that the committed transaction `tx` stored, with their ids.
    pub fn offer(&self, tx: i64, events: Vec<StoredEvent>) {
        let bytes: usize = events.iter().map(StoredEvent::approx_bytes).sum();
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.bytes + bytes > Self::CAPACITY_BYTES || events.is_empty() {
            return;
        }
        held.bytes += bytes;
        held.by_tx.insert(tx, (events, bytes));
    }

    /// Takes the held transactions in `[from, to)`, and forgets those before `from` (the follower has read them
    /// back already: their commit returned after it had passed them).
    fn take(&self, from: i64, to: i64) -> Vec<(i64, Vec<StoredEvent>)> {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let later = held.by_tx.split_off(&to);
        let taken = std::mem::replace(&mut held.by_tx, later);
        held.bytes -= taken.values().map(|(_, bytes)| bytes).sum::<usize>();
        taken.into_iter().filter(|(tx, _)| *tx >= from).map(|(tx, (events, _))| (tx, events)).collect()
    }
}

/// Succeeds when the server at `url` answers a query (readiness checks).
pub fn ping(url: &str) -> Result<(), StoreError> {
    connect(url)?.query_one("SELECT 1", &[]).map_err(database)?;
    Ok(())
}

/// Connects with a bounded wait, so an unreachable server fails a group (503) instead of hanging the writer.
fn connect(url: &str) -> Result<Client, StoreError> {
    let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| StoreError::Unavailable(format!("invalid database URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(2));
    }
    config.connect(NoTls).map_err(unavailable)
}

impl PgEventLog {
    /// Connects and applies pending migrations.
    pub fn connect(url: &str) -> Result<PgEventLog, StoreError> {
        let mut client = connect(url)?;
        migrate(&mut client)?;
        Ok(PgEventLog { client, url: url.to_owned(), statements: Default::default() })
    }

    /// The connection, opened again first when the server had closed it (a restart): the writer's next group after
    /// an outage goes through without anyone's help.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.is_closed() {
            self.client = connect(&self.url)?;
            // Statements belong to the connection they were prepared on.
            self.statements.clear();
            tracing::info!("reconnected to PostgreSQL");
        }
        Ok(&mut self.client)
    }

    /// `sql` prepared on the current connection (once per connection).
    fn statement(&mut self, sql: &'static str) -> Result<postgres::Statement, StoreError> {
        self.client()?;
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).map_err(database)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Names the database for a replica: the server's system identifier and the database name (a replica refuses
    /// to follow another database than the one it was built from).
    pub fn source_name(&mut self) -> Result<String, StoreError> {
        let row = self.client()?.query_one("SELECT (SELECT system_identifier::text FROM pg_control_system()) || '/' || current_database()", &[]).map_err(database)?;
        Ok(row.get(0))
    }

    /// The log position below which everything is final: the oldest transaction still running (or the next one).
    pub fn final_below(&mut self) -> Result<i64, StoreError> {
        let statement = self.statement(FINAL_BELOW)?;
        let row = self.client()?.query_one(&statement, &[]).map_err(database)?;
        Ok(row.get(0))
    }

    /// Whether the log holds any event.
    pub fn has_events(&mut self) -> Result<bool, StoreError> {
        Ok(self.client()?.query_one("SELECT EXISTS (SELECT 1 FROM events)", &[]).map_err(database)?.get(0))
    }

    /// The position of the next transaction to start: everything committed before this call lies below it.
    pub fn next_position(&mut self) -> Result<i64, StoreError> {
        let row = self.client()?.query_one("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint", &[]).map_err(database)?;
        Ok(row.get(0))
    }

    /// Reads the log from position `from` on: about `max_events` events (whole transactions), or up to where it is
    /// final. Every row of a transaction below [`PgEventLog::final_below`] is committed (or gone for good), and a
    /// transaction that writes later gets a higher id, so reading `[from, next)` in (tx, id) order gives every
    /// collector the same rows in the same order, once.
    /// The events of this collector's own transactions come from `own` where it holds them, instead of being read
    /// back.
    pub fn pull(&mut self, from: i64, max_events: i64, own: Option<&OwnEvents>) -> Result<Pulled, StoreError> {
        let final_below = self.final_below()?;
        if final_below <= from {
            return Ok(Pulled { next: from, final_below, ..Default::default() });
        }
        let cut_rows = self.statement(PULL_CUT)?;
        let event_rows = self.statement(&PULL_EVENTS)?;
        let quarantine_rows = self.statement(PULL_QUARANTINE)?;
        let client = self.client()?;
        let cut = client.query_opt(&cut_rows, &[&from, &final_below, &max_events]).map_err(database)?;
        // Whole transactions only: stop before the one the cut falls in (unless it is the first).
        let next = match cut {
            Some(row) => row.get::<_, i64>(0).max(from + 1),
            None => final_below,
        };
        let mut pulled = Pulled { next, final_below, ..Default::default() };
        // Every transaction below `next` is final: what `own` holds of them is all they stored.
        let held = own.map(|own| own.take(from, next)).unwrap_or_default();
        let held_txs: Vec<i64> = held.iter().map(|(tx, _)| *tx).collect();
        let rows = client.query(&event_rows, &[&from, &next, &held_txs]).map_err(database)?;
        pulled.events.reserve_exact(rows.len() + held.iter().map(|(_, events)| events.len()).sum::<usize>());
        for row in rows {
            pulled.events.push((row.get(0), event_from_row(&row)?));
        }
        pulled.events.extend(held.into_iter().flat_map(|(tx, events)| events.into_iter().map(move |e| (tx, e))));
        pulled.events.sort_unstable_by_key(|(tx, e)| (*tx, e.shared_id));
        let rows = client.query(&quarantine_rows, &[&from, &next]).map_err(database)?;
        for row in rows {
            let code: String = row.get(5);
            pulled.quarantine.push((
                row.get(0),
                QuarantinedEvent {
                    shared_id: Some(row.get(1)),
                    site: row.get::<_, String>(2).into(),
                    received_at: row.get(3),
                    message_id: row.get(4),
                    code: intern_code(code),
                    reason: row.get(6),
                    payload: row.get(7),
                },
            ));
        }
        pulled.quarantine.sort_unstable_by_key(|(tx, q)| (*tx, q.shared_id));
        pulled.ops = self.ops_between(from, next)?;
        Ok(pulled)
    }

    /// The operations at positions `[from, to)`, in log order: (position, id, at, payload).
    fn ops_between(&mut self, from: i64, to: i64) -> Result<Vec<(i64, i64, i64, String)>, StoreError> {
        let op_rows = self.statement(PULL_OPS)?;
        let rows = self.client()?.query(&op_rows, &[&from, &to]).map_err(database)?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1), row.get(2), row.get(3))).collect())
    }

    /// The operations' payloads from position `from` up to where the log is final, in log order, and the position
    /// after them (what an ingest-only collector reads to learn erasures' suppressions).
    pub fn pull_ops(&mut self, from: i64) -> Result<(Vec<String>, i64), StoreError> {
        let final_below = self.final_below()?;
        if final_below <= from {
            return Ok((Vec::new(), from));
        }
        Ok((self.ops_between(from, final_below)?.into_iter().map(|(.., payload)| payload).collect(), final_below))
    }

    /// Appends an operation for every replica; returns its id.
    pub fn append_op(&mut self, at: i64, payload: &str) -> Result<i64, StoreError> {
        let row = self.client()?.query_one("INSERT INTO ops (at, payload) VALUES ($1, $2) RETURNING id", &[&at, &payload]).map_err(database)?;
        Ok(row.get(0))
    }

    /// Deletes events and quarantined events by id (an erasure's findings), and appends `op` (when given) in the
    /// same transaction.
    pub fn delete_rows(&mut self, events: &[i64], quarantine: &[i64], op: Option<(i64, &str)>) -> Result<(), StoreError> {
        let mut tx = self.client()?.transaction().map_err(database)?;
        tx.execute("DELETE FROM events WHERE id = ANY($1)", &[&events]).map_err(database)?;
        tx.execute("DELETE FROM quarantine WHERE id = ANY($1)", &[&quarantine]).map_err(database)?;
        if let Some((at, payload)) = op {
            tx.execute("INSERT INTO ops (at, payload) VALUES ($1, $2)", &[&at, &payload]).map_err(database)?;
        }
        tx.commit().map_err(database)
    }

    /// Retention: deletes up to `limit` events of `site` from before `cutoff_ms` (event time), quarantined events
    /// received before it, and messageIds claimed before `dedupe_cutoff_ms`. Returns how many rows went.
    pub fn delete_older_than(&mut self, site: &str, cutoff_ms: i64, dedupe_cutoff_ms: i64, limit: i64) -> Result<usize, StoreError> {
        let mut tx = self.client()?.transaction().map_err(database)?;
        let mut deleted = tx
            .execute("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE site = $1 AND timestamp < $2 LIMIT $3)", &[&site, &cutoff_ms, &limit])
            .map_err(database)?;
        deleted += tx
            .execute("DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine WHERE site = $1 AND received_at < $2 LIMIT $3)", &[&site, &cutoff_ms, &limit])
            .map_err(database)?;
        deleted += tx
            .execute("DELETE FROM message_ids WHERE (site, message_id) IN (SELECT site, message_id FROM message_ids WHERE site = $1 AND received_at < $2 LIMIT $3)", &[&site, &dedupe_cutoff_ms, &limit])
            .map_err(database)?;
        tx.commit().map_err(database)?;
        Ok(deleted as usize)
    }


    /// Stores a group in one transaction (durable when it returns: `synchronous_commit` is on). Returns the
    /// positions of the events not stored because their messageId was already stored for their site, by this
    /// collector or another one, or earlier in the same group (what `EventStore::commit` returns). Quarantined
    /// events are always stored.
    pub fn commit(&mut self, events: &[StoredEvent], quarantine: &[QuarantinedEvent]) -> Result<Vec<usize>, StoreError> {
        self.commit_group(events, quarantine).map(|committed| committed.duplicates)
    }

    /// [`PgEventLog::commit`], saying where the group went in the log.
    pub fn commit_group(&mut self, events: &[StoredEvent], quarantine: &[QuarantinedEvent]) -> Result<Committed, StoreError> {
        let cleaned: Vec<std::borrow::Cow<'_, StoredEvent>> = events.iter().map(|e| without_nul(e).map_or(std::borrow::Cow::Borrowed(e), std::borrow::Cow::Owned)).collect();
        let verbatim = cleaned.iter().all(|e| matches!(e, std::borrow::Cow::Borrowed(_)));
        let events: Vec<&StoredEvent> = cleaned.iter().map(|e| e.as_ref()).collect();
        let claim_all = self.statement(CLAIM_ALL_IDS)?;
        let claim = self.statement(CLAIM_IDS)?;
        let take_ids = self.statement(TAKE_IDS)?;
        let copy_events_in = self.statement(&COPY_EVENTS)?;
        let copy_quarantine_in = self.statement(COPY_QUARANTINE)?;
        let mut tx = self.client()?.transaction().map_err(database)?;
        // The group's messageIds claimed in one statement. Concurrent transactions
        // claiming the same id wait for each other on the primary key, so exactly one of them gets it. Claimed in
        // key order, so two groups sharing ids lock them in the same order and never deadlock.
        let mut claims: Vec<(&str, &str, i64)> = events.iter().map(|e| (&*e.site, e.message_id(), e.received_at)).collect();
        claims.sort_unstable();
        claims.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
        let (sites, ids, times): (Vec<&str>, Vec<&str>, Vec<i64>) = claims.into_iter().fold((vec![], vec![], vec![]), |(mut s, mut m, mut t), (site, id, at)| {
            s.push(site);
            m.push(id);
            t.push(at);
            (s, m, t)
        });
        // Usually no messageId of a group was claimed before, so the plain INSERT claims them all. `ON CONFLICT`
        // would look each one up before inserting it, which made the claim cost PostgreSQL more than the COPY of
        // the events (README § Benchmarks, bench-pg). When one was claimed before (a retry, a copy sent to another
        // collector too), the INSERT fails on the primary key, the savepoint undoes it, and the claim that skips
        // what was taken runs instead; only those come back.
        let mut attempt = tx.savepoint("claim").map_err(database)?;
        let claimed = sites.len() as i32;
        let (already, position): (HashSet<(String, String)>, postgres::Row) = match attempt.query_one(&claim_all, &[&sites, &ids, &times, &claimed]) {
            Ok(position) => {
                attempt.commit().map_err(database)?;
                (HashSet::new(), position)
            }
            Err(error) if error.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                attempt.rollback().map_err(database)?;
                let already: HashSet<(String, String)> = tx.query(&claim, &[&sites, &ids, &times]).map_err(database)?.into_iter().map(|row| (row.get(0), row.get(1))).collect();
                let position = tx.query_one(&take_ids, &[&(claimed - already.len() as i32)]).map_err(database)?;
                (already, position)
            }
            Err(error) => return Err(database(error)),
        };
        let (log_tx, event_ids): (i64, Vec<i64>) = (position.get(0), position.get(1));
        let mut taken: HashSet<(&str, &str)> = HashSet::with_capacity(events.len());
        let stored: Vec<bool> = events
            .iter()
            .map(|e| {
                let new = already.is_empty() || !already.contains(&(e.site.to_string(), e.message_id().to_owned()));
                new && taken.insert((&*e.site, e.message_id()))
            })
            .collect();
        let stored_events: Vec<&StoredEvent> = events.iter().zip(&stored).filter(|(_, s)| **s).map(|(e, _)| *e).collect();
        if stored_events.len() != event_ids.len() {
            return Err(StoreError::Corrupt(format!("{} ids taken for {} events to store", event_ids.len(), stored_events.len())));
        }
        copy_events(&mut tx, &copy_events_in, log_tx, stored_events.into_iter().zip(&event_ids))?;
        if !quarantine.is_empty() {
            let mut rows = CopyRows::new(tx.copy_in(&copy_quarantine_in).map_err(database)?);
            for q in quarantine {
                let (message_id, payload) = (q.message_id.as_deref().map(nul_free), nul_free(&q.payload));
                rows.row(6);
                rows.text(Some(&q.site));
                rows.int(Some(q.received_at));
                rows.text(message_id.as_deref());
                rows.text(Some(q.code));
                rows.text(Some(&q.reason));
                rows.text(Some(&payload));
                rows.flush_if_full()?;
            }
            rows.finish()?;
        }
        tx.commit().map_err(database)?;
        Ok(Committed { duplicates: stored.iter().enumerate().filter(|(_, stored)| !**stored).map(|(i, _)| i).collect(), tx: log_tx, ids: event_ids, verbatim })
    }

    /// Calls `each(site, message_id, received_at)` for every messageId claimed at or after `since_ms`.
    pub fn for_each_recent_message_id(&mut self, since_ms: i64, each: &mut dyn FnMut(&str, &str, i64)) -> Result<(), StoreError> {
        for row in self.client()?.query("SELECT site, message_id, received_at FROM message_ids WHERE received_at >= $1", &[&since_ms]).map_err(database)? {
            each(row.get(0), row.get(1), row.get(2));
        }
        Ok(())
    }
}

/// Appends events with one binary COPY (the fastest bulk path; research/perf-baselines.md §4.3).
fn copy_events<'a>(
    tx: &mut postgres::Transaction<'_>,
    statement: &postgres::Statement,
    log_tx: i64,
    events: impl Iterator<Item = (&'a StoredEvent, &'a i64)>,
) -> Result<(), StoreError> {
    let mut rows = CopyRows::new(tx.copy_in(statement).map_err(database)?);
    for (e, id) in events {
        let (identity, consent_change) = (e.identity.as_ref().map(encode_identity), e.consent_change.as_ref().map(encode_consent_change));
        rows.row(39);
        rows.int(Some(log_tx));
        rows.int(Some(*id));
        rows.text(Some(&e.site));
        rows.text(Some(e.message_id()));
        rows.text(Some(e.kind.map(|k| k.as_str()).unwrap_or("")));
        use Field::*;
        for field in [Name, Category, AnonymousId, UserId, PreviousId, GroupId] {
            rows.text(e.text(field));
        }
        for int in [Some(e.timestamp), e.original_timestamp, e.sent_at, Some(e.received_at), Some(e.flags)] {
            rows.int(int);
        }
        for field in [Url, Path, Title, Referrer, ReferrerHost, UtmSource, UtmMedium, UtmCampaign, UtmTerm, UtmContent, Ip, Browser, Os] {
            rows.text(e.text(field));
        }
        rows.text(e.device);
        for field in [Properties, Traits, Context, Integrations, Visitor, SessionId] {
            rows.text(e.text(field));
        }
        rows.int(Some(e.consent));
        rows.text(identity.as_deref());
        rows.text(consent_change.as_deref());
        rows.flush_if_full()?;
    }
    rows.finish()
}

/// Rows in PostgreSQL's binary COPY format, written straight into the COPY: `BinaryCopyInWriter` checked every
/// value's type against its column again on every row (37 per event) and encoded each through `dyn ToSql`, a
/// fifth of the writer thread's time. Every column here is `text` (UTF-8 bytes) or `bigint` (8 bytes, big-endian).
struct CopyRows<'a> {
    sink: postgres::CopyInWriter<'a>,
    buf: Vec<u8>,
}

impl<'a> CopyRows<'a> {
    /// Sent to the server in pieces of about this size.
    const PIECE: usize = 256 * 1024;

    fn new(sink: postgres::CopyInWriter<'a>) -> Self {
        let mut buf = Vec::with_capacity(Self::PIECE + 64 * 1024);
        // Signature, flags, header extension length.
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes());
        CopyRows { sink, buf }
    }

    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn text(&mut self, value: Option<&str>) {
        match value {
            // An event's texts are bounded by the 32 KB event limit, a quarantined payload by the 500 KB body.
            Some(text) => {
                self.buf.extend_from_slice(&(text.len() as i32).to_be_bytes());
                self.buf.extend_from_slice(text.as_bytes());
            }
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    fn int(&mut self, value: Option<i64>) {
        match value {
            Some(n) => {
                self.buf.extend_from_slice(&8i32.to_be_bytes());
                self.buf.extend_from_slice(&n.to_be_bytes());
            }
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    fn flush_if_full(&mut self) -> Result<(), StoreError> {
        if self.buf.len() >= Self::PIECE {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), StoreError> {
        use std::io::Write as _;
        // The writer fails only when the connection is gone.
        self.sink.write_all(&self.buf).map_err(|e| StoreError::Unavailable(format!("PostgreSQL connection lost during a COPY: {e}")))?;
        self.buf.clear();
        Ok(())
    }

    /// Ends the data (the trailer) and the COPY.
    fn finish(mut self) -> Result<(), StoreError> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.send()?;
        self.sink.finish().map_err(database)?;
        Ok(())
    }
}

/// A reason code read back, as the `'static` string quarantined events carry. Codes are ours (a short fixed
/// list), so the interned set stays small.
pub(super) fn intern_code(code: String) -> &'static str {
    static CODES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut codes = CODES.lock().expect("codes");
    if let Some(known) = codes.iter().find(|c| **c == code) {
        return known;
    }
    let leaked: &'static str = Box::leak(code.into_boxed_str());
    codes.push(leaked);
    leaked
}

/// PostgreSQL text cannot hold NUL (SQLite's can): the shared store keeps U+FFFD in its place.
fn nul_free(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}").into()
    } else {
        text.into()
    }
}

/// The event with every NUL replaced (see [`nul_free`]), or `None` when it has none (nearly always). The JSON
/// texts (properties, traits, context, integrations) never hold one: JSON holds a NUL only as the escape `\u0000`,
/// never as the byte.
fn without_nul(e: &StoredEvent) -> Option<StoredEvent> {
    let in_identity = e.identity.as_ref().is_some_and(|i| i.identifiers.iter().chain(&i.primary).any(|id| id.value.contains('\0')));
    if !in_identity && !e.texts.contain('\0') {
        return None;
    }
    let mut e = e.clone();
    let cleaned = e.texts.values().map(|t| t.map(nul_free));
    e.texts = super::Texts::pack(cleaned.each_ref().map(|t| t.as_deref()));
    if let Some(identity) = &mut e.identity {
        for id in identity.identifiers.iter_mut().chain(identity.primary.as_mut()) {
            id.value = nul_free(&id.value).into_owned();
        }
    }
    Some(e)
}

/// An event as the log holds it (columns `tx, id`, then [`event_columns`]).
fn event_from_row(row: &postgres::Row) -> Result<StoredEvent, StoreError> {
    let identity: Option<String> = row.get(37);
    let consent_change: Option<String> = row.get(38);
    Ok(StoredEvent {
        shared_id: Some(row.get(1)),
        identity: identity.as_deref().map(decode_identity).transpose()?,
        consent_change: consent_change.as_deref().map(decode_consent_change).transpose()?,
        ..StoredEvent::from_columns(row, 2)?
    })
}

/// The `identity` column: `{"ids": [[kind, value], …], "primary": [kind, value] | null, "traits": "{…}" | null}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct IdentityColumn {
    ids: Vec<(String, String)>,
    primary: Option<(String, String)>,
    traits: Option<String>,
}

pub(super) fn encode_identity(input: &super::IdentityInput) -> String {
    let pair = |id: &crate::identity::Identifier| (id.kind.as_string(), id.value.clone());
    let column = IdentityColumn { ids: input.identifiers.iter().map(pair).collect(), primary: input.primary.as_ref().map(pair), traits: input.traits.clone() };
    serde_json::to_string(&column).expect("plain data serialises")
}

fn decode_identity(text: &str) -> Result<super::IdentityInput, StoreError> {
    use crate::identity::{IdKind, Identifier};
    let column: IdentityColumn = serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("identity column: {e}")))?;
    let identifier = |(kind, value): (String, String)| IdKind::parse(&kind).map(|k| Identifier::new(k, value)).ok_or_else(|| StoreError::Corrupt(format!("identifier kind {kind:?}")));
    Ok(super::IdentityInput {
        identifiers: column.ids.into_iter().map(identifier).collect::<Result<_, _>>()?,
        primary: column.primary.map(identifier).transpose()?,
        traits: column.traits,
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ConsentChangeColumn {
    categories: i64,
    source: String,
    policy_version: Option<String>,
}

fn encode_consent_change(change: &super::ConsentChange) -> String {
    let column = ConsentChangeColumn { categories: change.categories, source: change.source.clone(), policy_version: change.policy_version.clone() };
    serde_json::to_string(&column).expect("plain data serialises")
}

fn decode_consent_change(text: &str) -> Result<super::ConsentChange, StoreError> {
    let c: ConsentChangeColumn = serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("consent_change column: {e}")))?;
    Ok(super::ConsentChange { categories: c.categories, source: c.source, policy_version: c.policy_version })
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
            kind: Some(CallKind::Track),
            timestamp: 1_770_000_000_000,
            received_at: 1_770_000_000_500,
            device: Some("mobile"),
            ..Default::default()
        }.with(Field::MessageId, id).with(Field::Name, "Signed Up").with(Field::Properties, r#"{"plan":"pro"}"#)
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

    /// Pulls from `from` until `done` (within 10 s), as a follower does.
    fn pull_until(log: &mut PgEventLog, from: i64, done: impl Fn(&Pulled) -> bool) -> Pulled {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let pulled = log.pull(from, 100, None).unwrap();
            if done(&pulled) || std::time::Instant::now() > deadline {
                return pulled;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn held_events_are_bounded_and_taken_once_by_transaction() {
        let site: Arc<str> = "shop".into();
        let own = OwnEvents::default();
        let big = event(&site, "big").with(Field::Properties, &"x".repeat(1 << 20));
        for tx in 1..=40 {
            own.offer(tx, vec![big.clone()]);
        }
        let held = own.take(0, i64::MAX);
        assert!(held.len() < 40 && held.len() >= 30, "bounded by bytes: {} of 40 MiB held", held.len());
        for tx in [10, 20, 30] {
            own.offer(tx, vec![event(&site, "m")]);
        }
        let taken: Vec<i64> = own.take(15, 30).iter().map(|(tx, _)| *tx).collect();
        assert_eq!(taken, [20], "only [from, to); the one before `from` is forgotten, the one at `to` kept");
        assert_eq!(own.take(0, i64::MAX).iter().map(|(tx, _)| *tx).collect::<Vec<_>>(), [30]);
        assert!(own.take(0, i64::MAX).is_empty());
    }

    #[test]
    fn events_held_for_the_follower_are_the_events_it_would_read_back() {
        let Some(url) = fresh_database("own") else { return };
        let site: Arc<str> = "shop".into();
        let mut log = PgEventLog::connect(&url).unwrap();
        let mut rich = event(&site, "a").with(Field::Context, r#"{"locale":"fr"}"#).with(Field::Url, "https://shop.example/p?x=1");
        rich.identity = Some(super::super::IdentityInput {
            identifiers: vec![crate::identity::Identifier::new(crate::identity::IdKind::UserId, "u-1")],
            primary: Some(crate::identity::Identifier::new(crate::identity::IdKind::UserId, "u-1")),
            traits: Some(r#"{"plan":"pro"}"#.into()),
        });
        rich.consent_change = Some(super::super::ConsentChange { categories: 3, source: "banner".into(), policy_version: None });
        let group = vec![rich, event(&site, "b"), event(&site, "a")];
        let committed = log.commit_group(&group, &[]).unwrap();
        assert_eq!((committed.duplicates.as_slice(), committed.ids.len(), committed.verbatim), (&[2][..], 2, true));
        let own = OwnEvents::default();
        own.offer(committed.tx, group[..2].iter().zip(&committed.ids).map(|(e, id)| StoredEvent { shared_id: Some(*id), ..e.clone() }).collect());
        let read_back = pull_until(&mut log, 0, |p| p.events.len() >= 2);
        let held = log.pull(0, 100, Some(&own)).unwrap();
        assert_eq!((read_back.events.len(), held.events.len(), held.next), (2, 2, read_back.next), "the held transaction is not read as well");
        assert!(own.take(0, i64::MAX).is_empty(), "taken once");
        let describe = |(tx, e): &(i64, StoredEvent)| {
            let texts: Vec<Option<&str>> = Field::ALL.iter().map(|f| e.text(*f)).collect();
            format!("{tx} {:?} {} {:?} {:?} {:?} {:?} {} {:?} {} {} {:?} {:?} {:?} {texts:?}", e.shared_id, e.site, e.kind, e.timestamp, e.original_timestamp, e.sent_at, e.received_at, e.device, e.flags, e.consent, e.identity, e.consent_change, e.message_id())
        };
        let (back, kept): (Vec<String>, Vec<String>) = (read_back.events.iter().map(describe).collect(), held.events.iter().map(describe).collect());
        assert_eq!(kept, back);
    }

    #[test]
    fn the_log_is_read_in_one_order_and_only_where_it_is_final() {
        let Some(url) = fresh_database("pull") else { return };
        let site: Arc<str> = "shop".into();
        let mut log = PgEventLog::connect(&url).unwrap();
        let mut with_identity = event(&site, "first");
        with_identity.identity = Some(super::super::IdentityInput {
            identifiers: vec![crate::identity::Identifier::new(crate::identity::IdKind::AnonymousId, "a-1")],
            primary: Some(crate::identity::Identifier::new(crate::identity::IdKind::AnonymousId, "a-1")),
            traits: Some(r#"{"plan":"pro"}"#.into()),
        });
        with_identity.consent_change = Some(super::super::ConsentChange { categories: 3, source: "banner".into(), policy_version: Some("v2".into()) });
        log.commit(&[with_identity], &[]).unwrap();
        // The other tests' transactions on the same server can hold the log back for a moment, as any collector's do.
        let first = pull_until(&mut log, 0, |p| !p.events.is_empty());
        assert_eq!(first.events.len(), 1);
        let back = &first.events[0].1;
        assert_eq!(back.identity.as_ref().map(|i| (i.identifiers.len(), i.traits.clone())), Some((1, Some(r#"{"plan":"pro"}"#.into()))), "identity input kept");
        assert_eq!(back.consent_change.as_ref().map(|c| c.source.as_str()), Some("banner"));
        assert!(back.shared_id.is_some());
        // Another collector's transaction that began earlier and is still running holds the log back: a later
        // commit is not read until that transaction ends, and then both are read, in transaction order.
        let mut other = Client::connect(&url, NoTls).unwrap();
        let mut open = other.transaction().unwrap();
        open.batch_execute("INSERT INTO events (site, message_id, type, timestamp, received_at) VALUES ('shop', 'slow', 'track', 1, 1)").unwrap();
        log.commit(&[event(&site, "fast")], &[]).unwrap();
        let held = log.pull(first.next, 100, None).unwrap();
        assert!(held.events.is_empty(), "nothing read past a running transaction");
        assert!(held.next <= held.final_below);
        open.commit().unwrap();
        let after = pull_until(&mut log, held.next, |p| p.events.len() >= 2);
        let ids: Vec<&str> = after.events.iter().map(|(_, e)| e.message_id()).collect();
        assert_eq!(ids, ["slow", "fast"], "both, in the order of their transactions");
        assert!(log.pull(after.next, 100, None).unwrap().events.is_empty(), "each row read once");
    }

    #[test]
    fn a_nul_in_a_text_is_stored_as_a_replacement_character() {
        let Some(url) = fresh_database("nul") else { return };
        let site: Arc<str> = "shop".into();
        let mut log = PgEventLog::connect(&url).unwrap();
        // Decoded texts can hold the byte; JSON texts hold only the escape, which PostgreSQL keeps as it is.
        let e = event(&site, "n\0ul");
        let e = e.with(Field::Name, "Signed\0Up").with(Field::Properties, r#"{"note":"a\u0000b"}"#);
        assert_eq!(log.commit(&[e], &[]).unwrap(), Vec::<usize>::new());
        let row = log.client.query_one("SELECT message_id, name, properties FROM events", &[]).unwrap();
        let got: (String, String, String) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(got, ("n\u{fffd}ul".into(), "Signed\u{fffd}Up".into(), r#"{"note":"a\u0000b"}"#.into()));
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
                            answers.extend(group.iter().enumerate().map(|(i, e)| (e.message_id().to_owned(), !duplicates.contains(&i))));
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
