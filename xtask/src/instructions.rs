//! `cargo xtask bench-instructions [--against REV] [--secs S]`: the collector's user-space instructions per accepted
//! event, counted by valgrind's callgrind, overall and by part (the request path, the writer, the stats thread).
//!
//! The machines this project runs on differ in speed by more than 2× from one session to the next, and one machine
//! drifts by ±15 % within minutes, so µs per event compares two builds only when they alternate many times.
//! Instruction counts do not drift: the same build under the same load counts within ~1 %. The load is open loop at
//! a fixed rate, well below what the collector does under valgrind, so what is batched by time (a group commit's
//! rows, a stats batch's events) comes in the same batches for both builds however fast the box runs (in closed
//! loop a faster box sent more events per stats batch and counted fewer instructions per event). Under valgrind the
//! collector runs ~50× slower on one serialised thread, so those batches are smaller than at full speed: compare
//! builds with this, and take the mix of costs at full speed from `cargo xtask bench` and a profiler. Kernel time
//! (system calls, page copies) is not counted.

use crate::bench;
use crate::{cargo, run_step, target_dir};
use anyhow::{bail, Context as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The parts reported, each a function whose inclusive count is that part's (the first name found is used).
const PARTS: &[(&str, &[&str])] = &[
    ("request path (tokio threads)", &["tokio::runtime::blocking::pool::Inner::run"]),
    ("  JSON decode", &["footprint::ingest::decode"]),
    ("  validate, enrich, rows", &["footprint::ingest::process"]),
    ("writer thread", &["footprint::writer::run"]),
    ("  person-index links", &["footprint::store::sqlite::SqliteStore::flush_links"]),
    ("stats thread", &["footprint::store::stats_thread::Updater::run"]),
];
/// The indexes in [`PARTS`] of the threads' own parts; what they leave of the total is the other threads' (the
/// checkpointer, whose work is mostly the kernel's, and the main thread).
const THREADS: [usize; 3] = [0, 3, 5];

struct Load {
    name: &'static str,
    mode: &'static str,
    connections: usize,
    /// Events per second, open loop: about half of what the collector accepts under valgrind on a slow day
    /// (~1,200 batched, ~700 single).
    rate: u32,
}

/// Seconds of load before counting: by then (12,000 batched events) ~90 % of the generator's 5,000 visitors have
/// been seen, as in `bench`'s runs, so first visits do not inflate the stats thread's share.
const WARMUP_SECS: f64 = 20.0;

/// Fewer connections than `bench`: under valgrind 32 connections of batches would only queue.
const LOADS: &[Load] = &[
    Load { name: "batched (30 events/request)", mode: "batch", connections: 8, rate: 600 },
    Load { name: "single event/request", mode: "single", connections: 32, rate: 300 },
];

pub fn bench(args: &[String]) -> anyhow::Result<()> {
    let (against, args) = bench::take_revision_option(args, "--against")?;
    let mut secs = 20.0_f64;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--secs" => secs = it.next().and_then(|v| v.parse().ok()).filter(|s: &f64| *s >= 1.0 && *s <= 300.0).context("--secs takes 1 <= S <= 300")?,
            other => bail!("unknown bench-instructions option {other:?}; usage: cargo xtask bench-instructions [--against REV] [--secs S]"),
        }
    }
    for tool in ["valgrind", "callgrind_control", "callgrind_annotate"] {
        // Only whether it starts: `callgrind_annotate --version` exits non-zero.
        let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !found {
            bail!("`{tool}` is missing: install valgrind (Debian: apt-get install -y valgrind)");
        }
    }
    run_step("build the collector and the load generator (release)", cargo().args(["build", "--release", "-p", "footprint-collector", "-p", "footprint-bench"]))?;
    let current = target_dir().join("release/footprint");
    let generator = target_dir().join("release/footprint-bench");
    let mut builds = vec![("this build".to_owned(), current)];
    if let Some(rev) = against {
        builds.insert(0, (rev.clone(), bench::baseline_collector(&rev)?));
    }
    let data_root = bench::fresh_data_root("bench-instructions")?;
    eprintln!("==> each load: open loop at a fixed rate, {WARMUP_SECS:.0} s warm-up, then {secs:.0} s counted (the collector under callgrind is ~50× slower than at full speed)");
    let mut tables = Vec::new();
    for load in LOADS {
        let mut counts = Vec::new();
        for (name, collector) in &builds {
            eprintln!("==> {}, {name}", load.name);
            let dir = data_root.join(format!("run-{}", tables.len() * builds.len() + counts.len()));
            let count = count_run(collector, &generator, &dir, load, secs)?;
            eprintln!("    {} events, {:.0} instructions per event", count.events, count.total as f64 / count.events as f64);
            let _ = std::fs::remove_dir_all(&dir);
            counts.push(count);
        }
        tables.push((load.name, counts));
    }
    let _ = std::fs::remove_dir_all(&data_root);

    println!();
    println!("User-space instructions per accepted event (callgrind; inclusive counts of each part's function)");
    for (name, counts) in &tables {
        println!();
        let header: Vec<String> = builds.iter().map(|(b, _)| b.clone()).collect();
        println!("| {:<30} | {} |{}", name, header.iter().map(|h| format!("{h:>12}")).collect::<Vec<_>>().join(" | "), if builds.len() == 2 { "   change |" } else { "" });
        println!("|{:-<32}|{}|{}", "", header.iter().map(|_| format!("{:->14}", ":")).collect::<Vec<_>>().join("|"), if builds.len() == 2 { "----------:|" } else { "" });
        let rows = std::iter::once(("total", counts.iter().map(|c| Some(c.total)).collect::<Vec<_>>()))
            .chain(PARTS.iter().enumerate().map(|(i, (part, _))| (*part, counts.iter().map(|c| c.parts[i]).collect())))
            .chain(std::iter::once(("other threads", counts.iter().map(Count::others).collect())));
        for (label, values) in rows {
            let per_event: Vec<Option<f64>> = values.iter().zip(counts).map(|(v, c)| v.map(|v| v as f64 / c.events as f64)).collect();
            let cells: Vec<String> = per_event.iter().map(|v| v.map_or_else(|| format!("{:>12}", "-"), |v| format!("{v:>12.0}"))).collect();
            let change = match per_event.as_slice() {
                [Some(b), Some(a)] if *b > 0.0 => format!(" {:>+8.1}% |", (a - b) / b * 100.0),
                [_, _] => format!(" {:>9} |", "-"),
                _ => String::new(),
            };
            println!("| {label:<30} | {} |{change}", cells.join(" | "));
        }
        println!("  ({} accepted events counted)", counts.iter().map(|c| c.events.to_string()).collect::<Vec<_>>().join(" / "));
    }
    Ok(())
}

