//! `cargo xtask bench-pg [--quick] [--runs N] [--secs S] [--collector REV]`: batched ingest on PostgreSQL, one
//! collector and two (issue 7: "batched ingest events/s on PostgreSQL with one and with two collector processes on
//! this machine").
//!
//! `--collector REV` runs another collector (a git revision, built as `bench --against` builds it, or a binary) with
//! this build's load generator and checks. The box is unpinned and drifts, so compare two collectors by alternating
//! `--runs 1` invocations of each, not by one run each.
//!
//! Builds the collector and `footprint-bench` in release and starts a throwaway PostgreSQL cluster with the
//! settings of `research/perf-baselines.md` §4.3 (`pg_cluster::PERFORMANCE_SETTINGS`; fsync and synchronous_commit
//! stay on). Every run gets a fresh database (and a checkpoint before it) and fresh collectors, each with its own
//! data directory (its SQLite replica), all with the same `FOOTPRINT_HMAC_KEY`. Scenarios, several runs each (in
//! rounds: each scenario once per round, so a drift of the box's speed spreads over all of them),
//! medians reported:
//!
//! - one collector:  `POST /v1/batch`, 30 events per request, closed loop, 32 connections (as `cargo xtask bench`);
//! - one ingest-only collector (`FOOTPRINT_ROLE=ingest`), the same load: the shared log's own path (claim, COPY,
//!   commit), without a replica following it on the same two cores;
//! - two collectors: the same 32 connections split between them (16 each, one footprint-bench process), the same
//!   load;
//! - the same two collectors with the second one ingest-only (`FOOTPRINT_ROLE=ingest`): it appends to the log and
//!   keeps no replica, so the pair replays the log once, as one collector does, instead of twice;
//! - two ingest-only collectors: the pair to set beside one ingest-only collector (the log's path alone, twice);
//! - two collectors with 5% of the requests also sent, at the same moment and with the same body, to the other
//!   collector (a retry that reached both), so deduplication across collectors runs under load; their `duplicate`
//!   answers are counted apart. Such a pair costs more than its 5 %: the collector whose claim comes second waits for
//!   the first one's commit, then claims its whole group again, skipping what was taken (`PgEventLog::commit`).
//!
//! After every run the database is checked directly: the rows in `events` must be exactly the events the load
//! generator saw accepted (over the whole run, warm-up included), no `(site, message_id)` may be stored twice, and
//! in every overlapped pair each event must be accepted by exactly one collector. A run that fails the check fails
//! the command (after the table is printed). Nothing is pinned: PostgreSQL, the collectors and the load generator
//! share the machine's cores, so the figures are for the whole box, and other work on it shows in "others".

use crate::bench::{
    baseline_collector, field, fresh_data_root, get, median, parse_result, parse_settings, rss_mb, start_server, take_revision_option, values, wait_quiet, whole, Run, Server,
    Settings,
};
use crate::pg_cluster::{TestCluster, PERFORMANCE_SETTINGS};
use crate::{cargo, run_step, target_dir};
use anyhow::{bail, Context as _};
use std::path::Path;
use std::process::{Command, Stdio};

/// The pseudonymisation key every collector of a run shares (collectors on one database must agree on it).
const HMAC_KEY: &str = "footprint-bench-pg-shared-hmac-key-not-a-secret";
/// Fraction of the two-collector scenario's requests that also go to the other collector.
const OVERLAP: f64 = 0.05;
/// Connections of the load generator, in total (split between the collectors).
const CONNECTIONS: usize = 32;


struct Scenario {
    name: &'static str,
    collectors: usize,
    /// How many of them (the last ones) run with `FOOTPRINT_ROLE=ingest`: no replica.
    ingest_only: usize,
    overlap: f64,
}

