//! The browser SDK's build, checks and benchmark (issue 3).
//!
//! `build` — Rust → `wasm32-unknown-unknown` (size profile) → wasm-bindgen (this library, the exact version the SDK
//! pins) → wasm-opt (npm `binaryen`) → a content-hashed `www/footprint.<hash>.wasm`, the script-tag build
//! `www/footprint.js` (loader, boundary and API, minified by esbuild) and the npm package files in `sdk/dist/npm/`.
//! `test`  — the size check, the `tsc` check of the types, and the browser tests (Node + playwright-core + Chromium
//! against the real collector).
//! `bench` — bytes over the wire, time to ready, main-thread µs per `track()`.

use crate::{cargo, ensure, root, run_step, target_dir};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cargo profile of the browser module, defined on the command line so the workspace's release profile (the
/// collector's) stays as it is. `strip` stays off: wasm-opt needs the target-features section.
const PROFILE: &str = "sdk-wasm";
const PROFILE_CONFIG: &[&str] = &[
    "profile.sdk-wasm.inherits=\"release\"",
    "profile.sdk-wasm.opt-level=\"z\"",
    "profile.sdk-wasm.lto=true",
    "profile.sdk-wasm.codegen-units=1",
    "profile.sdk-wasm.debug=false",
    "profile.sdk-wasm.strip=false",
];

/// The smaller build: std rebuilt for the module with `panic = "immediate-abort"` and without panic locations or
/// `Debug` formatting, which removes std's panic-message machinery (about 2.3 KB brotli here), and MIR inlining,
/// which rustc leaves off at `opt-level = "z"` (about 1.1 KB brotli smaller: small helpers and the generic glue fold
/// away before LLVM). Its threshold moves the result by a few hundred bytes as the code changes; measured last on
/// the code of issue 3's size work (wasm brotli): 15–40 → 13.70–13.72 KB, 50 → 13.81, 75 → 13.96, 100–300 →
/// 13.82–13.87, 400 (the earlier choice) → 14.03, off → 14.4; after the later changes 20 → 13.39, 30 → 13.43,
/// 50 → 13.46, 100 → 13.52. Sweep it again after larger changes. These are unstable
/// flags of the project's one stable toolchain, enabled with `RUSTC_BOOTSTRAP=1` for this one build; it needs the
/// `rust-src` component. When that cannot be had, the plain build below is used (and the size check says so).
/// Reference types are off too (std is rebuilt alike): wasm-bindgen then adds no externref table, start function
/// and glue shim, which the module, passing only numbers, has no use for (−103 B brotli, most of it JS).
const SMALL_CONFIG: &[&str] = &["profile.sdk-wasm.panic=\"immediate-abort\""];
const INLINE_MIR_THRESHOLD: &str = "20";

/// The small build's rustflags, with the MIR inlining threshold (`FOOTPRINT_SDK_INLINE_MIR` overrides it, to sweep it).
fn small_rustflags(threshold: &str) -> String {
    format!(
        "target.wasm32-unknown-unknown.rustflags=[\"-Zlocation-detail=none\", \"-Zfmt-debug=none\", \"-Zinline-mir=yes\", \"-Zinline-mir-threshold={threshold}\", \"-Ctarget-feature=-reference-types\"]"
    )
}
const PLAIN_CONFIG: &[&str] = &["profile.sdk-wasm.panic=\"abort\""];

fn node_tool(name: &str) -> PathBuf {
    root().join("node_modules/.bin").join(name)
}