struct Count {
    events: u64,
    total: u64,
    parts: Vec<Option<u64>>,
}

impl Count {
    fn others(&self) -> Option<u64> {
        THREADS.iter().try_fold(self.total, |left, &i| Some(left.saturating_sub(self.parts[i]?)))
    }
}

/// One collector under callgrind on a fresh data directory: the warm-up load, counters zeroed, the counted load, a wait
/// until the collector is idle (the stats thread finishes the events), the counters dumped and read.
fn count_run(collector: &Path, generator: &Path, dir: &Path, load: &Load, secs: f64) -> anyhow::Result<Count> {
    std::fs::create_dir_all(dir)?;
    let out_file = dir.join("callgrind.out");
    let mut serve = Command::new("valgrind");
    serve.arg("--tool=callgrind").arg(format!("--callgrind-out-file={}", out_file.display())).arg(collector);
    serve.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(dir);
    serve.env_remove("FOOTPRINT_CONFIG").env_remove("FOOTPRINT_LISTEN").env_remove("FOOTPRINT_DATA_DIR").env_remove("FOOTPRINT_DATABASE_URL");
    let (mut server, url) = bench::start_server(serve, &dir.join("collector.log"))?;
    let pid = server.0.id().to_string();
    let send = |duration: f64| -> anyhow::Result<u64> {
        let output = Command::new(generator)
            .args(["--url", &url, "--mode", load.mode, "--connections", &load.connections.to_string(), "--duration", &duration.to_string(), "--warmup", "0", "--rate", &load.rate.to_string()])
            .stderr(Stdio::null())
            .output()
            .context("cannot start footprint-bench")?;
        let run = bench::parse_result(&output.stdout)?;
        let count = |key: &str| bench::get(&run, key).map(|v| v as u64);
        if count("errors").unwrap_or(0) > 0 || count("s503_total").unwrap_or(0) > 0 {
            bail!("the load saw errors or 503 answers: {run:?}");
        }
        count("accepted_total").context("no accepted_total in RESULT")
    };
    send(WARMUP_SECS)?;
    wait_idle(&pid);
    run_quiet(Command::new("callgrind_control").args(["-z", &pid]))?;
    let events = send(secs)?;
    wait_idle(&pid);
    run_quiet(Command::new("callgrind_control").args(["-d", &pid]))?;
    server.stop();
    if events == 0 {
        bail!("no event was accepted in the counted load");
    }
    // Open loop: a collector that kept up accepted what was sent, whichever build it is.
    if (events as f64) < 0.95 * f64::from(load.rate) * secs {
        eprintln!("    warning: {events} events accepted, under 95 % of {} events/s: the collector under valgrind did not keep up, so its batches differ from the other build's", load.rate);
    }
    let dump = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("callgrind.out") && n.ends_with(".1")))
        .context("callgrind wrote no dump")?;
    let annotated = Command::new("callgrind_annotate").arg("--inclusive=yes").arg("--threshold=100").arg(&dump).output().context("cannot run callgrind_annotate")?;
    let (total, functions) = inclusive_counts(&String::from_utf8_lossy(&annotated.stdout));
    let total = total.context("callgrind_annotate printed no PROGRAM TOTALS")?;
    let parts = PARTS.iter().map(|(_, names)| names.iter().find_map(|n| functions.iter().find(|(f, _)| f == n).map(|(_, c)| *c))).collect();
    Ok(Count { events, total, parts })
}

