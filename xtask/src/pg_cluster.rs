//! A throwaway PostgreSQL cluster for the test run: `initdb` into a fresh directory, a free loopback port, started
//! with `pg_ctl` and stopped (and deleted) when dropped. The tests reach it through `FOOTPRINT_TEST_DATABASE_URL`;
//! `cargo xtask bench-pg` starts one with performance settings ([`TestCluster::start_with`]).

use crate::{ensure, run_step};
use anyhow::Context as _;
use std::path::PathBuf;
use std::process::Command;

pub struct TestCluster {
    bin: PathBuf,
    dir: PathBuf,
    /// `postgres://…` of the cluster's `postgres` database, for the tests.
    pub url: String,
    /// The server runs as this user when we are root (PostgreSQL refuses to run as root).
    user: Option<&'static str>,
}

/// Server settings for benchmarks (research/perf-baselines.md §4.3): room for the WAL between checkpoints and a
/// buffer pool that holds a run's data. Durability stays as in production: `fsync` and `synchronous_commit` on.
pub const PERFORMANCE_SETTINGS: &[&str] = &["shared_buffers=1GB", "max_wal_size=8GB", "checkpoint_timeout=30min", "wal_buffers=16MB", "synchronous_commit=on"];

impl TestCluster {
    pub fn start() -> anyhow::Result<TestCluster> {
        TestCluster::start_with(&[])
    }

    /// Like [`TestCluster::start`], with more `-c name=value` server settings.
    pub fn start_with(settings: &[&str]) -> anyhow::Result<TestCluster> {
        let bin = ensure::postgresql()?;
        // Under /tmp, not the target directory: the server's user must be able to reach it.
        let dir = std::env::temp_dir().join(format!("footprint-pg-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let user = is_root().then_some("postgres");
        if let Some(user) = user {
            run_step("chown the test cluster's directory", Command::new("chown").args(["-R", user]).arg(&dir))?;
        }
        let port = free_port()?;
        let cluster = TestCluster { bin, dir, url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), user };
        let data = cluster.dir.join("data");
        run_step(
            "initdb (PostgreSQL test cluster)",
            cluster.command("initdb").arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]).stdout(std::process::Stdio::null()),
        )?;
        let mut options = format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200 -c fsync=on", cluster.dir.display());
        for setting in settings {
            options.push_str(&format!(" -c {setting}"));
        }
        run_step(
            &format!("pg_ctl start (PostgreSQL on 127.0.0.1:{port})"),
            cluster.command("pg_ctl").arg("-D").arg(&data).arg("-l").arg(cluster.dir.join("server.log")).args(["-w", "-t", "60", "-o", &options, "start"]).stdout(std::process::Stdio::null()),
        )
        .with_context(|| format!("the server log is {}", cluster.dir.join("server.log").display()))?;
        Ok(cluster)
    }

    /// One of the server's programs, run as the cluster's user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The postmaster's process id (the first line of `postmaster.pid`): the server's backends are its children.
    pub fn server_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
    }

    /// The URL of another database on this server.
    pub fn database_url(&self, database: &str) -> String {
        let (server, _) = self.url.rsplit_once('/').expect("the URL names a database");
        format!("{server}/{database}")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").arg("-D").arg(self.data()).args(["-m", "fast", "-w", "stop"]).stdout(std::process::Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A loopback port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
