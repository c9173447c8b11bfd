//! `cargo xtask bench [--quick] [--runs N] [--secs S]`: the collector's load benchmark (issue 2, item 6).
//!
//! Builds the collector and `footprint-bench` in release, then for every run starts a fresh collector on a fresh
//! data directory pinned to CPU 0 and the load generator pinned to CPU 1 (`taskset`), like
//! `research/perf-baselines.md`. Scenarios, each several runs, medians reported:
//!
//! - batched:         `POST /v1/batch`, 30 events per request, closed loop, 32 connections;
//! - single, max:     one event per request (`/v1/page`, `/v1/track`), closed loop, 128 connections;
//! - single, half:    open loop at half the single-event maximum, p99 from the scheduled send time;
//! - overload 2×:     open loop at twice the batched maximum, 2048 connections, default queue (64 MB);
//! - overload 2×, 1 MB queue: the same with `queue_capacity_mb = 1`, so the collector must shed load with 503.
//!
//! `--against REV` (a git revision, or a collector binary) compares instead: batched, single and single at a fixed
//! rate, the older build and this one alternating run by run, medians side by side.
//!
//! The robust figure is the server's CPU time per event (from `/proc/<pid>/stat`): it holds when other builds
//! share the box and starve the load generator. Runs whose server CPU is under ~90% were limited elsewhere.

use crate::{cargo, run_step, target_dir};
use anyhow::{bail, Context as _};
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One run's `RESULT key=value …` line from footprint-bench.
pub(crate) type Run = BTreeMap<String, String>;

pub(crate) struct Settings {
    pub(crate) runs: usize,
    pub(crate) secs: f64,
    pub(crate) warmup: f64,
    /// Collector on CPU 0, load generator on CPU 1 (`bench` only; `bench-pg` runs unpinned).
    pub(crate) pin: bool,
    pub(crate) quiet_wait: Duration,
}

struct Scenario {
    name: &'static str,
    args: Vec<String>,
    config: Option<&'static str>,
}

/// The options every load benchmark takes: `[--quick] [--runs N] [--secs S]` (`command` names it in errors).
pub(crate) fn parse_settings(args: &[String], command: &str) -> anyhow::Result<Settings> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut settings = Settings {
        runs: 3,
        secs: if quick { 1.0 } else { 5.0 },
        warmup: if quick { 0.3 } else { 1.0 },
        pin: true,
        quiet_wait: Duration::from_secs(if quick { 3 } else { 20 }),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => {}
            "--runs" => settings.runs = it.next().and_then(|v| v.parse().ok()).filter(|n| (1..=20).contains(n)).context("--runs takes 1..=20")?,
            "--secs" => settings.secs = it.next().and_then(|v| v.parse().ok()).filter(|s: &f64| *s > 0.0 && *s <= 60.0).context("--secs takes 0 < S <= 60")?,
            other => bail!("unknown {command} option {other:?}; usage: cargo xtask {command} [--quick] [--runs N] [--secs S]"),
        }
    }
    Ok(settings)
}

/// Splits `name REV` (a git revision or a collector binary) off `args`: the value, if given, and the other arguments.
pub(crate) fn take_revision_option(args: &[String], name: &str) -> anyhow::Result<(Option<String>, Vec<String>)> {
    match args.iter().position(|a| a == name) {
        Some(at) => {
            let rev = args.get(at + 1).filter(|v| !v.starts_with("--")).with_context(|| format!("{name} takes a git revision or a collector binary"))?;
            Ok((Some(rev.clone()), [&args[..at], &args[at + 2..]].concat()))
        }
        None => Ok((None, args.to_vec())),
    }
}

