//! `footprint-bench`: drives a running collector with realistic Segment events over keep-alive HTTP/1.1
//! connections, closed-loop (as fast as the collector answers) or open-loop (a fixed rate, latency measured from
//! the scheduled send time so a stalled server cannot hide its queueing), and reports throughput, status counts,
//! latency percentiles and, given `--server-pid`, the server's CPU time and peak RSS.
//!
//! It runs on one thread: pin it to its own core (`taskset -c 1`). `cargo xtask bench` runs the standard scenarios.
//! Several `--url`s spread the connections over several collectors (`cargo xtask bench-pg`: collectors sharing
//! PostgreSQL), and `--overlap` sends some batches to two of them at once, as a retry that reached both would.
//! The last line of output is `RESULT key=value …` for scripts.

use bytes::Bytes;
use footprint_bench::{
    batch_templates, count_occurrences, percentile, proc_stat_busy_total, single_templates, stat_cpu_ticks, stat_ppid, stat_reaped_children_ticks, status_kb, IdSource, Template,
    USER_AGENTS,
};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: footprint-bench --url http://127.0.0.1:PORT… [--mode batch|single] [--batch N] [--connections N]
                       [--duration SECS] [--warmup SECS] [--rate EVENTS_PER_S] [--server-pid PID…] [--db-pid PID]
                       [--overlap FRACTION] [--write-key KEY]

  --url URL        a collector; given several times, connection i goes to the (i mod n)-th

  --mode batch     POST /v1/batch with --batch events per request (default 30)
  --mode single    POST /v1/page or /v1/track, one event per request
  --rate R         open loop: R events/s in total, spread evenly (0, the default: closed loop, as fast as answered)
  --connections N  keep-alive connections, each with one request in flight (default 32)
  --duration SECS  measured time (default 5); --warmup SECS before it (default 1) is not counted
  --server-pid PID the collector's process: its CPU time over the measured window and its peak RSS (VmHWM); given
                   several times (one per collector), CPU is summed and the peak RSS is the largest
  --db-pid PID     the PostgreSQL server (postmaster): CPU time of it and its children over the measured window
  --overlap F      this fraction (0..=1) of requests also goes, at the same time and with the same body, to the next
                   --url (the same one when there is one) on a connection of its own: every event of such a pair must
                   be accepted exactly once (`overlap_mismatch` counts the pairs where it was not)

Whole-run totals (warm-up and overlap copies included) are `*_total` in the RESULT line: what a check of the store
compares with (`unknown_total`: requests without a definite answer — transport errors, timeouts, statuses other
than 2xx and 503).";

#[derive(Debug, Clone)]
struct Options {
    addrs: Vec<SocketAddr>,
    single: bool,
    batch: usize,
    connections: usize,
    duration: f64,
    warmup: f64,
    rate: f64,
    server_pids: Vec<u32>,
    db_pid: Option<u32>,
    overlap: f64,
    write_key: String,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        addrs: Vec::new(),
        single: false,
        batch: 30,
        connections: 32,
        duration: 5.0,
        warmup: 1.0,
        rate: 0.0,
        server_pids: Vec::new(),
        db_pid: None,
        overlap: 0.0,
        write_key: "wk_demo".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag}: {value:?} is not {what}");
        match flag.as_str() {
            "--url" => {
                let rest = value.strip_prefix("http://").ok_or_else(|| bad("an http:// URL"))?;
                let hostport = rest.split('/').next().unwrap_or(rest);
                let addr: SocketAddr = hostport.parse().map_err(|_| bad("http://IP:PORT (loopback only)"))?;
                if !addr.ip().is_loopback() {
                    return Err("only loopback targets are allowed (127.0.0.0/8, [::1])".into());
                }
                o.addrs.push(addr);
            }
            "--mode" => {
                o.single = match value.as_str() {
                    "batch" => false,
                    "single" => true,
                    _ => return Err(bad("batch or single")),
                }
            }
            "--batch" => o.batch = value.parse().ok().filter(|n| (1..=2_500).contains(n)).ok_or_else(|| bad("1..=2500"))?,
            "--connections" => o.connections = value.parse().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| bad("1..=10000"))?,
            "--duration" => o.duration = value.parse().ok().filter(|d: &f64| *d > 0.0 && *d <= 600.0).ok_or_else(|| bad("0 < secs <= 600"))?,
            "--warmup" => o.warmup = value.parse().ok().filter(|d: &f64| *d >= 0.0 && *d <= 60.0).ok_or_else(|| bad("0 <= secs <= 60"))?,
            "--rate" => o.rate = value.parse().ok().filter(|r: &f64| *r >= 0.0).ok_or_else(|| bad("a rate >= 0"))?,
            "--server-pid" => o.server_pids.push(value.parse().map_err(|_| bad("a pid"))?),
            "--db-pid" => o.db_pid = Some(value.parse().map_err(|_| bad("a pid"))?),
            "--overlap" => o.overlap = value.parse().ok().filter(|f: &f64| (0.0..=1.0).contains(f)).ok_or_else(|| bad("a fraction 0..=1"))?,
            "--write-key" => o.write_key = value,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if o.single {
        o.batch = 1;
    }
    if o.addrs.is_empty() {
        o.addrs.push("127.0.0.1:8080".parse().unwrap());
    }
    Ok(o)
}

