//! Settings: defaults, then the TOML file, then `FOOTPRINT_*` environment variables, then CLI flags (last wins).
//! The names are the interface contract of DESIGN.md §9.

use anyhow::{bail, Context as _};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "footprint-data";
pub const DEMO_SITE_ID: &str = "demo";
pub const DEMO_WRITE_KEY: &str = "wk_demo";

/// What the command line says; `None` leaves the setting to the environment, the file or the default.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// The config file. Unknown keys are reported, not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    admin_token: Option<String>,
    database_url: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    sites: Vec<SiteConfig>,
    dedupe_window_days: Option<u32>,
    /// May be fractional (0.25 = 256 KiB); at least 0.1.
    queue_capacity_mb: Option<f64>,
    ipv4_prefix: Option<u8>,
    ipv6_prefix: Option<u8>,
    www_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    hmac_key: Option<String>,
    #[serde(default)]
    hmac_previous_keys: Vec<String>,
    pii_fields: Option<Vec<String>>,
    identity_resolution: Option<bool>,
    role: Option<Role>,
}

/// Whether a `database_url` names a PostgreSQL server (the shared store) rather than the embedded file.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// What a collector sharing PostgreSQL does besides ingesting: `full` keeps a replica (identity, profiles, stats)
/// and answers the admin API; `ingest` only appends to the shared log, so adding one adds ingest capacity without
/// another replica replaying every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    Full,
    Ingest,
}

/// Whether the site asks visitors before anything identifying is kept (`required`, the EU default) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    #[default]
    Required,
    Implied,
}

/// One site: who may send events for it, from where.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub id: String,
    pub write_key: String,
    /// Browser origins allowed to send (`https://shop.example`); `"*"` allows any. Requests without an
    /// `Origin` header (server-side libraries) are always allowed: the write key is what authorises them.
    #[serde(default)]
    pub origins: Vec<String>,
    #[serde(default)]
    pub consent_mode: ConsentMode,
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

fn default_retention_days() -> u32 {
    395
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The settings the collector runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: a random token is made at start and printed.
    pub admin_token: Option<Secret>,
    pub database_url: Option<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub sites: Vec<SiteConfig>,
    /// True when no site was configured and the demo site stands in.
    pub demo_site: bool,
    pub dedupe_window_days: u32,
    /// Bytes of accepted event JSON that may wait for the writer before ingest answers 503.
    pub queue_capacity_bytes: usize,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub www_dir: Option<PathBuf>,
    pub log_format: LogFormat,
    /// The pseudonymisation key; `None`: kept in `<data_dir>/hmac.key`, made on first start.
    pub hmac_key: Option<Secret>,
    /// Keys in use before a rotation (newest first): still tried by look-ups, erasure and suppression checks.
    pub hmac_previous_keys: Vec<Secret>,
    /// Trait and property keys whose values are stored only as keyed hashes.
    pub pii_fields: Vec<String>,
    /// Resolve consented events into profiles at ingest (default on; off only to measure what it costs).
    pub identity_resolution: bool,
    /// `ingest`: no replica and no admin API (PostgreSQL only).
    pub role: Role,
}

