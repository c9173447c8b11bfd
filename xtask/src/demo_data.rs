//! `cargo xtask demo-data`: a realistic month of traffic for the demo site, sent through the public ingest API
//! (so it takes the real path: validation, consent, identity, stats). Deterministic for a given seed. Also the
//! event source of `cargo xtask bench-stats`.

use anyhow::{bail, Context as _};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What to generate and where to send it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `host:port` of the collector.
    pub target: String,
    pub write_key: String,
    pub days: i64,
    /// Total events to send (approximately: whole visits are generated).
    pub events: u64,
    /// Parallel connections.
    pub connections: usize,
    pub seed: u64,
}

impl Default for Plan {
    fn default() -> Self {
        Plan { target: "127.0.0.1:8080".into(), write_key: "wk_demo".into(), days: 30, events: 60_000, connections: 2, seed: 7 }
    }
}

/// `cargo xtask demo-data [--target HOST:PORT] [--write-key KEY] [--days N] [--events N]`.
pub fn command(args: &[String]) -> anyhow::Result<()> {
    let mut plan = Plan::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--target" => plan.target = value()?.trim_start_matches("http://").trim_end_matches('/').to_owned(),
            "--write-key" => plan.write_key = value()?,
            "--days" => plan.days = value()?.parse().context("--days is a number")?,
            "--events" => plan.events = value()?.parse().context("--events is a number")?,
            "--seed" => plan.seed = value()?.parse().context("--seed is a number")?,
            other => bail!("unknown flag {other:?} (try --target, --write-key, --days, --events, --seed)"),
        }
    }
    let sent = send(&plan)?;
    eprintln!("==> demo data: {} events ({} rejected on purpose, for the failed-events view) in {:.1} s to {}", sent.events, sent.rejected, sent.seconds, plan.target);
    Ok(())
}

pub struct Sent {
    pub events: u64,
    pub rejected: u64,
    pub seconds: f64,
}

/// Generates and sends the plan's events, `connections` batches in flight.
pub fn send(plan: &Plan) -> anyhow::Result<Sent> {
    let started = Instant::now();
    let per = plan.events / plan.connections as u64;
    let handles: Vec<_> = (0..plan.connections)
        .map(|i| {
            let plan = Plan { events: per, seed: plan.seed.wrapping_mul(1_000_003).wrapping_add(i as u64), ..plan.clone() };
            std::thread::spawn(move || -> anyhow::Result<(u64, u64)> { Generator::new(&plan, i as u64).run(&plan) })
        })
        .collect();
    let (mut events, mut rejected) = (0, 0);
    for h in handles {
        let (e, r) = h.join().map_err(|_| anyhow::anyhow!("a sender thread panicked"))??;
        events += e;
        rejected += r;
    }
    Ok(Sent { events, rejected, seconds: started.elapsed().as_secs_f64() })
}

/// Small deterministic PRNG (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn float(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        self.float() < p
    }
    fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut pick = self.below(u64::from(total)) as u32;
        for (item, w) in items {
            if pick < *w {
                return item;
            }
            pick -= w;
        }
        &items[0].0
    }
}

const PAGES: &[(&str, u32)] = &[
    ("/", 30), ("/pricing", 12), ("/features", 10), ("/blog", 8), ("/blog/privacy-first-analytics", 7), ("/blog/wasm-sdk", 5),
    ("/blog/self-hosting-guide", 4), ("/docs", 8), ("/docs/getting-started", 6), ("/docs/api", 4), ("/signup", 5), ("/about", 3), ("/contact", 2),
];
/// (referrer URL, utm_source, utm_medium, utm_campaign)
const SOURCES: &[((&str, &str, &str, &str), u32)] = &[
    (("", "", "", ""), 38), (("https://www.google.com/", "", "", ""), 24), (("https://news.ycombinator.com/item?id=1", "", "", ""), 8),
    (("https://t.co/abc", "", "", ""), 6), (("https://github.com/footprint/footprint", "", "", ""), 6), (("https://www.reddit.com/r/selfhosted/", "", "", ""), 5),
    (("https://duckduckgo.com/", "", "", ""), 4), (("", "newsletter", "email", "spring-launch"), 6), (("https://www.linkedin.com/", "linkedin", "social", "spring-launch"), 2),
    (("", "producthunt", "referral", "launch-day"), 1),
];
const AGENTS: &[(&str, u32)] = &[
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", 26),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", 12),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", 10),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", 6),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0", 5),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", 20),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36", 15),
    ("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", 4),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 2),
];
/// Relative traffic per UTC hour (a European and an American afternoon).
const HOURS: [u32; 24] = [3, 2, 2, 1, 1, 2, 4, 7, 10, 12, 13, 13, 14, 15, 16, 16, 15, 13, 11, 9, 7, 6, 5, 4];