/// Builds the SDK: `www/footprint.js` + `www/footprint.<hash>.wasm`, and `sdk/dist/npm/`.
pub fn build() -> anyhow::Result<()> {
    ensure::npm_packages()?;
    ensure::wasm_target()?;
    let root = root();
    // Its own target dir: the rebuilt std and the unstable flags must not invalidate the workspace's artifacts (nor
    // a sweep's threshold the usual build's).
    let threshold = std::env::var("FOOTPRINT_SDK_INLINE_MIR").ok();
    let sdk_target = target_dir().join(threshold.as_ref().map_or("sdk".into(), |t| format!("sdk-mir{t}")));
    let small = ensure::rust_src();
    let mut build = cargo();
    build.args(["build", "-p", "footprint-sdk", "--lib", "--target", "wasm32-unknown-unknown", "--profile", PROFILE]);
    build.arg("--target-dir").arg(&sdk_target);
    for setting in PROFILE_CONFIG.iter().chain(if small { SMALL_CONFIG } else { PLAIN_CONFIG }) {
        build.args(["--config", setting]);
    }
    if small {
        build.args(["--config", &small_rustflags(threshold.as_deref().unwrap_or(INLINE_MIR_THRESHOLD))]);
        build.env("RUSTC_BOOTSTRAP", "1").args(["-Zbuild-std=std,panic_abort", "-Zpanic-immediate-abort"]);
    }
    let what = if small { "build the browser SDK (wasm32, size profile, std rebuilt with immediate-abort)" } else { "build the browser SDK (wasm32, size profile)" };
    run_step(what, &mut build)?;
    let raw = sdk_target.join("wasm32-unknown-unknown").join(PROFILE).join("footprint_sdk.wasm");

    let dist = root.join("sdk/dist");
    let glue = dist.join("glue");
    let _ = std::fs::remove_dir_all(&glue);
    std::fs::create_dir_all(&glue)?;
    eprintln!("==> wasm-bindgen (bundler target: js/load.js instantiates the module)");
    let mut bindgen = wasm_bindgen_cli_support::Bindgen::new();
    bindgen.input_path(&raw).bundler(true)?.typescript(false).omit_default_module_path(false).out_name("footprint_sdk");
    bindgen.generate(&glue).context("wasm-bindgen")?;
    // The target's entry imports the .wasm as an ES module (bundler Wasm integration); js/load.js does that job.
    std::fs::remove_file(glue.join("footprint_sdk.js"))?;
    // Kept for size analysis (`wasm-opt -g` keeps its names).
    let unoptimised = dist.join("footprint_sdk_bindgen.wasm");
    std::fs::rename(glue.join("footprint_sdk_bg.wasm"), &unoptimised)?;
    let optimised = dist.join("footprint_sdk_bg.wasm");
    run_step(
        "wasm-opt -Oz",
        Command::new(node_tool("wasm-opt"))
            .arg(&unoptimised)
            // Global effects let -Oz drop more calls and locals; --converge repeats until nothing shrinks (~60 B).
            // --low-memory-unused lets constant offsets fold into loads and stores (−84 B): the first 1 KiB is the
            // far end of the 1 MiB stack (rustc links the stack first), reached only by a stack overflow.
            // --ignore-implicit-traps: the module's loads and stores stay within its memory and it never divides by
            // zero unchecked (Rust checks indexes and divisors; its panics are explicit `unreachable`s, which still
            // trap), so wasm-opt may move and drop loads as if they could not trap. With a pass through the flat IR and the relooper between two -Oz rounds:
            // −78 B brotli, and no change in the main thread's time (tests/browser/ab.mjs, 10 pages each: per
            // event 16.3 / 16.5 µs, per track() over 10,000 calls 5.3 / 5.0 µs).
            .args(["--generate-global-effects", "--ignore-implicit-traps", "--low-memory-unused", "-Oz", "--flatten", "--rereloop", "-Oz", "-Oz", "--converge"])
            .args(["--strip-debug", "--strip-producers", "--strip-target-features", "-o"])
            .arg(&optimised),
    )?;
    let wasm = std::fs::read(&optimised)?;

    let www = root.join("www");
    for entry in std::fs::read_dir(&www)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("footprint.") && name.ends_with(".wasm") {
            std::fs::remove_file(www.join(&name))?;
        }
    }
    let wasm_name = format!("footprint.{}.wasm", content_hash(&wasm));
    std::fs::write(www.join(&wasm_name), &wasm)?;

    let esbuild = |what: &str, entry: &str, args: &[&str]| {
        // console.warn calls are dropped (wasm-bindgen's glue had long notices; none are left in sdk/js).
        run_step(what, Command::new(node_tool("esbuild")).current_dir(&root).arg(entry).args(["--minify", "--log-level=error", "--legal-comments=none", "--target=es2020", "--pure:console.warn"]).args(args))
    };
    // What the script tag loads is minified again by terser (pure JS, no install script): its compressor and
    // mangler save about 2.5 % brotli over esbuild's here (3 passes; no `unsafe` transforms).
    let terser = |what: &str, file: &str| {
        run_step(what, Command::new(node_tool("terser")).current_dir(&root).arg(file).args(["--compress", "passes=3,hoist_funs=true", "--mangle", "--ecma", "2020", "-o", file]))
    };
    let define = format!("--define:__FOOTPRINT_WASM__=\"{wasm_name}\"");
    // js/load.js: whether the module has wasm-bindgen's externref table (the plain build: the prebuilt std has
    // reference types on, and wasm-bindgen cannot do without them then).
    let externref = format!("--define:__FOOTPRINT_EXTERNREF__={}", !small);
    // Not strict mode either (sdk/js/tsconfig.json's `strict` would add "use strict"; −28 B brotli, at the file's
    // start): the bundle declares every name and needs nothing of it.
    esbuild("esbuild: www/footprint.js (script tag)", "sdk/js/script.js", &["--bundle", "--format=iife", "--tsconfig-raw={}", &define, &externref, "--outfile=www/footprint.js"])?;
    terser("terser: www/footprint.js", "www/footprint.js")?;
    esbuild("esbuild: sdk/dist/npm (ES module)", "sdk/js/npm.js", &["--bundle", "--format=esm", &externref, "--outfile=sdk/dist/npm/index.js"])?;
    // Not strict mode (as above): the snippet is one expression.
    esbuild("esbuild: the stub snippet", "sdk/js/stub.js", &["--tsconfig-raw={}", "--outfile=sdk/dist/stub.min.js"])?;
    std::fs::copy(&optimised, dist.join("npm/footprint_sdk_bg.wasm"))?;
    std::fs::copy(root.join("sdk/js/index.d.ts"), dist.join("npm/index.d.ts"))?;
    eprintln!("==> SDK built: www/footprint.js, www/{wasm_name}, sdk/dist/npm/");
    Ok(())
}

