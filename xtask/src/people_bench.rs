//! `cargo xtask bench-people [--profiles N]`: what identity and privacy cost (issues 4 and 5). Prints numbers.
//!
//! 1. Batched ingest with identity resolution on and off (alternating runs of `footprint-bench`, collector on CPU 0,
//!    generator on CPU 1): the collector's CPU µs per event.
//! 2. A store holding N profiles (default 1,000,000; each an `identify` with anonymous ID, user ID and e-mail),
//!    loaded through the public ingest API, then profile lookups by each kind of identifier: p50/p99/max.
//! 3. One person with 100,000 events: `GET /admin/v1/export` and `POST /admin/v1/erase` wall time.

use crate::{cargo, run_step, target_dir};
use anyhow::{bail, Context as _};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-admin-token-0123456789";

pub fn bench(args: &[String]) -> anyhow::Result<()> {
    let mut profiles: usize = 1_000_000;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--profiles" => profiles = it.next().and_then(|v| v.parse().ok()).filter(|n| *n >= 1_000).context("--profiles takes a number ≥ 1000")?,
            other => bail!("unknown option {other:?}; usage: cargo xtask bench-people [--profiles N]"),
        }
    }
    run_step("build the collector and the load generator (release)", cargo().args(["build", "--release", "-p", "footprint-collector", "-p", "footprint-bench"]))?;
    let collector = target_dir().join("release/footprint");
    let generator = target_dir().join("release/footprint-bench");
    let work = std::env::temp_dir().join(format!("footprint-bench-people-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    println!("== 1. batched ingest (30 events/request), identity resolution on vs off: collector CPU µs per event");
    let mut on = Vec::new();
    let mut off = Vec::new();
    for round in 0..3 {
        for (enabled, into) in [(true, &mut on), (false, &mut off)] {
            let dir = work.join(format!("ingest-{round}-{enabled}"));
            let server = Server::start(&collector, &dir, &format!("identity_resolution = {enabled}\nadmin_token = \"{TOKEN}\"\n"))?;
            let mut command = pinned("1", &generator);
            command.args(["--url", &format!("http://{}", server.address), "--mode", "batch", "--batch", "30", "--connections", "32", "--duration", "4", "--warmup", "0.5", "--server-pid", &server.pid().to_string()]);
            let output = command.output().context("run footprint-bench")?;
            let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            let line = text.lines().find(|l| l.starts_with("RESULT")).context("footprint-bench printed no RESULT line")?;
            let value = |key: &str| line.split(' ').find_map(|kv| kv.strip_prefix(&format!("{key}="))).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
            let us = value("server_us_per_event");
            println!("   identity {:<3}  {:>8.0} events/s  {:>6.2} µs/event  server CPU {:>3.0}%  other load {:>3.0}%", if enabled { "on" } else { "off" }, value("events_s"), us, value("server_cpu_pct"), value("foreign_cpu_pct"));
            into.push(us);
        }
    }
    let (m_on, m_off) = (median(&mut on), median(&mut off));
    println!("   median: on {m_on:.2} µs/event, off {m_off:.2} µs/event → identity resolution costs {:.1}% of batched ingest (target ≤ 15%)", (m_on - m_off) / m_on * 100.0);

    println!("== 2. profile lookup with {profiles} profiles");
    let dir = work.join("lookup");
    let server = Server::start(&collector, &dir, &format!("admin_token = \"{TOKEN}\"\n"))?;
    let mut http = Http::connect(&server.address)?;
    let started = Instant::now();
    let per_request = 500;
    for chunk in (0..profiles).step_by(per_request) {
        let events: Vec<String> = (chunk..(chunk + per_request).min(profiles))
            .map(|i| format!(r#"{{"type":"identify","messageId":"p{i}","anonymousId":"anon-{i:08}","userId":"user-{i:08}","traits":{{"email":"person{i}@example.com","plan":"free"}}}}"#))
            .collect();
        let (status, _) = http.request("POST", "/v1/batch", Some(("Basic d2tfZGVtbzo=", &format!(r#"{{"batch":[{}]}}"#, events.join(",")))))?;
        if status != 200 {
            bail!("loading profiles: the collector answered {status}");
        }
        if chunk % 100_000 == 0 && chunk > 0 {
            println!("   … {chunk} profiles ({:.0}/s)", chunk as f64 / started.elapsed().as_secs_f64());
        }
    }
    println!("   loaded {profiles} profiles (3 identifiers each) in {:.1} s", started.elapsed().as_secs_f64());
    let bearer = format!("Bearer {TOKEN}");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for kind in ["user_id", "email", "anonymous_id"] {
        let mut latencies = Vec::with_capacity(2_000);
        for _ in 0..2_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let i = (rng % profiles as u64) as usize;
            let value = match kind {
                "user_id" => format!("user-{i:08}"),
                "email" => format!("person{i}%40example.com"),
                _ => format!("anon-{i:08}"),
            };
            let t = Instant::now();
            let (status, _) = http.request("GET", &format!("/admin/v1/profiles/lookup?type={kind}&value={value}"), Some((&bearer, "")))?;
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
            if status != 200 {
                bail!("lookup {kind}={value} answered {status}");
            }
        }
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        println!("   lookup by {kind:<12}  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (2,000 random, sequential, over HTTP; target p99 ≤ 5 ms)", pct(0.5), pct(0.99), latencies[latencies.len() - 1]);
    }
    drop(server);

    println!("== 3. export and erasure of one person with 100,000 events");
    let dir = work.join("person");
    let server = Server::start(&collector, &dir, &format!("admin_token = \"{TOKEN}\"\n"))?;
    let mut http = Http::connect(&server.address)?;
    for chunk in (0..100_000).step_by(500) {
        let events: Vec<String> = (chunk..chunk + 500)
            .map(|i| format!(r#"{{"type":"track","event":"Viewed","messageId":"e{i}","userId":"heavy-user","anonymousId":"heavy-anon","properties":{{"n":{i},"url":"https://shop.example/p/{i}"}}}}"#))
            .collect();
        let (status, _) = http.request("POST", "/v1/batch", Some(("Basic d2tfZGVtbzo=", &format!(r#"{{"batch":[{}]}}"#, events.join(",")))))?;
        if status != 200 {
            bail!("loading the person: {status}");
        }
    }
    let t = Instant::now();
    let (status, body) = http.request("GET", "/admin/v1/export?type=user_id&value=heavy-user", Some((&bearer, "")))?;
    let export_s = t.elapsed().as_secs_f64();
    let events = String::from_utf8_lossy(&body).matches("\"messageId\":\"e").count();
    println!("   export: {status}, {events} events, {:.1} MB, {export_s:.2} s (target < 2 s)", body.len() as f64 / 1e6);
    let t = Instant::now();
    let (status, body) = http.request("POST", "/admin/v1/erase", Some((&bearer, r#"{"type":"user_id","value":"heavy-user"}"#)))?;
    println!("   erase:  {status}, {} in {:.2} s (target < 2 s)", String::from_utf8_lossy(&body), t.elapsed().as_secs_f64());
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn pinned(cpu: &str, program: &Path) -> Command {
    if Command::new("taskset").arg("--version").output().is_ok() {
        let mut c = Command::new("taskset");
        c.args(["-c", cpu]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A collector on CPU 0 with a fresh data directory.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(binary: &Path, dir: &PathBuf, config: &str) -> anyhow::Result<Server> {
        std::fs::create_dir_all(dir)?;
        let config_path = dir.join("footprint.toml");
        std::fs::write(&config_path, config)?;
        let mut command = pinned("0", binary);
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.join("data")).arg("--config").arg(&config_path);
        command.env_remove("FOOTPRINT_ADMIN_TOKEN").stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn().context("start the collector")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        let address = first.trim().strip_prefix("Footprint collector listening on http://").context("the collector did not start")?.to_owned();
        // Keep reading: a closed pipe would fail the collector's next line of output.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Ok(Server { child, address })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTP/1.1 connection (the collector answers with Content-Length).
struct Http {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Http {
    fn connect(address: &str) -> anyhow::Result<Http> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Http { stream: BufReader::new(stream), host: address.to_owned() })
    }

    /// `auth` is (Authorization header value, body).
    fn request(&mut self, method: &str, path: &str, auth: Option<(&str, &str)>) -> anyhow::Result<(u16, Vec<u8>)> {
        let (authorization, body) = auth.unwrap_or(("", ""));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {authorization}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let stream = self.stream.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line)?;
        let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).context("bad status line")?;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body)?;
        Ok((status, body))
    }
}