/// What one connection saw during the measured window.
#[derive(Default)]
struct Tally {
    requests: u64,
    events_sent: u64,
    /// Accepted events whose answer arrived within the measured window: the throughput, whatever the loop.
    accepted_in_window: u64,
    requests_in_window: u64,
    accepted: u64,
    duplicate: u64,
    rejected: u64,
    ok: u64,
    unavailable: u64,
    unavailable_retry_after: u64,
    other: BTreeMap<u16, u64>,
    errors: u64,
    last_error: Option<String>,
    /// Over the whole run (warm-up, overlap copies and the tail included): what the store must hold.
    totals: Totals,
    /// Microseconds from the actual send to the end of the response body.
    latency_us: Vec<u32>,
    /// Microseconds from the scheduled send (open loop) to the end of the response: includes waiting for a free
    /// connection, so server stalls show (no coordinated omission).
    scheduled_latency_us: Vec<u32>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.events_sent += other.events_sent;
        self.accepted_in_window += other.accepted_in_window;
        self.requests_in_window += other.requests_in_window;
        self.accepted += other.accepted;
        self.duplicate += other.duplicate;
        self.rejected += other.rejected;
        self.ok += other.ok;
        self.unavailable += other.unavailable;
        self.unavailable_retry_after += other.unavailable_retry_after;
        for (code, n) in other.other {
            *self.other.entry(code).or_default() += n;
        }
        self.errors += other.errors;
        self.totals.merge(&other.totals);
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
        self.latency_us.extend(other.latency_us);
        self.scheduled_latency_us.extend(other.scheduled_latency_us);
    }
}

/// Answers over the whole run, whenever they came.
#[derive(Default)]
struct Totals {
    requests: u64,
    accepted: u64,
    duplicate: u64,
    rejected: u64,
    s503: u64,
    /// Requests without a definite answer (transport error, timeout, another status): their events may or may not
    /// be stored.
    unknown: u64,
    overlap_pairs: u64,
    /// Pairs (both answered 2xx) in which some event was not accepted exactly once.
    overlap_mismatch: u64,
}

impl Totals {
    fn merge(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.accepted += o.accepted;
        self.duplicate += o.duplicate;
        self.rejected += o.rejected;
        self.s503 += o.s503;
        self.unknown += o.unknown;
        self.overlap_pairs += o.overlap_pairs;
        self.overlap_mismatch += o.overlap_mismatch;
    }

    /// Counts one answer; returns its (accepted, duplicate) events when it was a 2xx.
    fn count(&mut self, outcome: &Outcome) -> Option<(u64, u64)> {
        self.requests += 1;
        match outcome {
            Ok(Ok((200..=299, _, body))) => {
                let (a, d) = (count_occurrences(body, b"\"accepted\"") as u64, count_occurrences(body, b"\"duplicate\"") as u64);
                self.accepted += a;
                self.duplicate += d;
                self.rejected += count_occurrences(body, b"\"rejected\"") as u64;
                Some((a, d))
            }
            Ok(Ok((503, ..))) => {
                self.s503 += 1;
                None
            }
            _ => {
                self.unknown += 1;
                None
            }
        }
    }
}

