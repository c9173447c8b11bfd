//! The store of a collector that shares one PostgreSQL database with others (DESIGN.md §6; ARCHITECTURE.md §
//! Several collectors). PostgreSQL holds the log every collector appends to: events, quarantined events and
//! shared operations (erasure, unmerge), with `messageId` deduplication decided there. Each collector keeps a
//! replica of what is derived from that log in its own data directory (the embedded SQLite store: the identity
//! graph, profiles, stats, the consent ledger) and applies the log to it in the one order every collector reads it
//! in (`PgEventLog::pull`). The rules that derive the replica are deterministic, so every replica resolves the
//! same person into the same profile, whichever collector received which event.

use super::postgres::{OwnEvents, PgEventLog, Pulled};
use super::sqlite::SqliteStore;
use super::{ErasureReport, ErasureRequest, EventStore, QuarantinedEvent, RetentionPass, StoreError, StoredEvent, UnmergeError};
use crate::identity::{IdKind, Identifier};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The suppression key of an identifier (the HMAC that erasure records; the same key on every collector).
pub type SuppressionHash = Arc<dyn Fn(&Identifier) -> String + Send + Sync>;
/// The erased identifiers ingest refuses, as (site, kind, hash): shared with the HTTP side.
pub type Suppressions = Arc<RwLock<HashSet<(String, String, String)>>>;

/// Events per read of the log.
const PULL_EVENTS: i64 = 5_000;
/// How long the follower pauses when the log has nothing new.
const IDLE_POLL: Duration = Duration::from_millis(20);
/// How long a flush (before a read, an erasure or an unmerge) waits for the log to become final.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// An operation every replica applies at its place in the log (the `ops` table's JSON payload).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum SharedOp {
    /// Erase a person (the identifier as stored: e-mail and phone already hashed).
    Erase { sites: Vec<String>, kind: String, value: String },
    /// Quarantined events an erasure found by the raw values only the collector that took the request knew.
    ForgetQuarantine { ids: Vec<i64> },
    Unmerge { merge_id: i64 },
    /// Erased identifiers to refuse from now on, as (site, kind, hash): those a store copied in brought, and those
    /// an erasure found (for ingest-only collectors, which have no replica to find them in).
    Suppress { entries: Vec<(String, String, String)> },
}

/// The payload of a [`SharedOp::Suppress`].
pub(super) fn suppress_payload(entries: &[(String, String, String)]) -> String {
    serde_json::to_string(&SharedOp::Suppress { entries: entries.to_vec() }).expect("plain data")
}

enum Outcome {
    Erased(ErasureReport),
    Unmerged(Result<(i64, i64), UnmergeError>),
}

/// The shared store: the writer's connection to the log, and the replica, which a thread of its own keeps
/// following the log (off the path that acknowledges requests; the writer only claims messageIds and COPYs rows).
pub struct SharedStore {
    log: PgEventLog,
    /// What this collector committed, held for the follower (the writer lanes offer theirs too).
    own: Arc<OwnEvents>,
    replica: Arc<Mutex<Replica>>,
    replica_path: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    follower: Option<std::thread::JoinHandle<()>>,
}

/// This collector's replica and the connection it follows the log with.
struct Replica {
    log: PgEventLog,
    own: Arc<OwnEvents>,
    store: SqliteStore,
    /// Every log transaction below this one is applied to the replica.
    position: i64,
    suppression_hash: SuppressionHash,
    suppressions: Suppressions,
    dedupe_window_ms: i64,
    /// Operations this collector appended and waits for, with the raw values of its erasures (kept in memory only).
    awaiting: HashMap<i64, Vec<String>>,
    outcomes: HashMap<i64, Outcome>,
}

