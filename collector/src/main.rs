//! `footprint`: the collector binary. Thin: parse the command line, load the config, start storage, the writer
//! and the HTTP server, and shut them down in order.

mod admin_client;
mod config;
mod enrich;
mod http;
mod identity;
mod ingest;
mod metrics;
mod pseudonymise;
mod stats;
mod store;
mod writer;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use config::{Config, LogFormat, Overrides, Secret};
use std::path::PathBuf;
use std::sync::Arc;

// Events are made of many small strings: mimalloc's per-thread free lists beat glibc's malloc on that load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "footprint", version, about = "Footprint: privacy-first, self-hosted customer-data collection")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector: ingest API, demo site and dashboard.
    Serve {
        /// TOML config file (or FOOTPRINT_CONFIG).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address to listen on, HOST:PORT (or FOOTPRINT_LISTEN; default 127.0.0.1:8080; port 0 picks a free one).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Directory for the database (or FOOTPRINT_DATA_DIR; default ./footprint-data).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Export everything stored about a person (GDPR Art. 15/20), from the running collector.
    Export {
        #[command(flatten)]
        person: Person,
        /// Newline-delimited JSON (one record per line) instead of one JSON document.
        #[arg(long)]
        ndjson: bool,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Move a standalone store (embedded SQLite) into a shared PostgreSQL database, for several collectors.
    /// Stop the collector first. Its database file is kept aside as footprint.db.before-postgres.
    CopyToPostgres {
        /// The data directory of the store to copy (or FOOTPRINT_DATA_DIR; default ./footprint-data).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// postgres://… of an empty database (or FOOTPRINT_DATABASE_URL).
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
    /// Erase a person everywhere and refuse their identifiers from now on (GDPR Art. 17).
    Erase {
        #[command(flatten)]
        person: Person,
        /// Do it without asking.
        #[arg(long)]
        yes: bool,
    },
}

/// Who, and which collector.
#[derive(clap::Args)]
struct Person {
    /// anonymous_id, user_id, email, phone or external:NAME
    #[arg(long = "type", value_name = "TYPE")]
    kind: String,
    /// The identifier as the person gave it (raw e-mail, phone, ID).
    #[arg(long)]
    value: String,
    /// Only this site (default: every site).
    #[arg(long)]
    site: Option<String>,
    /// The collector's address (default: `listen` from the config, or 127.0.0.1:8080).
    #[arg(long, value_name = "HOST:PORT")]
    server: Option<String>,
    /// Config file, for `listen` and `admin_token` (or FOOTPRINT_CONFIG).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl Person {
    fn target(&self) -> anyhow::Result<admin_client::Target> {
        let config = Config::load(&Overrides { config: self.config.clone(), ..Default::default() }, &|name| std::env::var(name).ok())?;
        let token = config.admin_token.as_ref().map(|t| t.expose().to_owned()).context("no admin token: set FOOTPRINT_ADMIN_TOKEN or admin_token in the config (the one `footprint serve` uses)")?;
        let address = self.server.clone().map(|s| s.trim_start_matches("http://").trim_end_matches('/').to_owned()).unwrap_or_else(|| config.listen.to_string());
        Ok(admin_client::Target { address, token })
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, listen, data_dir } => serve(Overrides { config, listen, data_dir }),
        Command::Export { person, ndjson, output } => export(&person, ndjson, output),
        Command::Erase { person, yes } => erase(&person, yes),
        Command::CopyToPostgres { data_dir, database_url } => copy_to_postgres(data_dir, database_url),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("footprint: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn export(person: &Person, ndjson: bool, output: Option<PathBuf>) -> anyhow::Result<()> {
    let target = person.target()?;
    eprintln!("footprint: exporting {} from {} …", person.kind, target.address);
    let bytes = match &output {
        Some(path) => {
            let mut file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            admin_client::export(&target, &person.kind, &person.value, person.site.as_deref(), ndjson, &mut file)?
        }
        None => admin_client::export(&target, &person.kind, &person.value, person.site.as_deref(), ndjson, &mut std::io::stdout().lock())?,
    };
    eprintln!("footprint: exported {bytes} bytes{}", output.map(|p| format!(" to {}", p.display())).unwrap_or_default());
    Ok(())
}

fn erase(person: &Person, yes: bool) -> anyhow::Result<()> {
    let target = person.target()?;
    if !yes {
        eprint!("Erase every event, identifier and trait of this {} on {}? This cannot be undone. Type 'erase' to go on: ", person.kind, person.site.as_deref().unwrap_or("every site"));
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "erase" {
            anyhow::bail!("nothing erased");
        }
    }
    let report = admin_client::erase(&target, &person.kind, &person.value, person.site.as_deref())?;
    println!(
        "erased: {} profile(s), {} identifier(s), {} event(s), {} quarantined event(s), {} consent record(s); the identifiers are suppressed from now on",
        report["profiles"], report["identifiers"], report["events"], report["quarantined"], report["ledger_entries"]
    );
    Ok(())
}

fn copy_to_postgres(data_dir: Option<PathBuf>, database_url: Option<String>) -> anyhow::Result<()> {
    // The same defaults and environment as `serve` (FOOTPRINT_DATA_DIR, FOOTPRINT_DATABASE_URL).
    let config = Config::load(&Overrides { data_dir, ..Default::default() }, &|name| std::env::var(name).ok())?;
    let data_dir = config.data_dir;
    let url = database_url.or(config.database_url).context("say where to: --database-url postgres://… (or FOOTPRINT_DATABASE_URL)")?;
    anyhow::ensure!(config::is_postgres_url(&url), "--database-url must be a postgres:// URL");
    let db = data_dir.join("footprint.db");
    // Nothing may write to the store meanwhile: its write lock is held for the whole copy.
    let probe = store::sqlite::ExclusiveCheck::take(&db).with_context(|| format!("{} is in use: stop the collector first", db.display()))?;
    eprintln!("footprint: copying {} into PostgreSQL {} …", db.display(), redact_url(&url));
    let started = std::time::Instant::now();
    let mut last_print = std::time::Instant::now() - std::time::Duration::from_secs(10);
    let report = store::copy::copy_to_postgres(&data_dir, &url, &mut |p| {
        if last_print.elapsed().as_secs_f64() >= 1.0 || p.events_done == p.events_total {
            last_print = std::time::Instant::now();
            let percent = if p.events_total == 0 { 100.0 } else { 100.0 * p.events_done as f64 / p.events_total as f64 };
            let rate = p.events_done as f64 / started.elapsed().as_secs_f64().max(0.001);
            eprintln!("footprint:   {} of {} events ({percent:.1} %), {rate:.0} events/s", p.events_done, p.events_total);
        }
    })?;
    drop(probe);
    let aside = data_dir.join("footprint.db.before-postgres");
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            std::fs::rename(&from, format!("{}{suffix}", aside.display())).with_context(|| format!("cannot move {} aside", from.display()))?;
        }
    }
    println!(
        "copied {} events, {} quarantined events and {} erased identifiers in {:.1} s{}",
        report.events,
        report.quarantined,
        report.suppressions,
        started.elapsed().as_secs_f64(),
        if report.already_there > 0 { format!(" ({} events were there already)", report.already_there) } else { String::new() }
    );
    println!("the old database is kept as {}", aside.display());
    println!("next: start every collector with FOOTPRINT_DATABASE_URL set and the same FOOTPRINT_HMAC_KEY");
    if data_dir.join("hmac.key").exists() && std::env::var_os("FOOTPRINT_HMAC_KEY").is_none() {
        println!("      (this store pseudonymised with {}: use its content as FOOTPRINT_HMAC_KEY, so hashed e-mails still match)", data_dir.join("hmac.key").display());
    }
    println!("      each collector rebuilds its replica (profiles, stats, consent ledger) from the log at first start");
    Ok(())
}

fn serve(flags: Overrides) -> anyhow::Result<()> {
    let config = Config::load(&flags, &|name| std::env::var(name).ok())?;
    init_logging(config.log_format);
    if let Some(url) = &config.database_url {
        if !url.starts_with("sqlite:") && !config::is_postgres_url(url) {
            anyhow::bail!("FOOTPRINT_DATABASE_URL / database_url: expected postgres://… (several collectors sharing PostgreSQL) or nothing (the embedded SQLite store); got a {} URL", url.split(':').next().unwrap_or("?"));
        }
        if config::is_postgres_url(url) && config.hmac_key.is_none() {
            anyhow::bail!("collectors sharing PostgreSQL must pseudonymise with the same key: set FOOTPRINT_HMAC_KEY (or hmac_key), the same on every collector");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(mut config: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(metrics::Metrics::default());
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    let (key, key_created) = hmac_key(&config)?;
    let previous: Vec<Vec<u8>> = config.hmac_previous_keys.iter().map(|k| k.expose().as_bytes().to_vec()).collect();
    let pseudonymizer = pseudonymise::Pseudonymizer::with_previous(&key, &previous);
    let suppressions: store::shared::Suppressions = Default::default();
    let shared_url = config.database_url.clone().filter(|url| config::is_postgres_url(url));
    // The follower's hold of what this collector commits (with a replica on the shared log): the writer lanes fill it.
    let mut own_events = None;
    let (store, db_path): (Box<dyn store::EventStore>, PathBuf) = match &shared_url {
        None => {
            let store = store::sqlite::SqliteStore::open(&config.data_dir).with_context(|| format!("cannot open the database in {}", config.data_dir.display()))?;
            let path = store.path().to_path_buf();
            (Box::new(store), path)
        }
        Some(url) if config.role == config::Role::Ingest => {
            tracing::info!("connecting to the shared PostgreSQL database (ingest only: no replica)");
            let (url, shared, days) = (url.clone(), suppressions.clone(), config.dedupe_window_days);
            let store = tokio::task::spawn_blocking(move || store::shared::IngestOnlyStore::open(&url, shared, days)).await?.context("cannot open the shared PostgreSQL store")?;
            // No replica: nothing reads this path (the admin API is refused).
            (Box::new(store), config.data_dir.join("no-replica"))
        }
        Some(url) => {
            tracing::info!(replica = %config.data_dir.display(), "connecting to the shared PostgreSQL database and bringing the replica up to date");
            let hasher = pseudonymizer.clone();
            let hash: store::shared::SuppressionHash = Arc::new(move |id| pseudonymise::suppression_hash(&hasher, id));
            // The PostgreSQL client blocks: it runs off the async threads, as on the writer thread later.
            let (url, dir, shared, days) = (url.clone(), config.data_dir.clone(), suppressions.clone(), config.dedupe_window_days);
            let store = tokio::task::spawn_blocking(move || store::shared::SharedStore::open(&url, &dir, hash, shared, days)).await?.context("cannot open the shared PostgreSQL store")?;
            let path = store.replica_path().to_path_buf();
            own_events = Some(store.own_events());
            (Box::new(store), path)
        }
    };
    if config.role == config::Role::Full {
        suppressions.write().expect("suppressions").extend(store::sqlite::SqliteReader::open(&db_path)?.suppressions()?);
    }
    let (days, capacity, writer_metrics) = (config.dedupe_window_days, config.queue_capacity_bytes, metrics.clone());
    let lanes_url = shared_url.clone();
    let (writer, writer_thread) = tokio::task::spawn_blocking(move || {
        // On the shared log, groups commit on several connections at once; SQLite has one writer.
        let lanes = match lanes_url {
            Some(url) => (0..store::shared::WRITE_LANES)
                .map(|_| store::shared::LogAppender::connect(&url, own_events.clone()).map(|l| Box::new(l) as Box<dyn store::EventStore>))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        writer::Writer::start(store, lanes, days, capacity, writer_metrics, now_ms)
    })
    .await??;
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let generated_token = config.admin_token.is_none();
    let admin_token = config.admin_token.get_or_insert_with(|| Secret::new(random_hex(16))).clone();
    // The state holds the token that admin requests are checked against: the configured or the generated one.

    println!("Footprint collector listening on http://{address}");
    match &shared_url {
        None => println!("  data:      {}", db_path.display()),
        Some(url) if config.role == config::Role::Ingest => println!("  data:      PostgreSQL {} (shared); ingest only: no replica, no admin API", redact_url(url)),
        Some(url) => println!("  data:      PostgreSQL {} (shared), replica {}", redact_url(url), db_path.display()),
    }
    for site in &config.sites {
        println!("  site {:?}: write key {}  (consent {:?}, retention {} days, origins: {})", site.id, site.write_key, site.consent_mode, site.retention_days, if site.origins.is_empty() { "none (server-side only)".to_owned() } else { site.origins.join(", ") });
    }
    if config.demo_site {
        println!("  demo site: http://{address}/demo/   dashboard: http://{address}/");
    }
    if key_created {
        println!("  pseudonymisation key created in {} (back it up; set FOOTPRINT_HMAC_KEY to keep it elsewhere)", config.data_dir.join("hmac.key").display());
    }
    if generated_token {
        println!("  admin token (generated for this run; set FOOTPRINT_ADMIN_TOKEN to fix it): {}", admin_token.expose());
    }
    let state = Arc::new(http::AppState::new(config, writer, metrics, db_path, pseudonymizer, suppressions));
    if state.www_dir.is_none() {
        tracing::warn!("no www directory found; the demo site and dashboard are not served (set www_dir)");
    }
    let retention_task = tokio::spawn(retention(state.clone()));
    tracing::info!(%address, "collector started");
    http::serve(listener, state, shutdown_signal()).await;
    // The retention task holds a handle to the writer; it must go before the writer can drain and stop.
    retention_task.abort();
    let _ = retention_task.await;
    tracing::info!("stopped accepting; draining the write queue");
    // The last Writer handle goes with the state; the writer thread then drains its queue and exits.
    tokio::task::spawn_blocking(move || writer_thread.join()).await?.map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    tracing::info!("collector stopped");
    Ok(())
}

/// Deletes what is older than each site's `retention_days`: at start, then hourly. In chunks, through the writer,
/// so ingest keeps flowing between them.
async fn retention(state: Arc<http::AppState>) {
    const CHUNK: usize = 5_000;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3_600));
    loop {
        tick.tick().await;
        for site in &state.config.sites {
            let cutoff = now_ms() - i64::from(site.retention_days) * 86_400_000;
            loop {
                let id = site.id.clone();
                match state.writer.exclusive(move |store| store.delete_older_than(&id, cutoff, CHUNK)).await {
                    Ok(Ok(pass)) => {
                        metrics::Metrics::add(&state.metrics.retention_deleted, pass.deleted as u64);
                        if !pass.more {
                            break;
                        }
                    }
                    Ok(Err(error)) => {
                        tracing::error!(%error, site = %site.id, "retention pass failed");
                        break;
                    }
                    Err(_) => return,
                }
            }
        }
        metrics::Metrics::add(&state.metrics.retention_runs, 1);
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
}

fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).with_max_level(tracing::Level::INFO);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Wall-clock time in epoch milliseconds: the one clock of the collector.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A random UUIDv4, for events that arrive without a `messageId`.
pub fn new_message_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A fresh random salt for cookieless counting.
pub fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS random source works");
    salt
}

/// The pseudonymisation key: configured, else `<data_dir>/hmac.key` (made with 256 random bits on first start,
/// readable by the owner only). Either way it is never stored in the database. Says whether it made the file.
fn hmac_key(config: &Config) -> anyhow::Result<(Vec<u8>, bool)> {
    if let Some(key) = &config.hmac_key {
        return Ok((key.expose().as_bytes().to_vec(), false));
    }
    let path = config.data_dir.join("hmac.key");
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 32 => Ok((text.trim().as_bytes().to_vec(), false)),
        Ok(_) => anyhow::bail!("{} is shorter than 32 characters; fix or delete it", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let key = random_hex(32);
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(key.as_bytes())?;
            file.sync_all()?;
            Ok((key.into_bytes(), true))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A database URL without its password, for output.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the OS random source works");
    hex(&b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
