//! `cargo xtask <command>`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `run [ARGS…]`   build everything and run the collector (`footprint serve ARGS…`) with the demo site.
//! - `test`          install what the tests need, build, and run every test (what CI runs).
//! - `bench …`       benchmarks that print numbers (see README).
//! - `bench-instructions` the collector's instructions per event, counted by callgrind.
//! - `demo-data`     a month of traffic for the demo site, through the ingest API.
//! - `bench-stats`   10 million events, then every stats query timed.
//! - `bench-pg`      batched ingest on PostgreSQL, one collector and two sharing the database.

mod bench;
mod dashboard;
mod demo_data;
mod ensure;
mod instructions;
mod people_bench;
mod pg_bench;
mod pg_cluster;
mod sdk;
mod stats_bench;

use anyhow::{bail, Context as _};
use std::path::PathBuf;
use std::process::Command;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test(),
        Some("build-sdk") => sdk::build(),
        Some("bench-sdk") => sdk::bench(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("bench-instructions") => instructions::bench(&args[1..]),
        Some("demo-data") => demo_data::command(&args[1..]),
        Some("bench-stats") => stats_bench::bench(&args[1..]),
        Some("bench-people") => people_bench::bench(&args[1..]),
        Some("bench-pg") => pg_bench::bench(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            println!("usage: cargo xtask <run [serve args…] | test | bench [--quick] | bench-instructions [--against REV] [--secs S] | demo-data [--target HOST:PORT] | bench-stats [--events N] | bench-people [--profiles N] | bench-pg [--quick] [--runs N] [--secs S] [--collector REV] | build-sdk | bench-sdk>");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown command {other:?}; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of `xtask/`). `cargo run` names this checkout's manifest directory at run time;
/// the compiled-in one can be another checkout's, when checkouts share a target directory (cargo then runs the
/// binary the other one built).
pub fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    manifest_dir.parent().expect("xtask lives in the workspace").to_path_buf()
}

/// The cargo that runs us, so toolchain overrides carry through.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}

/// Where cargo puts build output (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).map(|p| if p.is_absolute() { p } else { root().join(p) }).unwrap_or_else(|| root().join("target"))
}

/// Runs a command, echoing it first; fails with its exit status.
pub fn run_step(what: &str, command: &mut Command) -> anyhow::Result<()> {
    eprintln!("==> {what}");
    let status = command.status().with_context(|| format!("cannot start: {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn run(serve_args: &[String]) -> anyhow::Result<()> {
    // `cargo xtask run -- --listen …` and `cargo xtask run --listen …` mean the same.
    let serve_args = serve_args.strip_prefix(&["--".to_owned()]).unwrap_or(serve_args);
    sdk::build()?;
    dashboard::build()?;
    run_step("build the collector (release)", cargo().args(["build", "--release", "-p", "footprint-collector"]))?;
    let binary = target_dir().join("release/footprint");
    eprintln!("==> {} serve {}", binary.display(), serve_args.join(" "));
    demo_data::seed_in_background(serve_args);
    let mut collector = Command::new(&binary).arg("serve").args(serve_args).current_dir(root()).spawn().context("cannot start the collector")?;
    let status = collector.wait()?;
    if !status.success() {
        bail!("the collector exited with {status}");
    }
    Ok(())
}

fn test() -> anyhow::Result<()> {
    ensure::npm_packages()?;
    run_step("build the collector", cargo().args(["build", "-p", "footprint-collector"]))?;
    sdk::build()?;
    dashboard::build()?;
    ensure::chromium()?;
    // The PostgreSQL store's tests run against a real server (a missing one fails them under CI).
    let postgres = pg_cluster::TestCluster::start()?;
    run_step(
        "cargo test (unit, property and end-to-end tests; SQLite and PostgreSQL)",
        cargo().args(["test", "--workspace", "--no-fail-fast"]).env("FOOTPRINT_TEST_DATABASE_URL", &postgres.url),
    )?;
    run_step(
        "end-to-end tests again, every collector on PostgreSQL (the shared store)",
        cargo().args(["test", "-p", "footprint-tests", "--no-fail-fast"]).env("FOOTPRINT_TEST_DATABASE_URL", &postgres.url).env("FOOTPRINT_E2E_STORE", "postgres"),
    )?;
    drop(postgres);
    sdk::test(&target_dir().join("debug/footprint"))?;
    eprintln!("==> all tests passed");
    Ok(())
}
