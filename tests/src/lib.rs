//! The end-to-end harness: starts the real `footprint` binary on port 0 with a temporary data directory, talks
//! to it over real HTTP (a minimal HTTP/1.1 client, so tests can also send broken requests), and reads what it
//! stored straight from its SQLite file.
//!
//! With `FOOTPRINT_E2E_STORE=postgres` (`cargo xtask test` runs the suite both ways) every collector runs on a fresh
//! PostgreSQL database of the server at `FOOTPRINT_TEST_DATABASE_URL` instead: the same tests then check the shared
//! store, reading the collector's replica (brought up to date first) or PostgreSQL itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root. From the manifest directory cargo gives at run time: the compiled-in one can be another
/// checkout's when checkouts share a target directory (cargo then runs the test binary the other one built).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    manifest_dir.parent().expect("tests/ lives in the workspace").to_path_buf()
}

/// The collector binary, built once per test run with the same cargo and profile as the tests.
pub fn collector_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("FOOTPRINT_BIN") {
                return PathBuf::from(path);
            }
            let root = workspace_root();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo).args(["build", "--quiet", "-p", "footprint-collector"]).current_dir(&root).status().expect("run cargo build");
            assert!(status.success(), "building the collector failed");
            let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).map(|p| if p.is_absolute() { p } else { root.join(p) }).unwrap_or_else(|| root.join("target"));
            target.join("debug/footprint")
        })
        .clone()
}

/// A fresh, empty directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("footprint-e2e-{name}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running collector.
pub struct Collector {
    child: Option<Child>,
    pub addr: String,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    dir: Option<TempDir>,
    config: Option<String>,
}

/// A config with one site `shop` (write key `wk_shop`, origin `https://shop.example`) and a second site `blog`.
pub const TWO_SITES: &str = r#"
admin_token = "test-admin-token-0123456789"
[[sites]]
id = "shop"
write_key = "wk_shop"
origins = ["https://shop.example"]
[[sites]]
id = "blog"
write_key = "wk_blog"
origins = ["https://blog.example", "http://localhost:3000"]
"#;

impl Collector {
    /// Starts the collector with no config file at all (the demo site).
    pub fn start_default() -> Collector {
        Self::start_in(TempDir::new("default"), None)
    }

    /// Starts a collector on the shared PostgreSQL database `url` (several may share one), with this config.
    pub fn start_shared(config: &str, url: &str) -> Collector {
        let dir = TempDir::new("shared");
        std::fs::write(dir.path().join("database_url"), url).unwrap();
        Self::start_in(dir, Some(config.to_owned()))
    }

    /// Starts the collector with this config file text (listen and data_dir are set by the harness).
    pub fn start(config: &str) -> Collector {
        Self::start_in(TempDir::new("cfg"), Some(config.to_owned()))
    }