struct Visitor {
    anon: Option<String>,
    user: Option<String>,
    agent: &'static str,
    ip: String,
}

struct Generator {
    rng: Rng,
    sender: u64,
    visitors: Vec<Visitor>,
    now_ms: i64,
    next_id: u64,
}

impl Generator {
    fn new(plan: &Plan, sender: u64) -> Generator {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Generator { rng: Rng(plan.seed), sender, visitors: Vec::new(), now_ms, next_id: 0 }
    }

    fn run(&mut self, plan: &Plan) -> anyhow::Result<(u64, u64)> {
        let mut conn = Connection::open(&plan.target)?;
        let (mut sent, mut rejected) = (0u64, 0u64);
        let mut batch: Vec<String> = Vec::new();
        let mut bytes = 0;
        let day_ms = 86_400_000i64;
        let start_ms = self.now_ms - plan.days * day_ms;
        // Visits are spread over the days with growth, a weekly rhythm and the hour profile; events per visit ≈ 7.
        let visits = (plan.events / 7).max(1);
        let mut made = 0u64;
        while made < visits {
            let day = {
                // Later days get more traffic (about +60 % over the month).
                let x = self.rng.float();
                ((1.0 + 1.6f64 * x).sqrt() - 1.0) / ((2.6f64).sqrt() - 1.0) * plan.days as f64
            } as i64;
            let weekday = (start_ms / day_ms + day + 3).rem_euclid(7); // 0 = Monday
            if weekday >= 5 && self.rng.chance(0.35) {
                continue;
            }
            let hour = *self.rng.weighted(&HOURS.iter().enumerate().map(|(h, w)| (h as i64, *w)).collect::<Vec<_>>());
            let at = (start_ms / day_ms + day) * day_ms + hour * 3_600_000 + self.rng.below(3_600_000) as i64;
            if at > self.now_ms - 60_000 {
                continue;
            }
            made += 1;
            for e in self.visit(at) {
                if e.contains("\"__invalid\"") {
                    rejected += 1;
                }
                bytes += e.len();
                batch.push(e);
                if batch.len() >= 500 || bytes > 400_000 {
                    sent += conn.send_batch(&plan.write_key, &batch)?;
                    batch.clear();
                    bytes = 0;
                }
            }
        }
        if !batch.is_empty() {
            sent += conn.send_batch(&plan.write_key, &batch)?;
        }
        Ok((sent, rejected))
    }

    fn visitor(&mut self) -> usize {
        if !self.visitors.is_empty() && self.rng.chance(0.3) {
            return self.rng.below(self.visitors.len() as u64) as usize;
        }
        let n = self.visitors.len() as u64;
        let consented = self.rng.chance(0.6);
        let agent = *self.rng.weighted(AGENTS);
        let ip = format!("198.51.{}.{}", self.rng.below(250), self.rng.below(250));
        let anon = consented.then(|| format!("{:016x}{:016x}", self.rng.next(), self.sender * 1_000_000 + n));
        self.visitors.push(Visitor { anon, user: None, agent, ip });
        self.visitors.len() - 1
    }