impl SharedStore {
    /// Connects (applying PostgreSQL's migrations), opens the replica in `data_dir`, brings it up to date and
    /// starts the thread that keeps it so.
    pub fn open(url: &str, data_dir: &Path, suppression_hash: SuppressionHash, suppressions: Suppressions, dedupe_window_days: u32) -> Result<SharedStore, StoreError> {
        let own = Arc::new(OwnEvents::default());
        let replica = Replica::open(url, data_dir, own.clone(), suppression_hash, suppressions, dedupe_window_days)?;
        let replica_path = replica.store.path().to_path_buf();
        let replica = Arc::new(Mutex::new(replica));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_replica, thread_stop) = (replica.clone(), stop.clone());
        let follower = std::thread::Builder::new()
            .name("footprint-follower".into())
            .spawn(move || follow_until_stopped(&thread_replica, &thread_stop))
            .expect("spawn the follower thread");
        Ok(SharedStore { log: PgEventLog::connect(url)?, own, replica, replica_path, stop, follower: Some(follower) })
    }

    /// Where the writer lanes hold what they commit for this collector's follower.
    pub fn own_events(&self) -> Arc<OwnEvents> {
        self.own.clone()
    }

    /// The replica's database file (stats and admin reads open it).
    pub fn replica_path(&self) -> &Path {
        &self.replica_path
    }

    fn replica(&self) -> std::sync::MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.follower.take() {
            let _ = thread.join();
        }
    }
}

/// The follower thread: applies the log as it grows; pauses briefly when there is nothing new.
fn follow_until_stopped(replica: &Mutex<Replica>, stop: &AtomicBool) {
    repeat_until_stopped(stop, "the replica cannot follow the shared log", "the replica follows the shared log again", || {
        let applied = replica.lock().unwrap_or_else(std::sync::PoisonError::into_inner).follow()?;
        Ok(if applied > 0 { Duration::ZERO } else { IDLE_POLL })
    });
}

/// Runs `step` until `stop` is set, pausing for as long as it says. After an error (PostgreSQL away) it tries again
/// every second, with one warning (`failing`) until it works again (`recovered`).
fn repeat_until_stopped(stop: &AtomicBool, failing: &str, recovered: &str, mut step: impl FnMut() -> Result<Duration, StoreError>) {
    let mut failed = false;
    while !stop.load(Ordering::Relaxed) {
        let pause = match step() {
            Ok(pause) => {
                if failed {
                    tracing::info!("{recovered}");
                    failed = false;
                }
                pause
            }
            Err(error) => {
                if !failed {
                    tracing::warn!(%error, "{failing}; retrying every second");
                    failed = true;
                }
                Duration::from_secs(1)
            }
        };
        std::thread::sleep(pause);
    }
}

impl Replica {
    /// Connects, opens the replica in `data_dir` and brings it up to date.
    fn open(url: &str, data_dir: &Path, own: Arc<OwnEvents>, suppression_hash: SuppressionHash, suppressions: Suppressions, dedupe_window_days: u32) -> Result<Replica, StoreError> {
        let mut log = PgEventLog::connect(url)?;
        let mut replica = SqliteStore::open(data_dir)?;
        replica.commit_without_waiting_for_disk()?;
        let source = log.source_name()?;
        let position = match replica.replica_position()? {
            Some((followed, position)) if followed == source => position,
            Some((followed, _)) => {
                return Err(StoreError::Unavailable(format!(
                    "{} is the replica of another database ({followed}, not {source}); give this collector an empty data directory",
                    data_dir.display()
                )))
            }
            None if replica.has_rows()? => {
                return Err(StoreError::Unavailable(format!(
                    "{} holds a standalone store; move it into PostgreSQL with `footprint copy-to-postgres`, or give this collector an empty data directory",
                    data_dir.display()
                )))
            }
            None => {
                replica.start_replica(&source, 0)?;
                0
            }
        };
        let mut store = Replica {
            log,
            own,
            store: replica,
            position,
            suppression_hash,
            suppressions,
            dedupe_window_ms: i64::from(dedupe_window_days) * 86_400_000,
            awaiting: HashMap::new(),
            outcomes: HashMap::new(),
        };
        let started = Instant::now();
        let applied = store.follow()?;
        if applied > 0 {
            tracing::info!(rows = applied, seconds = started.elapsed().as_secs_f64(), "replica caught up with the shared log");
        }
        Ok(store)
    }