pub fn bench(args: &[String]) -> anyhow::Result<()> {
    // `--collector REV` is this command's own option; the rest are every load benchmark's.
    let (other_collector, args) = take_revision_option(args, "--collector")?;
    let settings = parse_settings(&args, "bench-pg")?;

    run_step("build the collector and the load generator (release)", cargo().args(["build", "--release", "-p", "footprint-collector", "-p", "footprint-bench"]))?;
    let collector = match &other_collector {
        Some(rev) => {
            let collector = baseline_collector(rev)?;
            eprintln!("==> collector of {rev}: {}", collector.display());
            collector
        }
        None => target_dir().join("release/footprint"),
    };
    let generator = target_dir().join("release/footprint-bench");
    let cluster = TestCluster::start_with(PERFORMANCE_SETTINGS)?;
    let db_pid = cluster.server_pid().context("cannot read the PostgreSQL server's pid (postmaster.pid)")?;
    let mut admin = postgres::Client::connect(&cluster.url, postgres::NoTls).context("cannot connect to the benchmark's PostgreSQL server")?;
    let version: String = admin.query_one("SHOW server_version", &[])?.get(0);

    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    eprintln!("==> {cpus} CPU cores on this machine; PostgreSQL {version}, the collector(s) and the load generator all share them (no pinning)");
    eprintln!("==> PostgreSQL settings: {}, fsync=on", PERFORMANCE_SETTINGS.join(", "));
    eprintln!("==> {} runs per scenario, {:.1} s each after {:.1} s warm-up; median reported", settings.runs, settings.secs, settings.warmup);

    let data_root = fresh_data_root("bench-pg-data")?;
    let scenarios = [
        Scenario { name: "1 collector, batched (30 events/request)", collectors: 1, ingest_only: 0, overlap: 0.0 },
        Scenario { name: "1 ingest-only collector, same load", collectors: 1, ingest_only: 1, overlap: 0.0 },
        Scenario { name: "2 collectors, same load", collectors: 2, ingest_only: 0, overlap: 0.0 },
        Scenario { name: "2 collectors (1 ingest-only), same load", collectors: 2, ingest_only: 1, overlap: 0.0 },
        Scenario { name: "2 ingest-only collectors, same load", collectors: 2, ingest_only: 2, overlap: 0.0 },
        Scenario { name: "2 collectors, 5% of requests to both", collectors: 2, ingest_only: 0, overlap: OVERLAP },
    ];
    let mut results: Vec<(&'static str, Vec<Run>)> = scenarios.iter().map(|s| (s.name, Vec::new())).collect();
    let mut failures: Vec<String> = Vec::new();
    let mut log = String::new();
    let mut counter = 0usize;
    // Round by round, each scenario once per round: the box's speed drifts over minutes, and this way every
    // scenario gets the same mix of fast and slow minutes.
    for i in 0..settings.runs {
        for (scenario, (_, runs)) in scenarios.iter().zip(results.iter_mut()) {
            eprintln!("==> {}, run {}", scenario.name, i + 1);
            counter += 1;
            wait_quiet(settings.quiet_wait);
            let database = format!("fp_bench_{counter}");
            // One statement each: several in one call would form a transaction, which DROP/CREATE DATABASE refuse.
            for statement in [format!("DROP DATABASE IF EXISTS {database}"), format!("CREATE DATABASE {database}"), "CHECKPOINT".into()] {
                admin.batch_execute(&statement)?;
            }
            let dir = data_root.join(format!("run-{counter}"));
            let run = one_run(&collector, &generator, &dir, &cluster.database_url(&database), db_pid, scenario, &settings);
            let mut run = match run {
                Ok(run) => run,
                Err(error) => {
                    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
                    return Err(error.context(format!("{}, run {} (collector logs under {})", scenario.name, i + 1, dir.display())));
                }
            };
            let problems = verify(&cluster.database_url(&database), &mut run)?;
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))?;
            eprintln!(
                "    run {}: {:>7} events/s  {:>5} req/s  p50 {:>6} µs  p99 {:>6} µs  collectors CPU {:>4}%  PostgreSQL CPU {:>4}%  RSS {:>6} MB  rows/commit {}  503 {}  others {}%",
                i + 1,
                whole(&run, "events_s"),
                whole(&run, "req_s"),
                field(&run, "p50_us"),
                field(&run, "p99_us"),
                field(&run, "server_cpu_pct"),
                field(&run, "db_cpu_pct"),
                rss_mb(&run),
                field(&run, "rows_per_commit"),
                field(&run, "s503_total"),
                field(&run, "foreign_cpu_pct"),
            );
            eprintln!(
                "      check: {} rows in events, {} events acknowledged as accepted; duplicates: {}, lost: {}; duplicate answers {} ({} overlapped pairs, {} not accepted exactly once)",
                field(&run, "rows"),
                field(&run, "accepted_total"),
                field(&run, "duplicate_rows"),
                field(&run, "lost"),
                field(&run, "duplicate_total"),
                field(&run, "overlap_pairs"),
                field(&run, "overlap_mismatch"),
            );
            let warnings = collector_warnings(&dir, scenario.collectors);
            run.insert("log_warnings".into(), warnings.len().to_string());
            if !warnings.is_empty() {
                eprintln!("      collector logs: {} WARN/ERROR lines, e.g.:", warnings.len());
                for line in warnings.iter().take(5) {
                    eprintln!("        {line}");
                }
            }
            if problems.is_empty() {
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                eprintln!("      FAILED: {} (collector logs kept under {})", problems.join("; "), dir.display());
                failures.push(format!("{}, run {}: {}", scenario.name, i + 1, problems.join("; ")));
            }
            log.push_str(&format!("{}\trun {}\t{}\n", scenario.name, i + 1, run.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")));
            runs.push(run);
        }
    }
    drop(admin);
    drop(cluster);
    let log_path = target_dir().join("bench-pg-results.txt");
    let _ = std::fs::write(&log_path, &log);

    if let Some(rev) = &other_collector {
        println!("Collector of {rev} ({}), not this build:", collector.display());
    }
    print_table(&results, &settings, cpus, &version);
    eprintln!("(every run's raw figures: {})", log_path.display());
    if !failures.is_empty() {
        bail!("the database check failed:\n  {}", failures.join("\n  "));
    }
    Ok(())
}

/// Starts the scenario's collectors on `database_url`, drives them with one footprint-bench process, stops them.
fn one_run(collector: &Path, generator: &Path, dir: &Path, database_url: &str, db_pid: u32, scenario: &Scenario, settings: &Settings) -> anyhow::Result<Run> {
    let mut servers = Vec::new();
    let mut bench = Command::new(generator);
    for i in 0..scenario.collectors {
        let ingest_only = i >= scenario.collectors - scenario.ingest_only;
        let (server, url) = start_collector(collector, &dir.join(format!("collector-{}", i + 1)), database_url, ingest_only)?;
        bench.arg("--url").arg(url).arg("--server-pid").arg(server.0.id().to_string());
        servers.push(server);
    }
    bench.arg("--db-pid").arg(db_pid.to_string()).arg("--overlap").arg(scenario.overlap.to_string());
    bench.args(["--mode", "batch", "--connections", &CONNECTIONS.to_string(), "--duration", &settings.secs.to_string(), "--warmup", &settings.warmup.to_string()]);
    let output = bench.stderr(Stdio::inherit()).output().context("cannot start footprint-bench")?;
    // Stopped (gracefully: the queue drains) before the check, which then sees everything they committed.
    for server in &mut servers {
        server.stop();
    }
    if !output.status.success() {
        bail!("footprint-bench failed ({})", output.status);
    }
    parse_result(&output.stdout)
}

/// One collector on the shared database with its own data directory; returns it and its URL.
fn start_collector(collector: &Path, dir: &Path, database_url: &str, ingest_only: bool) -> anyhow::Result<(Server, String)> {
    std::fs::create_dir_all(dir)?;
    let mut serve = Command::new(collector);
    serve.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(dir);
    serve.env_remove("FOOTPRINT_CONFIG").env_remove("FOOTPRINT_LISTEN").env_remove("FOOTPRINT_DATA_DIR").env_remove("FOOTPRINT_HMAC_PREVIOUS_KEYS");
    serve.env("FOOTPRINT_DATABASE_URL", database_url).env("FOOTPRINT_HMAC_KEY", HMAC_KEY).env("FOOTPRINT_ROLE", if ingest_only { "ingest" } else { "full" });
    start_server(serve, &dir.join("collector.log"))
}

/// Checks the database against what the load generator saw; adds the figures to `run`, returns what is wrong.
fn verify(database_url: &str, run: &mut Run) -> anyhow::Result<Vec<String>> {
    let mut client = postgres::Client::connect(database_url, postgres::NoTls).context("cannot connect to the run's database")?;
    let row = client.query_one("SELECT COUNT(*), COUNT(*) - COUNT(DISTINCT (site, message_id)) FROM events", &[])?;
    let (rows, duplicate_rows): (i64, i64) = (row.get(0), row.get(1));
    let accepted = get(run, "accepted_total").context("footprint-bench reported no accepted_total")? as i64;
    let lost = (accepted - rows).max(0);
    let unacknowledged = (rows - accepted).max(0);
    run.insert("rows".into(), rows.to_string());
    run.insert("duplicate_rows".into(), duplicate_rows.to_string());
    run.insert("lost".into(), lost.to_string());
    let mut problems = Vec::new();
    if duplicate_rows != 0 {
        problems.push(format!("{duplicate_rows} events stored twice"));
    }
    if lost != 0 {
        problems.push(format!("{lost} acknowledged events are not in the database"));
    }
    if unacknowledged != 0 {
        problems.push(format!("{unacknowledged} events stored that no answer acknowledged"));
    }
    let mismatch = get(run, "overlap_mismatch").unwrap_or(0.0);
    if mismatch > 0.0 {
        problems.push(format!("{mismatch:.0} overlapped pairs in which an event was not accepted exactly once"));
    }
    let unknown = get(run, "unknown_total").unwrap_or(0.0);
    if unknown > 0.0 {
        problems.push(format!("{unknown:.0} requests got no definite answer (transport error, timeout or an unexpected status), so the count cannot be exact"));
    }
    Ok(problems)
}

/// The WARN and ERROR lines of the collectors' logs.
fn collector_warnings(dir: &Path, collectors: usize) -> Vec<String> {
    (1..=collectors)
        .flat_map(|i| {
            let text = std::fs::read_to_string(dir.join(format!("collector-{i}/collector.log"))).unwrap_or_default();
            text.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).map(|l| format!("collector {i}: {l}")).collect::<Vec<_>>()
        })
        .collect()
}

