//! `footprint export` and `footprint erase`: data-subject requests from the command line, sent to the running
//! collector's admin API (so they work the same on one SQLite node or many PostgreSQL nodes).

use anyhow::{bail, Context as _};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Where the collector is and how to authenticate.
pub struct Target {
    /// `host:port`
    pub address: String,
    pub token: String,
}

/// A minimal HTTP/1.1 exchange over loopback or a private network (no TLS: put a proxy in front for remote use).
fn exchange(target: &Target, method: &str, path_and_query: &str, body: Option<&str>) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(&target.address).with_context(|| format!("cannot reach the collector at {} (is `footprint serve` running?)", target.address))?;
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        target.address,
        target.token,
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("the collector sent no HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).context("malformed status line")?;
    Ok((status, raw[split + 4..].to_vec()))
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn fail(status: u16, body: &[u8]) -> anyhow::Error {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    match parsed {
        Some(v) => anyhow::anyhow!("the collector answered {status} {}: {}", v["code"].as_str().unwrap_or("?"), v["message"].as_str().unwrap_or("")),
        None => anyhow::anyhow!("the collector answered {status}"),
    }
}

/// Exports everything about the person to `out`; returns the number of bytes written.
pub fn export(target: &Target, kind: &str, value: &str, site: Option<&str>, ndjson: bool, out: &mut dyn Write) -> anyhow::Result<usize> {
    let mut path = format!("/admin/v1/export?type={}&value={}", encode(kind), encode(value));
    if let Some(site) = site {
        path.push_str(&format!("&site={}", encode(site)));
    }
    if ndjson {
        path.push_str("&format=ndjson");
    }
    let (status, body) = exchange(target, "GET", &path, None)?;
    if status != 200 {
        return Err(fail(status, &body));
    }
    out.write_all(&body)?;
    Ok(body.len())
}

/// Erases the person; returns the collector's report.
pub fn erase(target: &Target, kind: &str, value: &str, site: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let body = serde_json::json!({ "type": kind, "value": value, "site": site }).to_string();
    let (status, answer) = exchange(target, "POST", "/admin/v1/erase", Some(&body))?;
    if status != 200 {
        return Err(fail(status, &answer));
    }
    let report: serde_json::Value = serde_json::from_slice(&answer).context("the collector's answer is not JSON")?;
    if report["erased"].is_null() {
        bail!("unexpected answer: {report}");
    }
    Ok(report["erased"].clone())
}
