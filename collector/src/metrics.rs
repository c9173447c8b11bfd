//! Counters and gauges, rendered as Prometheus text at `/metrics`. One field per observable fact.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Metrics {
    pub requests_ingest: AtomicU64,
    pub requests_other: AtomicU64,
    /// Whole-request refusals by HTTP status class.
    pub requests_4xx: AtomicU64,
    pub requests_5xx: AtomicU64,
    pub requests_queue_full: AtomicU64,
    pub events_accepted: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub events_rejected: AtomicU64,
    pub events_bot: AtomicU64,
    pub commits: AtomicU64,
    pub commit_rows: AtomicU64,
    pub commit_failures: AtomicU64,
    pub commit_micros_total: AtomicU64,
    pub commit_micros_max: AtomicU64,
    pub retention_deleted: AtomicU64,
    pub retention_runs: AtomicU64,
    pub queue_bytes: AtomicI64,
    pub dedupe_ids: AtomicI64,
    pub stats_waiting: AtomicI64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, labels: &[(&str, &AtomicU64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (label, value) in labels {
                let _ = writeln!(out, "{name}{label} {}", value.load(Relaxed));
            }
        };
        counter("footprint_http_requests_total", "HTTP requests by kind.", &[
            ("{kind=\"ingest\"}", &self.requests_ingest),
            ("{kind=\"other\"}", &self.requests_other),
        ]);
        counter("footprint_http_refused_total", "Ingest requests refused as a whole, by status class or cause.", &[
            ("{class=\"4xx\"}", &self.requests_4xx),
            ("{class=\"5xx\"}", &self.requests_5xx),
            ("{class=\"queue_full\"}", &self.requests_queue_full),
        ]);
        counter("footprint_events_total", "Events by outcome.", &[
            ("{status=\"accepted\"}", &self.events_accepted),
            ("{status=\"duplicate\"}", &self.events_duplicate),
            ("{status=\"rejected\"}", &self.events_rejected),
        ]);
        counter("footprint_bot_events_total", "Accepted events whose user agent is a bot's (kept, flagged).", &[("", &self.events_bot)]);
        counter("footprint_retention_deleted_total", "Events and quarantine rows deleted by retention.", &[("", &self.retention_deleted)]);
        counter("footprint_retention_runs_total", "Completed retention passes.", &[("", &self.retention_runs)]);
        counter("footprint_commits_total", "Group commits to storage.", &[("", &self.commits)]);
        counter("footprint_commit_rows_total", "Rows written by group commits.", &[("", &self.commit_rows)]);
        counter("footprint_commit_failures_total", "Group commits that failed (their requests got 503).", &[("", &self.commit_failures)]);
        let _ = writeln!(out, "# HELP footprint_commit_seconds_total Time spent in group commits.\n# TYPE footprint_commit_seconds_total counter");
        let _ = writeln!(out, "footprint_commit_seconds_total {:.6}", self.commit_micros_total.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "# HELP footprint_commit_seconds_max Longest group commit since start.\n# TYPE footprint_commit_seconds_max gauge");
        let _ = writeln!(out, "footprint_commit_seconds_max {:.6}", self.commit_micros_max.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "# HELP footprint_queue_bytes Bytes of events waiting for the writer.\n# TYPE footprint_queue_bytes gauge");
        let _ = writeln!(out, "footprint_queue_bytes {}", self.queue_bytes.load(Relaxed));
        let _ = writeln!(out, "# HELP footprint_dedupe_ids messageIds held for deduplication.\n# TYPE footprint_dedupe_ids gauge");
        let _ = writeln!(out, "footprint_dedupe_ids {}", self.dedupe_ids.load(Relaxed));
        let _ = writeln!(out, "# HELP footprint_stats_waiting_events Stored events not yet in the stats tables (they follow in batches).\n# TYPE footprint_stats_waiting_events gauge");
        let _ = writeln!(out, "footprint_stats_waiting_events {}", self.stats_waiting.load(Relaxed));
        out
    }
}