    /// One visit's events, as JSON objects.
    fn visit(&mut self, mut at: i64) -> Vec<String> {
        let v = self.visitor();
        let (referrer, source, medium, campaign) = *self.rng.weighted(SOURCES);
        let session = format!("s{}-{}", self.sender, self.next_id);
        let mut out = Vec::new();
        let mut path = *self.rng.weighted(PAGES);
        if !source.is_empty() && self.rng.chance(0.6) {
            path = "/pricing";
        }
        let pages = if self.rng.chance(0.42) { 1 } else { 2 + self.rng.below(5) };
        let first_visit = self.visitors[v].anon.is_some() && self.visitors[v].user.is_none() && self.rng.chance(0.3);
        for i in 0..pages {
            let query = if i == 0 && !source.is_empty() { format!("?utm_source={source}&utm_medium={medium}&utm_campaign={campaign}") } else { String::new() };
            let page_referrer = if i == 0 { referrer.to_owned() } else { String::new() };
            let title = title_of(path);
            out.push(self.event(v, at, &session, "page", &format!(r#""name":"{title}""#), path, &query, &page_referrer));
            if i == 0 && first_visit {
                out.push(self.event(v, at + 800, &session, "track", r#""event":"Consent Updated","properties":{"source":"banner"}"#, path, "", ""));
            }
            let dwell = 5_000 + self.rng.below(150_000) as i64;
            if self.rng.chance(0.25) {
                let text = ["Get started", "Read more", "Pricing", "Docs"][self.rng.below(4) as usize];
                out.push(self.event(v, at + dwell / 2, &session, "track", &format!(r#""event":"Element Clicked","properties":{{"selector":"main a.button","text":"{text}","tag":"a"}}"#), path, "", ""));
            }
            if path.starts_with("/blog/") && self.rng.chance(0.12) {
                out.push(self.event(v, at + dwell / 2, &session, "track", r#""event":"Outbound Link Clicked","properties":{"href":"https://github.com/footprint/footprint","tag":"a"}"#, path, "", ""));
            }
            if path.starts_with("/docs") && self.rng.chance(0.1) {
                out.push(self.event(v, at + dwell / 2, &session, "track", r#""event":"File Downloaded","properties":{"href":"https://example.com/footprint-guide.pdf","extension":"pdf"}"#, path, "", ""));
            }
            if path == "/signup" && self.rng.chance(0.45) {
                out.push(self.event(v, at + dwell / 2, &session, "track", r#""event":"Form Submitted","properties":{"selector":"form#signup","method":"post"}"#, path, "", ""));
                out.push(self.event(v, at + dwell / 2 + 400, &session, "track", r#""event":"Signed Up","properties":{"plan":"starter"}"#, path, "", ""));
                if self.visitors[v].anon.is_some() && self.visitors[v].user.is_none() {
                    let user = format!("user-{}-{}", self.sender, self.next_id);
                    self.visitors[v].user = Some(user.clone());
                    let traits = format!(r#""traits":{{"email":"{user}@example.com","plan":"starter","name":"Demo {user}"}}"#);
                    out.push(self.event(v, at + dwell / 2 + 500, &session, "identify", &traits, path, "", ""));
                }
            }
            if path == "/pricing" && self.visitors[v].user.is_some() && self.rng.chance(0.2) {
                out.push(self.event(v, at + dwell / 2, &session, "track", r#""event":"Purchase","properties":{"plan":"pro","revenue":49,"currency":"EUR"}"#, path, "", ""));
            }
            let engaged = dwell * (30 + self.rng.below(70) as i64) / 100;
            let scroll = 20 + self.rng.below(81);
            out.push(self.event(v, at + dwell, &session, "track", &format!(r#""event":"Page Engaged","properties":{{"engagedMs":{engaged},"scrollDepth":{scroll}}}"#), path, "", ""));
            at += dwell + 500;
            path = next_page(&mut self.rng, path);
        }
        if self.rng.chance(0.004) {
            // A broken integration now and then: rejected and kept in the failed-events view.
            out.push(format!(r#"{{"type":"track","anonymousId":"broken","properties":{{"__invalid":true}},"messageId":"bad-{}-{}"}}"#, self.sender, self.next_id));
        }
        self.next_id += 1;
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn event(&mut self, v: usize, at: i64, session: &str, kind: &str, fields: &str, path: &str, query: &str, referrer: &str) -> String {
        let visitor = &self.visitors[v];
        let id = format!("demo-{}-{:x}-{:x}", self.sender, self.rng.next(), at);
        let identity = match (&visitor.anon, &visitor.user) {
            (Some(a), Some(u)) => format!(r#""anonymousId":"{a}","userId":"{u}","#),
            (Some(a), None) => format!(r#""anonymousId":"{a}","#),
            _ => String::new(),
        };
        let consent = if visitor.anon.is_some() {
            r#"{"categoryPreferences":{"necessary":true,"analytics":true,"marketing":false,"personalization":true}}"#
        } else {
            r#"{"categoryPreferences":{"necessary":true,"analytics":false,"marketing":false,"personalization":false}}"#
        };
        let session_field = if visitor.anon.is_some() { format!(r#""sessionId":"{session}","#) } else { String::new() };
        let url = format!("https://demo.footprint.example{path}{query}");
        format!(
            r#"{{"type":"{kind}",{identity}{fields},"messageId":"{id}","timestamp":"{ts}","context":{{{session_field}"consent":{consent},"userAgent":"{ua}","ip":"{ip}","page":{{"url":"{url}","path":"{path}","referrer":"{referrer}","title":"{title}"}},"library":{{"name":"footprint-demo-data","version":"1"}}}}}}"#,
            ts = rfc3339(at),
            ua = visitor.agent,
            ip = visitor.ip,
            title = title_of(path),
        )
    }
}

fn title_of(path: &str) -> String {
    match path {
        "/" => "Footprint — privacy-first analytics".into(),
        p => format!("{} — Footprint", p.trim_start_matches('/').replace(['/', '-'], " ")),
    }
}

fn next_page(rng: &mut Rng, from: &str) -> &'static str {
    let choices: &[(&str, u32)] = match from {
        "/" => &[("/features", 30), ("/pricing", 30), ("/blog", 15), ("/docs", 15), ("/about", 10)],
        "/features" => &[("/pricing", 50), ("/docs", 25), ("/signup", 25)],
        "/pricing" => &[("/signup", 45), ("/features", 20), ("/docs", 20), ("/contact", 15)],
        "/blog" => &[("/blog/privacy-first-analytics", 45), ("/blog/wasm-sdk", 30), ("/blog/self-hosting-guide", 25)],
        "/docs" => &[("/docs/getting-started", 60), ("/docs/api", 40)],
        "/docs/getting-started" => &[("/docs/api", 50), ("/signup", 30), ("/pricing", 20)],
        _ => PAGES,
    };
    *rng.weighted(choices)
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds (the event model's own formatter).
use footprint_core::time::format_rfc3339_ms as rfc3339;

/// One keep-alive HTTP/1.1 connection to the collector.
struct Connection {
    target: String,
    stream: BufReader<TcpStream>,
}

impl Connection {
    fn open(target: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(target).with_context(|| format!("cannot connect to the collector at {target}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        stream.set_nodelay(true)?;
        Ok(Connection { target: target.to_owned(), stream: BufReader::new(stream) })
    }

    /// Sends one batch; retries on 503 (the collector's backpressure). Returns how many events were stored.
    fn send_batch(&mut self, write_key: &str, events: &[String]) -> anyhow::Result<u64> {
        let body = format!(r#"{{"writeKey":"{write_key}","batch":[{}]}}"#, events.join(","));
        for attempt in 0..50 {
            let (status, text) = self.post("/v1/batch", &body)?;
            match status {
                200 | 400 => return Ok(text.matches(r#""status":"accepted""#).count() as u64 + text.matches(r#""status":"duplicate""#).count() as u64),
                503 | 429 => std::thread::sleep(Duration::from_millis(50 * (attempt + 1))),
                other => bail!("the collector answered {other}: {}", text.chars().take(300).collect::<String>()),
            }
        }
        bail!("the collector stayed busy (503) for too long")
    }

    fn post(&mut self, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
        let head = format!("POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", self.target, body.len());
        let stream = self.stream.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).with_context(|| format!("not an HTTP response: {line:?}"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut buf = vec![0; length];
        self.stream.read_exact(&mut buf)?;
        Ok((status, String::from_utf8_lossy(&buf).into_owned()))
    }
}

/// GET with a bearer token on a fresh connection; returns status and body.
pub fn get(target: &str, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(target)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {target}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(1_773_014_400_123), "2026-03-09T00:00:00.123Z");
    }
}

/// For `cargo xtask run`, before the collector starts: when it will start with the default settings on an empty
/// data directory, fill the demo site with a month of traffic once it answers, so the dashboard is not empty.
pub fn seed_in_background(serve_args: &[String]) {
    let custom = serve_args.iter().any(|a| a.starts_with("--config") || a.starts_with("--data-dir"))
        || std::env::var_os("FOOTPRINT_CONFIG").is_some()
        || std::env::var_os("FOOTPRINT_DATA_DIR").is_some();
    if custom || crate::root().join("footprint-data/footprint.db").exists() {
        return;
    }
    let listen = serve_args
        .windows(2)
        .find(|w| w[0] == "--listen")
        .map(|w| w[1].clone())
        .or_else(|| serve_args.iter().find_map(|a| a.strip_prefix("--listen=").map(str::to_owned)))
        .or_else(|| std::env::var("FOOTPRINT_LISTEN").ok())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let target = listen.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
    std::thread::spawn(move || {
        for _ in 0..300 {
            if TcpStream::connect(&target).is_ok() {
                match send(&Plan { target: target.clone(), ..Plan::default() }) {
                    Ok(sent) => eprintln!("==> demo data: a month of traffic for site \"demo\" ({} events in {:.1} s); open http://{target}/", sent.events, sent.seconds),
                    Err(error) => eprintln!("==> demo data failed: {error:#}"),
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}