    fn start_in(dir: TempDir, config: Option<String>) -> Collector {
        let mut command = Command::new(collector_binary());
        command.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(dir.path().join("data"));
        if let Some(text) = &config {
            let path = dir.path().join("footprint.toml");
            std::fs::write(&path, text).unwrap();
            command.arg("--config").arg(path);
        }
        command.env_remove("FOOTPRINT_CONFIG").env_remove("FOOTPRINT_LISTEN").env_remove("FOOTPRINT_DATA_DIR").env_remove("FOOTPRINT_ADMIN_TOKEN");
        command.env_remove("FOOTPRINT_DATABASE_URL").env_remove("FOOTPRINT_HMAC_KEY");
        if e2e_on_postgres() || dir.path().join("database_url").exists() {
            // One database per collector, kept with its directory so a restart finds it again.
            let url = database_of(dir.path());
            command.env("FOOTPRINT_DATABASE_URL", url);
            if !config.as_deref().is_some_and(|c| c.contains("hmac_key")) {
                command.env("FOOTPRINT_HMAC_KEY", TEST_HMAC_KEY);
            }
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the collector");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).expect("read the collector's first line");
        let Some(addr) = first.trim().strip_prefix("Footprint collector listening on http://") else {
            // Stopped first: a collector that printed something else and kept running would never close stderr.
            let _ = child.kill();
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).ok();
            panic!("collector did not start: {first:?}\n{err}");
        };
        let addr = addr.to_owned();
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(vec![first.trim().to_owned()]));
        let lines = stdout.clone();
        // Keep draining both pipes so the collector never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("FOOTPRINT_E2E_LOGS").is_some() {
                    eprintln!("[collector] {line}");
                }
            }
        });
        Collector { child: Some(child), addr, stdout, dir: Some(dir), config }
    }

    /// What the collector printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until the printed lines satisfy `ready`, and returns them.
    pub fn stdout_when(&self, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        wait_until(10, "collector output", || ready(&self.stdout()));
        self.stdout()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal (`KILL`, `TERM`) without waiting; `kill9`/`stop` reap the process afterwards.
    pub fn signal(&self, name: &str) {
        Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().unwrap();
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status's success.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "collector did not stop within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops (if running) and starts again on the same data directory and config.
    pub fn restart(self) -> Collector {
        let mut this = self;
        this.stop();
        let dir = this.dir.take().expect("data dir");
        Self::start_in(dir, this.config.take())
    }

    /// The temporary directory holding the data dir and config.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("data dir").path()
    }

    /// Stops and starts again on the same data directory with another config file.
    pub fn restart_with(self, config: &str) -> Collector {
        let mut this = self;
        this.stop();
        let dir = this.dir.take().expect("data dir");
        Self::start_in(dir, Some(config.to_owned()))
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir().join("data/footprint.db")
    }

    /// A read-only connection to the collector's database (on PostgreSQL: its replica, brought up to date first
    /// when the collector is running).
    pub fn db(&self) -> rusqlite::Connection {
        if self.shared_database().is_some() && self.child.is_some() {
            self.sync();
        }
        let conn = rusqlite::Connection::open_with_flags(self.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }

    /// One integer from the database.
    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn request(&self) -> RequestBuilder {
        RequestBuilder { addr: self.addr.clone(), method: "GET".into(), path: "/".into(), headers: vec![], body: vec![] }
    }

    pub fn get(&self, path: &str) -> Response {
        self.request().path(path).send()
    }

    /// `POST path` with `Authorization: Basic base64(key:)` and a JSON body.
    pub fn post_json(&self, path: &str, key: &str, body: &str) -> Response {
        self.request().method("POST").path(path).basic(key).header("Content-Type", "application/json").body(body).send()
    }

    /// The PostgreSQL database this collector runs on, if it does.
    pub fn shared_database(&self) -> Option<String> {
        std::fs::read_to_string(self.dir().join("database_url")).ok()
    }

    /// Brings the collector's derived tables (on PostgreSQL: its whole replica) up to date: `POST /admin/v1/sync`.
    pub fn sync(&self) {
        let token = self.admin_token();
        let r = self.request().method("POST").path("/admin/v1/sync").header("Authorization", &format!("Bearer {token}")).send();
        assert_eq!(r.status, 200, "sync: {}", r.text());
    }

    /// The admin token: the config's, or the one the collector generated and printed.
    pub fn admin_token(&self) -> String {
        let configured = self.config.as_deref().and_then(|c| c.lines().find_map(|l| l.trim().strip_prefix("admin_token")?.trim().strip_prefix('=')?.trim().strip_prefix('"')?.split('"').next().map(str::to_owned)));
        configured
            .or_else(|| self.stdout().iter().find_map(|l| l.split("admin token (generated for this run; set FOOTPRINT_ADMIN_TOKEN to fix it): ").nth(1).map(str::to_owned)))
            .expect("an admin token")
    }

    /// The messageIds of every stored event, from the authoritative store: the SQLite file, or PostgreSQL itself
    /// (which holds every acknowledged event even when the collector died before its replica caught up).
    pub fn stored_message_ids(&self) -> std::collections::HashSet<String> {
        if let Some(url) = self.shared_database() {
            let mut pg = postgres::Client::connect(&url, postgres::NoTls).expect("the test database");
            return pg.query("SELECT message_id FROM events", &[]).unwrap().iter().map(|r| r.get(0)).collect();
        }
        self.db().prepare("SELECT message_id FROM events").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    /// Fails the test unless `/healthz` answers 200: the server survived whatever came before.
    pub fn assert_alive(&self) {
        assert_eq!(self.get("/healthz").status, 200, "collector stopped serving");
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct RequestBuilder {
    addr: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RequestBuilder {
    pub fn method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }
    pub fn path(mut self, p: &str) -> Self {
        self.path = p.into();
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn basic(self, user: &str) -> Self {
        use base64::Engine as _;
        let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:")));
        self.header("Authorization", &value)
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The request bytes, with `Content-Length` for the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.method, self.path, self.addr);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() || self.method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    pub fn send(self) -> Response {
        send_raw(&self.addr, &self.to_bytes(), false)
    }
}

/// Sends raw bytes and reads the response. With `half_close`, the write side is shut after sending (a client
/// that stops mid-body).
pub fn send_raw(addr: &str, bytes: &[u8], half_close: bool) -> Response {
    try_send_raw(addr, bytes, half_close).expect("an HTTP response")
}

/// Like [`send_raw`], but a refused connection or a missing response is an error, not a panic.
pub fn try_send_raw(addr: &str, bytes: &[u8], half_close: bool) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    // The server may answer (413) and close before reading everything; the answer is still there to read.
    let _ = stream.write_all(bytes);
    if half_close {
        stream.shutdown(std::net::Shutdown::Write)?;
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    Response::try_parse(&raw).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no HTTP response"))
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn try_parse(raw: &[u8]) -> Option<Response> {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..split]);
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
        Some(Response { status, headers, body: raw[split + 4..].to_vec() })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }

    /// The `status` of each entry of `results`.
    pub fn statuses(&self) -> Vec<String> {
        self.json()["results"].as_array().expect("results array").iter().map(|r| r["status"].as_str().unwrap().to_owned()).collect()
    }

    /// The `code` of the response (whole-request errors) or of result `i`.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }
}

/// A valid track event with this messageId.
pub fn track(message_id: &str) -> String {
    format!(r#"{{"type":"track","event":"Order Completed","anonymousId":"anon-1","messageId":"{message_id}","properties":{{"revenue":12.5}},"timestamp":"2026-01-01T00:00:00.000Z"}}"#)
}

/// A batch body of these events.
pub fn batch(events: &[String]) -> String {
    format!(r#"{{"batch":[{}],"sentAt":"2026-01-01T00:00:01.000Z"}}"#, events.join(","))
}

/// gzip-compresses bytes.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Waits until `condition` holds, failing after `seconds`.
pub fn wait_until(seconds: u64, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The admin token of [`TWO_SITES`].
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

impl Collector {
    /// `GET` an admin route with the admin token.
    pub fn admin_get(&self, path: &str) -> Response {
        self.request().path(path).header("Authorization", &format!("Bearer {ADMIN_TOKEN}")).send()
    }

    /// `POST` JSON to an admin route with the admin token.
    pub fn admin_post(&self, path: &str, body: &str) -> Response {
        self.request().method("POST").path(path).header("Authorization", &format!("Bearer {ADMIN_TOKEN}")).header("Content-Type", "application/json").body(body).send()
    }

    /// The profile holding an identifier, as the lookup API returns it (`None` on 404).
    pub fn lookup(&self, kind: &str, value: &str) -> Option<serde_json::Value> {
        let path = format!("/admin/v1/profiles/lookup?type={kind}&value={}", url_encode(value));
        let r = self.admin_get(&path);
        match r.status {
            200 => Some(r.json()),
            404 => None,
            other => panic!("lookup answered {other}: {}", r.text()),
        }
    }

    /// Everything stored on disk (database file and its WAL), for byte searches after a clean stop. On PostgreSQL
    /// also every row of the shared database, as text.
    pub fn database_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        if let Some(url) = self.shared_database() {
            let mut pg = postgres::Client::connect(&url, postgres::NoTls).expect("the test database");
            for table in ["events", "quarantine", "message_ids", "ops"] {
                for row in pg.query(&format!("SELECT t::text FROM {table} t"), &[]).unwrap() {
                    bytes.extend(row.get::<_, String>(0).into_bytes());
                }
            }
        }
        for suffix in ["", "-wal", "-shm"] {
            if let Ok(b) = std::fs::read(format!("{}{suffix}", self.db_path().display())) {
                bytes.extend(b);
            }
        }
        bytes
    }
}

/// The pseudonymisation key of collectors on PostgreSQL (collectors sharing a database must share it).
pub const TEST_HMAC_KEY: &str = "e2e-test-hmac-key-0123456789abcdef";

/// Whether this run puts every collector on PostgreSQL (`FOOTPRINT_E2E_STORE=postgres`).
pub fn e2e_on_postgres() -> bool {
    match std::env::var("FOOTPRINT_E2E_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("FOOTPRINT_E2E_STORE is postgres or sqlite, not {other:?}"),
    }
}

/// The URL of a fresh database on the test server (`FOOTPRINT_TEST_DATABASE_URL`, which `cargo xtask test` starts),
/// or `None` when there is none; under CI a missing server fails instead.
pub fn fresh_database() -> Option<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let Ok(url) = std::env::var("FOOTPRINT_TEST_DATABASE_URL") else {
        assert!(std::env::var_os("CI").is_none(), "CI runs the PostgreSQL tests: set FOOTPRINT_TEST_DATABASE_URL (cargo xtask test does)");
        return None;
    };
    let name = format!("fp_e2e_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("the test server answers");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("create {name}: {e}"));
    let (base, _) = url.rsplit_once('/').expect("a URL with a database name");
    Some(format!("{base}/{name}"))
}

/// A PostgreSQL server of the test's own (initdb into a temporary directory, a free loopback port), for tests that
/// stop and start it; the shared test server must stay up for the others. Stopped and deleted when dropped.
pub struct PgServer {
    bin: PathBuf,
    dir: TempDir,
    pub port: u16,
}

impl PgServer {
    /// `None` where PostgreSQL is not installed (under CI that fails instead).
    pub fn start() -> Option<PgServer> {
        let bin = std::env::var_os("FOOTPRINT_TEST_PG_BIN").map(PathBuf::from).or_else(|| {
            let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| Some(e.ok()?.path().join("bin"))).filter(|b| b.join("initdb").exists()).collect();
            found.sort();
            found.pop()
        });
        let Some(bin) = bin else {
            assert!(std::env::var_os("CI").is_none(), "CI runs the PostgreSQL tests: PostgreSQL's programs are missing (cargo xtask test installs them)");
            return None;
        };
        let dir = TempDir::new("pg");
        if is_root() {
            assert!(Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status().unwrap().success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = PgServer { bin, dir, port };
        let status = server.command("initdb").arg("-D").arg(server.data()).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]).stdout(Stdio::null()).status().unwrap();
        assert!(status.success(), "initdb failed");
        server.start_again();
        Some(server)
    }

    /// `postgres://…` of database `name` (created first when `create`).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    pub fn create_database(&self, name: &str) -> String {
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).expect("the server answers");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.url(name)
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: like a crash, in-flight transactions are lost).
    pub fn stop(&self) {
        let status = self.command("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]).stdout(Stdio::null()).status().unwrap();
        assert!(status.success(), "pg_ctl stop failed");
    }

    pub fn start_again(&self) {
        let options = format!("-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}", self.port, self.dir.path().display());
        let log = self.dir.path().join("server.log");
        let status = self.command("pg_ctl").arg("-D").arg(self.data()).arg("-l").arg(&log).args(["-w", "-t", "60", "-o", &options, "start"]).stdout(Stdio::null()).status().unwrap();
        assert!(status.success(), "pg_ctl start failed; see {}", log.display());
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            command
        } else {
            Command::new(self.bin.join(program))
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "-w", "stop"]).stdout(Stdio::null()).status();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The database of the collector whose directory is `dir`: made on first use, remembered in the directory.
fn database_of(dir: &Path) -> String {
    let file = dir.join("database_url");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return url;
    }
    let url = fresh_database().expect("FOOTPRINT_E2E_STORE=postgres needs FOOTPRINT_TEST_DATABASE_URL");
    std::fs::write(&file, &url).unwrap();
    url
}

/// Percent-encodes a query value.
pub fn url_encode(value: &str) -> String {
    value.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}