/// 40 bits of FNV-1a as 10 hex digits: enough to tell builds apart for cache busting.
fn content_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:010x}", h >> 24)
}

fn node(what: &str, script: &str, args: &[&str], collector: &Path) -> anyhow::Result<()> {
    run_step(what, Command::new("node").current_dir(root()).arg(script).args(args).env("FOOTPRINT_BIN", collector))
}

/// The SDK's checks after a build: size (prints, fails above the ceiling), types, and the browser tests.
pub fn test(collector: &Path) -> anyhow::Result<()> {
    run_step("size check of what the script tag loads", Command::new("node").current_dir(root()).arg("tests/browser/size.mjs"))?;
    run_step("tsc: sdk/js/index.d.ts against sdk/js/usage.ts", Command::new(node_tool("tsc")).current_dir(root()).args(["-p", "sdk/js"]))?;
    ensure::chromium()?;
    let mut tests: Vec<String> = std::fs::read_dir(root().join("tests/browser"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".test.mjs"))
        .map(|n| format!("tests/browser/{n}"))
        .collect();
    tests.sort();
    let mut command = Command::new("node");
    command.current_dir(root()).args(["--test", "--test-concurrency=1"]).args(&tests).env("FOOTPRINT_BIN", collector);
    run_step("browser tests (playwright-core + Chromium, real collector)", &mut command)
}

/// `cargo xtask bench-sdk [--quick]`.
pub fn bench(args: &[String]) -> anyhow::Result<()> {
    build()?;
    run_step("build the collector (release)", cargo().args(["build", "--release", "-p", "footprint-collector"]))?;
    ensure::chromium()?;
    let collector = target_dir().join("release/footprint");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    node("size", "tests/browser/size.mjs", &[], &collector)?;
    node("browser benchmark", "tests/browser/bench.mjs", &args, &collector)
}