    /// Applies the log to the replica up to where it is final now; returns how many rows it applied.
    fn follow(&mut self) -> Result<usize, StoreError> {
        let mut applied = 0;
        loop {
            let pulled = self.log.pull(self.position, PULL_EVENTS, Some(&self.own))?;
            let caught_up = pulled.next >= pulled.final_below;
            applied += self.apply(pulled)?;
            if caught_up {
                return Ok(applied);
            }
        }
    }

    /// Applies one stretch of the log: events and quarantined events in batches, each operation at its place.
    fn apply(&mut self, pulled: Pulled) -> Result<usize, StoreError> {
        let Pulled { events, quarantine, ops, next, .. } = pulled;
        let rows = events.len() + quarantine.len() + ops.len();
        let mut events = events.into_iter().peekable();
        let mut quarantine = quarantine.into_iter().peekable();
        let mut ops = ops.into_iter().peekable();
        while let Some((op_tx, op_id, at, payload)) = ops.next() {
            let before: Vec<StoredEvent> = std::iter::from_fn(|| events.next_if(|(tx, _)| *tx < op_tx)).map(|(_, e)| e).collect();
            let quarantined: Vec<QuarantinedEvent> = std::iter::from_fn(|| quarantine.next_if(|(tx, _)| *tx < op_tx)).map(|(_, q)| q).collect();
            self.apply_rows(before, quarantined, op_tx)?;
            self.apply_op(op_id, at, &payload)?;
            // Past this transaction, unless another operation of it follows.
            let after = if ops.peek().is_some_and(|(tx, ..)| *tx == op_tx) { op_tx } else { op_tx + 1 };
            self.store.set_replica_position(after)?;
            self.position = after;
        }
        self.apply_rows(events.map(|(_, e)| e).collect(), quarantine.map(|(_, q)| q).collect::<Vec<_>>(), next)?;
        // With nothing to apply the position moves in memory only (no write per idle poll); the next rows record it.
        self.position = next;
        Ok(rows)
    }

    fn apply_rows(&mut self, mut events: Vec<StoredEvent>, quarantine: Vec<QuarantinedEvent>, next_tx: i64) -> Result<(), StoreError> {
        if events.is_empty() && quarantine.is_empty() {
            return Ok(());
        }
        // An event of an erased person that reached another collector before it learnt of the erasure: not kept.
        let erased = self.drop_suppressed(&mut events);
        if !erased.is_empty() {
            self.log.delete_rows(&erased, &[], None)?;
        }
        self.store.apply_replicated(events, &quarantine, next_tx)?;
        self.position = next_tx;
        Ok(())
    }

    /// Removes the events that carry a suppressed identifier; returns their shared ids.
    fn drop_suppressed(&self, events: &mut Vec<StoredEvent>) -> Vec<i64> {
        let suppressions = self.suppressions.read().expect("suppressions");
        if suppressions.is_empty() {
            return Vec::new();
        }
        let mut erased = Vec::new();
        events.retain(|e| {
            let suppressed = e.identity.as_ref().is_some_and(|input| {
                input.identifiers.iter().any(|id| suppressions.contains(&(e.site.to_string(), id.kind.as_string(), (self.suppression_hash)(id))))
            });
            if suppressed {
                erased.extend(e.shared_id);
            }
            !suppressed
        });
        erased
    }

