//! An official Segment server library, unmodified, pointed at the collector: everything it sends is stored.

use footprint_tests::*;
use std::process::Command;

#[test]
fn segment_analytics_node_delivers_every_call() {
    let c = Collector::start(TWO_SITES);
    let root = workspace_root();
    assert!(
        root.join("node_modules/@segment/analytics-node").is_dir(),
        "npm packages are missing: run `cargo xtask test` (it runs `npm ci`) or `npm ci` at the repository root"
    );
    let output = Command::new("node")
        .arg(root.join("tests/interop/segment-node.mjs"))
        .arg(format!("http://{}", c.addr))
        .arg("wk_shop")
        .current_dir(root)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the Segment library reported errors: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(report["requests"].as_u64().unwrap() >= 3, "it batched: {report}");

    let by_type = |kind: &str| c.count(&format!("SELECT COUNT(*) FROM events WHERE site = 'shop' AND type = '{kind}'"));
    assert_eq!((by_type("identify"), by_type("track"), by_type("page"), by_type("screen"), by_type("group"), by_type("alias")), (1, 41, 1, 1, 1, 1));
    assert_eq!(c.count("SELECT COUNT(DISTINCT message_id) FROM events"), 46, "the library's own messageIds, no duplicates");
    assert_eq!(c.count("SELECT COUNT(*) FROM events WHERE flags & 4 != 0"), 0, "every event came with its messageId");
    assert_eq!(c.count("SELECT COUNT(*) FROM quarantine"), 0);
    let traits: String = c.db().query_row("SELECT traits FROM events WHERE type = 'identify'", [], |r| r.get(0)).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&traits).unwrap()["plan"], "pro");
    let (source, path): (String, String) = c.db().query_row("SELECT utm_source, path FROM events WHERE type = 'page'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((source.as_str(), path.as_str()), ("interop", "/docs"));
    // A historical timestamp set through the library survives skew correction (within the request's transit time).
    let ts: i64 = c.db().query_row("SELECT timestamp FROM events WHERE name = 'Historical Import'", [], |r| r.get(0)).unwrap();
    assert!((ts - 1_748_772_000_000).abs() < 5_000, "timestamp {ts}");
    let library: String = c.db().query_row("SELECT context FROM events WHERE type = 'screen'", [], |r| r.get(0)).unwrap();
    assert!(library.contains("@segment/analytics-node"), "{library}");
}
