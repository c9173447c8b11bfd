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