fn print_table(results: &[(&'static str, Vec<Run>)], settings: &Settings, cpus: usize, version: &str) {
    let ms = |us: Option<f64>| us.map(|u| format!("{:.2}", u / 1000.0)).unwrap_or_else(|| "-".into());
    let num = |v: Option<f64>, d: usize| v.map(|v| format!("{v:.d$}")).unwrap_or_else(|| "-".into());
    let sum = |runs: &[Run], key: &str| runs.iter().filter_map(|r| get(r, key)).sum::<f64>();
    println!();
    println!(
        "Footprint on PostgreSQL {version}: medians of {} runs × {:.1} s; {cpus} cores shared by PostgreSQL, the collector(s) and the load generator (UNPINNED); durable (2xx after the PostgreSQL commit, fsync + synchronous_commit on)",
        settings.runs, settings.secs
    );
    println!();
    println!(
        "| {:<40} | {:>19} | {:>6} | {:>7} | {:>7} | {:>9} | {:>10} | {:>7} | {:>10} | {:>7} | {:>11} | {:>5} | {:>10} | {:>19} | {:>6} |",
        "scenario", "events/s (min-max)", "req/s", "p50 ms", "p99 ms", "coll. CPU", "coll µs/ev", "PG CPU", "PG µs/ev", "RSS MB", "rows/commit", "503", "dup answ.", "duplicates / lost", "others"
    );
    println!("|{:-<42}|{:->21}|{:->8}|{:->9}|{:->9}|{:->11}|{:->12}|{:->9}|{:->12}|{:->9}|{:->13}|{:->7}|{:->12}|{:->21}|{:->8}|", "", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":");
    for (name, runs) in results {
        let ev = values(runs, "events_s");
        println!(
            "| {:<40} | {:>19} | {:>6} | {:>7} | {:>7} | {:>8}% | {:>10} | {:>6}% | {:>10} | {:>7} | {:>11} | {:>5} | {:>10} | {:>19} | {:>5}% |",
            name,
            format!("{} ({}-{})", num(median(runs, "events_s"), 0), num(ev.first().copied(), 0), num(ev.last().copied(), 0)),
            num(median(runs, "req_s"), 0),
            ms(median(runs, "p50_us")),
            ms(median(runs, "p99_us")),
            num(median(runs, "server_cpu_pct"), 0),
            num(median(runs, "server_us_per_event"), 2),
            num(median(runs, "db_cpu_pct"), 0),
            num(median(runs, "db_us_per_event"), 2),
            num(values(runs, "peak_rss_kb").last().map(|k| k / 1024.0), 1),
            num(median(runs, "rows_per_commit"), 0),
            num(median(runs, "s503_total"), 0),
            num(median(runs, "duplicate_total"), 0),
            format!("{:.0} / {:.0} (all runs)", sum(runs, "duplicate_rows"), sum(runs, "lost")),
            num(median(runs, "foreign_cpu_pct"), 0),
        );
    }
    println!();
    println!("events/s: new events acknowledged (accepted) per second, both collectors together. p50/p99: send → answer (closed loop,");
    println!("{CONNECTIONS} connections in all). coll. CPU: the collectors' CPU time (user+sys, all threads, summed), in % of a core; coll µs/ev:");
    println!("that per accepted event. PG CPU / PG µs/ev: the same for the PostgreSQL server and all its backends. RSS: the largest");
    println!("collector's peak (VmHWM), max over runs. rows/commit: rows per group commit (collectors' /metrics). 503: answers 503 per");
    println!("run. dup answ.: `duplicate` answers per run, all from the batches sent to both collectors at once. duplicates / lost:");
    println!("checked in PostgreSQL after every run (rows stored twice; acknowledged events missing). others: CPU used by other");
    println!("processes on the box during the run, in % of a core (noise: the machine is shared).");

    let find = |collectors: &str| results.iter().find(|(n, _)| n.starts_with(collectors)).map(|(_, r)| r.as_slice());
    let check = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "n/a",
    };
    let (one, two) = (find("1 collector").and_then(|r| median(r, "events_s")), find("2 collectors, same load").and_then(|r| median(r, "events_s")));
    let two_ingest = find("2 collectors (1 ingest-only)").and_then(|r| median(r, "events_s"));
    let overlapped = find("2 collectors, 5%").and_then(|r| median(r, "events_s"));
    println!();
    println!("Targets (issue 7):");
    println!("  ≥ 100,000 events/s batched on PostgreSQL: {} (one collector {}, two collectors {}, one of them ingest-only {} events/s)", check(one.into_iter().chain(two).chain(two_ingest).chain(overlapped).reduce(f64::max).map(|v| v >= 100_000.0)), num(one, 0), num(two, 0), num(two_ingest, 0));
    println!("  two collectors ingest more than one:      {} ({} vs {} events/s, ×{}; both with a replica)", check(one.zip(two).map(|(a, b)| b > a)), num(two, 0), num(one, 0), num(one.zip(two).map(|(a, b)| b / a), 2));
    println!("                                            {} ({} vs {} events/s, ×{}; one of them ingest-only)", check(one.zip(two_ingest).map(|(a, b)| b > a)), num(two_ingest, 0), num(one, 0), num(one.zip(two_ingest).map(|(a, b)| b / a), 2));
    let all: Vec<&Run> = results.iter().flat_map(|(_, r)| r).collect();
    let bad = all.iter().filter(|r| get(r, "duplicate_rows") != Some(0.0) || get(r, "lost") != Some(0.0) || get(r, "overlap_mismatch").unwrap_or(0.0) > 0.0 || get(r, "unknown_total").unwrap_or(0.0) > 0.0).count();
    let dups: f64 = all.iter().filter_map(|r| get(r, "duplicate_rows")).sum();
    let lost: f64 = all.iter().filter_map(|r| get(r, "lost")).sum();
    println!("  zero duplicates, zero losses:             {} (duplicates: {dups:.0}, lost: {lost:.0} over {} runs; {bad} runs failed the check; with 5% of requests sent to both: {} events/s)", check(Some(bad == 0 && !all.is_empty())), all.len(), num(overlapped, 0));
}