impl Config {
    /// Builds the configuration from the file named by the flag or `FOOTPRINT_CONFIG` (if any), the environment and
    /// the flags. `env` is passed in so tests need not touch the process environment.
    pub fn load(flags: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let config_path = flags.config.clone().or_else(|| env("FOOTPRINT_CONFIG").map(PathBuf::from));
        let file = match &config_path {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text).with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let listen_text = flags.listen.clone().or_else(|| env("FOOTPRINT_LISTEN")).or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = resolve_listen(&listen_text)?;
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| env("FOOTPRINT_DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let admin_token = env("FOOTPRINT_ADMIN_TOKEN").or(file.admin_token).filter(|t| !t.is_empty()).map(Secret::new);
        if let Some(token) = &admin_token {
            if token.expose().len() < 16 {
                bail!("admin_token must be at least 16 characters long");
            }
        }
        let database_url = env("FOOTPRINT_DATABASE_URL").or(file.database_url).filter(|u| !u.is_empty());
        let trusted_proxies = file
            .trusted_proxies
            .iter()
            .map(|p| parse_net(p).with_context(|| format!("trusted_proxies: {p:?} is not an IP address or CIDR range")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let demo_site = file.sites.is_empty();
        let sites = if demo_site {
            vec![SiteConfig {
                id: DEMO_SITE_ID.into(),
                write_key: DEMO_WRITE_KEY.into(),
                origins: vec!["*".into()],
                consent_mode: ConsentMode::Required,
                retention_days: default_retention_days(),
            }]
        } else {
            file.sites
        };
        check_sites(&sites)?;
        let ipv4_prefix = file.ipv4_prefix.unwrap_or(24);
        let ipv6_prefix = file.ipv6_prefix.unwrap_or(48);
        if ipv4_prefix > 32 || ipv6_prefix > 128 {
            bail!("ipv4_prefix must be at most 32 and ipv6_prefix at most 128");
        }
        let log_format = match env("FOOTPRINT_LOG_FORMAT").as_deref() {
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => bail!("FOOTPRINT_LOG_FORMAT must be \"text\" or \"json\", not {other:?}"),
            None => file.log_format.unwrap_or_default(),
        };
        let role = match env("FOOTPRINT_ROLE").as_deref() {
            Some("full") => Role::Full,
            Some("ingest") => Role::Ingest,
            Some(other) => bail!("FOOTPRINT_ROLE must be \"full\" or \"ingest\", not {other:?}"),
            None => file.role.unwrap_or_default(),
        };
        if role == Role::Ingest && !database_url.as_deref().is_some_and(is_postgres_url) {
            bail!("role = \"ingest\" is for a collector sharing PostgreSQL with others: set database_url (FOOTPRINT_DATABASE_URL) to postgres://…");
        }
        Ok(Config {
            role,
            listen,
            data_dir,
            admin_token,
            database_url,
            trusted_proxies,
            sites,
            demo_site,
            dedupe_window_days: file.dedupe_window_days.unwrap_or(7).max(1),
            queue_capacity_bytes: (file.queue_capacity_mb.unwrap_or(32.0).max(0.1) * 1024.0 * 1024.0) as usize,
            ipv4_prefix,
            ipv6_prefix,
            www_dir: env("FOOTPRINT_WWW_DIR").map(PathBuf::from).or(file.www_dir),
            log_format,
            hmac_key: match env("FOOTPRINT_HMAC_KEY").or(file.hmac_key).filter(|k| !k.is_empty()) {
                Some(key) if key.len() < 32 => bail!("hmac_key must be at least 32 characters long"),
                key => key.map(Secret::new),
            },
            hmac_previous_keys: env("FOOTPRINT_HMAC_PREVIOUS_KEYS")
                .map(|v| v.split(',').map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect())
                .unwrap_or(file.hmac_previous_keys)
                .into_iter()
                .map(Secret::new)
                .collect(),
            pii_fields: file.pii_fields.unwrap_or_else(|| vec!["email".into(), "phone".into()]),
            identity_resolution: file.identity_resolution.unwrap_or(true),
        })
    }

    /// The directory of static files (demo site, dashboard, SDK build): configured, else `./www`, else the `www/`
    /// of the source tree the binary was built in (so `cargo run` works from any directory).
    pub fn resolved_www_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = &self.www_dir {
            return Some(dir.clone());
        }
        let candidates = [PathBuf::from("www"), Path::new(env!("CARGO_MANIFEST_DIR")).join("../www")];
        candidates.into_iter().find(|dir| dir.join("index.html").is_file())
    }
}

fn resolve_listen(text: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| format!("listen address {text:?} is not HOST:PORT"))
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>().ok().or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn check_sites(sites: &[SiteConfig]) -> anyhow::Result<()> {
    let mut ids = std::collections::HashSet::new();
    let mut keys = std::collections::HashSet::new();
    for site in sites {
        if site.id.is_empty() || !site.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            bail!("site id {:?} must be non-empty letters, digits, '-' or '_'", site.id);
        }
        if site.write_key.len() < 4 {
            bail!("site {:?}: write_key must be at least 4 characters", site.id);
        }
        if !ids.insert(&site.id) {
            bail!("site id {:?} appears twice", site.id);
        }
        if !keys.insert(&site.write_key) {
            bail!("site {:?}: write_key is used by another site", site.id);
        }
        for origin in &site.origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) || origin.ends_with('/') {
                bail!("site {:?}: origin {origin:?} must look like https://host[:port] (no path) or be \"*\"", site.id);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(file: Option<&str>, env: &[(&str, &str)], flags: Overrides) -> anyhow::Result<Config> {
        let dir = std::env::temp_dir().join(format!("fp-config-test-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut flags = flags;
        if let Some(text) = file {
            let path = dir.join("footprint.toml");
            std::fs::write(&path, text).unwrap();
            flags.config = Some(path);
        }
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load(&flags, &|k| env.get(k).cloned())
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn no_config_means_demo_site_on_localhost_8080() {
        let c = load(None, &[], Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("footprint-data"));
        assert!(c.demo_site);
        assert_eq!(c.sites[0].id, "demo");
        assert_eq!(c.dedupe_window_days, 7);
        assert_eq!(c.role, Role::Full);
    }

    #[test]
    fn an_ingest_only_collector_needs_postgresql() {
        let shared = [("FOOTPRINT_DATABASE_URL", "postgres://db/footprint"), ("FOOTPRINT_ROLE", "ingest")];
        assert_eq!(load(None, &shared, Overrides::default()).unwrap().role, Role::Ingest);
        let from_file = load(Some("role = \"ingest\"\ndatabase_url = \"postgresql://db/footprint\""), &[], Overrides::default()).unwrap();
        assert_eq!(from_file.role, Role::Ingest);
        let err = format!("{:#}", load(None, &[("FOOTPRINT_ROLE", "ingest")], Overrides::default()).unwrap_err());
        assert!(err.contains("FOOTPRINT_DATABASE_URL"), "{err}");
        let err = format!("{:#}", load(None, &[("FOOTPRINT_ROLE", "reader")], Overrides::default()).unwrap_err());
        assert!(err.contains("\"full\" or \"ingest\""), "{err}");
    }

    #[test]
    fn the_contract_example_parses_and_flags_beat_env_beat_file() {
        let file = r#"
            listen = "127.0.0.1:9000"
            data_dir = "from-file"
            admin_token = "0123456789abcdef-file"
            trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]
            [[sites]]
            id = "shop"
            write_key = "wk_shop"
            origins = ["https://shop.example"]
            consent_mode = "required"
            retention_days = 395
        "#;
        let c = load(Some(file), &[("FOOTPRINT_LISTEN", "127.0.0.1:9001"), ("FOOTPRINT_DATA_DIR", "from-env")], Overrides {
            listen: Some("127.0.0.1:9002".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.listen.port(), 9002);
        assert_eq!(c.data_dir, PathBuf::from("from-env"));
        assert_eq!(c.admin_token.as_ref().unwrap().expose(), "0123456789abcdef-file");
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(!c.demo_site);
        assert_eq!(c.sites[0].origins, vec!["https://shop.example"]);
        assert!(!format!("{c:?}").contains("0123456789abcdef"), "Debug must redact the admin token");
    }

    #[test]
    fn mistakes_are_reported() {
        for (file, needle) in [
            ("lisen = \"x\"", "unknown field"),
            ("listen = \"nowhere\"", "HOST:PORT"),
            ("trusted_proxies = [\"10.0.0.0/99\"]", "trusted_proxies"),
            ("[[sites]]\nid=\"a\"\nwrite_key=\"wk_a\"\n[[sites]]\nid=\"a\"\nwrite_key=\"wk_b\"", "twice"),
            ("[[sites]]\nid=\"a\"\nwrite_key=\"wk_a\"\norigins=[\"shop.example\"]", "origin"),
            ("[[sites]]\nid=\"a\"\nwrite_key=\"wk_a\"\nconsent_mode=\"maybe\"", "consent_mode"),
            ("admin_token = \"short\"", "16 characters"),
            ("role = \"ingest\"", "sharing PostgreSQL"),
            ("role = \"reader\"", "role"),
        ] {
            let err = format!("{:#}", load(Some(file), &[], Overrides::default()).unwrap_err());
            assert!(err.contains(needle), "{file}: {err}");
        }
    }
}
