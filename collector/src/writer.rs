//! The single writer: a bounded queue in front of one thread that group-commits everything waiting, deduplicates
//! by `messageId` within the window, and only then answers each request. 2xx therefore means "durable".
//!
//! On a shared PostgreSQL store, several lanes commit groups at once, each on its own connection
//! ([`Writer::start`]): one group's transaction keeps one PostgreSQL backend, so one lane at a time left
//! the collector idle while PostgreSQL worked and PostgreSQL idle while the collector formed the next group. The
//! lanes take groups from one queue; the database's `messageId` key decides between two groups in flight as it
//! does between two collectors.

use crate::metrics::Metrics;
use crate::store::{EventStore, QuarantinedEvent, StoreError, StoredEvent};
use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Rows per transaction at most; more waiting work goes into the next commit.
const MAX_ROWS_PER_COMMIT: usize = 4_000;
const DAY_MS: i64 = 86_400_000;
/// How long the writer may wait for more rows when a group is small and a request is on its way (an [`Arrival`]);
/// it adds at most this to a request's latency.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
/// Groups of at least this many rows are committed at once. Single-event requests from 128 connections filled groups
/// of ~65 rows with 64 and 1 ms; with 128 and 2 ms, ~95 rows, and ~5 % less collector CPU per event (alternating runs).
/// Waiting only for requests on their way (`Arrival`) halved the groups (~58 rows) at the same CPU per event, and
/// took 32 closed-loop connections from 7,700 to 17,000–19,000 events/s: before, each group waited its 2 ms for
/// requests that could not come.
const LINGER_BELOW_ROWS: usize = 128;
/// How long the queue must stay empty before waiting events go into the stats (see `next_job`).
const IDLE_FLUSH: Duration = Duration::from_millis(50);

/// The fate of one accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Accepted,
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the write queue is full")]
    QueueFull,
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("the collector is shutting down")]
    ShuttingDown,
}

/// Work for the writer thread: events to commit, or an exclusive operation on the store (erasure, unmerge,
/// retention) that runs between group commits.
enum Job {
    Write(WriteJob),
    Exclusive(Box<dyn FnOnce(&mut dyn EventStore) + Send>),
}

struct WriteJob {
    events: Vec<StoredEvent>,
    quarantine: Vec<QuarantinedEvent>,
    reply: oneshot::Sender<Result<Vec<Stored>, String>>,
    _permit: OwnedSemaphorePermit,
    bytes: i64,
}

/// The request side of the writer. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    /// Write jobs.
    tx: mpsc::UnboundedSender<Job>,
    /// Exclusive jobs: the same queue with one lane; with several, the main lane's own.
    exclusive_tx: mpsc::UnboundedSender<Job>,
    capacity: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    /// Requests between [`Writer::arriving`] and their submission.
    arriving: Arc<AtomicUsize>,
}

