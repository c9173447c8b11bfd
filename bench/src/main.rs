//! `footprint-bench`: drives a running collector with realistic Segment events over keep-alive HTTP/1.1
//! connections, closed-loop (as fast as the collector answers) or open-loop (a fixed rate, latency measured from
//! the scheduled send time so a stalled server cannot hide its queueing), and reports throughput, status counts,
//! latency percentiles and, given `--server-pid`, the server's CPU time and peak RSS.
//!
//! It runs on one thread: pin it to its own core (`taskset -c 1`). `cargo xtask bench` runs the standard scenarios.
//! The last line of output is `RESULT key=value …` for scripts.

use bytes::Bytes;
use footprint_bench::{batch_templates, count_occurrences, percentile, proc_stat_busy_total, single_templates, stat_cpu_ticks, status_kb, IdSource, Template, USER_AGENTS};
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

const USAGE: &str = "usage: footprint-bench --url http://127.0.0.1:PORT [--mode batch|single] [--batch N] [--connections N]
                       [--duration SECS] [--warmup SECS] [--rate EVENTS_PER_S] [--server-pid PID] [--write-key KEY]

  --mode batch     POST /v1/batch with --batch events per request (default 30)
  --mode single    POST /v1/page or /v1/track, one event per request
  --rate R         open loop: R events/s in total, spread evenly (0, the default: closed loop, as fast as answered)
  --connections N  keep-alive connections, each with one request in flight (default 32)
  --duration SECS  measured time (default 5); --warmup SECS before it (default 1) is not counted
  --server-pid PID the collector's process: its CPU time over the measured window and its peak RSS (VmHWM)";

#[derive(Debug, Clone)]
struct Options {
    addr: SocketAddr,
    single: bool,
    batch: usize,
    connections: usize,
    duration: f64,
    warmup: f64,
    rate: f64,
    server_pid: Option<u32>,
    write_key: String,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        addr: "127.0.0.1:8080".parse().unwrap(),
        single: false,
        batch: 30,
        connections: 32,
        duration: 5.0,
        warmup: 1.0,
        rate: 0.0,
        server_pid: None,
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
                o.addr = hostport.parse().map_err(|_| bad("http://IP:PORT (loopback only)"))?;
                if !o.addr.ip().is_loopback() {
                    return Err("only loopback targets are allowed (127.0.0.0/8, [::1])".into());
                }
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
            "--server-pid" => o.server_pid = Some(value.parse().map_err(|_| bad("a pid"))?),
            "--write-key" => o.write_key = value,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if o.single {
        o.batch = 1;
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
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
        self.latency_us.extend(other.latency_us);
        self.scheduled_latency_us.extend(other.scheduled_latency_us);
    }
}

struct Plan {
    opts: Options,
    templates: Vec<Template>,
    authorization: HeaderValue,
    host: HeaderValue,
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

    // All connections are open before the clock starts.
    let mut senders = Vec::with_capacity(opts.connections);
    for _ in 0..opts.connections {
        senders.push(connect(opts.addr).await?);
    }
    let requests_per_s = opts.rate / opts.batch as f64;
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(opts.warmup);
    let end = measure_from + Duration::from_secs_f64(opts.duration);
    let plan = Arc::new(Plan {
        authorization: HeaderValue::from_str(&format!("Basic {}", base64(format!("{}:", opts.write_key).as_bytes()))).unwrap(),
        host: HeaderValue::from_str(&opts.addr.to_string()).unwrap(),
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
        "footprint-bench: {} {} → http://{}, {} connections, {}, {:.1} s + {:.1} s warm-up, bodies ~{} B",
        if opts.single { "single events" } else { "batches" },
        if opts.single { String::new() } else { format!("of {}", opts.batch) },
        opts.addr,
        opts.connections,
        if opts.rate > 0.0 { format!("open loop at {:.0} events/s ({:.0} req/s)", opts.rate, requests_per_s) } else { "closed loop".into() },
        opts.duration,
        opts.warmup,
        mean_bytes
    );

    // Samples of the server's CPU, our own CPU and the whole box's CPU at the edges of the measured window.
    // And the collector's own commit counters from /metrics, on a connection of its own.
    let sampler = {
        let pid = opts.server_pid;
        let mut metrics_conn = connect(opts.addr).await.ok();
        let host = plan.host.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let first = (read_cpu_ticks(pid), read_cpu_ticks(None), read_box(), Instant::now());
            let m0 = commit_metrics(&mut metrics_conn, &host).await;
            tokio::time::sleep_until(end.into()).await;
            let last = (read_cpu_ticks(pid), read_cpu_ticks(None), read_box(), Instant::now());
            let m1 = commit_metrics(&mut metrics_conn, &host).await;
            (first, last, m0.zip(m1).map(|(a, b)| [b[0] - a[0], b[1] - a[1], b[2] - a[2]]))
        })
    };

    let workers: Vec<_> = senders.into_iter().enumerate().map(|(i, sender)| tokio::spawn(worker(plan.clone(), i, sender))).collect();
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await.map_err(|e| format!("worker failed: {e}"))?);
    }
    let (first, last, commits) = sampler.await.map_err(|e| e.to_string())?;
    report(&opts, tally, first, last, commits, mean_bytes);
    Ok(())
}

