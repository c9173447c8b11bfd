//! The stats thread: applies committed events to the stats tables, which live in their own file (`stats.db`), off
//! the writer's acknowledgement path. A stats transaction (thousands of events, tens of milliseconds) used to hold
//! up every answer that arrived meanwhile; in its own file it takes no lock the writer needs.

use super::stats::{self, StatsEvent};
use super::StoreError;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Events per stats transaction when catching up from the database.
const CATCH_UP_BATCH: usize = 20_000;
/// Jobs waiting for the thread: none. The writer hands a batch over when the thread is ready for it, so at most
/// one batch waits in the writer and one is being applied: when the stats fall behind (sustained overload), the
/// writer waits for them, which bounds their memory and gives them the core. (Peak RSS under 2× overload: 337–344
/// MB with four batches waiting, 292–295 MB with one, 269–291 MB with none; 246–256 MB before the stats thread.)
const QUEUED_JOBS: usize = 0;

enum Job {
    /// Every event with `after < id <= last`, in id order.
    Record { after: i64, last: i64, events: Vec<StatsEvent> },
    /// Answers once every event up to `upto` is in the stats tables (reading back what never arrived).
    Sync { upto: i64, answer: mpsc::SyncSender<Result<(), StoreError>> },
    /// An erasure deleted visits: the thread's copy of them starts over.
    ClearCache,
}

/// The handle the writer keeps; dropping it lets the thread finish what it was sent and stop.
pub struct StatsThread {
    jobs: Option<mpsc::SyncSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `stats.db` beside the main database `db`.
pub fn stats_path(db: &Path) -> PathBuf {
    db.with_file_name("stats.db")
}

/// A connection to `stats.db` with the main database `db` attached as `ev` (read for catching up): stats tables
/// resolve to `stats.db`, `events` to the main database.
fn open_connection(db: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(stats_path(db))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL, like the events: an erasure's deletions here must survive a power loss as the main database's do.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 5_000)?;
    // The pages an update touches (open visits, the current hours' rollups) are few; 8 MiB keeps them.
    conn.pragma_update(None, "cache_size", -8_192)?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute("ATTACH DATABASE ?1 AS ev", [db.to_string_lossy()])?;
    Ok(conn)
}

impl StatsThread {
    /// Starts the thread on `stats.db` beside `db`. Its first job begins by catching up with the events the stats
    /// do not include yet (a crash left them out).
    pub fn start(db: &Path) -> Result<StatsThread, StoreError> {
        let conn = open_connection(db)?;
        let (jobs, inbox) = mpsc::sync_channel(QUEUED_JOBS);
        let thread = std::thread::Builder::new()
            .name("footprint-stats".into())
            .spawn(move || {
                lower_priority();
                Updater { conn, cache: stats::StatsCache::default(), behind: true }.run(inbox)
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the stats thread: {e}")))?;
        Ok(StatsThread { jobs: Some(jobs), thread: Some(thread) })
    }

    /// Hands over committed events (`after < id <= last`); returns once the thread has taken them, at once unless
    /// it is still applying the previous batch.
    pub fn record(&self, after: i64, last: i64, events: Vec<StatsEvent>) {
        self.send(Job::Record { after, last, events });
    }

    /// Waits until the stats include every event up to `upto` (the writer's links watermark).
    pub fn sync(&self, upto: i64) -> Result<(), StoreError> {
        let (answer, reply) = mpsc::sync_channel(1);
        self.send(Job::Sync { upto, answer });
        reply.recv().map_err(|_| StoreError::Unavailable("the stats thread stopped".into()))?
    }

    pub fn clear_cache(&self) {
        self.send(Job::ClearCache);
    }

    fn send(&self, job: Job) {
        // The thread lives as long as this handle; a send fails only if it panicked, and `sync` then says so.
        let _ = self.jobs.as_ref().expect("jobs until drop").send(job);
    }
}

impl Drop for StatsThread {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs the calling thread below the threads that answer requests. A stats update is tens of milliseconds of CPU
/// every 250 ms, and at the same priority the scheduler ran it ahead of answers that arrived meanwhile: single
/// events at 9,000/s on one core, p99 14–18 ms at nice 0 and 10–12 ms at nice 19. When the answering threads keep
/// the core busy, the stats fall behind until the writer waits for them ([`QUEUED_JOBS`]).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its arguments. On Linux the nice value is per thread, and `who = 0`
        // names the calling thread (elsewhere it would name the whole process, hence the cfg).
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
            tracing::debug!("could not lower the stats thread's priority");
        }
    }
}

struct Updater {
    conn: Connection,
    cache: stats::StatsCache,
    /// The stats tables may lack events that were committed (start, a failed stats transaction): read them back
    /// from the main database before going on.
    behind: bool,
}

impl Updater {
    fn run(mut self, inbox: mpsc::Receiver<Job>) {
        while let Ok(job) = inbox.recv() {
            match job {
                Job::Record { after, last, events } => {
                    let result = self.record(after, last, &events);
                    // Freed here, not on the writer.
                    drop(events);
                    if let Err(error) = result {
                        tracing::warn!(%error, "stats update failed; retrying from the stored events");
                    }
                }
                Job::Sync { upto, answer } => {
                    let _ = answer.send(self.sync(upto));
                }
                Job::ClearCache => self.cache.clear(),
            }
        }
    }

    fn record(&mut self, after: i64, last: i64, events: &[StatsEvent]) -> Result<(), StoreError> {
        if !self.behind && stats::watermark(&self.conn, "stats_state")? != after {
            // Something between the last update and these events never arrived (a failed links transaction).
            self.behind = true;
        }
        if self.behind {
            return self.catch_up();
        }
        self.apply(events, last).inspect_err(|_| self.failed())
    }

    fn sync(&mut self, upto: i64) -> Result<(), StoreError> {
        // Behind also when a batch never came (the writer's links transaction failed and it read them back).
        if !self.behind && stats::watermark(&self.conn, "stats_state")? < upto {
            self.behind = true;
        }
        if self.behind {
            self.catch_up()?;
        }
        Ok(())
    }

    fn apply(&mut self, events: &[StatsEvent], last: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        stats::record(&tx, &mut self.cache, events, last)?;
        stats::set_watermark(&tx, "stats_state", last)?;
        tx.commit()?;
        Ok(())
    }

    /// Rolled back: the cache may hold what was not stored, and the events are read back next time.
    fn failed(&mut self) {
        self.cache.clear();
        self.behind = true;
    }

    fn catch_up(&mut self) -> Result<(), StoreError> {
        let mut caught_up = 0;
        loop {
            let after = stats::watermark(&self.conn, "stats_state").inspect_err(|_| self.failed())?;
            let (events, _, _, last) = stats::events_after(&self.conn, after, CATCH_UP_BATCH).inspect_err(|_| self.failed())?;
            if events.is_empty() {
                break;
            }
            self.apply(&events, last).inspect_err(|_| self.failed())?;
            caught_up += events.len();
        }
        if caught_up > 0 {
            tracing::info!(events = caught_up, "stats caught up with stored events");
        }
        self.behind = false;
        Ok(())
    }
}