/// A request on its way to the writer (its body being read or parsed). While one exists, a small group waits for it
/// (up to [`LINGER`]); with none, waiting could only add latency: when every client is waiting for an answer, no
/// more rows come until this group is committed.
pub struct Arrival(Arc<AtomicUsize>);

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Writer {
    /// Starts the writer thread. `capacity_bytes` bounds the memory of waiting jobs; past it, `submit` fails fast.
    /// `lanes`: stores that only commit (each its own connection to the same shared log), none for SQLite. With
    /// any, the lanes commit every write job and `main` runs the exclusive jobs and the stats; the returned thread
    /// ends after the lanes' threads.
    pub fn start(
        main: Box<dyn EventStore>,
        lanes: Vec<Box<dyn EventStore>>,
        dedupe_window_days: u32,
        capacity_bytes: usize,
        metrics: Arc<Metrics>,
        now_ms: fn() -> i64,
    ) -> Result<(Writer, std::thread::JoinHandle<()>), StoreError> {
        Writer::start_with_linger(main, lanes, dedupe_window_days, capacity_bytes, metrics, now_ms, LINGER)
    }

    fn start_with_linger(
        mut main: Box<dyn EventStore>,
        lanes: Vec<Box<dyn EventStore>>,
        dedupe_window_days: u32,
        capacity_bytes: usize,
        metrics: Arc<Metrics>,
        now_ms: fn() -> i64,
        linger: Duration,
    ) -> Result<(Writer, std::thread::JoinHandle<()>), StoreError> {
        let mut recent = RecentIds::new(dedupe_window_days);
        let since = now_ms() - i64::from(dedupe_window_days) * DAY_MS;
        main.for_each_recent_message_id(since, &mut |site, id, received_at| {
            recent.insert(received_at, recent.key(site, id));
        })?;
        metrics.dedupe_ids.store(recent.len() as i64, Relaxed);
        let recent = Arc::new(Mutex::new(recent));
        let arriving = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let (exclusive_tx, main_rx, lane_threads) = if lanes.is_empty() {
            (tx.clone(), rx, Vec::new())
        } else {
            let (exclusive_tx, main_rx) = mpsc::unbounded_channel();
            let shared_rx = Arc::new(Mutex::new(rx));
            let threads = lanes
                .into_iter()
                .enumerate()
                .map(|(i, store)| {
                    let (rx, recent, metrics, arriving) = (shared_rx.clone(), recent.clone(), metrics.clone(), arriving.clone());
                    std::thread::Builder::new()
                        .name(format!("footprint-writer-{}", i + 1))
                        .spawn(move || run_lane(store, &recent, &rx, &metrics, &arriving, now_ms, linger))
                        .expect("spawn writer lane")
                })
                .collect();
            (exclusive_tx, main_rx, threads)
        };
        let (thread_metrics, thread_arriving) = (metrics.clone(), arriving.clone());
        let handle = std::thread::Builder::new()
            .name("footprint-writer".into())
            .spawn(move || {
                // The main lane's queue closes with the write queue (every Writer handle holds both).
                let lanes_done = move || {
                    for lane in lane_threads {
                        let _ = lane.join();
                    }
                };
                run(main, &recent, main_rx, thread_metrics, &thread_arriving, now_ms, linger, lanes_done);
            })
            .expect("spawn writer thread");
        let capacity = Arc::new(Semaphore::new(capacity_bytes.div_ceil(1024).max(1)));
        Ok((Writer { tx, exclusive_tx, capacity, metrics, arriving }, handle))
    }

    /// Runs `operation` on the writer thread, alone with the store, and returns its result.
    pub async fn exclusive<T: Send + 'static>(&self, operation: impl FnOnce(&mut dyn EventStore) -> T + Send + 'static) -> Result<T, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Exclusive(Box::new(move |store| {
            let _ = reply.send(operation(store));
        }));
        self.exclusive_tx.send(job).map_err(|_| SubmitError::ShuttingDown)?;
        answer.await.map_err(|_| SubmitError::ShuttingDown)
    }

    /// Whether the queue has room for `bytes` now (not a reservation: [`Writer::submit`] decides). Lets a request
    /// be refused before its body is read and parsed, which under overload would only end in a refusal anyway.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.capacity.available_permits() >= bytes.div_ceil(1024)
    }

    /// Announces a request that will submit (or end): small groups wait for it while it lasts.
    pub fn arriving(&self) -> Arrival {
        self.arriving.fetch_add(1, Relaxed);
        Arrival(self.arriving.clone())
    }

    /// [`Writer::submit`] for the request `arrival` announced; it stops counting as on its way once queued.
    pub async fn submit_arrived(&self, arrival: Arrival, events: Vec<StoredEvent>, quarantine: Vec<QuarantinedEvent>) -> Result<Vec<Stored>, SubmitError> {
        self.submit_with(Some(arrival), events, quarantine).await
    }

    /// Queues the events of one request and waits until they are committed. Returns one [`Stored`] per event.
    pub async fn submit(&self, events: Vec<StoredEvent>, quarantine: Vec<QuarantinedEvent>) -> Result<Vec<Stored>, SubmitError> {
        self.submit_with(None, events, quarantine).await
    }

    async fn submit_with(&self, arrival: Option<Arrival>, events: Vec<StoredEvent>, quarantine: Vec<QuarantinedEvent>) -> Result<Vec<Stored>, SubmitError> {
        let bytes: usize = events.iter().map(StoredEvent::approx_bytes).sum::<usize>()
            + quarantine.iter().map(|q| q.payload.len() + q.reason.len() + 128).sum::<usize>();
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let permit = self.capacity.clone().try_acquire_many_owned(kib).map_err(|_| SubmitError::QueueFull)?;
        self.metrics.queue_bytes.fetch_add(bytes as i64, Relaxed);
        let (reply, answer) = oneshot::channel();
        let job = WriteJob { events, quarantine, reply, _permit: permit, bytes: bytes as i64 };
        if self.tx.send(Job::Write(job)).is_err() {
            return Err(SubmitError::ShuttingDown);
        }
        // After the send: the writer sees the job before it stops waiting for this request.
        drop(arrival);
        match answer.await {
            Ok(Ok(stored)) => Ok(stored),
            Ok(Err(message)) => Err(SubmitError::Storage(message)),
            Err(_) => Err(SubmitError::ShuttingDown),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    mut store: Box<dyn EventStore>,
    recent: &Mutex<RecentIds>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    metrics: Arc<Metrics>,
    arriving: &AtomicUsize,
    now_ms: fn() -> i64,
    linger: Duration,
    lanes_done: impl FnOnce(),
) {
    // Ends when every Writer handle is dropped and the queue is drained: that is graceful shutdown.
    let mut next = rx.blocking_recv();
    while let Some(job) = next.take() {
        let first = match job {
            Job::Exclusive(operation) => {
                operation(&mut *store);
                metrics.stats_waiting.store(store.stats_backlog() as i64, Relaxed);
                next = rx.blocking_recv();
                continue;
            }
            Job::Write(first) => first,
        };
        let (jobs, exclusive) = gather(first, &mut rx, arriving, linger);
        // Runs right after this group.
        next = exclusive;
        commit_group(&mut *store, recent, jobs, &metrics, now_ms());
        if next.is_none() {
            next = next_job(&mut rx, &mut *store, &metrics);
        }
    }
    lanes_done();
    // Shutdown: the stats include every stored event before the process exits.
    if let Err(error) = store.flush() {
        tracing::warn!(%error, "final stats update failed; it is caught up at the next start");
    }
}

/// A lane of [`Writer::start`]: takes the waiting write jobs from the shared queue as one group (holding
/// the queue meanwhile, so the next lane's group starts with what comes after) and commits them.
fn run_lane(
    mut store: Box<dyn EventStore>,
    recent: &Mutex<RecentIds>,
    rx: &Mutex<mpsc::UnboundedReceiver<Job>>,
    metrics: &Metrics,
    arriving: &AtomicUsize,
    now_ms: fn() -> i64,
    linger: Duration,
) {
    loop {
        let jobs = {
            let mut rx = rx.lock().expect("the write queue");
            match rx.blocking_recv() {
                Some(Job::Write(first)) => gather(first, &mut rx, arriving, linger).0,
                Some(Job::Exclusive(_)) => unreachable!("exclusive jobs go to the main lane"),
                None => return,
            }
        };
        commit_group(&mut *store, recent, jobs, metrics, now_ms());
    }
}

/// `first` and the write jobs waiting behind it, up to [`MAX_ROWS_PER_COMMIT`] rows; stops at an exclusive job,
/// which it returns.
fn gather(first: WriteJob, rx: &mut mpsc::UnboundedReceiver<Job>, arriving: &AtomicUsize, linger: Duration) -> (Vec<WriteJob>, Option<Job>) {
    let mut rows = first.events.len() + first.quarantine.len();
    let mut jobs = vec![first];
    let linger_until = Instant::now() + linger;
    while rows < MAX_ROWS_PER_COMMIT {
        match rx.try_recv() {
            Ok(Job::Write(job)) => {
                rows += job.events.len() + job.quarantine.len();
                jobs.push(job);
            }
            Ok(exclusive) => return (jobs, Some(exclusive)),
            // A small group pays a commit's fixed costs (fsync, stats sketches) for few rows: wait a moment
            // for the requests on their way, which a single-event load sends continuously.
            Err(_) if rows < LINGER_BELOW_ROWS && arriving.load(Relaxed) > 0 && Instant::now() < linger_until => std::thread::sleep(linger.min(LINGER) / 8),
            Err(_) => break,
        }
    }
    (jobs, None)
}

/// Waits for the next job. While committed events wait for the stats, it looks at the queue every millisecond
/// and updates the stats once the queue has been empty for [`IDLE_FLUSH`], so a quiet collector's stats are fresh.
fn next_job(rx: &mut mpsc::UnboundedReceiver<Job>, store: &mut dyn EventStore, metrics: &Metrics) -> Option<Job> {
    let mut idle_since = Instant::now();
    while store.stats_waiting() {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) if idle_since.elapsed() >= IDLE_FLUSH => {
                if let Err(error) = store.flush_in_background() {
                    tracing::warn!(%error, "stats update failed; retrying from the stored events");
                }
                // Not in a tight loop: a store that keeps waiting (a replica following a shared log, or one whose
                // flush failed) is flushed again after another quiet period.
                idle_since = Instant::now();
                metrics.stats_waiting.store(store.stats_backlog() as i64, Relaxed);
            }
            Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    rx.blocking_recv()
}

/// Commits one group. `recent` is locked while the group is checked against it and while its new ids go in, not
/// during the commit: another lane's group may be checked meanwhile, and an id in both is decided by the store.
fn commit_group(store: &mut dyn EventStore, recent: &Mutex<RecentIds>, jobs: Vec<WriteJob>, metrics: &Metrics, now: i64) {
    let started = Instant::now();
    let mut guard = recent.lock().expect("the dedupe window");
    guard.expire(now);
    // Sized once: grown event by event, the events (~800 bytes each) were copied over and over.
    let events: usize = jobs.iter().map(|job| job.events.len()).sum();
    let mut fresh_keys: HashSet<u128, IdentityHash> = HashSet::with_capacity_and_hasher(events, IdentityHash);
    let mut to_store = Vec::with_capacity(events);
    let mut to_quarantine = Vec::new();
    let mut answers = Vec::with_capacity(jobs.len());
    let mut new_ids = Vec::with_capacity(events);
    // For each event in `to_store`: which answer and which of its statuses it is.
    let mut answer_of = Vec::with_capacity(events);
    for job in jobs {
        let mut statuses = Vec::with_capacity(job.events.len());
        for event in job.events {
            let key = guard.key(&event.site, event.message_id());
            if guard.contains(key) || !fresh_keys.insert(key) {
                statuses.push(Stored::Duplicate);
            } else {
                new_ids.push((event.received_at, key));
                answer_of.push((answers.len(), statuses.len()));
                statuses.push(Stored::Accepted);
                to_store.push(event);
            }
        }
        to_quarantine.extend(job.quarantine);
        metrics.queue_bytes.fetch_sub(job.bytes, Relaxed);
        answers.push((job.reply, statuses, job._permit));
    }
    drop(guard);
    let stored_rows = to_store.len() + to_quarantine.len();
    let result = store.commit(to_store, &to_quarantine);
    let micros = started.elapsed().as_micros() as u64;
    Metrics::add(&metrics.commits, 1);
    Metrics::add(&metrics.commit_micros_total, micros);
    metrics.commit_micros_max.fetch_max(micros, Relaxed);
    match result {
        Ok(already_stored) => {
            for position in already_stored {
                let (answer, status) = answer_of[position];
                answers[answer].1[status] = Stored::Duplicate;
            }
            Metrics::add(&metrics.commit_rows, stored_rows as u64);
            let mut recent = recent.lock().expect("the dedupe window");
            for (received_at, key) in new_ids {
                recent.insert(received_at, key);
            }
            metrics.dedupe_ids.store(recent.len() as i64, Relaxed);
            drop(recent);
            for (reply, statuses, _permit) in answers {
                let _ = reply.send(Ok(statuses));
            }
            // After the answers: a stats update (tens of ms for thousands of events) must not hold them up.
            store.flush_if_due();
            metrics.stats_waiting.store(store.stats_backlog() as i64, Relaxed);
        }
        Err(error) => {
            Metrics::add(&metrics.commit_failures, 1);
            tracing::error!(%error, rows = stored_rows, "group commit failed; its requests get 503");
            let message = error.to_string();
            for (reply, _, _permit) in answers {
                let _ = reply.send(Err(message.clone()));
            }
        }
    }
}

/// The messageIds seen within the dedupe window, as 128-bit keyed hashes in one set per day (so expiry drops whole
/// days). The keys are random per process: the set is rebuilt from the store at start.
///
/// A day's set is [`SHARDS`] tables, chosen by a key's top bits. A table doubles when it fills and moves every key
/// at once, a cache miss each, while every acknowledgement waits for the writer: one table of 14.7 million keys
/// held one insert for 273 ms here, 16 shards for 18 ms (a scratch benchmark of 16 million random keys).
struct RecentIds {
    window_days: u32,
    days: VecDeque<(i64, Vec<HashSet<u128, IdentityHash>>)>,
    hash_lo: RandomState,
    hash_hi: RandomState,
}

impl RecentIds {
    fn new(window_days: u32) -> Self {
        RecentIds { window_days, days: VecDeque::new(), hash_lo: RandomState::new(), hash_hi: RandomState::new() }
    }

    fn key(&self, site: &str, message_id: &str) -> u128 {
        let half = |state: &RandomState| {
            let mut h = state.build_hasher();
            h.write(site.as_bytes());
            h.write_u8(0xff);
            h.write(message_id.as_bytes());
            h.finish()
        };
        (u128::from(half(&self.hash_hi)) << 64) | u128::from(half(&self.hash_lo))
    }

    fn contains(&self, key: u128) -> bool {
        self.days.iter().any(|(_, shards)| shards[shard(key)].contains(&key))
    }

    fn insert(&mut self, received_at: i64, key: u128) {
        let day = received_at.div_euclid(DAY_MS);
        let at = match self.days.iter().position(|(d, _)| *d == day) {
            Some(at) => at,
            None => {
                self.days.push_back((day, (0..SHARDS).map(|_| HashSet::default()).collect()));
                self.days.make_contiguous().sort_by_key(|(d, _)| *d);
                self.days.iter().position(|(d, _)| *d == day).expect("just inserted")
            }
        };
        self.days[at].1[shard(key)].insert(key);
    }

    /// Forgets days that lie entirely before the window.
    fn expire(&mut self, now: i64) {
        let oldest_kept = (now - i64::from(self.window_days) * DAY_MS).div_euclid(DAY_MS);
        while self.days.front().is_some_and(|(d, _)| *d < oldest_kept) {
            self.days.pop_front();
        }
    }

    fn len(&self) -> usize {
        self.days.iter().flat_map(|(_, shards)| shards).map(HashSet::len).sum()
    }
}

/// Tables per day of [`RecentIds`].
const SHARDS: usize = 16;

/// A key's table: its top bits (the tables hash by the low ones).
fn shard(key: u128) -> usize {
    (key >> 124) as usize
}

/// The keys are already uniform hashes: use their low bits as the table hash.
#[derive(Default, Clone, Copy)]
struct IdentityHash;

impl BuildHasher for IdentityHash {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A store that keeps rows in memory and can be told to fail, to test the writer's own logic.
    #[derive(Clone, Default)]
    struct MemoryStore {
        rows: Arc<Mutex<Vec<StoredEvent>>>,
        /// The rows of each commit, in order.
        groups: Arc<Mutex<Vec<usize>>>,
        fail: Arc<Mutex<bool>>,
        /// When set, a due stats update waits until the test sends on it (or 5 s pass).
        hold_flush: Arc<Mutex<Option<std::sync::mpsc::Receiver<()>>>>,
        /// How long each commit takes (a store on another machine).
        delay: Duration,
        /// Set for a main store whose lanes commit: it must never commit itself.
        never_commits: bool,
    }

    impl EventStore for MemoryStore {
        fn commit(&mut self, events: Vec<StoredEvent>, _q: &[QuarantinedEvent]) -> Result<Vec<usize>, StoreError> {
            assert!(!self.never_commits, "with lanes, the main store never commits");
            std::thread::sleep(self.delay);
            if *self.fail.lock().unwrap() {
                return Err(StoreError::Unavailable("disk on fire".into()));
            }
            self.groups.lock().unwrap().push(events.len());
            // Like a store shared with another collector: what it already holds is a duplicate.
            let mut rows = self.rows.lock().unwrap();
            let already: Vec<usize> = events.iter().enumerate().filter(|(_, e)| rows.iter().any(|r| r.site == e.site && r.message_id() == e.message_id())).map(|(i, _)| i).collect();
            rows.extend(events.into_iter().enumerate().filter(|(i, _)| !already.contains(i)).map(|(_, e)| e));
            Ok(already)
        }
        fn flush_if_due(&mut self) {
            if let Some(release) = self.hold_flush.lock().unwrap().take() {
                let _ = release.recv_timeout(Duration::from_secs(5));
            }
        }
        fn unmerge(&mut self, _: i64, _: i64) -> Result<Result<(i64, i64), crate::store::UnmergeError>, StoreError> {
            unreachable!("the writer tests do not unmerge")
        }
        fn erase(&mut self, _: &crate::store::ErasureRequest, _: &dyn Fn(&crate::identity::Identifier) -> String, _: i64) -> Result<crate::store::ErasureReport, StoreError> {
            unreachable!("the writer tests do not erase")
        }
        fn delete_older_than(&mut self, _: &str, _: i64, _: usize) -> Result<crate::store::RetentionPass, StoreError> {
            unreachable!("the writer tests do not expire data")
        }
        fn for_each_recent_message_id(&mut self, since: i64, each: &mut dyn FnMut(&str, &str, i64)) -> Result<(), StoreError> {
            for e in self.rows.lock().unwrap().iter().filter(|e| e.received_at >= since) {
                each(&e.site, e.message_id(), e.received_at);
            }
            Ok(())
        }
    }

    fn event(site: &str, id: &str, received_at: i64) -> StoredEvent {
        StoredEvent { site: site.into(), received_at, ..Default::default() }.with(crate::store::Field::MessageId, id)
    }

    fn fixed_now() -> i64 {
        10 * DAY_MS
    }

    #[tokio::test]
    async fn duplicates_the_store_finds_are_answered_as_duplicates() {
        let store = MemoryStore::default();
        let (writer, _thread) = Writer::start(Box::new(store.clone()), Vec::new(), 7, 1 << 20, Default::default(), fixed_now).unwrap();
        let now = fixed_now();
        // Stored by another collector sharing the store: this writer's own set has never seen it.
        store.rows.lock().unwrap().push(event("a", "theirs", now));
        let answer = writer.submit(vec![event("a", "mine", now), event("a", "theirs", now)], vec![]).await.unwrap();
        assert_eq!(answer, vec![Stored::Accepted, Stored::Duplicate]);
        assert_eq!(store.rows.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn dedupes_within_a_request_across_requests_and_across_restarts() {
        let store = MemoryStore::default();
        let (writer, thread) = Writer::start(Box::new(store.clone()), Vec::new(), 7, 1 << 20, Default::default(), fixed_now).unwrap();
        let now = fixed_now();
        let first = writer.submit(vec![event("a", "m1", now), event("a", "m1", now), event("b", "m1", now)], vec![]).await.unwrap();
        assert_eq!(first, vec![Stored::Accepted, Stored::Duplicate, Stored::Accepted]);
        let again = writer.submit(vec![event("a", "m1", now), event("a", "m2", now)], vec![]).await.unwrap();
        assert_eq!(again, vec![Stored::Duplicate, Stored::Accepted]);
        drop(writer);
        thread.join().unwrap();
        let (writer, _thread) = Writer::start(Box::new(store.clone()), Vec::new(), 7, 1 << 20, Default::default(), fixed_now).unwrap();
        let after_restart = writer.submit(vec![event("a", "m2", now), event("a", "m3", now)], vec![]).await.unwrap();
        assert_eq!(after_restart, vec![Stored::Duplicate, Stored::Accepted]);
        assert_eq!(store.rows.lock().unwrap().len(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn lanes_commit_groups_at_once_and_store_each_message_id_once() {
        let log = MemoryStore { delay: Duration::from_millis(20), ..Default::default() };
        // Each lane its own record of groups, one log.
        let lanes: Vec<MemoryStore> = (0..2).map(|_| MemoryStore { groups: Default::default(), ..log.clone() }).collect();
        let main = MemoryStore { never_commits: true, ..Default::default() };
        let boxed = lanes.iter().map(|l| Box::new(l.clone()) as Box<dyn EventStore>).collect();
        let (writer, thread) = Writer::start(Box::new(main), boxed, 7, 1 << 24, Default::default(), fixed_now).unwrap();
        let now = fixed_now();
        // 40 requests, one every 2 ms while a commit takes 20: the lanes take turns. Requests 2k and 2k + 1 share an
        // id, so copies of one id can be in flight on both lanes.
        let mut requests = Vec::new();
        for i in 0..40 {
            let writer = writer.clone();
            requests.push(tokio::spawn(async move { writer.submit(vec![event("a", &format!("own{i}"), now), event("a", &format!("shared{}", i / 2), now)], vec![]).await.unwrap() }));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut answers = Vec::new();
        for request in requests {
            answers.push(request.await.unwrap());
        }
        assert!(answers.iter().all(|a| a[0] == Stored::Accepted), "{answers:?}");
        let shared_accepted = answers.iter().filter(|a| a[1] == Stored::Accepted).count();
        assert_eq!(shared_accepted, 20, "each shared id accepted exactly once: {answers:?}");
        let mut ids: Vec<String> = log.rows.lock().unwrap().iter().map(|e| e.message_id().to_owned()).collect();
        let stored = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!((stored, ids.len()), (60, 60));
        for lane in &lanes {
            assert!(!lane.groups.lock().unwrap().is_empty(), "both lanes committed");
        }
        // Exclusive jobs run on the main store, which sees no write.
        assert!(writer.exclusive(|store| store.stats_backlog()).await.is_ok());
        drop(writer);
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn a_failed_commit_reports_an_error_and_forgets_nothing() {
        let store = MemoryStore::default();
        let (writer, _thread) = Writer::start(Box::new(store.clone()), Vec::new(), 7, 1 << 20, Default::default(), fixed_now).unwrap();
        *store.fail.lock().unwrap() = true;
        let failed = writer.submit(vec![event("a", "m1", fixed_now())], vec![]).await;
        assert!(matches!(failed, Err(SubmitError::Storage(_))));
        *store.fail.lock().unwrap() = false;
        // The retry of the failed event must be accepted, not called a duplicate.
        let retried = writer.submit(vec![event("a", "m1", fixed_now())], vec![]).await.unwrap();
        assert_eq!(retried, vec![Stored::Accepted]);
    }

    #[tokio::test]
    async fn answers_go_out_before_a_due_stats_update() {
        let store = MemoryStore::default();
        let (release, held) = std::sync::mpsc::channel();
        *store.hold_flush.lock().unwrap() = Some(held);
        let (writer, _thread) = Writer::start(Box::new(store.clone()), Vec::new(), 7, 1 << 20, Default::default(), fixed_now).unwrap();
        // The stats update after this group is still running (held) when the answer must already be here.
        let answer = tokio::time::timeout(Duration::from_secs(2), writer.submit(vec![event("a", "m1", fixed_now())], vec![])).await;
        release.send(()).unwrap();
        assert_eq!(answer.expect("answered while the stats update ran").unwrap(), vec![Stored::Accepted]);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_growing() {
        let (writer, _thread) = Writer::start(Box::new(MemoryStore::default()), Vec::new(), 7, 1024, Default::default(), fixed_now).unwrap();
        let big = event("a", "m", fixed_now()).with(crate::store::Field::Properties, "x".repeat(4096));
        assert!(matches!(writer.submit(vec![big], vec![]).await, Err(SubmitError::QueueFull)));
    }

    #[tokio::test]
    async fn a_small_group_waits_only_for_requests_on_their_way() {
        // A linger far longer than the test: only the rule can end a wait in time.
        let store = MemoryStore::default();
        let (writer, _thread) = Writer::start_with_linger(Box::new(store.clone()), Vec::new(), 7, 1 << 20, Default::default(), fixed_now, Duration::from_secs(600)).unwrap();
        let now = fixed_now();
        // Nothing on its way: a lone request is committed at once.
        let alone = tokio::time::timeout(Duration::from_secs(5), writer.submit(vec![event("a", "m1", now)], vec![])).await;
        assert_eq!(alone.expect("committed without waiting").unwrap(), vec![Stored::Accepted]);
        // A request on its way (its body still being read) is waited for, and joins the group.
        let arrival = writer.arriving();
        let first = tokio::spawn({
            let writer = writer.clone();
            async move { writer.submit(vec![event("a", "m2", now)], vec![]).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!first.is_finished(), "the group waits while a request is on its way");
        let second = writer.submit_arrived(arrival, vec![event("a", "m3", now)], vec![]).await.unwrap();
        assert_eq!(second, vec![Stored::Accepted]);
        assert_eq!(first.await.unwrap().unwrap(), vec![Stored::Accepted]);
        assert_eq!(*store.groups.lock().unwrap(), vec![1, 2]);
        // A request that ends without submitting (refused, unreadable) stops being waited for too.
        let gone = writer.arriving();
        let third = tokio::spawn({
            let writer = writer.clone();
            async move { writer.submit(vec![event("a", "m4", now)], vec![]).await }
        });
        drop(gone);
        let third = tokio::time::timeout(Duration::from_secs(5), third).await.expect("committed once nothing is on its way");
        assert_eq!(third.unwrap().unwrap(), vec![Stored::Accepted]);
    }

    #[test]
    fn ids_spread_over_the_shards_are_each_found() {
        let mut recent = RecentIds::new(7);
        let keys: Vec<u128> = (0..2_000).map(|i| recent.key("a", &format!("m{i}"))).collect();
        for (i, key) in keys.iter().enumerate() {
            recent.insert(i as i64 * 300_000, *key);
        }
        assert_eq!(recent.len(), 2_000);
        assert!(keys.iter().all(|k| recent.contains(*k)));
        assert!(!recent.contains(recent.key("a", "never")));
        let used: HashSet<usize> = keys.iter().map(|k| shard(*k)).collect();
        assert_eq!(used.len(), SHARDS, "every shard takes keys");
    }

    #[test]
    fn old_days_expire() {
        let mut recent = RecentIds::new(7);
        let k = recent.key("a", "m");
        recent.insert(0, k);
        recent.expire(7 * DAY_MS);
        assert!(recent.contains(k));
        recent.expire(8 * DAY_MS);
        assert!(!recent.contains(k));
    }
}
