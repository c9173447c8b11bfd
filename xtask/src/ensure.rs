//! Installs what builds and tests need on a fresh machine, and nothing when it is already there.

use crate::{root, run_step};
use std::process::Command;

/// `npm ci` when `node_modules` is missing or older than `package-lock.json`.
pub fn npm_packages() -> anyhow::Result<()> {
    let root = root();
    let lock = root.join("package-lock.json");
    let installed = root.join("node_modules/.package-lock.json");
    let fresh = match (std::fs::metadata(&lock).and_then(|m| m.modified()), std::fs::metadata(&installed).and_then(|m| m.modified())) {
        (Ok(lock), Ok(installed)) => installed >= lock,
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    run_step("npm ci (test and build tools from package-lock.json)", Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&root))
}

/// Debian's Chromium for the browser tests: `apt-get install chromium` (as root) when `/usr/bin/chromium` is missing.
pub fn chromium() -> anyhow::Result<()> {
    if std::path::Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    run_step("apt-get update", Command::new("apt-get").arg("update"))?;
    run_step("apt-get install chromium (browser tests)", Command::new("apt-get").args(["install", "-y", "--no-install-recommends", "chromium"]).env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Where Debian's Chromium lives; the browser tests launch it through playwright-core.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The `wasm32-unknown-unknown` standard library, for the browser SDK: `rustup target add` when it is missing.
pub fn wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output().map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"));
    match installed {
        Ok(true) => Ok(()),
        Ok(false) => run_step("rustup target add wasm32-unknown-unknown", Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"])),
        // No rustup (a distribution toolchain): let cargo say whether the target is there.
        Err(_) => Ok(()),
    }
}

/// The `rust-src` component (std's sources), for the browser SDK's smaller build: true when it is there or could be
/// installed, false otherwise (the SDK then builds against the shipped std).
pub fn rust_src() -> bool {
    let installed = Command::new("rustup").args(["component", "list", "--installed"]).output().map(|o| String::from_utf8_lossy(&o.stdout).contains("rust-src"));
    match installed {
        Ok(true) => true,
        Ok(false) => run_step("rustup component add rust-src", Command::new("rustup").args(["component", "add", "rust-src"])).is_ok(),
        Err(_) => false,
    }
}

/// Debian's PostgreSQL server for the PostgreSQL store's tests: `apt-get install postgresql` (as root) when no
/// server binary is there. Returns the directory holding `initdb`, `pg_ctl` and `postgres`.
pub fn postgresql() -> anyhow::Result<std::path::PathBuf> {
    if let Some(bin) = postgresql_bin() {
        return Ok(bin);
    }
    run_step("apt-get update", Command::new("apt-get").arg("update"))?;
    run_step(
        "apt-get install postgresql (PostgreSQL store tests)",
        Command::new("apt-get").args(["install", "-y", "--no-install-recommends", "postgresql"]).env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    postgresql_bin().ok_or_else(|| anyhow::anyhow!("postgresql is installed but no server binary is under /usr/lib/postgresql/*/bin"))
}

/// The newest `/usr/lib/postgresql/<version>/bin` with a server in it.
fn postgresql_bin() -> Option<std::path::PathBuf> {
    let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("postgres").exists() && bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