/// A request's answer (status, Retry-After present, body), a transport error, or a timeout.
type Outcome = Result<Result<(u16, bool, Bytes), String>, tokio::time::error::Elapsed>;

async fn exchange(sender: &mut SendRequest<Full<Bytes>>, request: Request<Full<Bytes>>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(60), async {
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key(RETRY_AFTER);
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((status, retry_after, body))
    })
    .await
}

struct Plan {
    opts: Options,
    templates: Vec<Template>,
    authorization: HeaderValue,
    /// One per `--url`.
    hosts: Vec<HeaderValue>,
    run_tag: u32,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    /// Open loop: time between two sends, over all connections.
    interval: Option<Duration>,
    next_slot: AtomicU64,
}

fn main() -> std::process::ExitCode {
    let opts = match parse_options() {
        Ok(o) => o,
        Err(message) => {
            eprintln!("footprint-bench: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(opts)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("footprint-bench: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn run(opts: Options) -> Result<(), String> {
    let now = now_ms();
    let seed = now as u64 ^ u64::from(std::process::id()) << 32;
    let templates = if opts.single { single_templates(seed, 4_096, now) } else { batch_templates(seed, 64, opts.batch, now) };
    let mean_bytes = templates.iter().map(|t| t.body.len()).sum::<usize>() / templates.len();

    // All connections are open before the clock starts (the overlap ones too).
    let n = opts.addrs.len();
    let mut senders = Vec::with_capacity(opts.connections);
    for i in 0..opts.connections {
        let overlap = if opts.overlap > 0.0 { Some(connect(opts.addrs[(i + 1) % n]).await?) } else { None };
        senders.push((connect(opts.addrs[i % n]).await?, overlap));
    }
    let requests_per_s = opts.rate / opts.batch as f64;
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(opts.warmup);
    let end = measure_from + Duration::from_secs_f64(opts.duration);
    let plan = Arc::new(Plan {
        authorization: HeaderValue::from_str(&format!("Basic {}", base64(format!("{}:", opts.write_key).as_bytes()))).unwrap(),
        hosts: opts.addrs.iter().map(|a| HeaderValue::from_str(&a.to_string()).unwrap()).collect(),
        run_tag: seed as u32 ^ (seed >> 32) as u32,
        templates,
        start,
        measure_from,
        end,
        interval: (opts.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / requests_per_s)),
        next_slot: AtomicU64::new(0),
        opts: opts.clone(),
    });
    eprintln!(
        "footprint-bench: {} {} → {}, {} connections, {}{}, {:.1} s + {:.1} s warm-up, bodies ~{} B",
        if opts.single { "single events" } else { "batches" },
        if opts.single { String::new() } else { format!("of {}", opts.batch) },
        opts.addrs.iter().map(|a| format!("http://{a}")).collect::<Vec<_>>().join(" + "),
        opts.connections,
        if opts.rate > 0.0 { format!("open loop at {:.0} events/s ({:.0} req/s)", opts.rate, requests_per_s) } else { "closed loop".into() },
        if opts.overlap > 0.0 { format!(", {:.0}% of requests also sent to the next collector at once", 100.0 * opts.overlap) } else { String::new() },
        opts.duration,
        opts.warmup,
        mean_bytes
    );

    // Samples of the server's CPU, our own CPU and the whole box's CPU at the edges of the measured window.
    // And the collector's own commit counters from /metrics, on a connection of its own.
    let sampler = {
        let (pids, db_pid) = (opts.server_pids.clone(), opts.db_pid);
        let mut metrics_conns = Vec::new();
        for (addr, host) in opts.addrs.iter().zip(&plan.hosts) {
            metrics_conns.push((*addr, connect(*addr).await.ok(), host.clone()));
        }
        tokio::spawn(async move {
            let sample = || (servers_cpu_ticks(&pids), read_cpu_ticks(None), read_box(), Instant::now(), db_pid.and_then(tree_cpu_ticks));
            tokio::time::sleep_until(measure_from.into()).await;
            let first = sample();
            let m0 = all_commit_metrics(&mut metrics_conns).await;
            tokio::time::sleep_until(end.into()).await;
            let last = sample();
            let m1 = all_commit_metrics(&mut metrics_conns).await;
            (first, last, m0.zip(m1).map(|(a, b)| [b[0] - a[0], b[1] - a[1], b[2] - a[2]]))
        })
    };

    let workers: Vec<_> = senders.into_iter().enumerate().map(|(i, (sender, overlap))| tokio::spawn(worker(plan.clone(), i, sender, overlap))).collect();
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await.map_err(|e| format!("worker failed: {e}"))?);
    }
    let (first, last, commits) = sampler.await.map_err(|e| e.to_string())?;
    report(&opts, tally, first, last, commits, mean_bytes);
    Ok(())
}

/// (servers' CPU ticks, our CPU ticks, the box's busy/total ticks, when, the database server tree's CPU ticks)
type Sample = (Option<u64>, Option<u64>, Option<(u64, u64)>, Instant, Option<u64>);

/// The commit counters of every collector, summed (`None` if one did not answer).
///
/// The connection opened before the run sits idle between the two samples, longer than the collector's header read
/// timeout when the window is 10 s or more, so a request that fails is tried once more on a new connection.
async fn all_commit_metrics(conns: &mut [(SocketAddr, Option<SendRequest<Full<Bytes>>>, HeaderValue)]) -> Option<[f64; 3]> {
    let mut sum = [0.0; 3];
    for (addr, conn, host) in conns.iter_mut() {
        let m = match commit_metrics(conn, host).await {
            Some(m) => m,
            None => {
                *conn = connect(*addr).await.ok();
                commit_metrics(conn, host).await?
            }
        };
        for i in 0..3 {
            sum[i] += m[i];
        }
    }
    Some(sum)
}

/// CPU ticks of all the collectors, summed (`None` when there are none, or one is gone).
fn servers_cpu_ticks(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| read_cpu_ticks(Some(*pid))).sum()
}

