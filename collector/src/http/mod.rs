//! The only code that knows hyper: the accept loop with its limits, the router, and graceful shutdown.

mod admin;
mod ingest;
mod profiles;
pub mod reply;
mod static_files;
mod stats;

use crate::config::{Config, SiteConfig};
use crate::enrich::UserAgentCache;
use crate::identity::Identifier;
use crate::metrics::Metrics;
use crate::pseudonymise::{Pseudonymizer, SaltBook};
use crate::store::sqlite::SqliteReader;
use crate::writer::Writer;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use reply::Body;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Most connections served at once; further ones wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 10_000;
/// Ingest requests handled at once (reading, parsing, waiting for the commit); more get 503 + Retry-After.
const MAX_INGEST_IN_FLIGHT: usize = 512;
/// A client has this long to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open requests before it closes their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Everything a request handler may use.
pub struct AppState {
    pub config: Config,
    pub sites_by_key: HashMap<String, Arc<Site>>,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub ua_cache: UserAgentCache,
    pub db_path: PathBuf,
    pub www_dir: Option<PathBuf>,
    pub pseudonymizer: Pseudonymizer,
    pub salts: SaltBook,
    /// Ingest requests in progress at most (see `MAX_INGEST_IN_FLIGHT`).
    pub ingest_slots: Semaphore,
    /// Erased identifiers: (site, kind, keyed hash of the stored value). Loaded at start, added to by erasure.
    pub suppressions: crate::store::shared::Suppressions,
    /// The shared PostgreSQL database, when this collector is one of several (readiness checks it).
    pub shared_database: Option<String>,
}

/// A configured site, ready for lookups.
pub struct Site {
    pub id: Arc<str>,
    pub config: SiteConfig,
}

impl Site {
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.config.origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

impl AppState {
    pub fn new(config: Config, writer: Writer, metrics: Arc<Metrics>, db_path: PathBuf, pseudonymizer: Pseudonymizer, suppressions: crate::store::shared::Suppressions) -> AppState {
        let shared_database = config.database_url.clone().filter(|url| crate::config::is_postgres_url(url));
        let sites_by_key = config
            .sites
            .iter()
            .map(|s| (s.write_key.clone(), Arc::new(Site { id: s.id.as_str().into(), config: s.clone() })))
            .collect();
        let www_dir = config.resolved_www_dir();
        AppState {
            config,
            sites_by_key,
            writer,
            metrics,
            ua_cache: UserAgentCache::default(),
            db_path,
            www_dir,
            pseudonymizer,
            salts: SaltBook::default(),
            ingest_slots: Semaphore::new(MAX_INGEST_IN_FLIGHT),
            suppressions,
            shared_database,
        }
    }

    /// With several collectors, brings this one's replica up to date with the shared log before an admin read, so
    /// the read sees every event acknowledged (by any collector) before it. The embedded store's reads are
    /// current already. When the shared database cannot be reached the read goes on with what the replica has.
    pub async fn catch_up(&self) {
        if self.shared_database.is_none() {
            return;
        }
        match self.writer.exclusive(|store| store.flush()).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(error)) => tracing::warn!(%error, "replica not brought up to date before a read; answering from what it has"),
        }
    }

    /// The suppression key of an identifier: never the value itself.
    pub fn suppression_hash(&self, id: &Identifier) -> String {
        crate::pseudonymise::suppression_hash(&self.pseudonymizer, id)
    }

    /// Whether the identifier belongs to an erased person: its suppression key under the current key, or — for
    /// values stored as sent (anonymous and user IDs) — under any key used before a rotation.
    pub fn is_suppressed(&self, site: &str, id: &Identifier) -> bool {
        let set = self.suppressions.read().expect("suppressions");
        if set.is_empty() {
            return false;
        }
        let domain = format!("suppress:{}", id.kind.as_string());
        let kind = id.kind.as_string();
        let found = |hash: String| set.contains(&(site.to_owned(), kind.clone(), hash));
        found(self.pseudonymizer.hash(&domain, &id.value))
            || (!id.value.starts_with(crate::pseudonymise::HASH_PREFIX) && self.pseudonymizer.previous_generations().any(|p| found(p.hash(&domain, &id.value))))
    }
}

/// Serves until `shutdown` resolves, then stops accepting and gives open requests [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: impl std::future::Future<Output = ()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE; back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(route(req, &state, peer).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("open connections did not finish within the grace period"),
    }
}

async fn route(req: Request<Incoming>, state: &Arc<AppState>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path.starts_with("/v1/") {
        Metrics::add(&state.metrics.requests_ingest, 1);
        return ingest::handle(req, state, peer).await;
    }
    Metrics::add(&state.metrics.requests_other, 1);
    if path.starts_with("/admin/") {
        if state.config.role == crate::config::Role::Ingest {
            return reply::refusal(
                &reply::Refusal::new(StatusCode::MISDIRECTED_REQUEST, "ingest_only", "this collector only ingests (role = \"ingest\"): it keeps no replica to answer from; ask a collector with role = \"full\""),
                vec![],
            );
        }
        return admin::handle(req, state).await;
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => reply::json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        (&Method::GET, "/readyz") => readyz(state).await,
        // The site honours Global Privacy Control signals (Sec-GPC / navigator.globalPrivacyControl).
        (&Method::GET, "/.well-known/gpc.json") => reply::json(StatusCode::OK, &serde_json::json!({"gpc": true, "lastUpdate": "2026-11-23"})),
        (&Method::GET, "/metrics") => reply::text(StatusCode::OK, "text/plain; version=0.0.4", state.metrics.render()),
        (&Method::GET | &Method::HEAD, _) => static_files::serve(state.www_dir.as_deref(), &path).await,
        _ => reply::refusal(&reply::Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{} is not allowed on {path}", req.method())), vec![]),
    }
}

/// Ready when the database answers (the shared one too, with several collectors) and the writer's queue has room.
async fn readyz(state: &AppState) -> Response<Body> {
    // An ingest-only collector has no replica file to check.
    let path = (state.config.role == crate::config::Role::Full).then(|| state.db_path.clone());
    let shared = state.shared_database.clone();
    let db = tokio::task::spawn_blocking(move || {
        if let Some(path) = path {
            SqliteReader::open(&path).and_then(|r| r.ping())?;
        }
        shared.as_deref().map_or(Ok(()), crate::store::ping_shared_database)
    })
    .await;
    let storage = if state.shared_database.is_some() { "postgresql" } else { "sqlite" };
    let queue_bytes = state.metrics.queue_bytes.load(Relaxed);
    let queue_full = queue_bytes as usize >= state.config.queue_capacity_bytes;
    match db {
        Ok(Ok(())) if !queue_full => reply::json(StatusCode::OK, &serde_json::json!({"status": "ready", "storage": storage, "queue_bytes": queue_bytes})),
        Ok(Ok(())) => reply::refusal(&reply::Refusal::unavailable("queue_full", "the write queue is full", 1), vec![]),
        Ok(Err(error)) => reply::refusal(&reply::Refusal::unavailable("storage_unavailable", format!("storage does not answer: {error}"), 5), vec![]),
        Err(_) => reply::refusal(&reply::Refusal::unavailable("storage_unavailable", "storage check failed", 5), vec![]),
    }
}