type Sample = (Option<u64>, Option<u64>, Option<(u64, u64)>, Instant);

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

async fn worker(plan: Arc<Plan>, index: usize, mut sender: SendRequest<Full<Bytes>>) -> Tally {
    let mut tally = Tally::default();
    let mut ids = IdSource::new(plan.run_tag, index as u16);
    let user_agent = HeaderValue::from_static(USER_AGENTS[index % USER_AGENTS.len()]);
    let mut next_template = index * 7;
    let mut broken = false;
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
            match connect(plan.opts.addr).await {
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
        let body = template.stamp(&mut ids);
        let mut request = Request::builder().method(Method::POST).uri(template.path).body(Full::new(Bytes::from(body))).expect("valid request");
        let headers = request.headers_mut();
        headers.insert(HOST, plan.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(AUTHORIZATION, plan.authorization.clone());
        headers.insert(USER_AGENT, user_agent.clone());

        if sender.ready().await.is_err() {
            broken = true;
            continue;
        }
        let sent = Instant::now();
        let started = scheduled.unwrap_or(sent);
        let counted = started >= plan.measure_from && started < plan.end;
        let outcome = tokio::time::timeout(Duration::from_secs(60), async {
            let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key(RETRY_AFTER);
            let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((status, retry_after, body))
        })
        .await;
        let done = Instant::now();
        if done >= plan.measure_from && done < plan.end {
            tally.requests_in_window += 1;
            if let Ok(Ok((200..=299, _, body))) = &outcome {
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
    let box_busy = first.2.zip(last.2).map(|((b0, t0), (b1, t1))| {
        // In "cores busy" over the window, from /proc/stat (all CPUs of the machine).
        (b1 - b0) as f64 / (t1 - t0).max(1) as f64 * cpu_count() as f64
    });
    let peak_rss_kb = opts.server_pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok()).and_then(|s| status_kb(&s, "VmHWM:"));
    let events_per_s = t.accepted_in_window as f64 / wall;
    let requests_per_s = t.requests_in_window as f64 / wall;
    let server_pct = server_cpu.map(|c| 100.0 * c / wall);
    let gen_pct = gen_cpu.map(|c| 100.0 * c / wall);
    // Whatever else ran on the box during the window (other builds), in % of one core.
    let foreign_pct = box_busy.map(|b| (100.0 * b - server_pct.unwrap_or(0.0) - gen_pct.unwrap_or(0.0)).max(0.0));
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
        "  server     CPU {} s = {}% of a core, {} µs/event, peak RSS {} MB; load generator CPU {}%; other load on the box {}% of a core",
        opt(server_cpu, 2),
        opt(server_pct, 0),
        opt(us_per_event, 2),
        peak_rss_kb.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "-".into()),
        opt(gen_pct, 0),
        opt(foreign_pct, 0)
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
    if t.duplicate + t.rejected > 0 {
        eprintln!("  WARNING: some events were not accepted as new; the generator's events should all be fresh and valid");
    }
    println!(
        "RESULT mode={} batch={} connections={} rate={:.0} secs={:.3} body_bytes={} requests={} events_sent={} accepted={} duplicate={} rejected={} req_s={:.1} events_s={:.1} s2xx={} s503={} s503_retry_after={} other={} errors={} p50_us={} p90_us={} p99_us={} max_us={} sched_p50_us={} sched_p99_us={} sched_max_us={} server_cpu_s={} server_cpu_pct={} server_us_per_event={} peak_rss_kb={} gen_cpu_pct={} foreign_cpu_pct={} rows_per_commit={} commit_ms={} writer_busy_pct={}",
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
        opt(writer_busy_pct, 1)
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