/// CPU ticks of a process and its children: the live ones, and (through its cutime/cstime) the ones it reaped.
/// For PostgreSQL's postmaster, whose backends and helpers are all its children.
fn tree_cpu_ticks(pid: u32) -> Option<u64> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut ticks = stat_cpu_ticks(&own)? + stat_reaped_children_ticks(&own)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) {
            if stat_ppid(&stat) == Some(pid) {
                ticks += stat_cpu_ticks(&stat).unwrap_or(0);
            }
        }
    }
    Some(ticks)
}

/// `[commits, rows, seconds in commits]` from the collector's `/metrics`.
async fn commit_metrics(conn: &mut Option<SendRequest<Full<Bytes>>>, host: &HeaderValue) -> Option<[f64; 3]> {
    let sender = conn.as_mut()?;
    sender.ready().await.ok()?;
    let mut request = Request::builder().uri("/metrics").body(Full::new(Bytes::new())).ok()?;
    request.headers_mut().insert(HOST, host.clone());
    let response = sender.send_request(request).await.ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok());
    Some([value("footprint_commits_total")?, value("footprint_commit_rows_total")?, value("footprint_commit_seconds_total")?])
}

fn read_cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".into(),
    };
    stat_cpu_ticks(&std::fs::read_to_string(path).ok()?)
}

fn read_box() -> Option<(u64, u64)> {
    proc_stat_busy_total(&std::fs::read_to_string("/proc/stat").ok()?)
}