/// `callgrind_annotate --inclusive=yes` output → the program total and each function's inclusive count. A function's
/// own line ends with its object (`[/path/footprint]`); lines without one are code inlined from another file.
fn inclusive_counts(text: &str) -> (Option<u64>, Vec<(String, u64)>) {
    let number = |s: &str| s.trim().replace(',', "").parse::<u64>().ok();
    let mut total = None;
    let mut functions = Vec::new();
    for line in text.lines() {
        let Some((count, rest)) = line.trim_start().split_once(' ') else { continue };
        let Some(count) = number(count) else { continue };
        if rest.ends_with("PROGRAM TOTALS") {
            total = Some(count);
            continue;
        }
        // "(12.34%)  file:function [object]"
        let Some((_, located)) = rest.split_once(")  ") else { continue };
        let Some(located) = located.strip_suffix(']').and_then(|l| l.rsplit_once(" [")).map(|(l, _)| l) else { continue };
        if let Some((_, function)) = split_file(located) {
            functions.push((function.to_owned(), count));
        }
    }
    (total, functions)
}

/// `file:function` at the first single colon (function names hold `::`).
fn split_file(located: &str) -> Option<(&str, &str)> {
    let bytes = located.as_bytes();
    (0..bytes.len()).find(|&i| bytes[i] == b':' && bytes.get(i + 1) != Some(&b':') && (i == 0 || bytes[i - 1] != b':')).map(|i| (&located[..i], &located[i + 1..]))
}

/// Waits (at most 60 s) until the process has used under 5 % of a core for a second: under valgrind the stats
/// thread takes seconds to apply what the load left it.
fn wait_idle(pid: &str) {
    let cpu_ticks = || -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = cpu_ticks();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let now = cpu_ticks();
        // Clock ticks are 1/100 s on Linux: 5 ticks in a second is 5 % of a core.
        if matches!((last, now), (Some(a), Some(b)) if b.saturating_sub(a) < 5) {
            return;
        }
        last = now;
    }
}

fn run_quiet(command: &mut Command) -> anyhow::Result<()> {
    let status = command.stdout(Stdio::null()).stderr(Stdio::null()).status().context("cannot run callgrind_control")?;
    if !status.success() {
        bail!("callgrind_control failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_totals_and_own_function_lines_only() {
        let text = "1,613,717,432 (100.0%)  PROGRAM TOTALS\n\
            673,193,161 (41.72%)  /x/tokio/src/runtime/task/raw.rs:tokio::runtime::blocking::pool::Inner::run [/t/footprint]\n\
            209,325,904 (12.97%)  /x/serde_json/src/de.rs:footprint::ingest::decode\n\
            209,693,284 (12.99%)  /work/collector/src/ingest.rs:footprint::ingest::decode [/t/footprint]\n";
        let (total, functions) = inclusive_counts(text);
        assert_eq!(total, Some(1_613_717_432));
        assert_eq!(
            functions,
            vec![("tokio::runtime::blocking::pool::Inner::run".to_owned(), 673_193_161), ("footprint::ingest::decode".to_owned(), 209_693_284)]
        );
    }
}
