//! Architecture invariants from ARCHITECTURE.md, checked on the source tree.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    footprint_tests::workspace_root()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap().display().to_string()
}

#[test]
fn core_has_no_io_dependencies() {
    let manifest = std::fs::read_to_string(root().join("core/Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    let names: Vec<&str> = deps.lines().filter_map(|l| l.split(['=', '.']).next()).map(str::trim).filter(|n| !n.is_empty()).collect();
    assert_eq!(names, ["serde", "serde_json"], "core must stay pure: no I/O, clock or RNG crates");
    for file in rust_files(&root().join("core/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for banned in ["std::fs", "std::net", "std::time::SystemTime", "Instant::now", "std::thread", "std::env"] {
            assert!(!text.contains(banned), "{} uses {banned}", relative(&file));
        }
    }
}

#[test]
fn hyper_only_in_http_and_sql_only_in_store() {
    for file in rust_files(&root().join("collector/src")) {
        let rel = relative(&file);
        let text = std::fs::read_to_string(&file).unwrap();
        if text.contains("hyper::") || text.contains("use hyper") {
            assert!(rel.starts_with("collector/src/http/"), "{rel} uses hyper; only http/ may");
        }
        if text.contains("rusqlite") {
            assert!(rel.starts_with("collector/src/store/"), "{rel} uses rusqlite; only store/ may");
        }
        if text.contains("postgres::") || text.contains("use postgres") {
            assert!(rel.starts_with("collector/src/store/"), "{rel} uses postgres; only store/ may");
        }
    }
}

#[test]
fn every_module_says_what_it_holds() {
    for dir in ["core/src", "collector/src", "tests/src", "tests/tests", "xtask/src", "sdk/src", "bench/src"] {
        let dir = root().join(dir);
        if !dir.is_dir() {
            continue;
        }
        for file in rust_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.trim_start().starts_with("//!"), "{} must start with a `//!` line saying what it holds", relative(&file));
        }
    }
}

#[test]
fn architecture_md_maps_every_crate_and_folder() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for entry in std::fs::read_dir(root()).unwrap().map(Result::unwrap) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_dir() || name.starts_with('.') && name != ".ci" || ["target", "node_modules", "footprint-data"].contains(&name.as_str()) {
            continue;
        }
        assert!(map.contains(&format!("`{name}/`")), "ARCHITECTURE.md does not mention `{name}/`");
    }
}