async fn worker(plan: Arc<Plan>, index: usize, mut sender: SendRequest<Full<Bytes>>, mut overlap: Option<SendRequest<Full<Bytes>>>) -> Tally {
    let mut tally = Tally::default();
    let mut ids = IdSource::new(plan.run_tag, index as u16);
    let user_agent = HeaderValue::from_static(USER_AGENTS[index % USER_AGENTS.len()]);
    let targets = plan.opts.addrs.len();
    let (target, overlap_target) = (index % targets, (index + 1) % targets);
    let mut next_template = index * 7;
    let mut broken = false;
    // Request k also goes to the overlap target when k × F passes an integer; k starts at the worker's index, so the
    // workers' overlapped requests are spread out (and short runs have some too).
    let mut sent_count = index as u64;
    loop {
        let scheduled = match plan.interval {
            Some(interval) => {
                let slot = plan.next_slot.fetch_add(1, Ordering::Relaxed);
                let at = plan.start + interval.mul_f64(slot as f64);
                if at >= plan.end {
                    break;
                }
                if at > Instant::now() {
                    tokio::time::sleep_until(at.into()).await;
                }
                Some(at)
            }
            None => {
                if Instant::now() >= plan.end {
                    break;
                }
                None
            }
        };
        if broken || sender.is_closed() {
            match connect(plan.opts.addrs[target]).await {
                Ok(s) => {
                    sender = s;
                    broken = false;
                }
                Err(e) => {
                    tally.errors += 1;
                    tally.last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let template = &plan.templates[next_template % plan.templates.len()];
        next_template += 1;
        let body = Bytes::from(template.stamp(&mut ids));
        let request = |to: usize| {
            let mut request = Request::builder().method(Method::POST).uri(template.path).body(Full::new(body.clone())).expect("valid request");
            let headers = request.headers_mut();
            headers.insert(HOST, plan.hosts[to].clone());
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(AUTHORIZATION, plan.authorization.clone());
            headers.insert(USER_AGENT, user_agent.clone());
            request
        };

        if sender.ready().await.is_err() {
            broken = true;
            continue;
        }
        let overlapped = plan.opts.overlap > 0.0 && ((sent_count + 1) as f64 * plan.opts.overlap).floor() > (sent_count as f64 * plan.opts.overlap).floor();
        sent_count += 1;
        // The overlap copy goes out at the same moment on its own connection (opened again if it broke).
        let mut second = None;
        if overlapped {
            if overlap.as_ref().is_none_or(|s| s.is_closed()) {
                overlap = connect(plan.opts.addrs[overlap_target]).await.ok();
            }
            if let Some(s) = overlap.as_mut() {
                if s.ready().await.is_ok() {
                    second = Some(s);
                }
            }
        }
        let sent = Instant::now();
        let started = scheduled.unwrap_or(sent);
        let counted = started >= plan.measure_from && started < plan.end;
        let (outcome, copy) = match second {
            Some(s) => {
                let (a, b) = tokio::join!(exchange(&mut sender, request(target)), exchange(s, request(overlap_target)));
                (a, Some(b))
            }
            None => (exchange(&mut sender, request(target)).await, None),
        };
        let done = Instant::now();
        let first_counts = tally.totals.count(&outcome);
        if let Some(copy) = &copy {
            let second_counts = tally.totals.count(copy);
            if !matches!(copy, Ok(Ok(_))) {
                overlap = None;
            }
            tally.totals.overlap_pairs += 1;
            if let (Some((a1, d1)), Some((a2, d2))) = (first_counts, second_counts) {
                let events = template.events() as u64;
                if a1 + a2 != events || d1 + d2 != events {
                    tally.totals.overlap_mismatch += 1;
                }
            }
        }
        if done >= plan.measure_from && done < plan.end {
            tally.requests_in_window += 1;
            // New events acknowledged in the window, by either collector of an overlapped pair.
            tally.accepted_in_window += first_counts.map_or(0, |(a, _)| a);
            if let Some(Ok(Ok((200..=299, _, body)))) = &copy {
                tally.accepted_in_window += count_occurrences(body, b"\"accepted\"") as u64;
            }
        }
        if !counted {
            if !matches!(outcome, Ok(Ok(_))) {
                broken = true;
            }
            continue;
        }
        tally.requests += 1;
        tally.events_sent += template.events() as u64;
        match outcome {
            Ok(Ok((status, retry_after, body))) => {
                tally.latency_us.push(micros(done - sent));
                if scheduled.is_some() {
                    tally.scheduled_latency_us.push(micros(done - started));
                }
                match status {
                    200..=299 => {
                        tally.ok += 1;
                        tally.accepted += count_occurrences(&body, b"\"accepted\"") as u64;
                        tally.duplicate += count_occurrences(&body, b"\"duplicate\"") as u64;
                        tally.rejected += count_occurrences(&body, b"\"rejected\"") as u64;
                    }
                    503 => {
                        tally.unavailable += 1;
                        tally.unavailable_retry_after += u64::from(retry_after);
                    }
                    other => {
                        *tally.other.entry(other).or_default() += 1;
                        if tally.last_error.is_none() {
                            tally.last_error = Some(format!("HTTP {other}: {}", String::from_utf8_lossy(&body[..body.len().min(300)])));
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                tally.errors += 1;
                tally.last_error = Some(e);
                broken = true;
            }
            Err(_) => {
                tally.errors += 1;
                tally.last_error = Some("no answer within 60 s".into());
                broken = true;
            }
        }
    }
    tally
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

fn report(opts: &Options, mut t: Tally, first: Sample, last: Sample, commits: Option<[f64; 3]>, mean_bytes: usize) {
    let wall = (last.3 - first.3).as_secs_f64().max(1e-9);
    t.latency_us.sort_unstable();
    t.scheduled_latency_us.sort_unstable();
    let tick = 100.0; // USER_HZ: 100 on every Linux this runs on.
    let cpu_s = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b.saturating_sub(a) as f64 / tick);
    let server_cpu = cpu_s(first.0, last.0);
    let gen_cpu = cpu_s(first.1, last.1);
    let db_cpu = cpu_s(first.4, last.4);
    let db_pct = db_cpu.map(|c| 100.0 * c / wall);
    let box_busy = first.2.zip(last.2).map(|((b0, t0), (b1, t1))| {
        // In "cores busy" over the window, from /proc/stat (all CPUs of the machine).
        (b1 - b0) as f64 / (t1 - t0).max(1) as f64 * cpu_count() as f64
    });
    // The largest collector's peak.
    let peak_rss_kb = opts.server_pids.iter().filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok()).filter_map(|s| status_kb(&s, "VmHWM:")).max();
    let events_per_s = t.accepted_in_window as f64 / wall;
    let requests_per_s = t.requests_in_window as f64 / wall;
    let server_pct = server_cpu.map(|c| 100.0 * c / wall);
    let gen_pct = gen_cpu.map(|c| 100.0 * c / wall);
    // Whatever else ran on the box during the window (other builds), in % of one core.
    let foreign_pct = box_busy.map(|b| (100.0 * b - server_pct.unwrap_or(0.0) - gen_pct.unwrap_or(0.0) - db_pct.unwrap_or(0.0)).max(0.0));
    let us_per_event = server_cpu.filter(|_| t.accepted_in_window > 0).map(|c| c * 1e6 / t.accepted_in_window as f64);
    let (p50, p90, p99, max) = (percentile(&t.latency_us, 50.0), percentile(&t.latency_us, 90.0), percentile(&t.latency_us, 99.0), t.latency_us.last().copied().unwrap_or(0));
    let s = &t.scheduled_latency_us;
    let (sp50, sp99, smax) = (percentile(s, 50.0), percentile(s, 99.0), s.last().copied().unwrap_or(0));
    let other: u64 = t.other.values().sum();
    let opt = |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into());

    eprintln!(
        "  throughput {:.0} req/s, {:.0} accepted events/s (answers that arrived within the {:.2} s window)",
        requests_per_s, events_per_s, wall
    );
    eprintln!("  requests   {} sent in the window, {} events: accepted {}, duplicate {}, rejected {}", t.requests, t.events_sent, t.accepted, t.duplicate, t.rejected);
    eprintln!("  statuses   2xx {}  503 {} ({} with Retry-After)  other {} {:?}  transport errors {}", t.ok, t.unavailable, t.unavailable_retry_after, other, t.other, t.errors);
    eprintln!("  latency    p50 {}  p90 {}  p99 {}  max {} (µs, send → response)", p50, p90, p99, max);
    if opts.rate > 0.0 {
        eprintln!("  scheduled  p50 {}  p99 {}  max {} (µs, scheduled send → response; includes ≤1 ms timer granularity)", sp50, sp99, smax);
    }
    eprintln!(
        "  server     CPU {} s = {}% of a core{}, {} µs/event, peak RSS {} MB; load generator CPU {}%; other load on the box {}% of a core",
        opt(server_cpu, 2),
        opt(server_pct, 0),
        if opts.server_pids.len() > 1 { format!(" ({} collectors together)", opts.server_pids.len()) } else { String::new() },
        opt(us_per_event, 2),
        peak_rss_kb.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "-".into()),
        opt(gen_pct, 0),
        opt(foreign_pct, 0)
    );
    if opts.db_pid.is_some() {
        eprintln!("  database   CPU {} s = {}% of a core (the PostgreSQL server and its backends)", opt(db_cpu, 2), opt(db_pct, 0));
    }
    let totals = &t.totals;
    eprintln!(
        "  whole run  {} requests: accepted {}, duplicate {}, rejected {} events; 503 {}, no definite answer {}; {} overlapped pairs, {} of them not accepted exactly once",
        totals.requests, totals.accepted, totals.duplicate, totals.rejected, totals.s503, totals.unknown, totals.overlap_pairs, totals.overlap_mismatch
    );
    let rows_per_commit = commits.filter(|c| c[0] > 0.0).map(|c| c[1] / c[0]);
    let commit_ms = commits.filter(|c| c[0] > 0.0).map(|c| 1e3 * c[2] / c[0]);
    let writer_busy_pct = commits.map(|c| 100.0 * c[2] / wall);
    if let Some(c) = commits {
        eprintln!(
            "  writer     {:.0} group commits, {} rows each, {} ms each; in commits {}% of the time",
            c[0],
            opt(rows_per_commit, 1),
            opt(commit_ms, 2),
            opt(writer_busy_pct, 0)
        );
    }
    if let Some(e) = &t.last_error {
        eprintln!("  last error {e}");
    }
    if t.rejected > 0 || (opts.overlap == 0.0 && t.duplicate > 0) {
        eprintln!("  WARNING: some events were not accepted as new; the generator's events should all be fresh and valid");
    }
    println!(
        "RESULT mode={} batch={} connections={} rate={:.0} secs={:.3} body_bytes={} requests={} events_sent={} accepted={} duplicate={} rejected={} req_s={:.1} events_s={:.1} s2xx={} s503={} s503_retry_after={} other={} errors={} p50_us={} p90_us={} p99_us={} max_us={} sched_p50_us={} sched_p99_us={} sched_max_us={} server_cpu_s={} server_cpu_pct={} server_us_per_event={} peak_rss_kb={} gen_cpu_pct={} foreign_cpu_pct={} rows_per_commit={} commit_ms={} writer_busy_pct={} servers={} db_cpu_pct={} db_us_per_event={} overlap={} requests_total={} accepted_total={} duplicate_total={} rejected_total={} s503_total={} unknown_total={} overlap_pairs={} overlap_mismatch={}",
        if opts.single { "single" } else { "batch" },
        opts.batch,
        opts.connections,
        opts.rate,
        wall,
        mean_bytes,
        t.requests,
        t.events_sent,
        t.accepted,
        t.duplicate,
        t.rejected,
        requests_per_s,
        events_per_s,
        t.ok,
        t.unavailable,
        t.unavailable_retry_after,
        other,
        t.errors,
        p50,
        p90,
        p99,
        max,
        sp50,
        sp99,
        smax,
        opt(server_cpu, 3),
        opt(server_pct, 1),
        opt(us_per_event, 3),
        peak_rss_kb.map(|k| k.to_string()).unwrap_or_else(|| "-".into()),
        opt(gen_pct, 1),
        opt(foreign_pct, 1),
        opt(rows_per_commit, 1),
        opt(commit_ms, 3),
        opt(writer_busy_pct, 1),
        opts.server_pids.len(),
        opt(db_pct, 1),
        opt(db_cpu.filter(|_| t.accepted_in_window > 0).map(|c| c * 1e6 / t.accepted_in_window as f64), 3),
        opts.overlap,
        totals.requests,
        totals.accepted,
        totals.duplicate,
        totals.rejected,
        totals.s503,
        totals.unknown,
        totals.overlap_pairs,
        totals.overlap_mismatch
    );
}

/// CPUs of the machine (not our affinity mask): `/proc/stat` sums over all of them.
fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/stat").map(|s| s.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)).count()).unwrap_or(1).max(1)
}

fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