    fn apply_op(&mut self, op_id: i64, at: i64, payload: &str) -> Result<(), StoreError> {
        let op: SharedOp = serde_json::from_str(payload).map_err(|e| StoreError::Corrupt(format!("shared operation {op_id}: {e}")))?;
        match op {
            SharedOp::Erase { sites, kind, value } => {
                let Some(kind) = IdKind::parse(&kind) else { return Err(StoreError::Corrupt(format!("shared operation {op_id}: identifier kind {kind:?}"))) };
                // Only the collector that took the request knows its raw values (they never go into the log).
                let raw_values = self.awaiting.get(&op_id).cloned().unwrap_or_default();
                let request = ErasureRequest { sites, identifier: Identifier::new(kind, value), raw_values };
                let hash = self.suppression_hash.clone();
                let report = self.store.erase(&request, &|id| hash(id), at)?;
                self.suppressions.write().expect("suppressions").extend(report.suppressions.iter().cloned());
                // Every replica deletes what it found from the log (the same rows: idempotent, and done even if the
                // collector that took the request stopped meanwhile). Quarantined events found by raw values are
                // also named for the other replicas, which cannot find them.
                let forget = (!request.raw_values.is_empty() && !report.shared_quarantine.is_empty())
                    .then(|| serde_json::to_string(&SharedOp::ForgetQuarantine { ids: report.shared_quarantine.clone() }).expect("plain data"));
                self.log.delete_rows(&report.shared_events, &report.shared_quarantine, forget.as_deref().map(|p| (at, p)))?;
                if self.awaiting.contains_key(&op_id) {
                    self.outcomes.insert(op_id, Outcome::Erased(report));
                }
            }
            SharedOp::Suppress { entries } => {
                self.store.add_suppressions(&entries, at)?;
                self.suppressions.write().expect("suppressions").extend(entries);
            }
            SharedOp::ForgetQuarantine { ids } => {
                self.store.delete_shared_quarantine(&ids)?;
            }
            SharedOp::Unmerge { merge_id } => {
                let result = self.store.unmerge(merge_id, at)?;
                if self.awaiting.contains_key(&op_id) {
                    self.outcomes.insert(op_id, Outcome::Unmerged(result));
                }
            }
        }
        Ok(())
    }

    /// Appends an operation and follows the log until the replica has applied it; returns its outcome.
    fn run_op(&mut self, op: &SharedOp, at: i64, raw_values: Vec<String>) -> Result<Outcome, StoreError> {
        self.flush()?;
        let payload = serde_json::to_string(op).expect("plain data");
        let id = self.log.append_op(at, &payload)?;
        self.awaiting.insert(id, raw_values);
        // The operation committed before this flush began, so the flush applies it.
        let flushed = self.flush();
        self.awaiting.remove(&id);
        flushed?;
        self.outcomes.remove(&id).ok_or_else(|| StoreError::Corrupt(format!("shared operation {id} was not found in the log")))
    }
}

