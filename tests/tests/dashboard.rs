//! The dashboard in real headless Chromium (`tests/dashboard/dashboard.mjs`, playwright-core + Debian's chromium):
//! it signs in, renders the stats of a small fixture, and every number it shows must equal the API's answer.
//! Screenshots land in `tests/artifacts/`.

use footprint_tests::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    workspace_root()
}

/// Builds the dashboard into www/ when it is not there (`cargo xtask test` has built it already).
fn ensure_dashboard_built() {
    let index = std::fs::read_to_string(root().join("www/index.html")).unwrap_or_default();
    if index.contains("/dashboard/app.") {
        return;
    }
    let status = Command::new("node").arg("dashboard/build.mjs").current_dir(root()).status().expect("node runs");
    assert!(status.success(), "building the dashboard failed");
}

fn visit(i: usize) -> Vec<Value> {
    const AGENTS: [&str; 3] = [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    ];
    let pages = ["/", "/pricing", "/docs", "/blog", "/signup"];
    let referrers = ["", "https://www.google.com/", "https://news.ycombinator.com/"];
    let day = 1 + i % 7;
    let hour = 8 + (i * 7) % 12;
    let anon = format!("dash-{}", i % 23);
    let mut out = Vec::new();
    for step in 0..(1 + i % 3) {
        let path = pages[(i + step) % pages.len()];
        let mut context = json!({ "userAgent": AGENTS[i % 3], "page": { "url": format!("https://shop.example{path}"), "path": path } });
        if step == 0 {
            context["page"]["referrer"] = json!(referrers[i % 3]);
        }
        out.push(json!({ "type": "page", "anonymousId": anon, "timestamp": format!("2026-03-{day:02}T{hour:02}:{:02}:00Z", step * 5), "context": context }));
    }
    if i % 4 == 0 {
        out.push(json!({ "type": "track", "event": "Signed Up", "anonymousId": anon, "timestamp": format!("2026-03-{day:02}T{hour:02}:20:00Z") }));
    }
    out
}

#[test]
fn dashboard_renders_the_numbers_the_api_answers() {
    ensure_dashboard_built();
    assert!(Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(), "Chromium is missing: `cargo xtask test` installs it (apt-get install chromium)");
    let c = Collector::start(TWO_SITES);
    let events: Vec<Value> = (0..60).flat_map(visit).collect();
    let r = c.post_json("/v1/batch", "wk_shop", &json!({ "batch": events }).to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let extra = json!({ "batch": [
        { "type": "track", "anonymousId": "dash-1", "messageId": "broken-1" },
        { "type": "track", "event": "Consent Updated", "anonymousId": "dash-1", "context": { "consent": { "categoryPreferences": { "analytics": true, "marketing": false } } } }
    ]});
    c.post_json("/v1/batch", "wk_shop", &extra.to_string());
    let out = Command::new("node")
        .arg("tests/dashboard/dashboard.mjs")
        .current_dir(root())
        .env("FP_URL", format!("http://{}", c.addr))
        .env("FP_TOKEN", "test-admin-token-0123456789")
        .env("FP_SITE", "shop")
        .env("FP_FROM", "2026-03-01")
        .env("FP_TO", "2026-03-07")
        .env("FP_TZ", "Europe/Berlin")
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "the dashboard check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok   KPI visitors"), "{stdout}");
    assert!(root().join("tests/artifacts/dashboard.png").exists());
}