pub fn bench(args: &[String]) -> anyhow::Result<()> {
    // `--against REV` is this command's own option; the rest are every load benchmark's.
    let (against, args) = take_revision_option(args, "--against")?;
    let mut settings = parse_settings(&args, "bench")?;

    run_step("build the collector and the load generator (release)", cargo().args(["build", "--release", "-p", "footprint-collector", "-p", "footprint-bench"]))?;
    let collector = target_dir().join("release/footprint");
    let generator = target_dir().join("release/footprint-bench");

    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let has_taskset = Command::new("taskset").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !has_taskset {
        eprintln!("==> WARNING: `taskset` is missing (Debian: util-linux); running UNPINNED: collector and load generator share all cores, so the figures are not per core");
        settings.pin = false;
    } else if cpus < 2 {
        eprintln!("==> WARNING: only {cpus} CPU available; running UNPINNED on one core");
        settings.pin = false;
    } else {
        eprintln!("==> collector pinned to CPU 0, load generator pinned to CPU 1 ({cpus} CPUs on this machine)");
    }
    if let Some(rev) = against {
        let baseline = baseline_collector(&rev)?;
        return compare(&rev, &baseline, &collector, &generator, &settings);
    }
    eprintln!("==> {} runs per scenario, {:.1} s each after {:.1} s warm-up; median reported", settings.runs, settings.secs, settings.warmup);

    let data_root = fresh_data_root("bench-data")?;
    let mut log = String::new();
    let mut results: Vec<(&'static str, Vec<Run>)> = Vec::new();
    let mut counter = 0usize;
    let mut run_scenario = |scenario: Scenario, results: &mut Vec<(&'static str, Vec<Run>)>, log: &mut String| -> anyhow::Result<Vec<Run>> {
        eprintln!("==> {}", scenario.name);
        let mut runs = Vec::new();
        for i in 0..settings.runs {
            let run = fresh_run(&collector, &generator, &data_root, &mut counter, &scenario, &settings)?;
            eprintln!(
                "    run {}: {:>9} events/s  {:>7} req/s  server CPU {:>5}%  {:>6} µs/event  p50 {:>6} µs  p99 {:>6} µs{}  RSS {:>6} MB  503 {}  rows/commit {}  writer busy {}%  other load {}%",
                i + 1,
                whole(&run, "events_s"),
                whole(&run, "req_s"),
                field(&run, "server_cpu_pct"),
                field(&run, "server_us_per_event"),
                field(&run, "p50_us"),
                field(&run, "p99_us"),
                if get(&run, "rate").unwrap_or(0.0) > 0.0 { format!(" (sched p99 {} µs)", field(&run, "sched_p99_us")) } else { String::new() },
                rss_mb(&run),
                field(&run, "s503"),
                field(&run, "rows_per_commit"),
                field(&run, "writer_busy_pct"),
                field(&run, "foreign_cpu_pct"),
            );
            if get(&run, "errors").unwrap_or(0.0) > 0.0 || get(&run, "other").unwrap_or(0.0) > 0.0 || get(&run, "duplicate").unwrap_or(0.0) + get(&run, "rejected").unwrap_or(0.0) > 0.0 {
                eprintln!("      note: errors {} other-status {} duplicate {} rejected {}", field(&run, "errors"), field(&run, "other"), field(&run, "duplicate"), field(&run, "rejected"));
            }
            log.push_str(&format!("{}\trun {}\t{}\n", scenario.name, i + 1, run.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")));
            runs.push(run);
        }
        results.push((scenario.name, runs.clone()));
        Ok(runs)
    };

    let common = |mode: &str, connections: usize| load_args(&settings, mode, connections);
    let batched = run_scenario(Scenario { name: "batched (30 events/request)", args: common("batch", 32), config: None }, &mut results, &mut log)?;
    let single = run_scenario(Scenario { name: "single event/request, max", args: common("single", 128), config: None }, &mut results, &mut log)?;
    let half = median(&single, "events_s").unwrap_or(0.0) / 2.0;
    if half >= 1.0 {
        let mut args = common("single", 128);
        args.extend(["--rate".into(), format!("{half:.0}")]);
        run_scenario(Scenario { name: "single event/request, half of max", args, config: None }, &mut results, &mut log)?;
    }
    let double = median(&batched, "events_s").unwrap_or(0.0) * 2.0;
    if double >= 1.0 {
        let mut args = common("batch", 2048);
        args.extend(["--rate".into(), format!("{double:.0}")]);
        run_scenario(Scenario { name: "overload 2x batched, default queue", args: args.clone(), config: None }, &mut results, &mut log)?;
        run_scenario(Scenario { name: "overload 2x batched, queue_capacity_mb=1", args, config: Some("queue_capacity_mb = 1\n") }, &mut results, &mut log)?;
    }
    let _ = std::fs::remove_dir_all(&data_root);
    let log_path = target_dir().join("bench-results.txt");
    let _ = std::fs::write(&log_path, &log);

    print_table(&results, &settings);
    eprintln!("(every run's raw figures: {})", log_path.display());
    Ok(())
}

/// The collector to compare with: `rev` itself when it is a file, else the collector built from that git revision
/// (exported with `git archive` into the target directory and built there, with its own target directory).
pub(crate) fn baseline_collector(rev: &str) -> anyhow::Result<PathBuf> {
    if Path::new(rev).is_file() {
        return Ok(PathBuf::from(rev));
    }
    let root = crate::root();
    let commit = Command::new("git").current_dir(&root).args(["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")]).output().context("cannot run git")?;
    if !commit.status.success() {
        bail!("{rev:?} is neither a file nor a git revision of this repository");
    }
    let commit = String::from_utf8_lossy(&commit.stdout).trim().to_owned();
    let base = target_dir().join("bench-against");
    let source = base.join(&commit[..12]);
    if !source.join("Cargo.toml").exists() {
        std::fs::create_dir_all(&source)?;
        let archive = Command::new("git").current_dir(&root).args(["archive", "--format=tar", &commit]).stdout(Stdio::piped()).spawn().context("cannot run git archive")?;
        run_step(&format!("export {rev} ({}) into {}", &commit[..12], source.display()), Command::new("tar").arg("-x").arg("-C").arg(&source).stdin(archive.stdout.context("git archive output")?))?;
    }
    let mut build = cargo();
    build.current_dir(&source).env("CARGO_TARGET_DIR", base.join("target")).args(["build", "--release", "-p", "footprint-collector"]);
    run_step(&format!("build the collector of {rev} (release)"), &mut build)?;
    Ok(base.join("target/release/footprint"))
}

/// `bench --against REV`: the baseline and this build, run after one another in alternating order (ABBA), so the
/// box's drift (it changes speed by tens of % between half-hours when shared) falls on both alike. Prints the
/// medians side by side.
fn compare(rev: &str, baseline: &Path, current: &Path, generator: &Path, settings: &Settings) -> anyhow::Result<()> {
    eprintln!("==> {} rounds per scenario, each running {rev} and this build (order alternating), {:.1} s per run", settings.runs, settings.secs);
    let data_root = fresh_data_root("bench-data")?;
    let common = |mode: &str, connections: usize| load_args(settings, mode, connections);
    let mut counter = 0usize;
    let mut pairs = |scenario: Scenario| -> anyhow::Result<(&'static str, Vec<Run>, Vec<Run>)> {
        eprintln!("==> {}", scenario.name);
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for round in 0..settings.runs {
            let order = if round % 2 == 0 { [false, true] } else { [true, false] };
            for is_current in order {
                let run = fresh_run(if is_current { current } else { baseline }, generator, &data_root, &mut counter, &scenario, settings)?;
                eprintln!("    round {} {:<10} {:>6} µs/event  {:>9} events/s", round + 1, if is_current { "this build" } else { rev }, field(&run, "server_us_per_event"), field(&run, "events_s"));
                if is_current { after.push(run) } else { before.push(run) }
            }
        }
        Ok((scenario.name, before, after))
    };
    let mut results = vec![pairs(Scenario { name: "batched (30 events/request)", args: common("batch", 32), config: None })?];
    results.push(pairs(Scenario { name: "single event/request, max", args: common("single", 128), config: None })?);
    // The same open-loop rate for both: half of the slower build's maximum, so neither is overloaded.
    let half = median(&results[1].1, "events_s").unwrap_or(0.0).min(median(&results[1].2, "events_s").unwrap_or(0.0)) / 2.0;
    if half >= 1.0 {
        let mut args = common("single", 128);
        args.extend(["--rate".into(), format!("{half:.0}")]);
        results.push(pairs(Scenario { name: "single event/request, fixed rate", args, config: None })?);
    }
    let _ = std::fs::remove_dir_all(&data_root);

    let num = |v: Option<f64>, d: usize| v.map(|v| format!("{v:.d$}")).unwrap_or_else(|| "-".into());
    let change = |b: Option<f64>, a: Option<f64>| match (b, a) {
        (Some(b), Some(a)) if b > 0.0 => format!("{:+.1}%", (a - b) / b * 100.0),
        _ => "-".into(),
    };
    println!();
    println!("{rev} (before) against this build (after): medians of {} rounds × {:.1} s, alternating; collector {}", settings.runs, settings.secs, if settings.pin { "on CPU 0, load generator on CPU 1" } else { "UNPINNED" });
    println!();
    println!("| {:<34} | {:>15} | {:>14} | {:>8} | {:>14} | {:>13} | {:>15} | {:>14} |", "scenario", "µs/event before", "µs/event after", "change", "p99 ms before", "p99 ms after", "events/s before", "events/s after");
    println!("|{:-<36}|{:->17}|{:->16}|{:->10}|{:->16}|{:->15}|{:->17}|{:->16}|", "", ":", ":", ":", ":", ":", ":", ":");
    for (name, before, after) in &results {
        let p99 = if before.iter().any(|r| get(r, "rate").unwrap_or(0.0) > 0.0) { "sched_p99_us" } else { "p99_us" };
        let (ub, ua) = (median(before, "server_us_per_event"), median(after, "server_us_per_event"));
        println!(
            "| {:<34} | {:>15} | {:>14} | {:>8} | {:>14} | {:>13} | {:>15} | {:>14} |",
            name,
            num(ub, 2),
            num(ua, 2),
            change(ub, ua),
            num(median(before, p99).map(|u| u / 1000.0), 2),
            num(median(after, p99).map(|u| u / 1000.0), 2),
            num(median(before, "events_s"), 0),
            num(median(after, "events_s"), 0),
        );
    }
    println!();
    println!("µs/event: the collector's CPU time (user+sys, all threads) per accepted event. Fixed rate: open loop at half the");
    println!("slower build's single-event maximum, p99 from the scheduled send time.");
    Ok(())
}

/// An empty directory `name` in the target directory, for the runs' data directories.
pub(crate) fn fresh_data_root(name: &str) -> anyhow::Result<PathBuf> {
    let data_root = target_dir().join(name);
    let _ = std::fs::remove_dir_all(&data_root);
    std::fs::create_dir_all(&data_root).with_context(|| format!("cannot create {}", data_root.display()))?;
    Ok(data_root)
}

/// The load generator's arguments for `mode` over `connections` connections, for the configured duration.
fn load_args(settings: &Settings, mode: &str, connections: usize) -> Vec<String> {
    vec!["--mode".into(), mode.into(), "--connections".into(), connections.to_string(), "--duration".into(), settings.secs.to_string(), "--warmup".into(), settings.warmup.to_string()]
}

/// One run on a fresh data directory (numbered by `counter`), once the box is quiet; the directory is removed after.
fn fresh_run(collector: &Path, generator: &Path, data_root: &Path, counter: &mut usize, scenario: &Scenario, settings: &Settings) -> anyhow::Result<Run> {
    *counter += 1;
    wait_quiet(settings.quiet_wait);
    let dir = data_root.join(format!("run-{counter}"));
    let run = one_run(collector, generator, &dir, scenario, settings)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(run)
}

fn one_run(collector: &Path, generator: &Path, dir: &Path, scenario: &Scenario, settings: &Settings) -> anyhow::Result<Run> {
    std::fs::create_dir_all(dir)?;
    let mut serve = pinned(settings.pin, "0", collector);
    serve.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(dir);
    if let Some(config) = scenario.config {
        let path = dir.join("footprint.toml");
        std::fs::write(&path, config)?;
        serve.arg("--config").arg(path);
    }
    serve.env_remove("FOOTPRINT_CONFIG").env_remove("FOOTPRINT_LISTEN").env_remove("FOOTPRINT_DATA_DIR").env_remove("FOOTPRINT_DATABASE_URL");
    let (mut server, url) = start_server(serve, &dir.join("collector.log"))?;
    let pid = server.0.id();

    let mut bench = pinned(settings.pin, "1", generator);
    bench.arg("--url").arg(&url).arg("--server-pid").arg(pid.to_string()).args(&scenario.args);
    let output = bench.stderr(Stdio::inherit()).output().context("cannot start footprint-bench")?;
    server.stop();
    if !output.status.success() {
        bail!("footprint-bench failed ({})", output.status);
    }
    parse_result(&output.stdout)
}

/// The `RESULT key=value …` line of footprint-bench's output.
pub(crate) fn parse_result(stdout: &[u8]) -> anyhow::Result<Run> {
    let stdout = String::from_utf8_lossy(stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).context("footprint-bench printed no RESULT line")?;
    Ok(line.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
}

/// Starts `serve` (a collector's `serve` command with its arguments and environment) with its stderr in `log`, and
/// returns it with the URL its first line of output gives; the rest of its output is drained.
pub(crate) fn start_server(mut serve: Command, log: &Path) -> anyhow::Result<(Server, String)> {
    serve.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(std::fs::File::create(log)?);
    let program = serve.get_program().to_string_lossy().into_owned();
    let mut server = Server(serve.spawn().with_context(|| format!("cannot start {program}"))?);
    let mut stdout = BufReader::new(server.0.stdout.take().expect("piped"));
    let mut first = String::new();
    stdout.read_line(&mut first)?;
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    match first.trim().strip_prefix("Footprint collector listening on ") {
        Some(url) => Ok((server, url.to_owned())),
        None => bail!("the collector did not start (first line {:?}); its log:\n{}", first.trim(), std::fs::read_to_string(log).unwrap_or_default()),
    }
}

/// The collector process; stopped gracefully (SIGTERM, which drains the queue), killed if that takes too long.
pub(crate) struct Server(pub(crate) Child);

impl Server {
    pub(crate) fn stop(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pinned(pin: bool, cpu: &str, program: &Path) -> Command {
    if pin {
        let mut command = Command::new("taskset");
        command.arg("-c").arg(cpu).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Waits (at most `limit`) until the box is nearly idle, so foreign builds disturb the runs less.
pub(crate) fn wait_quiet(limit: Duration) {
    let busy = || -> Option<f64> {
        let read = || -> Option<(u64, u64)> {
            let stat = std::fs::read_to_string("/proc/stat").ok()?;
            let v: Vec<u64> = stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            let total: u64 = v.iter().take(8).sum();
            Some((total - v.get(3)? - v.get(4).copied().unwrap_or(0), total))
        };
        let (b0, t0) = read()?;
        std::thread::sleep(Duration::from_millis(500));
        let (b1, t1) = read()?;
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        Some((b1 - b0) as f64 / (t1 - t0).max(1) as f64 * cpus)
    };
    let start = Instant::now();
    let mut said = false;
    while let Some(cores) = busy() {
        if cores < 0.25 || start.elapsed() >= limit {
            if cores >= 0.25 {
                eprintln!("    (the box is still busy: {:.0}% of a core used by others; running anyway)", cores * 100.0);
            }
            return;
        }
        if !said {
            eprintln!("    (waiting up to {} s for other work on the box to finish: {:.0}% of a core busy)", limit.as_secs(), cores * 100.0);
            said = true;
        }
    }
}

pub(crate) fn get(run: &Run, key: &str) -> Option<f64> {
    run.get(key).and_then(|v| v.parse().ok())
}

/// A figure of a run rounded to a whole number, or empty.
pub(crate) fn whole(run: &Run, key: &str) -> String {
    get(run, key).map(|v| format!("{v:.0}")).unwrap_or_default()
}

/// The run's peak RSS in MB, or empty.
pub(crate) fn rss_mb(run: &Run) -> String {
    get(run, "peak_rss_kb").map(|k| format!("{:.1}", k / 1024.0)).unwrap_or_default()
}

pub(crate) fn field<'a>(run: &'a Run, key: &str) -> &'a str {
    run.get(key).map(String::as_str).unwrap_or("-")
}

pub(crate) fn values(runs: &[Run], key: &str) -> Vec<f64> {
    let mut v: Vec<f64> = runs.iter().filter_map(|r| get(r, key)).collect();
    v.sort_by(f64::total_cmp);
    v
}

pub(crate) fn median(runs: &[Run], key: &str) -> Option<f64> {
    let v = values(runs, key);
    (!v.is_empty()).then(|| if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 })
}

fn print_table(results: &[(&'static str, Vec<Run>)], settings: &Settings) {
    let ms = |us: Option<f64>| us.map(|u| format!("{:.2}", u / 1000.0)).unwrap_or_else(|| "-".into());
    let num = |v: Option<f64>, d: usize| v.map(|v| format!("{v:.d$}")).unwrap_or_else(|| "-".into());
    println!();
    println!("Footprint collector benchmark: medians of {} runs × {:.1} s; collector {}; durable (2xx after the SQLite commit, synchronous=FULL)", settings.runs, settings.secs, if settings.pin { "on CPU 0, load generator on CPU 1" } else { "UNPINNED" });
    println!();
    println!(
        "| {:<42} | {:>19} | {:>8} | {:>7} | {:>8} | {:>11} | {:>7} | {:>7} | {:>8} | {:>8} | {:>13} | {:>11} | {:>6} |",
        "scenario", "events/s (min-max)", "req/s", "srv CPU", "µs/event", "events/core", "p50 ms", "p99 ms", "max ms", "RSS MB", "503 (R-After)", "rows/commit", "others"
    );
    println!("|{:-<44}|{:->21}|{:->10}|{:->9}|{:->10}|{:->13}|{:->9}|{:->9}|{:->10}|{:->10}|{:->15}|{:->13}|{:->8}|", "", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":");
    for (name, runs) in results {
        let open = runs.iter().any(|r| get(r, "rate").unwrap_or(0.0) > 0.0);
        // Open loop: latency from the scheduled send time (includes any wait for a free connection).
        let (p50, p99, max) = if open { ("sched_p50_us", "sched_p99_us", "sched_max_us") } else { ("p50_us", "p99_us", "max_us") };
        let ev = values(runs, "events_s");
        let per_core = median(runs, "server_us_per_event").filter(|v| *v > 0.0).map(|us| 1e6 / us);
        let peak_rss = values(runs, "peak_rss_kb").last().map(|k| k / 1024.0);
        println!(
            "| {:<42} | {:>19} | {:>8} | {:>6}% | {:>8} | {:>11} | {:>7} | {:>7} | {:>8} | {:>8} | {:>13} | {:>11} | {:>5}% |",
            name,
            format!("{} ({}-{})", num(median(runs, "events_s"), 0), num(ev.first().copied(), 0), num(ev.last().copied(), 0)),
            num(median(runs, "req_s"), 0),
            num(median(runs, "server_cpu_pct"), 0),
            num(median(runs, "server_us_per_event"), 2),
            num(per_core, 0),
            ms(median(runs, p50)),
            ms(median(runs, p99)),
            ms(median(runs, max)),
            num(peak_rss, 1),
            format!("{} ({})", num(median(runs, "s503"), 0), num(median(runs, "s503_retry_after"), 0)),
            num(median(runs, "rows_per_commit"), 0),
            num(median(runs, "foreign_cpu_pct"), 0),
        );
    }
    println!();
    println!("events/s: accepted (new, committed) events per second. µs/event: the collector's CPU time (user+sys, all threads) per");
    println!("accepted event; events/core = 1e6 / µs/event, what one fully busy core would do (robust when the load generator is starved).");
    println!("Latency: closed-loop rows from send to answer; open-loop rows (half of max, overload) from the scheduled send time.");
    println!("RSS: the collector's peak (VmHWM), max over runs. 503 (R-After): median 503 answers per run (those with Retry-After).");
    println!("rows/commit: rows per SQLite group commit (from /metrics). others: CPU used by other processes on the box during");
    println!("the run, in % of a core (noise).");

    let find = |prefix: &str| results.iter().find(|(n, _)| n.starts_with(prefix)).map(|(_, r)| r.as_slice());
    println!();
    println!("Targets (issue 2):");
    let check = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "n/a",
    };
    if let Some(r) = find("batched") {
        let per_core = median(r, "server_us_per_event").map(|us| 1e6 / us);
        let raw = median(r, "events_s");
        println!("  batched ≥ 150,000 events/s per core: {} (median {} events/s measured, {} per fully busy core)", check(per_core.map(|v| v >= 150_000.0)), num(raw, 0), num(per_core, 0));
    }
    if let Some(r) = find("single event/request, max") {
        let per_core = median(r, "server_us_per_event").map(|us| 1e6 / us);
        println!("  single ≥ 60,000 events/s per core:   {} (median {} events/s measured, {} per fully busy core)", check(per_core.map(|v| v >= 60_000.0)), num(median(r, "events_s"), 0), num(per_core, 0));
    }
    if let Some(r) = find("single event/request, half") {
        let p99 = median(r, "sched_p99_us");
        println!("  single p99 ≤ 20 ms at half max:      {} (p50 {} ms, p99 {} ms at {} events/s)", check(p99.map(|v| v <= 20_000.0)), ms(median(r, "sched_p50_us")), ms(p99), num(median(r, "events_s"), 0));
    }
    let overload: Vec<&Run> = results.iter().filter(|(n, _)| n.starts_with("overload")).flat_map(|(_, r)| r).collect();
    if !overload.is_empty() {
        let peak = overload.iter().filter_map(|r| get(r, "peak_rss_kb")).fold(0.0f64, f64::max) / 1024.0;
        let s503: f64 = overload.iter().filter_map(|r| get(r, "s503")).sum();
        let with_retry: f64 = overload.iter().filter_map(|r| get(r, "s503_retry_after")).sum();
        println!("  2x overload: RSS ≤ 300 MB:           {} (peak {:.1} MB over all overload runs)", check(Some(peak <= 300.0)), peak);
        println!("  2x overload: 503 + Retry-After:      {} ({:.0} answers 503 in all overload runs, {:.0} of them with Retry-After)", check(Some(s503 == with_retry && s503 > 0.0)), s503, with_retry);
    }
}