impl Replica {
    /// Brings the replica up to date with everything committed anywhere before the call: follows the log until it
    /// is final past the position the next transaction would get now (the log is final only below the oldest
    /// running transaction, of any database on the server, so this may take a few rounds).
    fn flush(&mut self) -> Result<(), StoreError> {
        let target = self.log.next_position()?;
        let started = Instant::now();
        loop {
            self.follow()?;
            if self.position >= target {
                break;
            }
            if started.elapsed() > OPERATION_TIMEOUT {
                return Err(StoreError::Unavailable("the shared log did not become final in time (a long transaction holds it back)".into()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.store.flush()
    }
}

impl EventStore for SharedStore {
    fn commit(&mut self, events: Vec<StoredEvent>, quarantine: &[QuarantinedEvent]) -> Result<Vec<usize>, StoreError> {
        // Only the log: the follower thread applies the rows to the replica.
        commit_holding(&mut self.log, Some(&self.own), events, quarantine)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.replica().flush()
    }

    fn stats_backlog(&self) -> usize {
        self.replica.try_lock().map_or(0, |r| r.store.stats_backlog())
    }

    fn unmerge(&mut self, merge_id: i64, now: i64) -> Result<Result<(i64, i64), UnmergeError>, StoreError> {
        match self.replica().run_op(&SharedOp::Unmerge { merge_id }, now, Vec::new())? {
            Outcome::Unmerged(result) => Ok(result),
            Outcome::Erased(_) => unreachable!("an unmerge's outcome"),
        }
    }

    /// The replicas compute suppression keys themselves (every collector has the same key), so
    /// `_suppression_hash` is not needed here.
    fn erase(&mut self, request: &ErasureRequest, _suppression_hash: &dyn Fn(&Identifier) -> String, now: i64) -> Result<ErasureReport, StoreError> {
        let op = SharedOp::Erase { sites: request.sites.clone(), kind: request.identifier.kind.as_string(), value: request.identifier.value.clone() };
        let report = match self.replica().run_op(&op, now, request.raw_values.clone())? {
            Outcome::Erased(report) => report,
            Outcome::Unmerged(_) => unreachable!("an erasure's outcome"),
        };
        // Replicas found the same suppressions when they applied the erasure; ingest-only collectors learn them here.
        if !report.suppressions.is_empty() {
            self.log.append_op(now, &suppress_payload(&report.suppressions))?;
        }
        Ok(report)
    }

    fn delete_older_than(&mut self, site: &str, cutoff_ms: i64, limit: usize) -> Result<RetentionPass, StoreError> {
        let (in_replica, dedupe_cutoff) = {
            let mut replica = self.replica();
            (replica.store.delete_older_than(site, cutoff_ms, limit)?, crate::now_ms() - replica.dedupe_window_ms)
        };
        let in_log = self.log.delete_older_than(site, cutoff_ms, dedupe_cutoff, limit as i64)?;
        Ok(RetentionPass { deleted: in_replica.deleted.max(in_log), more: in_replica.more || in_log >= limit })
    }

    fn for_each_recent_message_id(&mut self, since_ms: i64, each: &mut dyn FnMut(&str, &str, i64)) -> Result<(), StoreError> {
        self.log.for_each_recent_message_id(since_ms, each)
    }
}

/// How often an ingest-only collector looks for new suppressions in the log.
const SUPPRESSIONS_POLL: Duration = Duration::from_secs(1);

/// Writer lanes per collector on the shared log: group commits in flight at once, each on its own connection
/// (`writer::Writer::start`). One group's transaction is one PostgreSQL backend's work, so with one lane
/// the collector waited while PostgreSQL worked and PostgreSQL waited while the collector formed the next group.
pub const WRITE_LANES: usize = 2;

/// A writer lane: commits groups to the shared log on a connection of its own. Everything else runs on the main
/// store (exclusive jobs go to the main lane).
pub struct LogAppender {
    log: PgEventLog,
    /// The collector's follower's, when it has one (not ingest-only).
    own: Option<Arc<OwnEvents>>,
}

impl LogAppender {
    pub fn connect(url: &str, own: Option<Arc<OwnEvents>>) -> Result<LogAppender, StoreError> {
        Ok(LogAppender { log: PgEventLog::connect(url)?, own })
    }
}

/// Commits a group to the log and, when `own` is given, holds what it stored there for the follower.
fn commit_holding(log: &mut PgEventLog, own: Option<&OwnEvents>, events: Vec<StoredEvent>, quarantine: &[QuarantinedEvent]) -> Result<Vec<usize>, StoreError> {
    let committed = log.commit_group(&events, quarantine)?;
    if let Some(own) = own.filter(|_| committed.verbatim) {
        let mut duplicates = committed.duplicates.iter().peekable();
        let stored = events.into_iter().enumerate().filter(|(i, _)| duplicates.next_if_eq(&i).is_none()).map(|(_, e)| e);
        own.offer(committed.tx, stored.zip(&committed.ids).map(|(e, id)| StoredEvent { shared_id: Some(*id), ..e }).collect());
    }
    Ok(committed.duplicates)
}

fn main_lane_only() -> StoreError {
    StoreError::Unavailable("a writer lane only commits; this runs on the main writer".into())
}

impl EventStore for LogAppender {
    fn commit(&mut self, events: Vec<StoredEvent>, quarantine: &[QuarantinedEvent]) -> Result<Vec<usize>, StoreError> {
        commit_holding(&mut self.log, self.own.as_deref(), events, quarantine)
    }

    fn unmerge(&mut self, _merge_id: i64, _now: i64) -> Result<Result<(i64, i64), UnmergeError>, StoreError> {
        Err(main_lane_only())
    }

    fn erase(&mut self, _request: &ErasureRequest, _suppression_hash: &dyn Fn(&Identifier) -> String, _now: i64) -> Result<ErasureReport, StoreError> {
        Err(main_lane_only())
    }

    fn delete_older_than(&mut self, _site: &str, _cutoff_ms: i64, _limit: usize) -> Result<RetentionPass, StoreError> {
        Err(main_lane_only())
    }

    /// The main store gives the writer the window's messageIds.
    fn for_each_recent_message_id(&mut self, _since_ms: i64, _each: &mut dyn FnMut(&str, &str, i64)) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The store of an ingest-only collector (`role = "ingest"`): it appends to the shared log like any collector, and
/// keeps no replica. A thread learns erasures' suppressions from the log (the `Suppress` operations the erasing
/// collector appends), so ingest refuses an erased person's events as everywhere else. An event that arrives
/// before the suppression is learnt is dropped by every replica when it applies it (`Replica::drop_suppressed`).
pub struct IngestOnlyStore {
    log: PgEventLog,
    dedupe_window_ms: i64,
    stop: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl IngestOnlyStore {
    /// Connects (applying PostgreSQL's migrations), learns every suppression in the log, and starts the thread that
    /// learns new ones.
    pub fn open(url: &str, suppressions: Suppressions, dedupe_window_days: u32) -> Result<IngestOnlyStore, StoreError> {
        let mut watch = PgEventLog::connect(url)?;
        let mut position = 0;
        learn_suppressions(&mut watch, &mut position, &suppressions)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let watcher = std::thread::Builder::new()
            .name("footprint-suppressions".into())
            .spawn(move || {
                repeat_until_stopped(&thread_stop, "cannot read suppressions from the shared log", "learning suppressions from the shared log again", || {
                    learn_suppressions(&mut watch, &mut position, &suppressions).map(|()| SUPPRESSIONS_POLL)
                })
            })
            .expect("spawn the suppressions thread");
        Ok(IngestOnlyStore { log: PgEventLog::connect(url)?, dedupe_window_ms: i64::from(dedupe_window_days) * 86_400_000, stop, watcher: Some(watcher) })
    }
}

/// Adds the suppressions of the operations from `position` on to `suppressions`, and moves `position` past them.
fn learn_suppressions(log: &mut PgEventLog, position: &mut i64, suppressions: &Suppressions) -> Result<(), StoreError> {
    let (payloads, next) = log.pull_ops(*position)?;
    for payload in payloads {
        if let Ok(SharedOp::Suppress { entries }) = serde_json::from_str(&payload) {
            suppressions.write().expect("suppressions").extend(entries);
        }
    }
    *position = next;
    Ok(())
}

impl Drop for IngestOnlyStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.watcher.take() {
            let _ = thread.join();
        }
    }
}

/// What only a collector with a replica can do.
fn needs_replica() -> StoreError {
    StoreError::Unavailable("this collector only ingests (role = \"ingest\"); ask a collector with a replica".into())
}

impl EventStore for IngestOnlyStore {
    fn commit(&mut self, events: Vec<StoredEvent>, quarantine: &[QuarantinedEvent]) -> Result<Vec<usize>, StoreError> {
        self.log.commit(&events, quarantine)
    }

    fn unmerge(&mut self, _merge_id: i64, _now: i64) -> Result<Result<(i64, i64), UnmergeError>, StoreError> {
        Err(needs_replica())
    }

    fn erase(&mut self, _request: &ErasureRequest, _suppression_hash: &dyn Fn(&Identifier) -> String, _now: i64) -> Result<ErasureReport, StoreError> {
        Err(needs_replica())
    }

    /// Retention in the log (the replicas' collectors delete in their replicas).
    fn delete_older_than(&mut self, site: &str, cutoff_ms: i64, limit: usize) -> Result<RetentionPass, StoreError> {
        let deleted = self.log.delete_older_than(site, cutoff_ms, crate::now_ms() - self.dedupe_window_ms, limit as i64)?;
        Ok(RetentionPass { deleted, more: deleted >= limit })
    }

    fn for_each_recent_message_id(&mut self, since_ms: i64, each: &mut dyn FnMut(&str, &str, i64)) -> Result<(), StoreError> {
        self.log.for_each_recent_message_id(since_ms, each)
    }
}
