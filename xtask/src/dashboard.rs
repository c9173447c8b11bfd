//! The dashboard build: `node dashboard/build.mjs` bundles `dashboard/src` with esbuild into `www/dashboard/`
//! (content-hashed names) and writes `www/index.html`; it prints the first-load size with brotli and fails above
//! the 100 KB budget.

use crate::{root, run_step};
use std::process::Command;

pub fn build() -> anyhow::Result<()> {
    crate::ensure::npm_packages()?;
    run_step("build the dashboard (esbuild → www/dashboard/, size budget)", Command::new("node").arg("dashboard/build.mjs").current_dir(root()))
}
